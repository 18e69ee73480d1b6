//! The DPDK driver: the gateway's ports polled by data-plane workers on their own cores, and
//! the IKE responder fed from the workers' exception ring on the control core.
//!
//! How to drive it: [`DataPlane::start`] takes the loaded configuration and a validated core
//! map [`Plan`]; it initialises the EAL (the calling thread becomes the main lcore and must
//! stay the control thread), creates the mempool, configures and starts every port, builds the
//! rings and tables ([`Plane::build`]), launches one [`Worker`] per worker core and installs
//! the connected and static routes. Then [`run`] services everything from a tokio
//! current-thread runtime on the same thread until `shutdown` resolves:
//!
//! * IKE datagrams the workers classified (UDP 500, UDP 4500 with the non-ESP marker) come in
//!   on the exception ring with their outer addresses and go to the responder;
//! * the responder's datagrams are copied into mbufs and queued on a worker's tx ring; the
//!   worker adds UDP/IP/Ethernet (and the non-ESP marker on 4500) and sends them;
//! * CHILD_SAs become an inbound SA installed through the owning worker's command ring and an
//!   outbound SA published in the shared RCU table at the client's virtual address; the
//!   responder draws inbound SPIs from the data plane's allocator ([`SpiSource`]) so the SPI
//!   names the owning worker and slot;
//! * worker events: retired inbound SAs free their SPI; learned neighbours are copied to the
//!   other workers; first packets, NAT rebinding and keepalives are logged.
//!
//! Nothing here is on the packet path: the workers never wait for this thread.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use dialgate_dataplane::coremap::Plan;
use dialgate_dataplane::esp::{Algorithm, Backend, Transform};
use dialgate_dataplane::ring::{Command, Event as DpEvent, TxRequest};
use dialgate_dataplane::route::NextHop;
use dialgate_dataplane::sa::table::{InboundEntry, SpiAllocator, SpiParts};
use dialgate_dataplane::sa::{InboundSa, Lifetime, OutboundSa, SaCounters, Tunnel, UdpEncap};
use dialgate_dataplane::worker::{Control, FirewallConfig, Interface, Plane, PlaneConfig, Role, Worker, WorkerConfig};
use dialgate_ffi::io::EthdevIo;
use dialgate_ffi::{port, Eal, Launched, Mbuf, Mempool, PoolConfig, Port, PortConfig};
use dialgate_ike::crypto::{Encr, Entropy, Integ};
use dialgate_ike::proposal::EspSuite;
use dialgate_ike::responder::{AddressPool, ChildSa, Path, Responder, SpiSource, UserVerifier};
use zeroize::Zeroizing;

use super::{EventLog, LoopGuard, SaSink};
use crate::config::objects::InterfaceRole;
use crate::config::Config;
use crate::diagnose::SaStats;
use crate::firewall::{self, GroupMap, InterfaceMap};

/// Coarse-clock resolution handed to the workers (ARP retry pacing, last-seen stamps).
const TICK: Duration = Duration::from_millis(100);

/// What the DPDK driver counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// IKE datagrams received from the workers.
    pub ike_rx: u64,
    /// IKE datagrams queued for sending.
    pub ike_tx: u64,
    /// Datagrams not sent: a worker's tx ring was full.
    pub tx_ring_full: u64,
    /// Datagrams not sent: no mbuf left.
    pub no_mbuf: u64,
    /// Datagrams not sent: not IPv4 (the workers send IPv4 only).
    pub not_ipv4: u64,
    /// CHILD_SAs installed in the data plane.
    pub sa_installed: u64,
    /// CHILD_SAs refused by the data plane (no virtual address, unknown suite, full ring/table).
    pub sa_refused: u64,
    /// CHILD_SAs removed.
    pub sa_removed: u64,
}

/// One installed CHILD_SA, as the control plane remembers it for removal and diagnose.
#[derive(Clone, Debug)]
pub struct InstalledSa {
    /// Our SPI (inbound).
    pub inbound_spi: u32,
    /// The peer's SPI (outbound).
    pub outbound_spi: u32,
    /// The client's virtual address (outbound table key).
    pub vip: Ipv4Addr,
    /// The inbound SA's counters (the worker updates them).
    pub rx: Arc<SaCounters>,
    /// What rebuilding the outbound SA needs when the peer's NAT mapping moves.
    out: Arc<OutboundSpec>,
    /// Packets and bytes sent by outbound SAs this one replaced (NAT rebinding).
    tx_base: (u64, u64),
}

/// The outbound SA's algorithm and keys, kept (zeroized on drop) to re-publish the SA with a
/// new outer address: the data plane's outbound SAs are immutable once published.
struct OutboundSpec {
    alg: Algorithm,
    encr: Zeroizing<Vec<u8>>,
    integ: Zeroizing<Vec<u8>>,
    esn: bool,
}

impl std::fmt::Debug for OutboundSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundSpec").field("alg", &self.alg).finish_non_exhaustive()
    }
}

/// The outer addresses after the peer's ESP started arriving from `from`, or `None` when
/// nothing changes. Only the remote side moves: our address and port stay.
pub fn moved_tunnel(old: Tunnel, from: SocketAddr) -> Option<Tunnel> {
    let encap = old.encap.map(|e| UdpEncap { local_port: e.local_port, remote_port: from.port() });
    let new = Tunnel { remote: from.ip(), encap, ..old };
    (new != old).then_some(new)
}

/// Sequence numbers skipped when an outbound SA is re-published: workers still sealing with
/// the old copy during the RCU grace period must never reuse a number (an AEAD nonce).
const SEQ_GAP: u64 = 1 << 20;

/// Traffic of one CHILD_SA as the seeds' `stat: rxp=… txp=… rxb=… txb=…` shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SaTraffic {
    /// Packets received (opened).
    pub rxp: u64,
    /// Packets sent (sealed).
    pub txp: u64,
    /// Inner bytes received.
    pub rxb: u64,
    /// Inner bytes sent.
    pub txb: u64,
}

/// The running data plane: EAL, ports, workers, and the control plane's handle on them.
pub struct DataPlane {
    control: Control<Mbuf>,
    spis: Arc<Mutex<SpiAllocator>>,
    pool: Mempool,
    ports: Vec<(String, Port)>,
    stop: Arc<AtomicBool>,
    workers: Vec<Launched>,
    sas: HashMap<u64, Vec<InstalledSa>>,
    replay_window: u32,
    next_tx: usize,
    started: Instant,
    counters: Counters,
    fw: Firewall,
    /// Outbound halves of rekeyed CHILD_SAs waiting for their switch, by new inbound SPI.
    pending_out: HashMap<u32, (Ipv4Addr, OutboundSa)>,
    // Declared last: dropped after every pool, port and worker that refers to it.
    _eal: Eal,
}

/// What the control plane needs to tag SAs for the workers' firewall and to reload its policy.
struct Firewall {
    cfg: Config,
    ifs: InterfaceMap,
    groups: GroupMap,
    tunnel: String,
    pool_base: Ipv4Addr,
    /// EAP user of each established IKE SA (its groups go on the SA for `set groups` policies).
    users: HashMap<u64, Option<String>>,
}

impl std::fmt::Debug for DataPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPlane")
            .field("ports", &self.ports.iter().map(|p| &p.0).collect::<Vec<_>>())
            .field("workers", &self.workers.len())
            .finish_non_exhaustive()
    }
}

/// Hands the responder inbound SPIs from the data plane's allocator, round-robin over workers.
struct PlaneSpis {
    alloc: Arc<Mutex<SpiAllocator>>,
    workers: u8,
    next: u8,
}

impl SpiSource for PlaneSpis {
    fn allocate(&mut self) -> Option<u32> {
        let mut alloc = self.alloc.lock().ok()?;
        for _ in 0..self.workers {
            let w = self.next;
            self.next = (self.next + 1) % self.workers.max(1);
            if let Some(spi) = alloc.allocate(w) {
                return Some(spi);
            }
        }
        None
    }
}

/// The data plane's transform for a negotiated ESP suite, if it implements it.
pub fn algorithm(suite: &EspSuite) -> Option<Algorithm> {
    Some(match (suite.encr, suite.integ) {
        (Encr::AesGcm16 { key_len: 16 }, None) => Algorithm::Aes128Gcm,
        (Encr::AesGcm16 { key_len: 32 }, None) => Algorithm::Aes256Gcm,
        (Encr::ChaCha20Poly1305, None) => Algorithm::ChaCha20Poly1305,
        (Encr::AesCbc { key_len: 16 }, Some(Integ::HmacSha1_96)) => Algorithm::Aes128CbcSha1,
        (Encr::AesCbc { key_len: 32 }, Some(Integ::HmacSha1_96)) => Algorithm::Aes256CbcSha1,
        (Encr::AesCbc { key_len: 16 }, Some(Integ::HmacSha256_128)) => Algorithm::Aes128CbcSha256,
        (Encr::AesCbc { key_len: 32 }, Some(Integ::HmacSha256_128)) => Algorithm::Aes256CbcSha256,
        _ => return None,
    })
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

impl DataPlane {
    /// Starts EAL, ports and workers for `plan` (devices not in the core map come from the
    /// interfaces' `dpdk-device`), with the outbound table sized for the pool `pool_span`.
    /// `phase1` names the tunnel whose phase2 gives the replay window.
    pub fn start(
        cfg: &Config,
        mut plan: Plan,
        pool_span: Option<(Ipv4Addr, Ipv4Addr)>,
        phase1: &str,
    ) -> anyhow::Result<DataPlane> {
        plan.resolve_devices(|name| {
            cfg.interface(name).and_then(|i| i.dpdk_device.as_ref()).map(|d| d.as_str().into())
        })?;
        // Every port must be a configured interface with an address: the workers answer ARP
        // for it and source IKE/ESP from it.
        let mut ifaces = Vec::with_capacity(plan.ports.len());
        for p in &plan.ports {
            let i = cfg
                .interface(&p.name)
                .with_context(|| format!("core map port {:?} is not a `config system interface` entry", p.name))?;
            if i.ip.addr.is_unspecified() {
                bail!("interface {:?} has no `set ip`; the data plane needs the gateway's address on it", p.name);
            }
            ifaces.push(i);
        }
        let mut args = plan.eal_args();
        if !args.iter().any(|a| a.starts_with("--file-prefix")) {
            args.push(format!("--file-prefix=dialgate{}", std::process::id()));
        }
        if !args.iter().any(|a| a.starts_with("--log-level")) {
            args.push("--log-level=lib.eal:error".into());
        }
        let eal = Eal::init(&args).map_err(|e| anyhow!("EAL init with {args:?}: {e}"))?;
        let m = plan.mempool;
        let pool = Mempool::new(
            &eal,
            "dialgate",
            PoolConfig { mbufs: m.mbufs, cache: m.cache, data_room: m.data_room, socket: None },
        )
        .map_err(|e| anyhow!("mempool of {} mbufs: {e}", m.mbufs))?;
        let mut ports = Vec::with_capacity(plan.ports.len());
        for p in &plan.ports {
            let dev = p.device.as_ref().map(|d| d.name().to_string()).unwrap_or_default();
            let id = port::port_by_name(&eal, &dev).map_err(|e| anyhow!("port {:?} (device {dev}): {e}", p.name))?;
            let pc = PortConfig {
                rx_queues: p.rx_queues,
                tx_queues: p.tx_queues,
                rx_desc: p.rx_desc,
                tx_desc: p.tx_desc,
                promiscuous: true,
            };
            let port = Port::configure(&eal, id, &pc, &pool).map_err(|e| anyhow!("port {:?}: {e}", p.name))?;
            port.start().map_err(|e| anyhow!("port {:?} start: {e}", p.name))?;
            ports.push((p.name.clone(), port));
        }
        let interfaces: Vec<Interface> = ifaces
            .iter()
            .zip(&ports)
            .map(|(i, (_, port))| {
                let role = if i.role == InterfaceRole::Wan { Role::Wan } else { Role::Lan };
                Interface::new(port.id(), role, i.ip.addr)
            })
            .collect();

        let (base, len) = match pool_span {
            Some((s, e)) => (s, u32::from(e) - u32::from(s) + 1),
            None => (Ipv4Addr::UNSPECIFIED, 0),
        };
        let pcfg =
            PlaneConfig { workers: plan.workers.len(), pool_base: base, pool_len: len, ..PlaneConfig::default() };
        let (mut control, links) = Plane::build::<Mbuf>(&pcfg);
        // Firewall policy (tunnel → LAN and the replies), implicit deny as FortiOS: compiled
        // before the workers start, so no packet passes unchecked.
        let ifs = InterfaceMap::from_config(cfg);
        let groups = GroupMap::from_config(cfg);
        let set = firewall::compile(cfg, &ifs, &groups, None).map_err(|errs| {
            anyhow!("firewall policy: {}", errs.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
        })?;
        control.policy.store(set);
        let port_if: Vec<(u16, u16)> =
            ports.iter().filter_map(|(name, port)| Some((port.id(), ifs.index(name)?))).collect();
        // The responder allocates SPIs from the control thread; the SPI allocator moves behind
        // a mutex shared with the SpiSource (never touched by a worker).
        let spis = Arc::new(Mutex::new(std::mem::replace(&mut control.spis, SpiAllocator::new(0, 0))));
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::with_capacity(plan.workers.len());
        for (w, link) in plan.workers.iter().zip(links) {
            let mut rx = Vec::new();
            let mut polls = Vec::new();
            for &(pi, q) in &w.polls {
                let (_, port) = &ports[usize::from(pi)];
                rx.push(port.take_rx(q).map_err(|e| anyhow!("worker on core {}: rx queue {q}: {e}", w.core))?);
                polls.push((port.id(), q));
            }
            let mut tx = Vec::new();
            for (name, port) in &ports {
                tx.push(port.take_tx(w.tx_queue).map_err(|e| anyhow!("worker on core {}: {name} tx: {e}", w.core))?);
            }
            let io = EthdevIo::new(pool.clone(), rx, tx).map_err(|e| anyhow!("worker on core {}: {e}", w.core))?;
            let mut wcfg = WorkerConfig::new(interfaces.clone(), w.tx_queue);
            wcfg.rx = polls;
            let mut fw = FirewallConfig::new(port_if.clone());
            fw.tick_ns = TICK.as_nanos() as u64;
            wcfg.firewall = Some(fw);
            let stop = stop.clone();
            let launched = eal
                .launch(w.core, move || match Worker::new(link, wcfg, io) {
                    Ok(mut worker) => {
                        worker.run(&stop);
                        0
                    }
                    Err(e) => {
                        eprintln!("dialgate: worker: {e}");
                        1
                    }
                })
                .map_err(|e| anyhow!("launch worker on core {}: {e}", w.core))?;
            workers.push(launched);
        }

        let port_of = |name: &str| ports.iter().find(|(n, _)| n == name).map(|(_, p)| p.id());
        let mut routes = Vec::new();
        for (i, (_, port)) in ifaces.iter().zip(&ports) {
            let m = mask(i.ip.prefix_len);
            let net = Ipv4Addr::from(u32::from(i.ip.addr) & m);
            routes.push((net, i.ip.prefix_len, NextHop::Connected { port: port.id() }));
        }
        for r in cfg.static_routes.iter().filter(|r| r.status.0 && !r.blackhole.0) {
            let Some(port) = port_of(&r.device) else { continue };
            let net = Ipv4Addr::from(u32::from(r.dst.addr) & mask(r.dst.prefix_len));
            routes.push((net, r.dst.prefix_len, NextHop::Gateway { port, via: r.gateway }));
        }
        for (prefix, len, hop) in routes {
            let full = control.broadcast(|| Command::RouteAdd { prefix, len, hop });
            if full != 0 {
                bail!("command ring full while installing route {prefix}/{len}");
            }
        }
        let replay_window = cfg.phase2_of(phase1).next().map_or(1024, |p| if p.replay.0 { p.replay_window } else { 0 });
        Ok(DataPlane {
            control,
            spis,
            pool,
            ports,
            stop,
            workers,
            sas: HashMap::new(),
            replay_window,
            next_tx: 0,
            started: Instant::now(),
            counters: Counters::default(),
            pending_out: HashMap::new(),
            fw: Firewall {
                cfg: cfg.clone(),
                ifs,
                groups,
                tunnel: phase1.to_string(),
                pool_base: base,
                users: HashMap::new(),
            },
            _eal: eal,
        })
    }

    /// Recompiles the firewall policy from `cfg` and swaps it in atomically (established
    /// connections keep going while still allowed); on error nothing changes.
    pub fn reload_firewall(&mut self, cfg: &Config) -> Result<usize, String> {
        let ifs = InterfaceMap::from_config(cfg);
        if ifs != self.fw.ifs {
            return Err("the interfaces or tunnels changed; restart dialgate to apply".into());
        }
        let groups = GroupMap::from_config(cfg);
        let previous = self.control.policy.load();
        let set = firewall::compile(cfg, &ifs, &groups, Some(&previous))
            .map_err(|errs| errs.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))?;
        let n = set.policies().count();
        self.control.policy.store(set);
        self.fw.cfg = cfg.clone();
        self.fw.groups = groups;
        Ok(n)
    }

    /// `diagnose firewall policy list` with the workers' live counters.
    pub fn policy_list(&self) -> String {
        firewall::policy_list(&self.fw.cfg, &self.control.policy.load())
    }

    /// A renderer of [`DataPlane::policy_list`] for `diagnose` that needs no access to `self`.
    pub fn policy_lister(&self) -> impl Fn() -> String + Send + Sync + 'static {
        let (cfg, policy) = (self.fw.cfg.clone(), self.control.policy.clone());
        move || firewall::policy_list(&cfg, &policy.load())
    }

    /// An [`SpiSource`] for the responder over this data plane's SPI allocator.
    pub fn spi_source(&self) -> Box<dyn SpiSource> {
        let workers = self.control.commands.len().clamp(1, usize::from(u8::MAX)) as u8;
        Box::new(PlaneSpis { alloc: self.spis.clone(), workers, next: 0 })
    }

    /// The control plane's handle (counters, tables, rings).
    pub fn control(&self) -> &Control<Mbuf> {
        &self.control
    }

    /// What this driver counted.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The CHILD_SAs installed for IKE SA `ike_spi`.
    pub fn installed(&self, ike_spi: u64) -> &[InstalledSa] {
        self.sas.get(&ike_spi).map_or(&[], Vec::as_slice)
    }

    /// Every installed CHILD_SA with its IKE SA.
    pub fn all_installed(&self) -> impl Iterator<Item = (u64, &InstalledSa)> {
        self.sas.iter().flat_map(|(k, v)| v.iter().map(move |s| (*k, s)))
    }

    /// Traffic of an installed CHILD_SA: rx from the worker-updated inbound counters, tx from
    /// the outbound SA in the RCU table (its packet count is its sequence number).
    pub fn traffic(&self, s: &InstalledSa) -> SaTraffic {
        let (txp, txb) = self
            .control
            .outbound
            .slot_of(s.vip)
            .and_then(|slot| self.control.outbound.inspect(slot, |o| (o.spi, o.packets(), o.counters.bytes())))
            .filter(|o| o.0 == s.outbound_spi)
            .map_or((0, 0), |o| (o.1, o.2));
        SaTraffic { rxp: s.rx.packets(), txp: txp + s.tx_base.0, rxb: s.rx.bytes(), txb: txb + s.tx_base.1 }
    }

    /// When any CHILD_SA of IKE SA `ike_spi` last received a valid packet, as an age; `None`
    /// when none ever did. Dead-peer detection asks this before probing an idle peer.
    pub fn last_inbound(&self, ike_spi: u64) -> Option<Duration> {
        let now = self.control.clock.now();
        self.installed(ike_spi)
            .iter()
            .filter_map(|s| {
                let p = SpiParts::from_spi(s.inbound_spi);
                let seen = self.control.shared.get(usize::from(p.worker))?.last_seen(p.slot);
                (seen != 0).then(|| TICK * now.saturating_sub(seen))
            })
            .min()
    }

    /// One line with an SA's SPIs and traffic (`what`: removed, active, ...).
    pub fn traffic_line(&self, s: &InstalledSa, what: &str) -> String {
        let t = self.traffic(s);
        format!(
            "child SA in_spi={:08x} out_spi={:08x} {}: {what}, stat: rxp={} txp={} rxb={} txb={}",
            s.inbound_spi, s.outbound_spi, s.vip, t.rxp, t.txp, t.rxb, t.txb
        )
    }

    /// Queues an IKE datagram on a worker's tx ring.
    fn send(&mut self, path: Path, payload: &[u8]) {
        let (SocketAddr::V4(src), SocketAddr::V4(dst)) = (path.local, path.remote) else {
            self.counters.not_ipv4 += 1;
            return;
        };
        let Some(mut m) = self.pool.alloc() else {
            self.counters.no_mbuf += 1;
            return;
        };
        let Some(room) = m.append(payload.len()) else {
            self.counters.no_mbuf += 1;
            return;
        };
        room.copy_from_slice(payload);
        let n = self.control.tx.len().max(1);
        let w = self.next_tx % n;
        self.next_tx = self.next_tx.wrapping_add(1);
        match self.control.tx.get(w).map(|r| r.push(TxRequest { src, dst, buf: m })) {
            Some(Ok(())) => self.counters.ike_tx += 1,
            _ => self.counters.tx_ring_full += 1,
        }
    }

    fn install_child(&mut self, sa: &ChildSa) -> Result<InstalledSa, String> {
        let alg = algorithm(&sa.suite).ok_or("suite not implemented by the data plane")?;
        let vip = sa.assigned.ok_or("no virtual address assigned (the data plane routes by it)")?;
        let t_in =
            Transform::new(alg, Backend::AwsLc, &sa.inbound.encr, &sa.inbound.integ).map_err(|e| e.to_string())?;
        let t_out =
            Transform::new(alg, Backend::AwsLc, &sa.outbound.encr, &sa.outbound.integ).map_err(|e| e.to_string())?;
        // Behind NAT the client floats to 4500 (RFC 7296 §2.23); ESP follows the IKE ports.
        let encap = sa.udp_encap.then(|| {
            let (l, r) = (sa.path.local.port(), sa.path.remote.port());
            if l == 4500 {
                UdpEncap { local_port: l, remote_port: r }
            } else {
                UdpEncap { local_port: 4500, remote_port: 4500 }
            }
        });
        let tunnel = Tunnel { local: sa.path.local.ip(), remote: sa.path.remote.ip(), encap };
        let f = &self.fw;
        let user = f.users.get(&sa.ike_spi).and_then(|u| u.as_deref());
        // The pool offset names the client's connections across CHILD_SA rekeys.
        let conn_id = u32::from(vip).wrapping_sub(u32::from(f.pool_base));
        let tag = firewall::tunnel_tag(&f.cfg, &f.ifs, &f.groups, &f.tunnel, user, Some(conn_id));
        let out =
            OutboundSa::new(sa.outbound_spi, t_out, tunnel, sa.esn, Lifetime::default()).with_if_index(tag.if_index);
        // Make before break (RFC 7296 §2.8): a rekeyed SA's outbound half waits until the peer
        // uses the new inbound SA (proof it installed both) or deletes the old one, so no
        // packet is sealed for an SA the peer cannot open yet.
        let slot_busy = self
            .control
            .outbound
            .slot_of(vip)
            .and_then(|slot| self.control.outbound.inspect(slot, |o| o.spi))
            .is_some();
        if sa.rekeys.is_some() && slot_busy {
            self.pending_out.insert(sa.inbound_spi, (vip, out));
        } else {
            self.control.outbound.install_vip(vip, out).map_err(|e| format!("outbound table: {e}"))?;
        }
        let inbound = InboundSa::new(sa.inbound_spi, t_in, sa.esn, self.replay_window, Lifetime::default());
        let rx = inbound.counters.clone();
        let out = Arc::new(OutboundSpec {
            alg,
            encr: Zeroizing::new(sa.outbound.encr.to_vec()),
            integ: Zeroizing::new(sa.outbound.integ.to_vec()),
            esn: sa.esn,
        });
        let entry = InboundEntry::new(inbound, IpAddr::V4(vip), Some(sa.path.remote)).with_tunnel(tag);
        if self.control.install_inbound(Box::new(entry)).is_err() {
            if self.pending_out.remove(&sa.inbound_spi).is_none() {
                if let Some(slot) = self.control.outbound.slot_of(vip) {
                    let _ = self.control.outbound.remove(slot);
                }
            }
            return Err("command ring full".into());
        }
        Ok(InstalledSa { inbound_spi: sa.inbound_spi, outbound_spi: sa.outbound_spi, vip, rx, out, tx_base: (0, 0) })
    }

    /// Publishes the deferred outbound SA of a rekeyed CHILD_SA (see `install_child`).
    fn switch_outbound(&mut self, inbound_spi: u32) -> bool {
        let Some((vip, out)) = self.pending_out.remove(&inbound_spi) else { return false };
        self.control.outbound.install_vip(vip, out).is_ok()
    }

    fn retire_child(&mut self, s: &InstalledSa) {
        // The SPI is freed when the worker hands the entry back (`InboundRetired`).
        let _ = self.control.delete_inbound(s.inbound_spi);
        // After a rekey the slot already holds the successor: only remove our own SA. This
        // thread is the table's only writer, so the check cannot race another removal.
        if let Some(slot) = self.control.outbound.slot_of(s.vip) {
            if self.control.outbound.inspect(slot, |o| o.spi) == Some(s.outbound_spi) {
                let _ = self.control.outbound.remove(slot);
            }
        }
        self.counters.sa_removed += 1;
        // The old SA is gone: its successor sends from now on, used or not.
        let successors: Vec<u32> =
            self.pending_out.iter().filter(|(_, (vip, _))| *vip == s.vip).map(|(spi, _)| *spi).collect();
        for spi in successors {
            self.switch_outbound(spi);
        }
    }

    /// NAT rebinding (RFC 3948 §2.1, RFC 7296 §2.23): authenticated ESP for inbound SA `spi`
    /// now comes from `from`, so the paired outbound SA is re-published towards it.
    fn follow_peer(&mut self, spi: u32, from: SocketAddr) -> Result<(), &'static str> {
        let s = self.sas.values_mut().flat_map(|v| v.iter_mut()).find(|s| s.inbound_spi == spi).ok_or("unknown SA")?;
        let slot = self.control.outbound.slot_of(s.vip).ok_or("not in the pool")?;
        let cur = self
            .control
            .outbound
            .inspect(slot, |o| (o.spi, o.last_seq(), o.packets(), o.counters.bytes(), o.tunnel, o.if_index))
            .ok_or("outbound SA gone")?;
        let (out_spi, last, packets, bytes, old, if_index) = cur;
        if out_spi != s.outbound_spi {
            return Err("rekeyed meanwhile");
        }
        let Some(tunnel) = moved_tunnel(old, from) else { return Ok(()) };
        let o = &s.out;
        let t = Transform::new(o.alg, Backend::AwsLc, &o.encr, &o.integ).map_err(|_| "transform")?;
        let sa = OutboundSa::with_seq(out_spi, t, tunnel, o.esn, Lifetime::default(), last.saturating_add(SEQ_GAP))
            .with_if_index(if_index);
        self.control.outbound.install(slot, sa).map_err(|_| "install")?;
        s.tx_base = (s.tx_base.0 + packets, s.tx_base.1 + bytes);
        Ok(())
    }

    /// Handles the workers' events; returns lines worth logging.
    fn worker_events(&mut self, log: &mut Vec<String>) {
        while let Some(ev) = self.control.events.pop() {
            match ev {
                DpEvent::InboundRetired(entry) => {
                    if let Ok(mut a) = self.spis.lock() {
                        a.release(entry.sa.spi);
                    }
                }
                DpEvent::NeighbourLearned { port, ip, mac } => {
                    // Each worker resolves on its own; share what one learned with the rest.
                    self.control.broadcast(|| Command::NeighbourAdd { port, ip, mac });
                }
                DpEvent::FirstPacket { spi, from } => {
                    let switched = if self.switch_outbound(spi) { ", outbound switched to its pair" } else { "" };
                    log.push(format!("esp: first packet on SA {spi:08x} from {from}{switched}"));
                }
                DpEvent::PeerMoved { spi, from } => {
                    let what = match self.follow_peer(spi, from) {
                        Ok(()) => "outbound SA follows",
                        Err(e) => e,
                    };
                    log.push(format!("esp: SA {spi:08x} peer moved to {from}: {what}"));
                }
                other => log.push(format!("esp: {other:?}")),
            }
        }
    }
}

impl SaSink for DataPlane {
    fn install(&mut self, sa: ChildSa) {
        match self.install_child(&sa) {
            Ok(s) => {
                self.counters.sa_installed += 1;
                self.sas.entry(sa.ike_spi).or_default().push(s);
            }
            Err(why) => {
                self.counters.sa_refused += 1;
                eprintln!("dialgate: CHILD_SA {:08x} not installed: {why}", sa.inbound_spi);
            }
        }
    }

    fn remove_child(&mut self, ike_spi: u64, inbound_spi: u32) {
        let Some(v) = self.sas.get_mut(&ike_spi) else { return };
        let Some(i) = v.iter().position(|s| s.inbound_spi == inbound_spi) else { return };
        let s = v.remove(i);
        println!("{}", self.traffic_line(&s, "removed"));
        self.retire_child(&s);
    }

    fn established(&mut self, ike_spi: u64, user: Option<&str>) {
        self.fw.users.insert(ike_spi, user.map(str::to_string));
    }

    fn rekey_ike_sa(&mut self, old: u64, new: u64) {
        if let Some(v) = self.sas.remove(&old) {
            self.sas.entry(new).or_default().extend(v);
        }
        if let Some(u) = self.fw.users.remove(&old) {
            self.fw.users.insert(new, u);
        }
    }

    fn remove_ike_sa(&mut self, ike_spi: u64) {
        self.fw.users.remove(&ike_spi);
        for s in self.sas.remove(&ike_spi).unwrap_or_default() {
            println!("{}", self.traffic_line(&s, "removed"));
            self.retire_child(&s);
        }
    }
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        // The workers leave their loops; `Launched` then waits for each lcore as it drops.
        self.stop.store(true, Ordering::Relaxed);
        for (_, p) in &mut self.ports {
            let _ = p.stop();
        }
    }
}

/// Drives `responder` over the data plane until `shutdown` resolves.
///
/// On SIGHUP `reload` runs between two service rounds (re-read the configuration and apply what
/// can change live; it must leave everything as it was when the new file has errors).
pub async fn run<R, V, P>(
    responder: &mut Responder<R, V, P>,
    dp: &mut DataPlane,
    log: &mut EventLog,
    shutdown: impl Future<Output = ()>,
    mut reload: impl FnMut(&mut Responder<R, V, P>, &mut DataPlane),
    mut deletes: Option<tokio::sync::mpsc::UnboundedReceiver<(u64, String)>>,
    mut approvals: Option<tokio::sync::mpsc::UnboundedReceiver<String>>,
) -> Counters
where
    R: Entropy,
    V: UserVerifier,
    P: AddressPool,
{
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut lines = Vec::new();
    let mut last_stats = Instant::now();
    // The workers forward on their own cores whatever happens here; a failed step is contained,
    // logged and counted, and the loop goes on (see `LoopGuard`).
    let mut guard = LoopGuard::new(log);
    loop {
        let wake = tokio::select! {
            () = &mut shutdown => break,
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => Wake::Reload,
            Some((spi, why)) = super::next_delete(&mut deletes) => Wake::Delete(spi, why),
            Some(user) = super::next_approval(&mut approvals) => Wake::Approve(user),
            _ = tick.tick() => Wake::Tick,
        };
        let failed = guard.run(log, |log| {
            match wake {
                Wake::Reload => reload(responder, dp),
                Wake::Delete(spi, why) => {
                    log.line(None, &format!("deleting IKE SA {spi:016x}: {why}"));
                    responder.delete_ike_sa(spi, Instant::now());
                }
                Wake::Approve(user) => {
                    let n = responder.approve_token(&user, Instant::now());
                    log.line(
                        None,
                        &format!("token push for user \"{user}\" approved by the administrator ({n} pending)"),
                    );
                }
                Wake::Tick => {}
            }
            service(responder, dp, log, &mut lines, &mut last_stats);
        });
        if failed {
            // The step may have stopped between datagrams: the next events are nobody's.
            log.set_peer(None);
        }
    }
    publish(responder, dp, log);
    dp.counters
}

/// What woke the responder loop.
enum Wake {
    Reload,
    Delete(u64, String),
    Approve(String),
    Tick,
}

/// One service round: the clock, IKE from the exception ring, timers, worker events, and once a
/// second the statistics and the liveness the workers saw.
fn service<R: Entropy, V: UserVerifier, P: AddressPool>(
    responder: &mut Responder<R, V, P>,
    dp: &mut DataPlane,
    log: &mut EventLog,
    lines: &mut Vec<String>,
    last_stats: &mut Instant,
) {
    let now = Instant::now();
    let ticks = now.duration_since(dp.started).as_millis() / TICK.as_millis();
    dp.control.clock.set(u32::try_from(ticks).unwrap_or(u32::MAX).max(1));
    while let Some(ex) = dp.control.exceptions.pop() {
        dp.counters.ike_rx += 1;
        let path = Path { remote: SocketAddr::V4(ex.src), local: SocketAddr::V4(ex.dst) };
        // Drained per datagram, so every debug line is attributed to its peer (rem-addr4).
        log.set_peer(Some(path));
        responder.handle_datagram(now, path, ex.payload());
        drop(ex);
        drain(responder, dp, log);
    }
    log.set_peer(None);
    if responder.poll_timeout().is_some_and(|t| t <= now) {
        responder.handle_timeout(now);
    }
    drain(responder, dp, log);
    dp.worker_events(lines);
    for l in lines.drain(..) {
        log.line(None, &l);
    }
    if now.duration_since(*last_stats) >= Duration::from_secs(1) {
        *last_stats = now;
        publish(responder, dp, log);
        // ESP the workers opened is a sign of life: DPD need not probe those peers.
        let spis: Vec<u64> = dp.sas.keys().copied().collect();
        for spi in spis {
            if let Some(age) = dp.last_inbound(spi) {
                responder.peer_alive(spi, now.checked_sub(age).unwrap_or(now));
            }
        }
    }
    dp.control.outbound.reclaim();
    dp.control.policy.reclaim();
}

/// Handles the responder's events, then sends its datagrams: install commands go on the
/// workers' rings before the response that lets the peer use the SA (see `super::drain`).
fn drain<R: Entropy, V: UserVerifier, P: AddressPool>(
    responder: &mut Responder<R, V, P>,
    dp: &mut DataPlane,
    log: &mut EventLog,
) {
    super::drain(
        responder,
        &mut (dp, log),
        |(dp, log), ev| log.handle(ev, *dp),
        |(dp, _), t| dp.send(t.path, &t.payload),
    );
}

/// Hands per-SA traffic and the drivers' counters to `diagnose`.
fn publish<R: Entropy, V: UserVerifier, P: AddressPool>(
    responder: &Responder<R, V, P>,
    dp: &DataPlane,
    log: &EventLog,
) {
    let Some(d) = log.diag() else { return };
    for (_, s) in dp.all_installed() {
        let t = dp.traffic(s);
        d.update_sa_stats(s.inbound_spi, SaStats { rxp: t.rxp, txp: t.txp, rxb: t.rxb, txb: t.txb });
    }
    let c = dp.counters;
    d.set_driver_counters(
        "dpdk",
        &[
            ("ike_rx", c.ike_rx),
            ("ike_tx", c.ike_tx),
            ("tx_ring_full", c.tx_ring_full),
            ("no_mbuf", c.no_mbuf),
            ("sa_installed", c.sa_installed),
            ("sa_refused", c.sa_refused),
            ("sa_removed", c.sa_removed),
        ],
    );
    d.set_responder_stats(responder.stats());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nat_rebinding_moves_only_the_remote_side() {
        let old = Tunnel {
            local: [172, 16, 200, 4].into(),
            remote: [198, 51, 100, 7].into(),
            encap: Some(UdpEncap { local_port: 4500, remote_port: 4500 }),
        };
        assert_eq!(moved_tunnel(old, "198.51.100.7:4500".parse().unwrap()), None);
        let t = moved_tunnel(old, "198.51.100.7:61000".parse().unwrap()).unwrap();
        assert_eq!((t.local, t.remote), (old.local, old.remote));
        assert_eq!(t.encap, Some(UdpEncap { local_port: 4500, remote_port: 61000 }));
        let t = moved_tunnel(old, "203.0.113.9:4501".parse().unwrap()).unwrap();
        assert_eq!(t.remote, IpAddr::from([203, 0, 113, 9]));
        assert_eq!(t.encap.map(|e| (e.local_port, e.remote_port)), Some((4500, 4501)));
    }

    #[test]
    fn suites_map_to_data_plane_transforms() {
        let a = |w: &str| algorithm(&EspSuite::parse(w).unwrap());
        assert_eq!(a("aes128gcm"), Some(Algorithm::Aes128Gcm));
        assert_eq!(a("aes256gcm"), Some(Algorithm::Aes256Gcm));
        assert_eq!(a("chacha20poly1305"), Some(Algorithm::ChaCha20Poly1305));
        assert_eq!(a("aes128-sha1"), Some(Algorithm::Aes128CbcSha1));
        assert_eq!(a("aes256-sha256"), Some(Algorithm::Aes256CbcSha256));
        assert_eq!(a("aes256-sha512"), None, "not in the data plane: refused, never mis-keyed");
    }
}
