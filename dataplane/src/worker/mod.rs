//! The poll-mode worker: one loop, generic over [`PacketIo`], one per core.
//!
//! Build the plumbing once with [`Plane::build`]: it returns the control plane's handle
//! ([`Control`]: the shared outbound table, the per-worker command and tx rings, the shared
//! exception and event rings, each worker's counters, the coarse clock, the SPI allocator) and
//! one [`WorkerLink`] per worker. Move a link, a [`WorkerConfig`] and the worker's `PacketIo`
//! into [`Worker::new`] on the worker's core and call [`Worker::run`] (or [`Worker::poll`] in
//! a loop of your own).
//!
//! One iteration ([`Worker::poll`]): apply pending commands; report a quiescent state (RCU);
//! take over ESP packets other workers handed to this one; send datagrams the control plane
//! queued; for each owned (port, queue): rx burst → classify → per class:
//! * ARP: answer requests for the gateway's addresses, learn senders that talk to us;
//! * ICMP echo to the gateway: reply in place;
//! * IKE (UDP 500, UDP 4500 + non-ESP marker): exception ring, buffer and all;
//! * NAT-T keepalive: an event, nothing else;
//! * ESP / ESP-in-UDP: SPI → this worker's shard (or hand off to the owner) → decap →
//!   anti-spoof (inner source = the SA's virtual address) → route → Ethernet to the next hop
//!   → LAN tx;
//! * cleartext from a LAN port: destination → outbound SA (pool slot by subtraction, else a
//!   `Tunnel` route) → encap → route the outer destination → Ethernet → WAN tx;
//! * with a firewall (`WorkerConfig::firewall`, see [`firewall`]): decrypted packets for a LAN
//!   port and everything from a LAN port pass the policy set and the worker's connection table
//!   (source NAT out, reverse NAT for replies addressed to the gateway) in a second stage of
//!   the burst, after their connection entries have been prefetched;
//!
//! then flush the per-port tx bursts when full, every `drain_polls` iterations, or when an
//! iteration received nothing. Unresolved next hops trigger an ARP request (at most one per
//! neighbour per coarse-clock tick); the packet waits for the answer in a small hold queue
//! (`HOLD_PER_NEIGHBOUR` per neighbour, `HOLD_TOTAL` in all, `HOLD_TICKS` at most), so the first
//! packet of a conversation is not lost, and is dropped (`NoRoute`) when the queue is full or
//! nobody answers. `NeighbourMisses` counts every such packet, `NeighbourHeld` the held ones.
//!
//! The loop never allocates, locks, sleeps or calls the OS (rings are lock-free arrays
//! allocated up front; freeing a packet buffer returns it to its pool). Drop paths are
//! `#[cold]`. Inbound SAs are owned by one worker; see `sa::table` for why and how.

pub mod classify;
pub mod firewall;
pub mod frames;
pub mod stats;

use core::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use crate::buf::PacketBuf;
use crate::esp::{inbound, outbound, DropReason};
use crate::nat::ConnTable;
use crate::policy::{PolicyReader, PolicySet, SharedPolicy};
use crate::port::{Burst, PacketIo};
use crate::ring::{Command, Direction, Event, Exception, Ring, TxRequest};
use crate::route::{NextHop, RouteTable};
use crate::sa::table::{InboundLookup, InboundShard, OutboundTable, Rcu, RcuReader, ReadGuard, SpiAllocator, SpiParts};
use crate::sa::OutboundSa;
use crate::wire::ethernet::{self, ethertype, Address};
use crate::wire::{arp, checksum, ip_proto, ipv4, natt, put16, udp};

pub use classify::{classify, Class, Interface, Role};
pub use firewall::FirewallConfig;
use firewall::{Firewall, FromTunnel, Origin, Staged};
pub use stats::{Counter, WorkerShared, WorkerStats};

/// A coarse clock the control plane advances (seconds, or any tick it likes) and workers
/// read: last-seen stamps and ARP retry pacing, without a clock call in the loop.
#[derive(Debug, Clone, Default)]
pub struct CoarseClock(Arc<AtomicU32>);

impl CoarseClock {
    /// A clock at 0.
    pub fn new() -> CoarseClock {
        CoarseClock::default()
    }
    /// Sets the current tick (control plane).
    pub fn set(&self, now: u32) {
        self.0.store(now, Ordering::Relaxed);
    }
    /// The current tick.
    #[inline]
    pub fn now(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Sizes of the plumbing between the control plane and the workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaneConfig {
    /// Number of workers (at most `SpiParts::MAX_WORKERS`).
    pub workers: usize,
    /// Inbound SA slots per worker.
    pub inbound_slots: u32,
    /// First address of the clients' virtual address pool.
    pub pool_base: Ipv4Addr,
    /// Addresses in the pool.
    pub pool_len: u32,
    /// Outbound slots for tunnels reached by route (after the pool slots).
    pub extra_tunnels: u32,
    /// Capacity of each command ring.
    pub command_ring: usize,
    /// Capacity of the shared exception ring.
    pub exception_ring: usize,
    /// Capacity of the shared event ring.
    pub event_ring: usize,
    /// Capacity of each control → worker tx ring.
    pub tx_ring: usize,
    /// Capacity of each worker's handoff ring.
    pub handoff_ring: usize,
}

impl Default for PlaneConfig {
    fn default() -> Self {
        PlaneConfig {
            workers: 1,
            inbound_slots: 4096,
            pool_base: Ipv4Addr::new(10, 212, 134, 0),
            pool_len: 256,
            extra_tunnels: 64,
            command_ring: 1024,
            exception_ring: 1024,
            event_ring: 4096,
            tx_ring: 256,
            handoff_ring: 1024,
        }
    }
}

/// An ESP packet on its way to the worker that owns its SA.
struct Handoff<B> {
    port: u16,
    queue: u16,
    buf: B,
}

/// The control plane's side of the data plane.
pub struct Control<B> {
    /// The shared outbound SA table (publish with `install`/`install_vip`, `remove`; free
    /// retired entries with `reclaim`).
    pub outbound: Arc<OutboundTable>,
    /// Per-worker command rings.
    pub commands: Vec<Ring<Command>>,
    /// Per-worker rings of datagrams to send.
    pub tx: Vec<Ring<TxRequest<B>>>,
    /// IKE datagrams from every worker.
    pub exceptions: Ring<Exception<B>>,
    /// Events from every worker.
    pub events: Ring<Event>,
    /// Each worker's counters and last-seen stamps.
    pub shared: Vec<Arc<WorkerShared>>,
    /// The clock workers read.
    pub clock: CoarseClock,
    /// Inbound SPIs: choose a worker, allocate, install through that worker's ring.
    pub spis: SpiAllocator,
    /// The running firewall policy set (workers configured with a firewall read it; starts as
    /// deny-all). Publish with `store`, free retired sets with `reclaim`.
    pub policy: Arc<SharedPolicy>,
}

impl<B> core::fmt::Debug for Control<B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Control").field("workers", &self.commands.len()).finish()
    }
}

impl<B> Control<B> {
    /// Queues a command for `worker`; gives it back when the ring is full or there is no
    /// such worker.
    pub fn command(&self, worker: usize, cmd: Command) -> Result<(), Command> {
        match self.commands.get(worker) {
            Some(r) => r.push(cmd),
            None => Err(cmd),
        }
    }

    /// Queues the inbound install on the worker its SPI names.
    pub fn install_inbound(&self, entry: Box<crate::sa::table::InboundEntry>) -> Result<(), Command> {
        let w = usize::from(SpiParts::from_spi(entry.sa.spi).worker);
        self.command(w, Command::InstallInbound(entry))
    }

    /// Queues an inbound delete on the worker the SPI names.
    pub fn delete_inbound(&self, spi: u32) -> Result<(), Command> {
        self.command(usize::from(SpiParts::from_spi(spi).worker), Command::DeleteInbound { spi })
    }

    /// Queues a copy of a command on every worker (routes, neighbours); returns how many
    /// workers' rings were full.
    pub fn broadcast(&self, make: impl Fn() -> Command) -> usize {
        self.commands.iter().filter(|r| r.push(make()).is_err()).count()
    }

    /// Sum of one drop reason over all workers.
    pub fn drops(&self, r: DropReason) -> u64 {
        self.shared.iter().map(|s| s.stats.drops(r)).sum()
    }

    /// Every drop reason with a non-zero sum over all workers
    /// ([`WorkerStats::nonzero_drops`] for the whole data plane).
    pub fn nonzero_drops(&self) -> Vec<(DropReason, u64)> {
        DropReason::ALL.iter().map(|&r| (r, self.drops(r))).filter(|&(_, n)| n != 0).collect()
    }

    /// Sum of one counter over all workers.
    pub fn counter(&self, c: Counter) -> u64 {
        self.shared.iter().map(|s| s.stats.get(c)).sum()
    }
}

/// What packet handlers read during one poll: the outbound SA table with the poll's RCU
/// guard, and the policy set loaded for the poll.
#[derive(Clone, Copy)]
struct Cx<'a, 'g> {
    tbl: &'a OutboundTable,
    g: &'a ReadGuard<'g>,
    pol: &'a PolicySet,
}

/// Everything one worker needs from [`Plane::build`].
pub struct WorkerLink<B> {
    id: u8,
    outbound: Arc<OutboundTable>,
    reader: RcuReader,
    commands: Ring<Command>,
    tx: Ring<TxRequest<B>>,
    exceptions: Ring<Exception<B>>,
    events: Ring<Event>,
    handoff_in: Ring<Handoff<B>>,
    handoff_out: Vec<Ring<Handoff<B>>>,
    shared: Arc<WorkerShared>,
    clock: CoarseClock,
    inbound_slots: u32,
    policy: PolicyReader,
}

impl<B> core::fmt::Debug for WorkerLink<B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WorkerLink").field("id", &self.id).finish()
    }
}

impl<B> WorkerLink<B> {
    /// The worker index (encoded in the SPIs of the inbound SAs it owns).
    pub fn id(&self) -> u8 {
        self.id
    }
}

/// Builds the rings and tables between a control plane and its workers.
#[derive(Debug)]
pub struct Plane;

impl Plane {
    /// The control plane's handle and one link per worker.
    pub fn build<B>(cfg: &PlaneConfig) -> (Control<B>, Vec<WorkerLink<B>>) {
        let n = cfg.workers.clamp(1, SpiParts::MAX_WORKERS);
        let rcu = Rcu::new(n);
        let outbound = Arc::new(OutboundTable::new(&rcu, cfg.pool_base, cfg.pool_len, cfg.extra_tunnels));
        let commands: Vec<Ring<Command>> = (0..n).map(|_| Ring::new(cfg.command_ring)).collect();
        let tx: Vec<Ring<TxRequest<B>>> = (0..n).map(|_| Ring::new(cfg.tx_ring)).collect();
        let handoff: Vec<Ring<Handoff<B>>> = (0..n).map(|_| Ring::new(cfg.handoff_ring)).collect();
        let exceptions = Ring::new(cfg.exception_ring);
        let events = Ring::new(cfg.event_ring);
        let shared: Vec<Arc<WorkerShared>> = (0..n).map(|_| Arc::new(WorkerShared::new(cfg.inbound_slots))).collect();
        let clock = CoarseClock::new();
        let policy = Arc::new(SharedPolicy::new(PolicySet::deny_all()));
        let links = (0..n)
            .filter_map(|i| {
                Some(WorkerLink {
                    id: i as u8,
                    outbound: outbound.clone(),
                    reader: rcu.register()?,
                    commands: commands[i].clone(),
                    tx: tx[i].clone(),
                    exceptions: exceptions.clone(),
                    events: events.clone(),
                    handoff_in: handoff[i].clone(),
                    handoff_out: handoff.clone(),
                    shared: shared[i].clone(),
                    clock: clock.clone(),
                    inbound_slots: cfg.inbound_slots,
                    policy: policy.reader(),
                })
            })
            .collect();
        let control = Control {
            outbound,
            commands,
            tx,
            exceptions,
            events,
            shared,
            clock,
            spis: SpiAllocator::new(n, cfg.inbound_slots),
            policy,
        };
        (control, links)
    }
}

/// What a worker polls and how it talks to each port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    /// The ports (with role and addresses); every port it receives on or sends to.
    pub interfaces: Vec<Interface>,
    /// (port, queue) pairs this worker polls.
    pub rx: Vec<(u16, u16)>,
    /// The tx queue this worker uses on every port.
    pub tx_queue: u16,
    /// Route rules the worker's table can hold.
    pub max_routes: usize,
    /// Trie nodes the route table can use.
    pub route_nodes: usize,
    /// Neighbour entries (rounded up to a power of two).
    pub neighbours: usize,
    /// Flush partly filled tx bursts at least every this many iterations.
    pub drain_polls: u32,
    /// Firewall policy and source NAT for tunnel traffic (`None`: forward without either).
    pub firewall: Option<FirewallConfig>,
}

impl WorkerConfig {
    /// A worker polling queue `queue` of every interface and sending on tx queue `queue`.
    pub fn new(interfaces: Vec<Interface>, queue: u16) -> WorkerConfig {
        let rx = interfaces.iter().map(|i| (i.port, queue)).collect();
        WorkerConfig {
            interfaces,
            rx,
            tx_queue: queue,
            max_routes: 1024,
            route_nodes: 64,
            neighbours: 1024,
            drain_polls: 8,
            firewall: None,
        }
    }
}

/// Why a worker could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkerError {
    /// The `PacketIo` has no MAC address for a configured port.
    #[error("port {0} is unknown to the packet I/O")]
    NoSuchPort(u16),
    /// A polled port has no interface entry.
    #[error("port {0} is polled but has no interface configuration")]
    NoInterface(u16),
}

#[derive(Clone, Copy, Default)]
struct Neighbour {
    /// `port << 32 | ip`, with bit 63 set when the entry is used.
    key: u64,
    mac: [u8; 6],
    resolved: bool,
    /// Clock tick of the last ARP request sent for it.
    asked: u32,
}

/// Next-hop MAC addresses: open addressing over a fixed array (no allocation after `new`).
struct Neighbours {
    slots: Box<[Neighbour]>,
    mask: usize,
}

const PROBES: usize = 8;

impl Neighbours {
    fn new(n: usize) -> Neighbours {
        let n = n.max(PROBES).next_power_of_two();
        Neighbours { slots: vec![Neighbour::default(); n].into_boxed_slice(), mask: n - 1 }
    }

    fn key(port: u16, ip: Ipv4Addr) -> u64 {
        1 << 63 | u64::from(port) << 32 | u64::from(u32::from(ip))
    }

    fn home(&self, key: u64) -> usize {
        (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as usize & self.mask
    }

    #[inline]
    fn find(&self, key: u64) -> Option<usize> {
        let h = self.home(key);
        (0..PROBES).map(|i| (h + i) & self.mask).find(|&i| self.slots[i].key == key)
    }

    /// The slot for `key`: its own, else an empty one, else an unresolved one, else home.
    fn place(&mut self, key: u64) -> usize {
        if let Some(i) = self.find(key) {
            return i;
        }
        let h = self.home(key);
        let probe = (0..PROBES).map(|i| (h + i) & self.mask);
        let i = probe
            .clone()
            .find(|&i| self.slots[i].key == 0)
            .or_else(|| probe.clone().find(|&i| !self.slots[i].resolved))
            .unwrap_or(h);
        self.slots[i] = Neighbour { key, ..Neighbour::default() };
        i
    }

    #[inline]
    fn lookup(&self, port: u16, ip: Ipv4Addr) -> Option<[u8; 6]> {
        let e = &self.slots[self.find(Self::key(port, ip))?];
        e.resolved.then_some(e.mac)
    }

    /// Records a MAC; whether it was news.
    fn set(&mut self, port: u16, ip: Ipv4Addr, mac: [u8; 6]) -> bool {
        let i = self.place(Self::key(port, ip));
        let e = &mut self.slots[i];
        let news = !e.resolved || e.mac != mac;
        e.mac = mac;
        e.resolved = true;
        news
    }

    /// Whether to send an ARP request now (at most one per neighbour per tick).
    fn should_ask(&mut self, port: u16, ip: Ipv4Addr, now: u32) -> bool {
        let key = Self::key(port, ip);
        let fresh = self.find(key).is_none();
        let i = self.place(key);
        let e = &mut self.slots[i];
        if fresh || e.asked != now {
            e.asked = now;
            true
        } else {
            false
        }
    }
}

/// Per-port facts the worker needs per packet, indexed by port id.
#[derive(Clone)]
struct PortInfo {
    iface: Option<Interface>,
    mac: [u8; 6],
}

/// The worker's state apart from its I/O, RCU reader and the shared outbound table (kept
/// apart so that references into the table can live while the state is mutated).
struct State<B> {
    id: u8,
    ports: Vec<PortInfo>,
    rx: Vec<(u16, u16)>,
    txq: u16,
    tx: Vec<Burst<B>>,
    inbound: InboundShard,
    routes: RouteTable,
    neigh: Neighbours,
    commands: Ring<Command>,
    ctl_tx: Ring<TxRequest<B>>,
    exceptions: Ring<Exception<B>>,
    events: Ring<Event>,
    handoff_in: Ring<Handoff<B>>,
    handoff_out: Vec<Ring<Handoff<B>>>,
    shared: Arc<WorkerShared>,
    clock: CoarseClock,
    drain_polls: u32,
    polls: u64,
    fw: Option<Firewall>,
    /// Packets waiting for the firewall stage of the current burst (see `firewall`).
    staged: arrayvec::ArrayVec<Option<Staged<B>>, { crate::port::BURST }>,
    /// Packets waiting for an ARP answer, oldest first.
    held: arrayvec::ArrayVec<Held<B>, HOLD_TOTAL>,
    /// Route generation: changes with every route or neighbour change, so that the next hops
    /// connection entries cache for the session fast path (`nat::Hop`) expire at once. Never 0.
    hop_gen: u32,
}

/// Packets held for unresolved neighbours, in all and per neighbour (Linux's old `unres_qlen`
/// was 3): enough for the first packets of a conversation, too few to hoard buffers.
const HOLD_TOTAL: usize = 16;
const HOLD_PER_NEIGHBOUR: usize = 3;
/// Coarse-clock ticks a held packet waits for the ARP answer (the DPDK driver ticks every
/// 100 ms: one second, the time of a few ARP retries).
const HOLD_TICKS: u32 = 10;

/// Prepends the Ethernet header of an IPv4 packet from `src` to `dst`; `false` without headroom.
#[inline]
fn push_ethernet<B: PacketBuf>(buf: &mut B, dst: [u8; 6], src: [u8; 6]) -> bool {
    let Some(h) = buf.prepend(ethernet::HEADER_LEN) else { return false };
    h[0..6].copy_from_slice(&dst);
    h[6..12].copy_from_slice(&src);
    h[12..14].copy_from_slice(&ethertype::IPV4.to_be_bytes());
    true
}

/// A packet for `ip` on `port`, waiting since tick `since` for its neighbour's MAC.
struct Held<B> {
    port: u16,
    ip: Ipv4Addr,
    since: u32,
    buf: B,
}

/// A poll-mode worker over any [`PacketIo`].
pub struct Worker<P: PacketIo> {
    io: P,
    reader: RcuReader,
    outbound: Arc<OutboundTable>,
    policy: PolicyReader,
    st: State<P::Buf>,
}

impl<P: PacketIo> core::fmt::Debug for Worker<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Worker").field("id", &self.st.id).field("rx", &self.st.rx).finish()
    }
}

/// Commands applied per iteration at most (bounds the time an iteration can take).
const COMMANDS_PER_POLL: usize = 64;

impl<P: PacketIo> Worker<P> {
    /// Builds a worker (allocates all its tables now).
    pub fn new(link: WorkerLink<P::Buf>, cfg: WorkerConfig, io: P) -> Result<Worker<P>, WorkerError> {
        let max_port = cfg.interfaces.iter().map(|i| i.port).chain(cfg.rx.iter().map(|r| r.0)).max().unwrap_or(0);
        let mut ports = vec![PortInfo { iface: None, mac: [0; 6] }; usize::from(max_port) + 1];
        for i in &cfg.interfaces {
            let mac = io.mac(i.port).ok_or(WorkerError::NoSuchPort(i.port))?;
            ports[usize::from(i.port)] = PortInfo { iface: Some(i.clone()), mac };
        }
        if let Some(&(p, _)) = cfg.rx.iter().find(|(p, _)| ports[usize::from(*p)].iface.is_none()) {
            return Err(WorkerError::NoInterface(p));
        }
        let fw = cfg.firewall.map(|f| Firewall::new(f, ports.len()));
        let st = State {
            id: link.id,
            tx: (0..ports.len()).map(|_| Burst::new()).collect(),
            ports,
            rx: cfg.rx,
            txq: cfg.tx_queue,
            inbound: InboundShard::new(link.id, link.inbound_slots),
            routes: RouteTable::new(cfg.max_routes, cfg.route_nodes),
            neigh: Neighbours::new(cfg.neighbours),
            commands: link.commands,
            ctl_tx: link.tx,
            exceptions: link.exceptions,
            events: link.events,
            handoff_in: link.handoff_in,
            handoff_out: link.handoff_out,
            shared: link.shared,
            clock: link.clock,
            drain_polls: cfg.drain_polls.max(1),
            polls: 0,
            fw,
            staged: arrayvec::ArrayVec::new(),
            held: arrayvec::ArrayVec::new(),
            hop_gen: 1,
        };
        Ok(Worker { io, reader: link.reader, outbound: link.outbound, policy: link.policy, st })
    }

    /// This worker's index.
    pub fn id(&self) -> u8 {
        self.st.id
    }

    /// Counters (the control plane has the same `Arc`).
    pub fn stats(&self) -> &WorkerStats {
        &self.st.shared.stats
    }

    /// The inbound shard (inspection in tests and tools).
    pub fn inbound(&self) -> &InboundShard {
        &self.st.inbound
    }

    /// The route table (inspection).
    pub fn routes(&self) -> &RouteTable {
        &self.st.routes
    }

    /// The neighbour MAC for `ip` on `port`, if resolved.
    pub fn neighbour(&self, port: u16, ip: Ipv4Addr) -> Option<[u8; 6]> {
        self.st.neigh.lookup(port, ip)
    }

    /// The worker's connection table, when it runs a firewall (inspection).
    pub fn conn_table(&self) -> Option<&ConnTable> {
        self.st.fw.as_ref().map(|f| &f.nat)
    }

    /// The packet I/O.
    pub fn io_mut(&mut self) -> &mut P {
        &mut self.io
    }

    /// One iteration (see the module docs); returns the packets taken in.
    pub fn poll(&mut self) -> usize {
        let st = &mut self.st;
        st.polls += 1;
        st.apply_commands();
        if let Some(fw) = st.fw.as_mut() {
            fw.begin_poll(st.clock.now());
        }
        self.reader.quiescent();
        let g = self.reader.read();
        let tbl = &*self.outbound;
        let io = &mut self.io;
        // One set per poll: a reload takes effect between bursts, never inside one.
        let pol: &PolicySet = self.policy.current();
        let cx = Cx { tbl, g: &g, pol };
        let mut n = 0;

        // ESP packets other workers received for SAs this one owns.
        for _ in 0..crate::port::BURST {
            let Some(h) = st.handoff_in.pop() else { break };
            st.shared.stats.add(Counter::TakenOver, 1);
            st.esp(io, cx, h.port, h.queue, h.buf);
            n += 1;
            if st.staged.is_full() {
                st.run_staged(io, cx);
            }
        }
        st.run_staged(io, cx);
        // Datagrams the control plane wants sent.
        for _ in 0..crate::port::BURST {
            let Some(req) = st.ctl_tx.pop() else { break };
            st.control_tx(io, req);
        }
        let mut burst: Burst<P::Buf> = Burst::new();
        for i in 0..st.rx.len() {
            let (port, queue) = st.rx[i];
            let got = io.rx_burst(port, queue, &mut burst);
            if got == 0 {
                continue;
            }
            n += got;
            st.shared.stats.add(Counter::Rx, got as u64);
            for buf in burst.drain(..) {
                st.handle(io, cx, port, queue, buf);
            }
            st.run_staged(io, cx);
        }
        if n == 0 || st.polls.is_multiple_of(u64::from(st.drain_polls)) {
            st.flush_all(io);
        }
        if let Some(fw) = st.fw.as_mut() {
            fw.flush_counts(pol);
            fw.sweep(n == 0);
        }
        if !st.held.is_empty() {
            st.expire_held();
        }
        st.shared.stats.add(Counter::Polls, 1);
        n
    }

    /// Polls until `stop` is set, then flushes and takes the worker's RCU reader offline.
    pub fn run(&mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            self.poll();
        }
        self.st.flush_all(&mut self.io);
        self.reader.offline();
    }
}

impl<B: PacketBuf + Send> State<B> {
    fn apply_commands(&mut self) {
        for _ in 0..COMMANDS_PER_POLL {
            let Some(cmd) = self.commands.pop() else { return };
            self.shared.stats.add(Counter::Commands, 1);
            let ok = match cmd {
                Command::InstallInbound(entry) => {
                    let slot = SpiParts::from_spi(entry.sa.spi).slot;
                    match self.inbound.install(entry) {
                        Ok(old) => {
                            self.shared.touch(slot, 0);
                            if let Some(old) = old {
                                self.event(Event::InboundRetired(old));
                            }
                            true
                        }
                        Err(entry) => {
                            // Not ours: give it back so that the control plane frees it.
                            self.event(Event::InboundRetired(entry));
                            false
                        }
                    }
                }
                Command::DeleteInbound { spi } => match self.inbound.remove(spi) {
                    Some(e) => {
                        self.event(Event::InboundRetired(e));
                        true
                    }
                    None => false,
                },
                Command::RouteAdd { prefix, len, hop } => {
                    self.routes_changed();
                    self.routes.insert(prefix, len, hop).is_ok()
                }
                Command::RouteDel { prefix, len } => {
                    self.routes_changed();
                    self.routes.remove(prefix, len)
                }
                Command::NeighbourAdd { port, ip, mac } => {
                    if self.neigh.set(port, ip, mac) {
                        self.routes_changed();
                    }
                    self.release_held(port, ip, mac);
                    true
                }
            };
            if !ok {
                self.shared.stats.add(Counter::CommandsFailed, 1);
            }
        }
    }

    /// Routes or neighbours changed: every cached next hop is stale.
    fn routes_changed(&mut self) {
        self.hop_gen = self.hop_gen.wrapping_add(1).max(1);
    }

    #[inline]
    fn event(&self, ev: Event) {
        if self.events.push(ev).is_err() {
            self.event_lost();
        }
    }

    #[cold]
    fn event_lost(&self) {
        self.shared.stats.add(Counter::EventsLost, 1);
    }

    #[cold]
    fn drop_pkt(&self, r: DropReason, buf: B) {
        self.shared.stats.drop_for(r);
        drop(buf);
    }

    #[inline]
    fn handle<P: PacketIo<Buf = B>>(&mut self, io: &mut P, cx: Cx<'_, '_>, port: u16, queue: u16, buf: B) {
        let Some(info) = self.ports.get(usize::from(port)) else { return self.drop_pkt(DropReason::Unhandled, buf) };
        let Some(iface) = info.iface.as_ref() else { return self.drop_pkt(DropReason::Unhandled, buf) };
        match classify(buf.data(), iface, info.mac) {
            Class::Esp => self.esp(io, cx, port, queue, buf),
            Class::Outbound => self.lan_in(io, cx, port, buf, false),
            Class::ToGateway => self.lan_in(io, cx, port, buf, true),
            Class::Arp => self.arp(port, buf),
            Class::Echo => self.echo(io, port, buf),
            Class::Ike { src, dst, offset } => self.ike(port, queue, src, dst, offset, buf),
            Class::Keepalive { src } => {
                self.shared.stats.add(Counter::Keepalives, 1);
                self.event(Event::Keepalive { from: src });
            }
            Class::Drop(r) => self.drop_pkt(r, buf),
        }
    }

    /// Inbound ESP: the frame still has its Ethernet header.
    fn esp<P: PacketIo<Buf = B>>(&mut self, io: &mut P, cx: Cx<'_, '_>, port: u16, queue: u16, mut buf: B) {
        let loc = match buf.data().get(ethernet::HEADER_LEN..).map(inbound::parse) {
            Some(Ok(loc)) => loc,
            Some(Err(r)) => return self.drop_pkt(r, buf),
            None => return self.drop_pkt(DropReason::Truncated, buf),
        };
        let now = self.clock.now();
        let (slot, news, tag) = match self.inbound.lookup(loc.spi) {
            Err(r) => return self.drop_pkt(r, buf),
            Ok(InboundLookup::Remote(w)) => return self.hand_off(w, port, queue, buf),
            Ok(InboundLookup::Local(entry, slot)) => {
                if !buf.adj(ethernet::HEADER_LEN) {
                    return self.drop_pkt(DropReason::Truncated, buf);
                }
                let opened = match inbound::decap(&mut entry.sa, &mut buf, &loc) {
                    Ok(o) => o,
                    Err(r) => return self.drop_pkt(r, buf),
                };
                // RFC 4301 §5.2: the inner source must match the SA's traffic selector, which
                // for a remote-access client is its one assigned address.
                let src = match buf.data().first().map(|b| b >> 4) {
                    Some(4) => IpAddr::V4(ipv4::Packet::new_unchecked(buf.data()).src_addr()),
                    Some(6) if buf.len() >= 40 => {
                        let mut a = [0u8; 16];
                        a.copy_from_slice(&buf.data()[8..24]);
                        IpAddr::V6(a.into())
                    }
                    _ => return self.drop_pkt(DropReason::BadInnerPacket, buf),
                };
                if src != entry.vip {
                    return self.spoofed(buf);
                }
                let from = SocketAddr::new(loc.src, loc.udp_ports.map_or(0, |p| p.0));
                let mut news: [Option<Event>; 2] = [None, None];
                if !entry.seen {
                    entry.seen = true;
                    entry.peer = Some(from);
                    news[0] = Some(Event::FirstPacket { spi: loc.spi, from });
                } else if entry.peer != Some(from) {
                    entry.peer = Some(from);
                    news[0] = Some(Event::PeerMoved { spi: loc.spi, from });
                }
                if let Some(event) = opened.event {
                    news[1] = Some(Event::Sa { spi: loc.spi, dir: Direction::Inbound, event });
                }
                let t = entry.tunnel;
                (slot, news, FromTunnel { if_index: t.if_index, groups: t.groups, conn: t.conn_id.unwrap_or(slot) })
            }
        };
        self.shared.touch(slot, now);
        for ev in news.into_iter().flatten() {
            self.event(ev);
        }
        self.shared.stats.add(Counter::Decrypted, 1);
        if self.fw.is_some() {
            return self.stage_tunnel(io, cx, buf, tag);
        }
        self.route_inner(io, cx, buf, Origin::Tunnel { parked: firewall::NOT_PARKED });
    }

    #[cold]
    fn spoofed(&self, buf: B) {
        self.drop_pkt(DropReason::Spoofed, buf)
    }

    #[cold]
    fn hand_off(&self, worker: u8, port: u16, queue: u16, buf: B) {
        let Some(ring) = self.handoff_out.get(usize::from(worker)) else {
            return self.drop_pkt(DropReason::UnknownSpi, buf);
        };
        match ring.push(Handoff { port, queue, buf }) {
            Ok(()) => self.shared.stats.add(Counter::HandedOff, 1),
            Err(h) => self.drop_pkt(DropReason::QueueFull, h.buf),
        }
    }

    /// Cleartext from a LAN port (Ethernet header still on): straight on without a firewall,
    /// else through the burst's firewall stage.
    fn lan_in<P: PacketIo<Buf = B>>(&mut self, io: &mut P, cx: Cx<'_, '_>, port: u16, mut buf: B, to_gateway: bool) {
        if self.fw.is_none() {
            return self.outbound(io, cx, port, buf, to_gateway);
        }
        if !buf.adj(ethernet::HEADER_LEN) {
            return self.drop_pkt(DropReason::Truncated, buf);
        }
        self.stage_lan(io, cx, buf, port, to_gateway);
    }

    /// Cleartext from a LAN port (Ethernet header still on); `to_gateway`: addressed to the
    /// gateway itself (only a NAT reply may pass).
    fn outbound<P: PacketIo<Buf = B>>(&mut self, io: &mut P, cx: Cx<'_, '_>, port: u16, mut buf: B, to_gateway: bool) {
        if !buf.adj(ethernet::HEADER_LEN) {
            return self.drop_pkt(DropReason::Truncated, buf);
        }
        self.lan_ip(io, cx, port, buf, to_gateway, firewall::NOT_PARKED);
    }

    /// An IP packet from a LAN port: a tracked flow's reply is translated back, then routed.
    fn lan_ip<P: PacketIo<Buf = B>>(
        &mut self,
        io: &mut P,
        cx: Cx<'_, '_>,
        port: u16,
        mut buf: B,
        to_gateway: bool,
        parked: u8,
    ) {
        let reply = match self.fw_reply(cx.pol, buf.data_mut(), to_gateway, parked) {
            Ok(r) => r,
            Err(r) => return self.drop_pkt(r, buf),
        };
        self.route_inner(io, cx, buf, Origin::Lan { port, reply });
    }

    /// Routes an inner IPv4 packet (no Ethernet header): into a tunnel, or — for decrypted
    /// traffic only — onto a LAN link; the firewall (when configured) checks it on the way.
    fn route_inner<P: PacketIo<Buf = B>>(&mut self, io: &mut P, cx: Cx<'_, '_>, mut buf: B, origin: Origin) {
        let from_tunnel = matches!(origin, Origin::Tunnel { .. });
        let dst = {
            let Ok(mut p) = ipv4::Packet::new_checked(buf.data_mut()) else {
                return self.drop_pkt(DropReason::BadInnerPacket, buf);
            };
            if p.version() != 4 {
                return self.drop_pkt(DropReason::NoRoute, buf);
            }
            if p.hop_limit() <= 1 {
                return self.ttl_expired(buf);
            }
            p.decrement_hop_limit();
            p.dst_addr()
        };
        let (tbl, g, pol) = (cx.tbl, cx.g, cx.pol);
        let sa = match tbl.get_vip(dst, g) {
            Some(sa) => sa,
            None => match self.routes.lookup(dst) {
                Some(NextHop::Tunnel { slot }) => match tbl.get(slot, g) {
                    Some(sa) => sa,
                    None => return self.drop_pkt(DropReason::NoRoute, buf),
                },
                Some(NextHop::Connected { port }) if from_tunnel && self.is_lan(port) => {
                    return self.deliver(io, cx, origin, port, dst, buf);
                }
                Some(NextHop::Gateway { port, via }) if from_tunnel && self.is_lan(port) => {
                    return self.deliver(io, cx, origin, port, via, buf);
                }
                _ => return self.drop_pkt(DropReason::NoRoute, buf),
            },
        };
        if self.fw.is_some() {
            let checked = match origin {
                Origin::Tunnel { parked } => self.fw_check_parked(pol, parked, sa.if_index, buf.data()),
                Origin::Lan { reply: true, .. } => Ok(()),
                Origin::Lan { port, reply: false } => {
                    self.fw_check(pol, self.port_if(port), sa.if_index, crate::policy::GroupMask::NONE, buf.data())
                }
            };
            if let Err(r) = checked {
                return self.drop_pkt(r, buf);
            }
        }
        self.seal(io, sa, buf);
    }

    /// Decrypted traffic onto a LAN port: through the firewall, then Ethernet.
    #[inline]
    fn deliver<P: PacketIo<Buf = B>>(
        &mut self,
        io: &mut P,
        cx: Cx<'_, '_>,
        origin: Origin,
        port: u16,
        next_hop: Ipv4Addr,
        mut buf: B,
    ) {
        if let Origin::Tunnel { parked } = origin {
            if let Err(r) = self.fw_forward(cx.pol, parked, port, buf.data_mut()) {
                return self.drop_pkt(r, buf);
            }
            self.fw_remember_hop(cx.tbl, parked, port, next_hop, buf.data());
        }
        self.send_ip(io, port, next_hop, buf)
    }

    fn is_lan(&self, port: u16) -> bool {
        self.ports.get(usize::from(port)).and_then(|p| p.iface.as_ref()).is_some_and(|i| i.role == Role::Lan)
    }

    #[cold]
    fn ttl_expired(&self, buf: B) {
        self.shared.stats.add(Counter::TtlExpired, 1);
        self.drop_pkt(DropReason::Unhandled, buf);
    }

    /// Encapsulates for `sa` and sends towards the tunnel's remote end.
    fn seal<P: PacketIo<Buf = B>>(&mut self, io: &mut P, sa: &OutboundSa, mut buf: B) {
        match outbound::encap(sa, &mut buf) {
            Ok(sealed) => {
                if let Some(event) = sealed.event {
                    self.event(Event::Sa { spi: sa.spi, dir: Direction::Outbound, event });
                }
            }
            Err(refused) => {
                if let Some(event) = refused.event {
                    self.event(Event::Sa { spi: sa.spi, dir: Direction::Outbound, event });
                }
                return self.drop_pkt(refused.reason, buf);
            }
        }
        self.shared.stats.add(Counter::Encrypted, 1);
        let IpAddr::V4(remote) = sa.tunnel.remote else { return self.drop_pkt(DropReason::NoRoute, buf) };
        match self.routes.lookup(remote) {
            Some(NextHop::Connected { port }) => self.send_ip(io, port, remote, buf),
            Some(NextHop::Gateway { port, via }) => self.send_ip(io, port, via, buf),
            _ => self.drop_pkt(DropReason::NoRoute, buf),
        }
    }

    /// Adds Ethernet towards `next_hop` on `port` and queues the frame; ARPs when unresolved.
    #[inline]
    fn send_ip<P: PacketIo<Buf = B>>(&mut self, io: &mut P, port: u16, next_hop: Ipv4Addr, buf: B) {
        let Some(dst_mac) = self.neigh.lookup(port, next_hop) else {
            // A port the worker does not have is no route, whether or not its neighbour is known.
            if self.ports.get(usize::from(port)).is_none() {
                return self.drop_pkt(DropReason::NoRoute, buf);
            }
            return self.unresolved(io, port, next_hop, buf);
        };
        self.send_framed(io, port, dst_mac, buf);
    }

    /// Puts an IPv4 packet in an Ethernet frame from `port`'s MAC to `dst_mac` and queues it on
    /// `port` (`send_ip` once the neighbour is known, and the session fast path with the MAC its
    /// connection entry caches).
    #[inline(always)]
    fn send_framed<P: PacketIo<Buf = B>>(&mut self, io: &mut P, port: u16, dst_mac: [u8; 6], mut buf: B) {
        let Some(src_mac) = self.ports.get(usize::from(port)).map(|p| p.mac) else {
            return self.drop_pkt(DropReason::NoRoute, buf);
        };
        if !push_ethernet(&mut buf, dst_mac, src_mac) {
            return self.drop_pkt(DropReason::NoHeadroom, buf);
        }
        self.send(io, port, buf);
    }

    #[cold]
    fn unresolved<P: PacketIo<Buf = B>>(&mut self, io: &mut P, port: u16, ip: Ipv4Addr, buf: B) {
        self.shared.stats.add(Counter::NeighbourMisses, 1);
        let waiting = self.held.iter().filter(|h| h.port == port && h.ip == ip).count();
        if waiting < HOLD_PER_NEIGHBOUR && !self.held.is_full() {
            self.shared.stats.add(Counter::NeighbourHeld, 1);
            self.held.push(Held { port, ip, since: self.clock.now(), buf });
        } else {
            self.drop_pkt(DropReason::NoRoute, buf);
        }
        if self.neigh.should_ask(port, ip, self.clock.now()) {
            self.arp_request(io, port, ip);
        }
    }

    /// `ip` on `port` is at `mac` now: its held packets leave, in the order they came.
    #[cold]
    fn release_held(&mut self, port: u16, ip: Ipv4Addr, mac: [u8; 6]) {
        let Some(src_mac) = self.ports.get(usize::from(port)).map(|p| p.mac) else { return };
        let mut i = 0;
        while i < self.held.len() {
            if self.held[i].port != port || self.held[i].ip != ip {
                i += 1;
                continue;
            }
            let mut buf = self.held.remove(i).buf;
            if !push_ethernet(&mut buf, mac, src_mac) {
                self.drop_pkt(DropReason::NoHeadroom, buf);
                continue;
            }
            self.shared.stats.add(Counter::NeighbourReleased, 1);
            self.tx_push_port(port, buf);
        }
    }

    /// Drops held packets whose neighbour did not answer within `HOLD_TICKS`.
    #[cold]
    fn expire_held(&mut self) {
        let now = self.clock.now();
        while self.held.first().is_some_and(|h| now.wrapping_sub(h.since) > HOLD_TICKS) {
            let h = self.held.remove(0);
            self.drop_pkt(DropReason::NoRoute, h.buf);
        }
    }

    fn arp_request<P: PacketIo<Buf = B>>(&mut self, io: &mut P, port: u16, ip: Ipv4Addr) {
        let Some(info) = self.ports.get(usize::from(port)) else { return };
        let Some(src_ip) = info.iface.as_ref().and_then(|i| i.addrs.first().copied()) else { return };
        let mac = info.mac;
        let Some(mut b) = io.alloc() else { return self.shared.stats.drop_for(DropReason::QueueFull) };
        let Some(f) = b.append(ethernet::HEADER_LEN + arp::PACKET_LEN) else { return };
        f[0..6].copy_from_slice(&Address::BROADCAST.0);
        f[6..12].copy_from_slice(&mac);
        f[12..14].copy_from_slice(&ethertype::ARP.to_be_bytes());
        arp::Repr {
            operation: arp::Operation::Request,
            source_hardware_addr: Address(mac),
            source_protocol_addr: src_ip,
            target_hardware_addr: Address::default(),
            target_protocol_addr: ip,
        }
        .emit(&mut arp::Packet::new_unchecked(&mut f[ethernet::HEADER_LEN..]));
        self.shared.stats.add(Counter::ArpRequests, 1);
        self.send(io, port, b);
    }

    /// ARP: answer requests for our addresses, learn whoever talks to us (RFC 826 merges the
    /// sender of a packet addressed to us into the table).
    fn arp(&mut self, port: u16, mut buf: B) {
        let Some(info) = self.ports.get(usize::from(port)) else { return self.drop_pkt(DropReason::Unhandled, buf) };
        let mac = info.mac;
        let Some(iface) = info.iface.as_ref() else { return self.drop_pkt(DropReason::Unhandled, buf) };
        let Ok(repr) = buf
            .data()
            .get(ethernet::HEADER_LEN..)
            .ok_or(crate::wire::Error)
            .and_then(|b| arp::Repr::parse(&arp::Packet::new_checked(b)?))
        else {
            return self.drop_pkt(DropReason::Truncated, buf);
        };
        if !iface.owns(repr.target_protocol_addr) {
            return self.drop_pkt(DropReason::Unhandled, buf);
        }
        let sender = repr.source_protocol_addr;
        if !sender.is_unspecified() && !repr.source_hardware_addr.is_multicast() {
            let smac = repr.source_hardware_addr.0;
            if self.neigh.set(port, sender, smac) {
                self.routes_changed();
                self.shared.stats.add(Counter::NeighboursLearned, 1);
                self.event(Event::NeighbourLearned { port, ip: sender, mac: smac });
            }
            if !self.held.is_empty() {
                self.release_held(port, sender, smac);
            }
        }
        if repr.operation != arp::Operation::Request {
            return;
        }
        // The reply reuses the request's buffer.
        let reply = arp::Repr {
            operation: arp::Operation::Reply,
            source_hardware_addr: Address(mac),
            source_protocol_addr: repr.target_protocol_addr,
            target_hardware_addr: repr.source_hardware_addr,
            target_protocol_addr: sender,
        };
        let f = buf.data_mut();
        f[0..6].copy_from_slice(&repr.source_hardware_addr.0);
        f[6..12].copy_from_slice(&mac);
        reply.emit(&mut arp::Packet::new_unchecked(&mut f[ethernet::HEADER_LEN..]));
        self.shared.stats.add(Counter::ArpReplies, 1);
        self.tx_push_port(port, buf);
    }

    /// ICMP echo request to the gateway: turned into the reply in place (RFC 792).
    fn echo<P: PacketIo<Buf = B>>(&mut self, io: &mut P, port: u16, mut buf: B) {
        let Some(mac) = self.ports.get(usize::from(port)).map(|p| p.mac) else { return };
        let f = buf.data_mut();
        let mut peer = [0u8; 6];
        peer.copy_from_slice(&f[6..12]);
        f[0..6].copy_from_slice(&peer);
        f[6..12].copy_from_slice(&mac);
        let mut ip = ipv4::Packet::new_unchecked(&mut f[ethernet::HEADER_LEN..]);
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        ip.set_src_addr(dst);
        ip.set_dst_addr(src);
        ip.set_hop_limit(64);
        ip.fill_checksum();
        let icmp = ip.payload_mut();
        icmp[0] = 0;
        put16(icmp, 2, 0);
        let c = !checksum::sum(icmp);
        put16(icmp, 2, c);
        self.shared.stats.add(Counter::EchoReplies, 1);
        self.send(io, port, buf);
    }

    fn ike(&mut self, port: u16, queue: u16, src: SocketAddrV4, dst: SocketAddrV4, offset: usize, buf: B) {
        match self.exceptions.push(Exception { port, queue, src, dst, buf, offset }) {
            Ok(()) => self.shared.stats.add(Counter::Exceptions, 1),
            Err(e) => self.drop_pkt(DropReason::QueueFull, e.buf),
        }
    }

    /// Builds UDP (+ non-ESP marker on 4500), IPv4 and Ethernet around a control-plane datagram.
    fn control_tx<P: PacketIo<Buf = B>>(&mut self, io: &mut P, req: TxRequest<B>) {
        let TxRequest { src, dst, mut buf } = req;
        // RFC 3948 §2.2: IKE on port 4500 carries the non-ESP marker.
        if (src.port() == natt::PORT || dst.port() == natt::PORT)
            && buf.prepend(natt::NON_ESP_MARKER_LEN).map(|m| m.fill(0)).is_none()
        {
            return self.drop_pkt(DropReason::NoHeadroom, buf);
        }
        let payload_len = buf.len();
        if payload_len + udp::HEADER_LEN + ipv4::HEADER_LEN > usize::from(u16::MAX) {
            return self.drop_pkt(DropReason::TooBig, buf);
        }
        let Some(h) = buf.prepend(ipv4::HEADER_LEN + udp::HEADER_LEN) else {
            return self.drop_pkt(DropReason::NoHeadroom, buf);
        };
        let (iph, udph) = h.split_at_mut(ipv4::HEADER_LEN);
        ipv4::Repr {
            src_addr: *src.ip(),
            dst_addr: *dst.ip(),
            next_header: ip_proto::UDP,
            payload_len: udp::HEADER_LEN + payload_len,
            hop_limit: 64,
            tos: 0,
        }
        .emit(&mut ipv4::Packet::new_unchecked(iph));
        udp::Repr { src_port: src.port(), dst_port: dst.port(), payload_len }
            .emit(&mut udp::Packet::new_unchecked(udph));
        let ulen = (udp::HEADER_LEN + payload_len) as u16;
        let pseudo = checksum::pseudo_v4(*src.ip(), *dst.ip(), ip_proto::UDP, ulen);
        let data = buf.data_mut();
        let c = !checksum::combine(&[pseudo, checksum::sum(&data[ipv4::HEADER_LEN..])]);
        put16(data, ipv4::HEADER_LEN + 6, if c == 0 { 0xffff } else { c });
        self.shared.stats.add(Counter::ControlTx, 1);
        match self.routes.lookup(*dst.ip()) {
            Some(NextHop::Connected { port }) => self.send_ip(io, port, *dst.ip(), buf),
            Some(NextHop::Gateway { port, via }) => self.send_ip(io, port, via, buf),
            _ => self.drop_pkt(DropReason::NoRoute, buf),
        }
    }

    /// Queues a frame on `port`'s tx burst, flushing it when full.
    #[inline]
    fn send<P: PacketIo<Buf = B>>(&mut self, io: &mut P, port: u16, buf: B) {
        let Some(b) = self.tx.get_mut(usize::from(port)) else { return self.drop_pkt(DropReason::NoRoute, buf) };
        b.push(buf);
        if b.is_full() {
            self.flush(io, port);
        }
    }

    /// Like `send` for paths without the I/O at hand: the burst is flushed at the next drain.
    fn tx_push_port(&mut self, port: u16, buf: B) {
        match self.tx.get_mut(usize::from(port)) {
            Some(b) if !b.is_full() => b.push(buf),
            _ => self.drop_pkt(DropReason::QueueFull, buf),
        }
    }

    fn flush<P: PacketIo<Buf = B>>(&mut self, io: &mut P, port: u16) {
        let txq = self.txq;
        let Some(b) = self.tx.get_mut(usize::from(port)) else { return };
        if b.is_empty() {
            return;
        }
        let sent = io.tx_burst(port, txq, b);
        self.shared.stats.add(Counter::Tx, sent as u64);
        if !b.is_empty() {
            self.tx_refused(io, port);
        }
    }

    #[cold]
    fn tx_refused<P: PacketIo<Buf = B>>(&mut self, io: &mut P, port: u16) {
        let Some(b) = self.tx.get_mut(usize::from(port)) else { return };
        for _ in 0..b.len() {
            self.shared.stats.drop_for(DropReason::QueueFull);
        }
        io.free_burst(b);
    }

    fn flush_all<P: PacketIo<Buf = B>>(&mut self, io: &mut P) {
        for port in 0..self.tx.len() {
            self.flush(io, port as u16);
        }
    }
}
