//! `dialgate-bench dataplane`: 1…N workers (threads) over in-memory ports with 1…100 000
//! tunnels installed through the data plane's control API (`Control::install_inbound`,
//! `OutboundTable::install_vip`), packets spread round-robin over each worker's tunnels.
//!
//! Throughput: every worker thread generates its frames between timed sections, injects a
//! batch into its own rx queue and times only its `poll` calls until the batch is gone; the
//! aggregate is the sum of the per-worker rates. Latency: a paced generator injects pre-built
//! frames at a fixed rate into worker 0's queue between that worker's polls, on the same
//! thread (so a shared, oversubscribed machine cannot deschedule one without the other), and
//! stamps each one; a wrapper around the worker's port ([`TimedIo`]) stamps every packet the worker
//! transmits. The worker keeps a single rx queue in FIFO order, so the k-th transmission is
//! the k-th injection and latency = tx stamp − enqueue stamp.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dialgate_dataplane::esp::Algorithm;
use dialgate_dataplane::port::mem::{MemBuf, MemConfig, MemIo, MemNet};
use dialgate_dataplane::port::{Burst, PacketIo};
use dialgate_dataplane::ring::Command;
use dialgate_dataplane::route::NextHop;
use dialgate_dataplane::sa::table::InboundEntry;
use dialgate_dataplane::sa::{InboundSa, Lifetime, OutboundSa, Tunnel};
use dialgate_dataplane::worker::{frames, Counter, Interface, Plane, PlaneConfig, Role, Worker, WorkerConfig};
use serde::{Deserialize, Serialize};

use crate::hist::{new_histogram, ratio, rss_bytes, Percentiles};
use crate::{encap, inner, transform, Options, SizeMix, CLIENT, GW_WAN, HOST, LAN, ROUTER, SINK, WAN};

/// Frames per timed batch and worker.
const BATCH: usize = 512;
/// First virtual address of the tunnels (tunnel i has `POOL_BASE + i`).
const POOL_BASE: Ipv4Addr = Ipv4Addr::new(10, 128, 0, 0);
const ROUTER_MAC: [u8; 6] = [2, 0xee, 0, 0, 0, 0xfe];
const HOST_MAC: [u8; 6] = [2, 0xaa, 0, 0, 0, 5];

/// What the generator sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// LAN cleartext → ESP towards the clients.
    Seal,
    /// ESP from the clients → LAN cleartext.
    Open,
    /// Alternating seal and open packets.
    Mixed,
}

impl Mode {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Seal => "seal",
            Mode::Open => "open",
            Mode::Mixed => "mixed",
        }
    }
}

/// One throughput case.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThroughputResult {
    /// Seal, open or mixed.
    pub mode: Mode,
    /// Size mix name.
    pub size: String,
    /// Worker threads.
    pub workers: usize,
    /// Tunnels installed (SA pairs).
    pub tunnels: usize,
    /// Packets through all workers (timed part).
    pub packets: u64,
    /// Sum over workers of packets / own busy time, million packets per second.
    pub mpps: f64,
    /// The same over inner (cleartext IP) bytes, Gbit/s.
    pub gbps: f64,
    /// Per-worker rates, Mpps.
    pub mpps_per_worker: Vec<f64>,
    /// Packets the workers dropped.
    pub drops: u64,
    /// Raw AEAD seal of the same sizes on one core, Gbit/s of inner bytes.
    pub raw_aead_gbps: f64,
    /// `gbps / (workers × raw_aead_gbps)`.
    pub ratio_to_raw_aead: f64,
    /// Plain io-forward over the same ports on one core, Mpps.
    pub io_forward_mpps: f64,
    /// `mpps / (workers × io_forward_mpps)`.
    pub ratio_to_io_forward: f64,
    /// Resident memory added by installing the tunnels in the data plane (inbound entry,
    /// outbound SA, both transforms), bytes per tunnel.
    pub install_bytes_per_tunnel: f64,
}

/// One latency point.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatencyResult {
    /// Seal or open.
    pub mode: Mode,
    /// Size mix name.
    pub size: String,
    /// Tunnels installed.
    pub tunnels: usize,
    /// Offered load as a fraction of the measured maximum of this rig (1 worker with the
    /// generator on its thread).
    pub load: f64,
    /// Offered rate, Mpps.
    pub offered_mpps: f64,
    /// Rate the generator actually reached, Mpps.
    pub achieved_mpps: f64,
    /// Enqueue → worker tx.
    pub latency: Percentiles,
    /// Packets dropped by the worker or not injected.
    pub drops: u64,
}

/// Transmit stamps shared between a [`TimedIo`] (worker thread) and the harness.
#[derive(Debug)]
pub struct TxStamps {
    base: Instant,
    armed: AtomicBool,
    next: AtomicUsize,
    tx: Vec<AtomicU64>,
}

impl TxStamps {
    /// Room for `n` stamps, measured from `base`.
    pub fn new(base: Instant, n: usize) -> TxStamps {
        TxStamps {
            base,
            armed: AtomicBool::new(false),
            next: AtomicUsize::new(0),
            tx: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn arm(&self) {
        self.next.store(0, Ordering::Relaxed);
        self.armed.store(true, Ordering::Release);
    }

    fn disarm(&self) {
        self.armed.store(false, Ordering::Release);
    }
}

/// A [`MemIo`] that stamps transmissions while its [`TxStamps`] are armed.
#[derive(Debug, Clone)]
pub struct TimedIo {
    io: MemIo,
    stamps: Arc<TxStamps>,
}

impl PacketIo for TimedIo {
    type Buf = MemBuf;

    fn rx_burst<const N: usize>(&mut self, port: u16, queue: u16, out: &mut Burst<MemBuf, N>) -> usize {
        self.io.rx_burst(port, queue, out)
    }

    fn tx_burst<const N: usize>(&mut self, port: u16, queue: u16, pkts: &mut Burst<MemBuf, N>) -> usize {
        let n = self.io.tx_burst(port, queue, pkts);
        if n > 0 && self.stamps.armed.load(Ordering::Relaxed) {
            let now = self.stamps.base.elapsed().as_nanos() as u64;
            let k = self.stamps.next.fetch_add(n, Ordering::Relaxed);
            for s in self.stamps.tx.iter().skip(k).take(n) {
                s.store(now, Ordering::Relaxed);
            }
        }
        n
    }

    fn alloc(&mut self) -> Option<MemBuf> {
        self.io.alloc()
    }

    fn free_burst<const N: usize>(&mut self, bufs: &mut Burst<MemBuf, N>) {
        self.io.free_burst(bufs)
    }

    fn mac(&self, port: u16) -> Option<[u8; 6]> {
        self.io.mac(port)
    }
}

struct Tun {
    vip: Ipv4Addr,
    client_out: OutboundSa,
}

/// Workers with their tunnels, ready to run.
pub struct Rig {
    net: MemNet,
    workers: Vec<Worker<TimedIo>>,
    stamps: Vec<Arc<TxStamps>>,
    tuns: Vec<Vec<Tun>>,
    wan_mac: [u8; 6],
    lan_mac: [u8; 6],
    /// RSS added by installing the tunnels, per tunnel.
    pub install_bytes_per_tunnel: f64,
}

impl std::fmt::Debug for Rig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rig").field("workers", &self.workers.len()).finish()
    }
}

/// Largest number of latency samples one run records.
pub const LATENCY_SAMPLES: usize = 200_000;

impl Rig {
    /// Builds `workers` workers and installs `tunnels` SA pairs, tunnel i on worker i mod n.
    pub fn new(o: &Options, workers: usize, tunnels: usize) -> Rig {
        let workers = workers.clamp(1, 32);
        let tunnels = tunnels.max(1);
        let net = MemNet::new(&MemConfig {
            ports: 3,
            queues: workers as u16,
            queue_depth: 4096,
            buffers: 8192 + workers * 4 * BATCH,
            buf_size: 2176,
        });
        net.patch(WAN, SINK);
        net.patch(LAN, SINK);
        let cfg = PlaneConfig {
            workers,
            inbound_slots: (tunnels / workers + 64).max(4096) as u32,
            pool_base: POOL_BASE,
            pool_len: tunnels as u32,
            command_ring: 4096,
            ..PlaneConfig::default()
        };
        let base = Instant::now();
        let (mut control, links) = Plane::build::<MemBuf>(&cfg);
        let mut ws = Vec::new();
        let mut stamps = Vec::new();
        for (q, link) in links.into_iter().enumerate() {
            let ifs = vec![
                Interface::new(WAN, Role::Wan, GW_WAN),
                Interface::new(LAN, Role::Lan, Ipv4Addr::new(10, 0, 0, 1)),
            ];
            let s = Arc::new(TxStamps::new(base, LATENCY_SAMPLES));
            let io = TimedIo { io: net.io(), stamps: s.clone() };
            ws.push(Worker::new(link, WorkerConfig::new(ifs, q as u16), io).expect("ports exist"));
            stamps.push(s);
        }
        for (w, worker) in ws.iter_mut().enumerate() {
            for c in [
                Command::RouteAdd {
                    prefix: Ipv4Addr::UNSPECIFIED,
                    len: 0,
                    hop: NextHop::Gateway { port: WAN, via: ROUTER },
                },
                Command::RouteAdd {
                    prefix: Ipv4Addr::new(10, 0, 0, 0),
                    len: 24,
                    hop: NextHop::Connected { port: LAN },
                },
                Command::NeighbourAdd { port: WAN, ip: ROUTER, mac: ROUTER_MAC },
                Command::NeighbourAdd { port: LAN, ip: HOST, mac: HOST_MAC },
            ] {
                let _ = control.command(w, c);
            }
            worker.poll();
        }
        // The harness's client-side SAs first, so the RSS delta below is the data plane's.
        let mut tuns: Vec<Vec<Tun>> = (0..workers).map(|_| Vec::new()).collect();
        let mut spis = Vec::with_capacity(tunnels);
        for i in 0..tunnels {
            let w = i % workers;
            let vip = Ipv4Addr::from(u32::from(POOL_BASE) + i as u32);
            let spi = control.spis.allocate(w as u8).expect("a free SPI");
            let ct = Tunnel { local: CLIENT.into(), remote: GW_WAN.into(), encap: encap(61000, 4500) };
            let seed = (i % 251) as u8;
            tuns[w].push(Tun {
                vip,
                client_out: OutboundSa::new(spi, transform(o, seed), ct, false, Lifetime::default()),
            });
            spis.push(spi);
        }
        let rss0 = rss_bytes();
        for (i, &spi) in spis.iter().enumerate() {
            let w = i % workers;
            let vip = Ipv4Addr::from(u32::from(POOL_BASE) + i as u32);
            let seed = (i % 251) as u8;
            let sa_in = InboundSa::new(spi, transform(o, seed), false, 1024, Lifetime::default());
            let mut cmd = Command::InstallInbound(Box::new(InboundEntry::new(sa_in, IpAddr::V4(vip), None)));
            loop {
                match control.command(w, cmd) {
                    Ok(()) => break,
                    Err(c) => {
                        cmd = c;
                        ws[w].poll();
                    }
                }
            }
            let t = Tunnel { local: GW_WAN.into(), remote: CLIENT.into(), encap: encap(4500, 61000) };
            let out_spi = 0xc100_0000 | i as u32;
            control
                .outbound
                .install_vip(vip, OutboundSa::new(out_spi, transform(o, seed ^ 0x80), t, false, Lifetime::default()))
                .expect("VIP in the pool");
        }
        for w in ws.iter_mut() {
            for _ in 0..4 {
                w.poll();
            }
        }
        let install_bytes_per_tunnel = rss_bytes().saturating_sub(rss0) as f64 / tunnels as f64;
        let io = net.io();
        let (wan_mac, lan_mac) = (io.mac(WAN).unwrap_or_default(), io.mac(LAN).unwrap_or_default());
        // `control` goes out of scope: the workers keep their rings and tables alive.
        Rig { net, workers: ws, stamps, tuns, wan_mac, lan_mac, install_bytes_per_tunnel }
    }

    /// The j-th frame for worker `w`: (rx port, frame).
    fn frame(&self, w: usize, mode: Mode, size: usize, j: usize) -> (u16, Vec<u8>) {
        let tuns = &self.tuns[w];
        let t = &tuns[j % tuns.len()];
        let seal = match mode {
            Mode::Seal => true,
            Mode::Open => false,
            Mode::Mixed => j & 1 == 0,
        };
        if seal {
            (LAN, frames::ethernet(self.lan_mac, HOST_MAC, 0x0800, &inner(HOST, t.vip, size)))
        } else {
            let f = frames::seal_frame(&t.client_out, self.wan_mac, ROUTER_MAC, &inner(t.vip, HOST, size))
                .expect("client seals");
            (WAN, f)
        }
    }
}

/// Parameters of a throughput case.
#[derive(Debug, Clone)]
pub struct Case {
    /// Seal, open or mixed.
    pub mode: Mode,
    /// Packet sizes.
    pub mix: SizeMix,
    /// Packets per worker (rounded up to whole batches).
    pub packets: usize,
}

fn drain(sink: &mut MemIo, q: u16) {
    let mut b: Burst<MemBuf> = Burst::new();
    while sink.rx_burst(SINK, q, &mut b) > 0 {
        b.clear();
    }
}

/// Measured limits of one core for a size mix: (raw AEAD Gbit/s, io-forward Mpps).
pub fn limits(o: &Options, mix: &SizeMix) -> (f64, f64) {
    let sizes = mix.cycle();
    (crate::raw_aead_gbps(o, &sizes), crate::io_forward_mpps(&sizes))
}

/// Runs one throughput case on every worker of `rig` at once (one thread each).
pub fn throughput(rig: &mut Rig, case: &Case, limits: (f64, f64)) -> ThroughputResult {
    let sizes = case.mix.cycle();
    let batches = case.packets.div_ceil(BATCH).max(1);
    let warmup = (batches / 10).max(1);
    let n = rig.workers.len();
    let drops0: u64 = rig.workers.iter().map(|w| w.stats().total_drops()).sum();
    // Frames are built per batch on the worker's own thread (untimed).
    let workers = std::mem::take(&mut rig.workers);
    let rig_ref = &*rig;
    let gen = |w: usize, b: usize| -> Vec<(u16, Vec<u8>)> {
        (0..BATCH).map(|i| rig_ref.frame(w, case.mode, sizes[(b * BATCH + i) % sizes.len()], b * BATCH + i)).collect()
    };
    let net = rig.net.clone();
    let results: Vec<(Worker<TimedIo>, Duration, u64, u64)> = std::thread::scope(|s| {
        let hs: Vec<_> = workers
            .into_iter()
            .enumerate()
            .map(|(w, mut worker)| {
                let net = net.clone();
                let gen = &gen;
                let sizes = &sizes;
                s.spawn(move || {
                    let q = w as u16;
                    let mut sink = net.io();
                    let mut busy = Duration::ZERO;
                    let (mut pkts, mut bytes) = (0u64, 0u64);
                    for b in 0..batches + warmup {
                        let fs = gen(w, b);
                        for (port, f) in &fs {
                            net.inject(*port, q, f);
                        }
                        let t0 = Instant::now();
                        while net.rx_pending(LAN, q) + net.rx_pending(WAN, q) > 0 {
                            black_box(worker.poll());
                        }
                        worker.poll();
                        let dt = t0.elapsed();
                        if b >= warmup {
                            busy += dt;
                            pkts += BATCH as u64;
                            bytes += (0..BATCH).map(|i| sizes[(b * BATCH + i) % sizes.len()] as u64).sum::<u64>();
                        }
                        drain(&mut sink, q);
                    }
                    (worker, busy, pkts, bytes)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("worker thread")).collect()
    });
    let mut per = Vec::new();
    let (mut mpps, mut gbps, mut packets) = (0.0, 0.0, 0u64);
    for (worker, busy, p, b) in results {
        let secs = busy.as_secs_f64();
        per.push(p as f64 / secs / 1e6);
        mpps += p as f64 / secs / 1e6;
        gbps += b as f64 * 8.0 / secs / 1e9;
        packets += p;
        rig.workers.push(worker);
    }
    let drops = rig.workers.iter().map(|w| w.stats().total_drops()).sum::<u64>() - drops0;
    let done: u64 =
        rig.workers.iter().map(|w| w.stats().get(Counter::Encrypted) + w.stats().get(Counter::Decrypted)).sum();
    debug_assert!(done >= packets);
    let (raw, fwd) = limits;
    ThroughputResult {
        mode: case.mode,
        size: case.mix.name.clone(),
        workers: n,
        tunnels: rig.tuns.iter().map(Vec::len).sum(),
        packets,
        mpps,
        gbps,
        mpps_per_worker: per,
        drops,
        raw_aead_gbps: raw,
        ratio_to_raw_aead: ratio(gbps, raw * n as f64),
        io_forward_mpps: fwd,
        ratio_to_io_forward: ratio(mpps, fwd * n as f64),
        install_bytes_per_tunnel: rig.install_bytes_per_tunnel,
    }
}

/// Paced latency on worker 0: `packets` frames offered at `load × max_mpps`.
pub fn latency(rig: &mut Rig, mode: Mode, mix: &SizeMix, max_mpps: f64, load: f64, packets: usize) -> LatencyResult {
    assert!(mode != Mode::Mixed, "latency needs one FIFO rx queue");
    let packets = packets.clamp(1, LATENCY_SAMPLES);
    let sizes = mix.cycle();
    let frames: Vec<(u16, Vec<u8>)> =
        (0..packets).map(|j| rig.frame(0, mode, sizes[j % sizes.len()], 1_000_000_000 + j)).collect();
    let rate = (load * max_mpps * 1e6).max(1.0);
    let interval_ns = 1e9 / rate;
    let stamps = rig.stamps[0].clone();
    let mut worker = rig.workers.remove(0);
    let drops0 = worker.stats().total_drops();
    let net = rig.net.clone();
    let mut sink = net.io();
    let mut enq = vec![0u64; packets];
    let mut failed = 0u64;
    let now_ns = || stamps.base.elapsed().as_nanos() as u64;
    stamps.arm();
    let t0 = now_ns();
    let mut i = 0;
    let mut polls = 0u32;
    // Generator and worker share this thread: inject what is due (at most one burst), stamp it
    // with the inject time, poll once.
    while i < packets {
        let now = now_ns();
        let due = ((((now - t0) as f64) / interval_ns) as usize + 1).min(packets).min(i + 32);
        while i < due {
            let (port, f) = &frames[i];
            enq[i] = now;
            if !net.inject(*port, 0, f) {
                failed += 1;
                enq[i] = u64::MAX;
            }
            i += 1;
        }
        black_box(worker.poll());
        polls = polls.wrapping_add(1);
        if polls & 63 == 0 {
            drain(&mut sink, 0);
        }
    }
    let elapsed = now_ns() - t0;
    while net.rx_pending(LAN, 0) + net.rx_pending(WAN, 0) > 0 {
        worker.poll();
    }
    worker.poll();
    drain(&mut sink, 0);
    stamps.disarm();
    let drops = worker.stats().total_drops() - drops0 + failed;
    rig.workers.insert(0, worker);
    let mut h = new_histogram();
    let sent = stamps.next.load(Ordering::Relaxed).min(packets);
    // Transmissions map to injections in order; skip injections that failed.
    let mut k = 0;
    for &e in enq.iter() {
        if e == u64::MAX {
            continue;
        }
        if k >= sent {
            break;
        }
        let tx = stamps.tx[k].load(Ordering::Relaxed);
        let _ = h.record(tx.saturating_sub(e).max(1));
        k += 1;
    }
    LatencyResult {
        mode,
        size: mix.name.clone(),
        tunnels: rig.tuns.iter().map(Vec::len).sum(),
        load,
        offered_mpps: rate / 1e6,
        achieved_mpps: packets as f64 / (elapsed as f64 / 1e9) / 1e6,
        latency: Percentiles::of(&h),
        drops,
    }
}

/// Names an algorithm for the report.
pub fn algorithm_name(a: Algorithm) -> &'static str {
    a.name()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dialgate_dataplane::esp::Backend;

    #[test]
    fn throughput_and_latency_on_a_small_rig() {
        let o = Options { algorithm: Algorithm::Aes128Gcm, backend: Backend::AwsLc, packets: 1024 };
        let mut rig = Rig::new(&o, 2, 10);
        let case = Case { mode: Mode::Mixed, mix: SizeMix::fixed(64), packets: 1024 };
        let r = throughput(&mut rig, &case, (1.0, 1.0));
        assert_eq!((r.workers, r.tunnels, r.drops), (2, 10, 0));
        // 2 timed batches of 512 per worker after one warm-up batch.
        assert_eq!(r.packets, 2 * 1024);
        assert_eq!(r.mpps_per_worker.len(), 2);
        assert!((r.mpps - r.mpps_per_worker.iter().sum::<f64>()).abs() < 1e-9);
        assert!((r.ratio_to_io_forward - r.mpps / 2.0).abs() < 1e-9);
        let l = latency(&mut rig, Mode::Open, &SizeMix::fixed(128), 1.0, 0.5, 2000);
        assert_eq!(l.latency.count, 2000, "every packet matched to its transmission");
        assert_eq!(l.drops, 0);
        assert!(l.latency.p50_us > 0.0 && l.latency.p50_us <= l.latency.p99_us, "{:?}", l.latency);
        assert!((l.offered_mpps - 0.5).abs() < 1e-9);
    }
}
