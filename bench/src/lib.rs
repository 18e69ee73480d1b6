//! Shared helpers for dialgate benchmarks and the `dialgate-bench` load tool: a throughput
//! harness that feeds one data-plane worker through in-memory ports and measures, in the same
//! run, the two limits it is judged against — the raw AEAD call on the same byte count, and a
//! plain io-forward loop over the same ports.
//!
//! Drive it with [`run_case`] per (direction, size mix); it builds a fresh in-memory network,
//! a worker with one client's SA pair, and a sink port that the worker's output is patched
//! into (so output buffers return to the pool without a copy). Only the worker's `poll` calls
//! are timed; generating frames (copying them in; sealing the client's ESP for the open
//! direction) happens between timed sections.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use dialgate_dataplane::buf::PacketBuf;
use dialgate_dataplane::esp::{Algorithm, Backend, Transform};
use dialgate_dataplane::port::mem::{MemBuf, MemConfig, MemIo, MemNet};
use dialgate_dataplane::port::{Burst, PacketIo};
use dialgate_dataplane::ring::Command;
use dialgate_dataplane::route::NextHop;
use dialgate_dataplane::sa::table::InboundEntry;
use dialgate_dataplane::sa::{InboundSa, Lifetime, OutboundSa, Tunnel, UdpEncap};
use dialgate_dataplane::worker::{frames, Counter, Interface, Plane, PlaneConfig, Role, Worker, WorkerConfig};
use serde::Serialize;

pub mod dp;
pub mod hist;
pub mod ike;
pub mod ikenet;
pub mod pcap;
pub mod plot;
pub mod report;

const WAN: u16 = 0;
const LAN: u16 = 1;
const SINK: u16 = 2;
const GW_WAN: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const ROUTER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const HOST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 212, 134, 200);
const CLIENT_SPI: u32 = 0xc1c1_0001;
/// Frames injected per timed batch (the rx queue holds them all).
const BATCH: usize = 512;

/// Which way packets go through the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// LAN cleartext → ESP in UDP towards the client.
    Seal,
    /// ESP in UDP from the client → LAN cleartext.
    Open,
}

/// Inner IP packet sizes of a case: one size, or a weighted mix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeMix {
    /// Name in the report ("64", "imix").
    pub name: String,
    /// (inner IP length, weight).
    pub sizes: Vec<(usize, u32)>,
}

impl SizeMix {
    /// A single size.
    pub fn fixed(size: usize) -> SizeMix {
        SizeMix { name: size.to_string(), sizes: vec![(size, 1)] }
    }

    /// The simple IMIX 7:4:1, with 64/576/1420-byte inner packets (1420 so that the sealed
    /// packet still fits a 1500-byte MTU).
    pub fn imix() -> SizeMix {
        SizeMix { name: "imix".into(), sizes: vec![(64, 7), (576, 4), (1420, 1)] }
    }

    /// The sizes of one cycle of the mix, interleaved.
    pub fn cycle(&self) -> Vec<usize> {
        let mut out = Vec::new();
        let max = self.sizes.iter().map(|s| s.1).max().unwrap_or(0);
        for round in 0..max {
            for &(size, w) in &self.sizes {
                if round < w {
                    out.push(size);
                }
            }
        }
        out
    }

    /// Mean inner size in bytes.
    pub fn mean(&self) -> f64 {
        let c = self.cycle();
        c.iter().sum::<usize>() as f64 / c.len().max(1) as f64
    }
}

/// One measured case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    /// Seal or open.
    pub direction: Direction,
    /// Size mix name.
    pub size: String,
    /// Algorithm name.
    pub algorithm: String,
    /// Packets through the worker.
    pub packets: u64,
    /// Worker throughput, million packets per second.
    pub mpps: f64,
    /// Worker throughput over inner (cleartext IP) bytes, Gbit/s.
    pub gbps: f64,
    /// Nanoseconds per packet.
    pub ns_per_packet: f64,
    /// The raw AEAD call on each packet's ESP payload length, Gbit/s of inner bytes.
    pub raw_aead_gbps: f64,
    /// `gbps / raw_aead_gbps`.
    pub ratio_to_raw_aead: f64,
    /// A plain io-forward loop (rx, swap MACs, tx) over the same ports, Mpps.
    pub io_forward_mpps: f64,
    /// `mpps / io_forward_mpps`.
    pub ratio_to_io_forward: f64,
    /// Packets the worker dropped (should be 0).
    pub drops: u64,
}

/// Options of a run.
#[derive(Debug, Clone)]
pub struct Options {
    /// ESP algorithm.
    pub algorithm: Algorithm,
    /// Crypto backend.
    pub backend: Backend,
    /// Packets per case (rounded up to whole batches).
    pub packets: usize,
}

pub(crate) fn keys(alg: Algorithm, seed: u8) -> (Vec<u8>, Vec<u8>) {
    (
        (0..alg.enc_key_len()).map(|i| seed ^ i as u8).collect(),
        (0..alg.auth_key_len()).map(|i| seed.wrapping_add(i as u8)).collect(),
    )
}

pub(crate) fn transform(o: &Options, seed: u8) -> Transform {
    let (e, a) = keys(o.algorithm, seed);
    Transform::new(o.algorithm, o.backend, &e, &a).expect("keys of the algorithm's lengths")
}

pub(crate) fn encap(l: u16, r: u16) -> Option<UdpEncap> {
    Some(UdpEncap { local_port: l, remote_port: r })
}

/// An inner IPv4/UDP packet of exactly `size` bytes (at least 28).
pub(crate) fn inner(src: Ipv4Addr, dst: Ipv4Addr, size: usize) -> Vec<u8> {
    frames::ipv4_udp(SocketAddrV4::new(src, 4000), SocketAddrV4::new(dst, 5000), 64, &vec![0x5a; size.max(28) - 28])
}

struct Rig {
    net: MemNet,
    worker: Worker<MemIo>,
    sink: MemIo,
    client_out: OutboundSa,
    wan_mac: [u8; 6],
    lan_mac: [u8; 6],
}

fn rig(o: &Options) -> Rig {
    let net = MemNet::new(&MemConfig { ports: 3, queues: 1, queue_depth: 2048, buffers: 4096, buf_size: 2176 });
    net.patch(WAN, SINK);
    net.patch(LAN, SINK);
    let (mut control, mut links) = Plane::build::<MemBuf>(&PlaneConfig::default());
    let ifs = vec![Interface::new(WAN, Role::Wan, GW_WAN), Interface::new(LAN, Role::Lan, Ipv4Addr::new(10, 0, 0, 1))];
    let mut worker = Worker::new(links.remove(0), WorkerConfig::new(ifs, 0), net.io()).expect("ports exist");
    let spi = control.spis.allocate(0).expect("a free SPI");
    let sa_in = InboundSa::new(spi, transform(o, 1), false, 1024, Lifetime::default());
    let _ = control.install_inbound(Box::new(InboundEntry::new(sa_in, IpAddr::V4(VIP), None)));
    let t = Tunnel { local: GW_WAN.into(), remote: CLIENT.into(), encap: encap(4500, 61000) };
    let _ =
        control.outbound.install_vip(VIP, OutboundSa::new(CLIENT_SPI, transform(o, 2), t, false, Lifetime::default()));
    for c in [
        Command::RouteAdd { prefix: Ipv4Addr::UNSPECIFIED, len: 0, hop: NextHop::Gateway { port: WAN, via: ROUTER } },
        Command::RouteAdd { prefix: Ipv4Addr::new(10, 0, 0, 0), len: 24, hop: NextHop::Connected { port: LAN } },
        Command::NeighbourAdd { port: WAN, ip: ROUTER, mac: [2, 0xee, 0, 0, 0, 0xfe] },
        Command::NeighbourAdd { port: LAN, ip: HOST, mac: [2, 0xaa, 0, 0, 0, 5] },
    ] {
        let _ = control.command(0, c);
    }
    worker.poll();
    let io = net.io();
    let (wan_mac, lan_mac) = (io.mac(WAN).unwrap_or_default(), io.mac(LAN).unwrap_or_default());
    let ct = Tunnel { local: CLIENT.into(), remote: GW_WAN.into(), encap: encap(61000, 4500) };
    let client_out = OutboundSa::new(spi, transform(o, 1), ct, false, Lifetime::default());
    // `control` goes out of scope: the worker keeps its rings and table alive.
    Rig { sink: net.io(), net, worker, client_out, wan_mac, lan_mac }
}

impl Rig {
    /// Frames for one batch: (port, frame).
    fn batch(&self, dir: Direction, sizes: &[usize], start: usize) -> Vec<Vec<u8>> {
        (0..BATCH)
            .map(|i| {
                let size = sizes[(start + i) % sizes.len()];
                match dir {
                    Direction::Seal => {
                        frames::ethernet(self.lan_mac, [2, 0xaa, 0, 0, 0, 5], 0x0800, &inner(HOST, VIP, size))
                    }
                    Direction::Open => frames::seal_frame(
                        &self.client_out,
                        self.wan_mac,
                        [2, 0xee, 0, 0, 0, 0xfe],
                        &inner(VIP, HOST, size),
                    )
                    .expect("client seals"),
                }
            })
            .collect()
    }

    fn sink(&mut self) {
        let mut b: Burst<MemBuf> = Burst::new();
        while self.sink.rx_burst(SINK, 0, &mut b) > 0 {
            b.clear();
        }
    }
}

/// Measures the worker for one direction and size mix, plus the raw-AEAD and io-forward limits.
pub fn run_case(o: &Options, dir: Direction, mix: &SizeMix) -> CaseResult {
    let sizes = mix.cycle();
    let mut rig = rig(o);
    let port = if dir == Direction::Seal { LAN } else { WAN };
    let batches = o.packets.div_ceil(BATCH).max(1);
    let mut busy = Duration::ZERO;
    let mut bytes = 0u64;
    let warmup = (batches / 10).max(1);
    for b in 0..batches + warmup {
        let frames = rig.batch(dir, &sizes, b * BATCH);
        for f in &frames {
            rig.net.inject(port, 0, f);
        }
        let t0 = Instant::now();
        while rig.net.rx_pending(port, 0) > 0 {
            black_box(rig.worker.poll());
        }
        rig.worker.poll();
        let dt = t0.elapsed();
        if b >= warmup {
            busy += dt;
            bytes += (0..BATCH).map(|i| sizes[(b * BATCH + i) % sizes.len()] as u64).sum::<u64>();
        }
        rig.sink();
    }
    let packets = (batches * BATCH) as u64;
    let secs = busy.as_secs_f64();
    let drops = rig.worker.stats().total_drops();
    let done = rig.worker.stats().get(if dir == Direction::Seal { Counter::Encrypted } else { Counter::Decrypted });
    debug_assert!(done >= packets);
    let raw = raw_aead_gbps(o, &sizes);
    let fwd = io_forward_mpps(&sizes);
    let mpps = packets as f64 / secs / 1e6;
    let gbps = bytes as f64 * 8.0 / secs / 1e9;
    CaseResult {
        direction: dir,
        size: mix.name.clone(),
        algorithm: o.algorithm.name().to_string(),
        packets,
        mpps,
        gbps,
        ns_per_packet: secs * 1e9 / packets as f64,
        raw_aead_gbps: raw,
        ratio_to_raw_aead: gbps / raw,
        io_forward_mpps: fwd,
        ratio_to_io_forward: mpps / fwd,
        drops,
    }
}

/// The transform's seal alone over each packet's ESP payload (SPI … ICV), Gbit/s of inner bytes.
pub fn raw_aead_gbps(o: &Options, sizes: &[usize]) -> f64 {
    let t = transform(o, 3);
    let alg = o.algorithm;
    let mut bufs: Vec<(usize, Vec<u8>)> = sizes
        .iter()
        .map(|&s| {
            let block = alg.block_len();
            let pad = (block - (s + 2) % block) % block;
            (s, vec![0x33u8; 8 + alg.iv_len() + s + pad + 2 + alg.icv_len()])
        })
        .collect();
    let iters = (200_000 / bufs.len()).max(1);
    let mut bytes = 0u64;
    let t0 = Instant::now();
    for _ in 0..iters {
        for (s, b) in bufs.iter_mut() {
            let _ = black_box(t.seal(b, None));
            bytes += *s as u64;
        }
    }
    bytes as f64 * 8.0 / t0.elapsed().as_secs_f64() / 1e9
}

/// A plain io-forward loop over the same in-memory ports: rx burst, swap MACs, tx burst.
pub fn io_forward_mpps(sizes: &[usize]) -> f64 {
    let net = MemNet::new(&MemConfig { ports: 3, queues: 1, queue_depth: 2048, buffers: 4096, buf_size: 2176 });
    net.patch(WAN, SINK);
    let mut io = net.io();
    let mut sink = net.io();
    let frames: Vec<Vec<u8>> = (0..BATCH)
        .map(|i| frames::ethernet([2; 6], [4; 6], 0x0800, &inner(HOST, VIP, sizes[i % sizes.len()])))
        .collect();
    let mut busy = Duration::ZERO;
    let rounds = 200;
    for _ in 0..rounds {
        for f in &frames {
            net.inject(LAN, 0, f);
        }
        let t0 = Instant::now();
        let mut burst: Burst<MemBuf> = Burst::new();
        while io.rx_burst(LAN, 0, &mut burst) > 0 {
            for b in burst.iter_mut() {
                let d = b.data_mut();
                let mut tmp = [0u8; 6];
                tmp.copy_from_slice(&d[0..6]);
                d.copy_within(6..12, 0);
                d[6..12].copy_from_slice(&tmp);
            }
            io.tx_burst(WAN, 0, &mut burst);
            burst.clear();
        }
        busy += t0.elapsed();
        let mut b: Burst<MemBuf> = Burst::new();
        while sink.rx_burst(SINK, 0, &mut b) > 0 {
            b.clear();
        }
    }
    (rounds * BATCH) as f64 / busy.as_secs_f64() / 1e6
}
