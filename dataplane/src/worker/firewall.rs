//! Firewall policy and source NAT in the worker.
//!
//! How to drive it: give the worker a [`FirewallConfig`] (`WorkerConfig::firewall`) and
//! publish policy sets through `Control::policy` ([`crate::policy::SharedPolicy::store`]);
//! tag each inbound SA with its tunnel's interface index and user groups
//! ([`crate::sa::table::TunnelTag`]) and each outbound SA with the interface index
//! ([`crate::sa::OutboundSa::with_if_index`]). Without a `FirewallConfig` the worker forwards
//! as before (no policy, no NAT) — the baseline the benchmark compares against.
//!
//! Why an arc-swap handle rather than the command ring: a policy set is large and immutable,
//! every worker reads the same one, and a reload must take effect on all workers without the
//! control plane waiting for each ring to drain. Each worker holds a
//! [`crate::policy::PolicyReader`] and loads the running set once per poll (one atomic load
//! when nothing changed), so a burst sees one set. Retired sets are freed by the control
//! plane (`SharedPolicy::reclaim`), never on a worker.
//!
//! Per packet (no allocation, no lock, no syscall):
//! * decrypted, tunnel → LAN port: [`crate::nat::ConnTable::admit_parsed`] looks the flow up
//!   once;
//!   a known flow whose cached verdict came from the running set skips the policy lookup,
//!   anything else is looked up with (tunnel interface, LAN port's interface, groups of the
//!   tunnel's user, addresses, protocol, ports). Denied → `DropReason::PolicyDenied`;
//!   accepted → an entry (source translated to the LAN port's first address with `nat`,
//!   tracked as is without); a refused entry (table or tunnel share full, no port) →
//!   `DropReason::NatRefused`.
//! * from a LAN port: a packet matching an entry's reply tuple (to the gateway's address for
//!   NAT'd flows, to the client for tracked ones) is translated back and encrypted into the
//!   tunnel of the client it is now addressed to; other packets for a tunnel need a policy
//!   from the LAN port's interface to the tunnel's (checked without state).
//! * tunnel → tunnel: checked against the policy without state (no NAT).
//!
//! The session fast path (what stateful firewalls do once a session exists): a known flow
//! skips the work its first packet did. Its entry caches the egress port and the next hop's
//! MAC address ([`crate::nat::Hop`]), stamped with the worker's route generation, which
//! every route or neighbour change advances; a packet of that flow, admitted by the running
//! set, is translated, its TTL decremented in the same checksum update, and sent — no route,
//! neighbour or second header check (`forward_parked`). A reply of a known flow goes from the
//! park straight to its client's SA, which the entry names (`reply_parked`). Anything else
//! takes the full way (`route_inner`), which caches the hop again; a flow the routes move to
//! another port is judged by the policy again (`ConnTable::admit_known`). Destinations inside the
//! client address pool are never cached (a client given such an address later is reached
//! through its SA, which changes no route).
//!
//! Connection lookups miss the cache when flows are many (100 000 entries are 6.4 MB), so with
//! a firewall the worker runs each rx burst in two stages, as VPP does: first every packet is
//! classified (and ESP decrypted) as usual, and a packet bound for the firewall is parked: its
//! flow is parsed and hashed into the park (`Firewall::flows`, where it stays until the packet
//! goes on) and the first line it needs is prefetched. A reply needs one: its flow's entry
//! lives at the reply tuple's home (the NAT port was chosen for that), so the reply index is
//! not read at all. A tunnel packet needs two: its forward-index slot, then, a few packets
//! later (after decryptions, whose time lets the slot arrive), the entry the slot names,
//! remembered so the packet's turn starts at the entry (checked to be its flow's) instead of
//! at the index. The misses of a burst overlap instead of adding up.
//!
//! What the hot path avoids, each measured (`bench/benches/policy.rs`): reading back right
//! away, with wider or offset loads, a struct that was just stored in pieces (a parsed flow or
//! a tunnel tag handed along by value, a result enum returned through memory) stalls store
//! forwarding, and those stalls were more than half of the firewall's cost per packet; the
//! parsed flow therefore stays in the park, a tunnel packet's `Origin` is only its park
//! position, and hot results are at most two registers wide. A known flow touches neither
//! the policy nor the NAT address; its checksum updates are sums stored in its entry.
//!
//! Policy counters are relaxed atomics in the set, added to once per poll from a small
//! per-worker tally; NAT counters and the connection table are
//! the worker's own. Connection entries expire by per-protocol timeouts; the worker sweeps a
//! bounded number of them every poll, so a full table never stalls it.

use core::net::Ipv4Addr;

use crate::buf::PacketBuf;
use crate::esp::DropReason;
use crate::nat::{self, Admit, ConnTable, Hop, NatConfig, NatError, Parsed, Prefetch};
use crate::policy::{FlowKey, GroupMask, IfIndex, PolicySet, VerdictTag};
use crate::port::PacketIo;
use crate::sa::table::OutboundTable;

use super::{Cx, State};

/// A worker's firewall settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallConfig {
    /// The policy interface index of each port, as the control plane numbers interfaces
    /// (`(port, index)`); ports left out only match `any`.
    pub port_if: Vec<(u16, IfIndex)>,
    /// Size, limits and timeouts of the worker's connection table.
    pub nat: NatConfig,
    /// Nanoseconds per coarse-clock tick (connection timeouts are in nanoseconds).
    pub tick_ns: u64,
    /// Connection entries examined for expiry per sweep (every idle poll, and one busy poll
    /// in 16).
    pub sweep_budget: usize,
}

impl FirewallConfig {
    /// Settings with the given port → interface map and a default table (one tick = 1 s).
    pub fn new(port_if: Vec<(u16, IfIndex)>) -> FirewallConfig {
        FirewallConfig { port_if, nat: NatConfig::default(), tick_ns: 1_000_000_000, sweep_budget: 32 }
    }
}

/// The worker-owned part of the firewall.
pub(super) struct Firewall {
    pub(super) nat: ConnTable,
    port_if: Box<[IfIndex]>,
    tick_ns: u64,
    sweep_budget: usize,
    sweep_polls: u32,
    tally: Tally,
    /// The flows of the parked packets, parsed and hashed when they were parked, by park
    /// position. Read in place when the packets go through: handing a parsed flow along with
    /// the packet copied it through the stack in pieces whose reload missed store forwarding,
    /// which cost more than the lookup itself.
    flows: [Parked; crate::port::BURST],
    /// Parked packets (a prefix of the park) whose entry prefetch has been issued.
    entries_loading: usize,
    /// One past the last tunnel packet in the park (0: none): the entry prefetches of the
    /// park's run stop there, so a run of LAN packets only does not look at each of them.
    tunnels_end: usize,
    /// The poll's time in nanoseconds (read once per poll: the clock only ticks every
    /// 100 ms anyway).
    now_ns: u64,
}

/// A parked packet's flow: parsed, or why not.
#[derive(Clone, Copy, Default)]
struct Parked {
    flow: Parsed,
    refused: Option<NatError>,
    /// For a tunnel packet: its tunnel.
    tunnel: FromTunnel,
}

impl Parked {
    #[inline]
    fn get(&self) -> Result<&Parsed, NatError> {
        match self.refused {
            None => Ok(&self.flow),
            Some(e) => Err(e),
        }
    }
}

/// The park position (`Origin::Tunnel`, `lan_ip`'s `parked`) of a packet that was not parked.
pub(super) const NOT_PARKED: u8 = u8::MAX;

/// Cycle counts of the firewall's own work, summed over all workers of the process, for the
/// policy benchmark (`--features stage-timing`): the worker-level ratio moves ± 0.01 with
/// the host's load, while the cycles spent parking packets (parse, hash, prefetches) and
/// running the park (lookup, translation, sending) move by one or two, so a change to either
/// shows there first. Without the feature every section is just its body.
pub mod timing {
    /// What a count is for.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Section {
        /// Parking a packet: parse, hash, index and entry prefetches.
        Park,
        /// Running the park: the fast paths (or the full way) and sending.
        Run,
        /// Expiry sweeps.
        Sweep,
    }

    #[cfg(feature = "stage-timing")]
    static CYCLES: [core::sync::atomic::AtomicU64; 3] = [const { core::sync::atomic::AtomicU64::new(0) }; 3];

    /// Runs `f`, adding the time-stamp counter ticks it took to `section`.
    #[inline(always)]
    pub(crate) fn timed<R>(section: Section, f: impl FnOnce() -> R) -> R {
        #[cfg(all(feature = "stage-timing", target_arch = "x86_64"))]
        {
            // SAFETY: RDTSC has no preconditions on x86_64.
            let t0 = unsafe { core::arch::x86_64::_rdtsc() };
            let r = f();
            // SAFETY: as above.
            let t1 = unsafe { core::arch::x86_64::_rdtsc() };
            CYCLES[section as usize].fetch_add(t1.wrapping_sub(t0), core::sync::atomic::Ordering::Relaxed);
            r
        }
        #[cfg(not(all(feature = "stage-timing", target_arch = "x86_64")))]
        {
            let _ = section;
            f()
        }
    }

    /// The ticks counted in `section` since the last call for it, which restarts it.
    #[cfg(feature = "stage-timing")]
    pub fn take(section: Section) -> u64 {
        CYCLES[section as usize].swap(0, core::sync::atomic::Ordering::Relaxed)
    }
}

/// Busy polls per expiry sweep.
const BUSY_SWEEP_EVERY: u32 = 16;

/// Policy counts of one poll, added to the set's shared counters once at the end of the poll:
/// a locked add per packet and counter would cost more than the lookup it counts. Indexed by
/// the policy's counter position, so a packet adds to its policy's row without a search (a
/// search over a few rows, plus unpacking the verdict for it, was a tenth of the firewall's
/// instructions per packet); positions beyond [`TALLY_SLOTS`] are counted straight into the
/// set.
struct Tally {
    counts: Box<[PolicyCount]>,
    /// Positions counted this poll, each once (its count went from zero).
    touched: Vec<u16>,
}

#[derive(Clone, Copy, Default)]
struct PolicyCount {
    packets: u64,
    bytes: u64,
    hits: u64,
}

/// Policies a worker tallies per poll (a set's first ones; the rest are counted directly).
const TALLY_SLOTS: usize = 1024;

impl Default for Tally {
    fn default() -> Self {
        Tally {
            counts: vec![PolicyCount::default(); TALLY_SLOTS].into_boxed_slice(),
            touched: Vec::with_capacity(TALLY_SLOTS),
        }
    }
}

impl Tally {
    /// Counts a packet of `bytes` under `v`, which must come from `pol`, the poll's set (a
    /// verdict of another set counts nothing).
    #[inline]
    fn add(&mut self, pol: &PolicySet, v: VerdictTag, bytes: u32, hit: bool) {
        if !v.is_from(pol) {
            return;
        }
        let slot = v.counter_slot();
        let Some(c) = self.counts.get_mut(slot) else {
            return pol.add_at(slot, 1, u64::from(bytes), u64::from(hit));
        };
        if c.packets == 0 {
            // At most once per position between flushes, so never beyond the capacity.
            self.touched.push(slot as u16);
        }
        c.packets += 1;
        c.bytes += u64::from(bytes);
        c.hits += u64::from(hit);
    }

    fn flush(&mut self, pol: &PolicySet) {
        for slot in self.touched.drain(..) {
            if let Some(c) = self.counts.get_mut(usize::from(slot)) {
                let c = core::mem::take(c);
                pol.add_at(usize::from(slot), c.packets, c.bytes, c.hits);
            }
        }
    }
}

impl Firewall {
    pub(super) fn new(cfg: FirewallConfig, ports: usize) -> Firewall {
        let mut port_if = vec![IfIndex::MAX; ports];
        for &(p, i) in &cfg.port_if {
            if let Some(slot) = port_if.get_mut(usize::from(p)) {
                *slot = i;
            }
        }
        Firewall {
            nat: ConnTable::new(cfg.nat),
            port_if: port_if.into_boxed_slice(),
            tick_ns: cfg.tick_ns.max(1),
            sweep_budget: cfg.sweep_budget,
            sweep_polls: 0,
            tally: Tally::default(),
            flows: [Parked::default(); crate::port::BURST],
            entries_loading: 0,
            tunnels_end: 0,
            now_ns: 0,
        }
    }

    /// Reads the poll's time (start of every poll).
    #[inline]
    pub(super) fn begin_poll(&mut self, tick: u32) {
        self.now_ns = u64::from(tick).saturating_mul(self.tick_ns);
    }

    /// Adds the poll's policy counts to the set (end of every poll, with the poll's set).
    #[inline]
    pub(super) fn flush_counts(&mut self, pol: &PolicySet) {
        if !self.tally.touched.is_empty() {
            self.tally.flush(pol);
        }
    }

    /// Starts loading the entry of the packet parked at `at` and notes which it is.
    #[inline(always)]
    fn prefetch_entry(&mut self, at: usize) {
        if let Some(pk) = self.flows.get_mut(at).filter(|pk| pk.refused.is_none()) {
            self.nat.prefetch_entry(&mut pk.flow);
        }
    }

    #[inline]
    fn if_of(&self, port: u16) -> IfIndex {
        self.port_if.get(usize::from(port)).copied().unwrap_or(IfIndex::MAX)
    }

    /// Expires a bounded number of entries at the poll's time: `sweep_budget` on a poll that received nothing
    /// (the worker is idle anyway), and every [`BUSY_SWEEP_EVERY`]th busy poll. Sweeping reads
    /// entries the traffic does not touch, so on every busy poll it cost 3 % of throughput in
    /// the worker benchmark; at one busy poll in 16 a 131 072-entry table is still covered in
    /// about a second at full load, far below the shortest timeout (60 s).
    pub(super) fn sweep(&mut self, idle: bool) {
        self.sweep_polls = self.sweep_polls.wrapping_add(1);
        if idle || self.sweep_polls.is_multiple_of(BUSY_SWEEP_EVERY) {
            timing::timed(timing::Section::Sweep, || self.nat.sweep(self.now_ns, self.sweep_budget));
        }
    }
}

/// The tunnel a decrypted packet came out of, as the firewall sees it.
#[derive(Clone, Copy, Debug)]
pub(super) struct FromTunnel {
    pub(super) if_index: IfIndex,
    pub(super) groups: GroupMask,
    /// Connection-table tunnel id.
    pub(super) conn: u32,
}

impl Default for FromTunnel {
    fn default() -> Self {
        FromTunnel { if_index: IfIndex::MAX, groups: GroupMask::NONE, conn: 0 }
    }
}

/// A packet arriving at the firewall's park.
#[derive(Clone, Copy, Debug)]
pub(super) enum Arrival {
    /// Decrypted from this tunnel.
    Tunnel(FromTunnel),
    /// Cleartext from a LAN port; `reply`: addressed to the gateway.
    Lan { port: u16, reply: bool },
}

/// Where a packet entering `route_inner` came from. Two bytes and a tag, passed in registers:
/// what the firewall knows of a tunnel packet stays in the park (`Firewall::flows`), as a
/// copy of it carried through every call cost more than the lookups it feeds.
#[derive(Clone, Copy, Debug)]
pub(super) enum Origin {
    /// Decrypted from a tunnel; its park position ([`NOT_PARKED`] without a firewall).
    Tunnel { parked: u8 },
    /// Cleartext from a LAN port; `reply` when it matched a connection entry.
    Lan { port: u16, reply: bool },
}

/// A packet parked for the firewall stage of the burst (IP header first); its parsed flow is
/// in `Firewall::flows` at the same position.
pub(super) struct Staged<B> {
    buf: B,
    origin: Origin,
}

/// Packets between the index prefetch of a parked packet and its entry prefetch.
const ENTRY_LAG: usize = 4;

/// The parked packets whose entry prefetch the firewall stage issues at turn `i` (before
/// forwarding packet `i`), when the first `loading` were issued while parking and `n` are
/// parked: packet j's at turn j / 2 (see `run_staged`).
#[inline(always)]
fn entries_at_turn(i: usize, loading: usize, n: usize) -> core::ops::Range<usize> {
    (2 * i).max(loading)..(2 * i + 2).min(n)
}

/// The park's first turns, the ones that prefetch entries when the last tunnel packet is at
/// `tunnels_end - 1`: turn i prefetches packets 2i and 2i + 1 ([`entries_at_turn`]).
#[inline(always)]
fn prefetch_turns(tunnels_end: usize) -> usize {
    tunnels_end.div_ceil(2)
}

/// Whether a parked packet may be forwarded on the fast paths: parsing found a whole IPv4
/// header, and its TTL is above 1 (the full way drops the others as expired).
#[inline(always)]
fn forwardable(pkt: &[u8]) -> bool {
    pkt.len() >= 20 && pkt[8] > 1
}

#[cold]
fn nat_drop(e: NatError) -> DropReason {
    match e {
        NatError::Malformed => DropReason::BadInnerPacket,
        _ => DropReason::NatRefused,
    }
}

impl<B: PacketBuf + Send> State<B> {
    /// Tunnel → LAN port `out_port`: policy, then NAT/tracking. `Ok` to forward.
    #[inline]
    pub(super) fn fw_forward(
        &mut self,
        pol: &PolicySet,
        parked: u8,
        out_port: u16,
        pkt: &mut [u8],
    ) -> Result<(), DropReason> {
        let Some(fw) = self.fw.as_mut() else { return Ok(()) };
        // Most packets: a known flow admitted by the running set.
        if let Some(Ok(p)) = fw.flows.get(usize::from(parked)).map(Parked::get) {
            // Routed out of another port than its cached hop's, the flow goes to the policy
            // again (the verdict was for the old egress interface): `admit_known` sees to it.
            if let Some(v) = fw.nat.admit_known(fw.now_ns, p, pkt, pol, out_port) {
                fw.tally.add(pol, v, pkt.len() as u32, false);
                return Ok(());
            }
        }
        self.fw_forward_policy(pol, parked, out_port, pkt)
    }

    /// [`Self::fw_forward`] for a packet the policy must decide: a new flow, an expired one,
    /// one admitted by an earlier set, a protocol without state, or a refusal from parking.
    #[cold]
    #[inline(never)]
    fn fw_forward_policy(
        &mut self,
        pol: &PolicySet,
        parked: u8,
        out_port: u16,
        pkt: &mut [u8],
    ) -> Result<(), DropReason> {
        let Some(fw) = self.fw.as_mut() else { return Ok(()) };
        // With a firewall every tunnel packet is parked; one that was not has no tunnel to
        // check against.
        let Some(pk) = fw.flows.get(usize::from(parked)) else { return Err(DropReason::Unhandled) };
        let t = pk.tunnel;
        let nat_addr = self
            .ports
            .get(usize::from(out_port))
            .and_then(|p| p.iface.as_ref())
            .and_then(|i| i.addrs.first().copied())
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        let base = FlowKey::between(t.if_index, fw.if_of(out_port), t.groups);
        let now = fw.now_ns;
        let len = pkt.len() as u32;
        let admitted = match pk.get() {
            Ok(p) => fw.nat.admit_parsed(now, p, pkt, pol, &base, nat_addr),
            // Refused (and counted) when it was parked.
            Err(e) => Err(e),
        };
        match admitted {
            Ok(Admit::Tracked { verdict, new_flow }) => {
                fw.tally.add(pol, verdict.tag(), len, new_flow);
                Ok(())
            }
            Ok(Admit::Untracked(v)) => {
                fw.tally.add(pol, v.tag(), len, false);
                Ok(())
            }
            Ok(Admit::Denied(v)) => {
                fw.tally.add(pol, v.tag(), len, true);
                Err(DropReason::PolicyDenied)
            }
            Err(e) => Err(nat_drop(e)),
        }
    }

    /// A packet from a LAN port: translated back when it is the reply of a tracked flow.
    /// `Ok(true)`: it was (and goes to the client's tunnel without a policy check);
    /// `Ok(false)`: no entry. `to_gateway`: addressed to the gateway, so it must be a reply.
    #[inline]
    pub(super) fn fw_reply(
        &mut self,
        pol: &PolicySet,
        pkt: &mut [u8],
        to_gateway: bool,
        parked: u8,
    ) -> Result<bool, DropReason> {
        let Some(fw) = self.fw.as_mut() else {
            return if to_gateway { Err(DropReason::Unhandled) } else { Ok(false) };
        };
        let now = fw.now_ns;
        let len = pkt.len() as u32;
        let replied = match fw.flows.get(usize::from(parked)).map(Parked::get) {
            Some(Ok(p)) => fw.nat.reply_verdict(now, p, pkt),
            Some(Err(e)) => Err(e),
            None => fw.nat.reply(now, pkt).map(|r| r.verdict),
        };
        match replied {
            Ok(verdict) => {
                // A verdict of an earlier set counts nothing (the tally checks).
                if let Some(v) = verdict {
                    fw.tally.add(pol, v, len, false);
                }
                Ok(true)
            }
            Err(NatError::Malformed) if to_gateway => Err(DropReason::BadInnerPacket),
            Err(_) if to_gateway => Err(DropReason::Unhandled),
            Err(_) => Ok(false),
        }
    }

    /// A parked tunnel packet: a known flow whose entry caches its next hop (for the running
    /// route generation) is admitted, translated and sent on that hop at once, with neither
    /// route nor neighbour lookup — the session fast path of stateful firewalls. Anything else
    /// (new flow, other policy set, routes or neighbours changed since, TTL running out) takes
    /// the full way through `route_inner`, which caches the hop again.
    // Inlined into the park's run: as a call it cost 41 instructions a packet (callgrind) and
    // open 64 B ≈ 0.01 of ratio.
    #[inline(always)]
    pub(super) fn forward_parked<P: PacketIo<Buf = B>>(&mut self, io: &mut P, cx: Cx<'_, '_>, mut buf: B, parked: u8) {
        if let Some(fw) = self.fw.as_mut() {
            if let Some(Ok(p)) = fw.flows.get(usize::from(parked)).map(Parked::get) {
                let pkt = buf.data_mut();
                let fast =
                    if forwardable(pkt) { fw.nat.forward_fast(fw.now_ns, p, cx.pol, self.hop_gen, pkt) } else { None };
                if let Some((hop, v)) = fast {
                    fw.tally.add(cx.pol, v, pkt.len() as u32, false);
                    return self.send_framed(io, hop.port, hop.mac, buf);
                }
            }
        }
        self.route_inner(io, cx, buf, Origin::Tunnel { parked })
    }

    /// A parked LAN packet: the reply of a known flow is translated back and sealed into its
    /// client's tunnel at once — the entry names the client, so the packet skips `lan_ip` and
    /// `route_inner` (header checks parsing did, route and policy steps a reply does not
    /// need). Anything else (no entry, no SA for the client, TTL running out) takes the full
    /// way.
    #[inline(always)]
    pub(super) fn reply_parked<P: PacketIo<Buf = B>>(
        &mut self,
        io: &mut P,
        cx: Cx<'_, '_>,
        port: u16,
        mut buf: B,
        to_gateway: bool,
        parked: u8,
    ) {
        if let Some(fw) = self.fw.as_mut() {
            if let Some(Ok(p)) = fw.flows.get(usize::from(parked)).map(Parked::get) {
                let pkt = buf.data_mut();
                // Without the client's SA (gone, or not yet there) the full way decides.
                let fast = if forwardable(pkt) {
                    fw.nat.reply_fast(fw.now_ns, p, pkt, |client| cx.tbl.get_vip(client, cx.g))
                } else {
                    None
                };
                if let Some((sa, v)) = fast {
                    fw.tally.add(cx.pol, v, pkt.len() as u32, false);
                    return self.seal(io, sa, buf);
                }
            }
        }
        self.lan_ip(io, cx, port, buf, to_gateway, parked)
    }

    /// After `route_inner` delivered a parked tunnel packet onto `port` towards `next_hop`:
    /// caches that hop in its flow's entry for [`Self::forward_parked`]. Not for a destination
    /// in the client address pool (a client given that address later is reached by its SA,
    /// which changes no route), nor for an unresolved neighbour.
    #[cold]
    #[inline(never)]
    pub(super) fn fw_remember_hop(
        &mut self,
        tbl: &OutboundTable,
        parked: u8,
        port: u16,
        next_hop: Ipv4Addr,
        pkt: &[u8],
    ) {
        let Some(fw) = self.fw.as_mut() else { return };
        let Some(Ok(p)) = fw.flows.get(usize::from(parked)).map(Parked::get) else { return };
        // Untracked protocols have no entry to cache the hop in.
        let Some(e) = fw.nat.flow_entry(p) else { return };
        let Some(dst) = pkt.get(16..20).and_then(|d| <[u8; 4]>::try_from(d).ok()) else { return };
        if tbl.slot_of(Ipv4Addr::from(dst)).is_some() {
            return;
        }
        let Some(mac) = self.neigh.lookup(port, next_hop) else { return };
        fw.nat.set_hop(e, Hop { gen: self.hop_gen, port, mac });
    }

    /// [`Self::fw_check`] for a parked tunnel packet going into tunnel `out_if`.
    #[inline]
    pub(super) fn fw_check_parked(
        &mut self,
        pol: &PolicySet,
        parked: u8,
        out_if: IfIndex,
        pkt: &[u8],
    ) -> Result<(), DropReason> {
        let Some(fw) = self.fw.as_ref() else { return Ok(()) };
        let Some(t) = fw.flows.get(usize::from(parked)).map(|pk| pk.tunnel) else {
            return Err(DropReason::Unhandled);
        };
        self.fw_check(pol, t.if_index, out_if, t.groups, pkt)
    }

    /// A check without state (LAN-initiated traffic into a tunnel, tunnel to tunnel).
    #[inline]
    pub(super) fn fw_check(
        &mut self,
        pol: &PolicySet,
        in_if: IfIndex,
        out_if: IfIndex,
        groups: GroupMask,
        pkt: &[u8],
    ) -> Result<(), DropReason> {
        let Some(fw) = self.fw.as_mut() else { return Ok(()) };
        let key = match nat::flow_key(pkt, &FlowKey::between(in_if, out_if, groups)) {
            Ok(k) => k,
            Err(e) => return Err(nat_drop(e)),
        };
        let v = pol.lookup(&key);
        fw.tally.add(pol, v.tag(), pkt.len() as u32, false);
        if v.accepts() {
            Ok(())
        } else {
            Err(DropReason::PolicyDenied)
        }
    }

    /// [`Self::stage`] for a decrypted packet: the tunnel is passed in two registers (an
    /// [`Arrival`] would go through memory and be read back right away). Inlined into the ESP
    /// path: open 64 B 0.921 vs 0.912 as a call (medians of 7 alternating runs).
    #[inline(always)]
    pub(super) fn stage_tunnel<P: PacketIo<Buf = B>>(&mut self, io: &mut P, cx: Cx<'_, '_>, buf: B, t: FromTunnel) {
        timing::timed(timing::Section::Park, || self.stage(io, cx, buf, Arrival::Tunnel(t)));
    }

    /// [`Self::stage`] for a packet from a LAN port. Inlined into the LAN path: as a call it
    /// cost a 64-byte reply ≈ 3 ns (seal ratio 0.910–0.912 → 0.923–0.928, alternating), more
    /// than its 15 instructions (callgrind) account for.
    #[inline(always)]
    pub(super) fn stage_lan<P: PacketIo<Buf = B>>(
        &mut self,
        io: &mut P,
        cx: Cx<'_, '_>,
        buf: B,
        port: u16,
        reply: bool,
    ) {
        timing::timed(timing::Section::Park, || self.stage(io, cx, buf, Arrival::Lan { port, reply }));
    }

    /// Parks a packet for the burst's firewall stage and starts loading its connection-index
    /// slot; runs the stage first when the park is full.
    #[inline(always)]
    fn stage<P: PacketIo<Buf = B>>(&mut self, io: &mut P, cx: Cx<'_, '_>, buf: B, arrival: Arrival) {
        if self.staged.is_full() {
            self.run_staged(io, cx);
        }
        let Some(fw) = self.fw.as_mut() else { return self.drop_pkt(DropReason::Unhandled, buf) };
        let at = self.staged.len();
        let Some(slot) = fw.flows.get_mut(at) else { return self.drop_pkt(DropReason::Unhandled, buf) };
        // Parse and hash once: the prefetches and the translation use the result.
        let (origin, parsed) = match arrival {
            Arrival::Tunnel(t) => {
                slot.tunnel = t;
                (Origin::Tunnel { parked: at as u8 }, fw.nat.parse_outbound_into(t.conn, buf.data(), &mut slot.flow))
            }
            Arrival::Lan { port, reply } => {
                (Origin::Lan { port, reply }, fw.nat.parse_reply_into(buf.data(), &mut slot.flow))
            }
        };
        slot.refused = parsed.err();
        if parsed.is_ok() {
            fw.nat.prefetch(&slot.flow, Prefetch::Index);
        }
        // After a decryption, the slot of a packet parked a few packets ago has arrived (the
        // decryptions since took long enough): start loading its entry too, so that miss
        // overlaps with the rest of the burst's work instead of waiting for the stage. A LAN
        // packet is parked in a few nanoseconds: there the slot would not be in yet and
        // reading it would stall, so its entry waits for the stage.
        if matches!(origin, Origin::Tunnel { .. }) {
            fw.tunnels_end = at + 1;
            if at >= ENTRY_LAG && fw.entries_loading == at - ENTRY_LAG {
                fw.prefetch_entry(at - ENTRY_LAG);
                fw.entries_loading += 1;
            }
        }
        // Not full: it was emptied above if it was.
        let _ = self.staged.try_push(Some(Staged { buf, origin }));
    }

    /// The firewall stage: forward the parked packets in order, each one's entry prefetched a
    /// few packets ahead of its turn.
    pub(super) fn run_staged<P: PacketIo<Buf = B>>(&mut self, io: &mut P, cx: Cx<'_, '_>) {
        if self.staged.is_empty() {
            return;
        }
        timing::timed(timing::Section::Run, || self.run_parked(io, cx));
    }

    /// The work of [`Self::run_staged`] (counted as one section with `stage-timing`).
    #[inline(always)]
    fn run_parked<P: PacketIo<Buf = B>>(&mut self, io: &mut P, cx: Cx<'_, '_>) {
        let n = self.staged.len();
        let tunnels_end = self.fw.as_ref().map_or(0, |fw| fw.tunnels_end.min(n));
        // Entries not on their way yet (the last few tunnel packets parked) are prefetched
        // halfway between their index slot's prefetch and their turn: packet j's at turn j / 2.
        // Their slots were prefetched when they were parked, just before this stage, so the
        // slot read needs the first half of the wait and the entry the second; a fixed lead of
        // a few turns was too short for the entry (a turn takes ≈ 25 ns, DRAM ≈ 130 ns) and
        // cost 5 cycles per packet at 100 000 flows. Reading all the slots at once here
        // stalls on the last ones instead. Past the last tunnel packet there is nothing to
        // prefetch (a reply's entry is loading since it was parked): a park of replies skips
        // the turn's look at two parked flows, which was a tenth of a reply's firewall
        // instructions (64-byte seal ratio 0.893 → 0.899). Packets go in arrival order: first
        // the turns that prefetch, then the rest.
        let prefetching = prefetch_turns(tunnels_end);
        for i in 0..prefetching {
            if let Some(fw) = self.fw.as_mut() {
                for ahead in entries_at_turn(i, fw.entries_loading, tunnels_end) {
                    fw.prefetch_entry(ahead);
                }
            }
            self.run_turn(io, cx, i);
        }
        for i in prefetching..n {
            self.run_turn(io, cx, i);
        }
        self.staged.clear();
        if let Some(fw) = self.fw.as_mut() {
            fw.entries_loading = 0;
            fw.tunnels_end = 0;
        }
    }

    /// Packet `i` of the park goes on (moved out: no copy of the whole park).
    #[inline(always)]
    fn run_turn<P: PacketIo<Buf = B>>(&mut self, io: &mut P, cx: Cx<'_, '_>, i: usize) {
        let Some(s) = self.staged.get_mut(i).and_then(Option::take) else { return };
        match s.origin {
            Origin::Tunnel { parked } => self.forward_parked(io, cx, s.buf, parked),
            // `reply` carries "addressed to the gateway" while parked.
            Origin::Lan { port, reply } => self.reply_parked(io, cx, port, s.buf, reply, i as u8),
        }
    }

    /// The policy interface of a port (for the LAN side of a stateless check).
    #[inline]
    pub(super) fn port_if(&self, port: u16) -> IfIndex {
        self.fw.as_ref().map_or(IfIndex::MAX, |fw| fw.if_of(port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Action, AddrSet, IfMatch, PolicySpec, PortRange, ServiceEntry, Verdict};
    use core::net::Ipv4Addr;

    /// `n` accept policies, policy `i` for UDP to port 1000 + i.
    fn set(n: u32) -> PolicySet {
        let specs: Vec<PolicySpec> = (1..=n)
            .map(|id| PolicySpec {
                id,
                src_if: IfMatch::Any,
                dst_if: IfMatch::Any,
                src: AddrSet::prefix(Ipv4Addr::UNSPECIFIED, 0),
                dst: AddrSet::prefix(Ipv4Addr::UNSPECIFIED, 0),
                services: vec![ServiceEntry::Udp { dst: PortRange::one(1000 + id as u16), src: PortRange::ANY }],
                action: Action::Accept,
                nat: false,
                groups: GroupMask::NONE,
            })
            .collect();
        PolicySet::compile(&specs, 2, None).unwrap()
    }

    fn verdict(pol: &PolicySet, id: u32) -> Verdict {
        let key = FlowKey {
            proto: crate::wire::ip_proto::UDP,
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 2),
            sport: 5000,
            dport: 1000 + id as u16,
            ..FlowKey::between(0, 1, GroupMask::NONE)
        };
        let v = pol.lookup(&key);
        assert_eq!(v.policy_id, id);
        v
    }

    #[test]
    fn the_stage_prefetches_every_entry_not_loading_once_halfway_before_its_turn() {
        for n in 0..=crate::port::BURST {
            for loading in 0..=n {
                let mut when = vec![None; n];
                // The turns the run prefetches in; the others only forward.
                for i in 0..prefetch_turns(n) {
                    for j in entries_at_turn(i, loading, n) {
                        assert!(when[j].is_none(), "entry {j} of {n} prefetched twice");
                        when[j] = Some(i);
                    }
                }
                for (j, w) in when.iter().enumerate() {
                    match w {
                        None => assert!(j < loading, "entry {j} of {n} never prefetched"),
                        Some(_) if j < loading => panic!("entry {j} was already loading"),
                        Some(i) => assert_eq!(*i, j / 2, "entry {j} of {n}: turn {i}"),
                    }
                }
            }
        }
    }

    #[test]
    fn a_tally_adds_per_policy_at_the_flush_and_counts_far_policies_at_once() {
        let pol = set(TALLY_SLOTS as u32 + 50);
        let mut t = Tally::default();
        let (near, far) = (verdict(&pol, 3), verdict(&pol, TALLY_SLOTS as u32 + 20));
        for i in 0..5 {
            t.add(&pol, near.tag(), 100, i == 0);
            t.add(&pol, far.tag(), 10, false);
        }
        let now = |id| pol.counters(id).map(|c| (c.packets, c.bytes, c.hits));
        assert_eq!(now(3), Some((0, 0, 0)), "a tallied policy waits for the flush");
        assert_eq!(now(TALLY_SLOTS as u32 + 20), Some((5, 50, 0)), "beyond the tally: counted at once");
        t.flush(&pol);
        assert_eq!(now(3), Some((5, 500, 1)));
        t.flush(&pol);
        assert_eq!(now(3), Some((5, 500, 1)), "a flush empties the tally");
        // A verdict of another set counts nothing here.
        let other = set(4);
        t.add(&pol, verdict(&other, 3).tag(), 100, true);
        t.add(&pol, VerdictTag::NONE, 100, true);
        t.flush(&pol);
        assert_eq!(now(3), Some((5, 500, 1)));
        assert!(t.touched.is_empty());
    }
}
