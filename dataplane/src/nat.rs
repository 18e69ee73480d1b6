//! Source NAT and connection tracking for tunnel traffic, one table per worker.
//!
//! How to drive it (a worker owns one [`ConnTable`]; nothing is shared, nothing locks):
//! - Outbound (decrypted, from a tunnel, accepted by the policy): [`ConnTable::outbound`] with the
//!   tunnel's slot, the IPv4 packet, and `Some(egress address)` when the policy says `nat` (or
//!   `None` to track the flow without translating it). It finds or creates the entry and
//!   rewrites source address and port (ICMP echo id) in place.
//! - Replies from the LAN: [`ConnTable::reply`] finds the entry by the reply's tuple, rewrites
//!   the destination back and says which tunnel the packet belongs to.
//! - Once per burst: [`ConnTable::sweep`] with a small budget removes expired entries; the work
//!   per call is bounded, so a full table never stalls a worker.
//! - With a firewall policy ([`crate::policy::PolicySet`]): [`ConnTable::admit`] does the
//!   policy check and the translation in one lookup, caching the verdict in the entry so a
//!   known flow skips the policy until the set is replaced. A worker that prefetches parses
//!   once ([`ConnTable::parse_outbound`] / [`ConnTable::parse_reply`]), prefetches with the
//!   result ([`ConnTable::prefetch`]) and translates with it ([`ConnTable::admit_parsed`] /
//!   [`ConnTable::reply_parsed`]).
//!
//! NAT ports never include 500 and 4500: the NAT address is the gateway's own, where those
//! ports are IKE and ESP in UDP.
//!
//! Time is a `u64` tick (nanoseconds by convention) passed in; nothing here reads a clock.
//!
//! Checksums are updated incrementally (RFC 1624 eqn. 3) for the IPv4 header and for TCP, UDP
//! (a zero "no checksum" stays zero) and ICMP — a few additions per packet, independent of the
//! packet length.
//!
//! Bounds: the table holds at most `capacity` entries in all and `per_tunnel` per tunnel. A new
//! flow beyond either is refused and counted ([`NatError::TableFull`], [`NatError::TunnelFull`]).
//! Memory is allocated once in [`ConnTable::new`]; the hash indexes are open-addressed with
//! linear probing and backward-shift deletion at ≤ 50 % load, so no operation rehashes.
//!
//! Why per worker and not shared: a lookup in an owned table is a plain memory access, while a
//! shared table needs atomics on every entry it touches and bounces cache lines between cores
//! (`bench/benches/policy.rs` measures both: with 100 000 entries and every packet a different
//! flow, 220 ns a packet owned, 291 ns behind an uncontended mutex, and two threads sharing
//! the mutex together no faster than one thread alone — per-worker tables scale with workers,
//! a shared one does not). For a burst, prefetch ([`ConnTable::prefetch_outbound`]) in two
//! passes before translating so the cache misses overlap. The condition is that a reply reaches the worker
//! that owns its entry. With RSS, the NIC hashes the reply's (src, dst, sport, dport) with
//! Toeplitz and picks a queue through its redirection table; [`RssSteer`] lets the table pick
//! only NAT ports whose reply hashes to this worker's queue, so no hand-off is needed. ICMP
//! replies hash on addresses only and cannot be steered by the id; a worker that gets a reply
//! without an entry must hand it to the owner (or run with one LAN queue).
//! Fragments are refused ([`NatError::Fragment`]): only the first carries ports.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::hugemem::HugeSlice;
use crate::policy::{FlowKey, PolicySet, Verdict};
use crate::wire::{checksum, ip_proto, ipv4};

/// Per-protocol idle timeouts, in ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP once the reply has been seen and no FIN/RST.
    pub tcp_established: u64,
    /// TCP before the reply, and after a FIN or RST.
    pub tcp_transitory: u64,
    /// UDP.
    pub udp: u64,
    /// ICMP echo.
    pub icmp: u64,
}

impl Timeouts {
    fn of(&self, proto: u8, state: u8) -> u64 {
        match proto {
            ip_proto::TCP if state == ESTABLISHED => self.tcp_established,
            ip_proto::TCP => self.tcp_transitory,
            ip_proto::UDP => self.udp,
            _ => self.icmp,
        }
    }
}

const SECOND: u64 = 1_000_000_000;

impl Default for Timeouts {
    /// FortiOS-like defaults in nanoseconds: TCP 3600 s (120 s half-open or closing), UDP 180 s,
    /// ICMP 60 s.
    fn default() -> Self {
        Timeouts { tcp_established: 3600 * SECOND, tcp_transitory: 120 * SECOND, udp: 180 * SECOND, icmp: 60 * SECOND }
    }
}

/// Picks NAT ports whose replies the NIC's RSS sends to one queue.
///
/// The NIC computes the Toeplitz hash of the reply's source address, destination address,
/// source port and destination port (Microsoft RSS specification, "RSS hashing types", TCP/UDP
/// over IPv4) and uses it to index its redirection table (`hash % reta.len()`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RssSteer {
    key: [u8; 40],
    reta: Box<[u16]>,
    queue: u16,
}

impl RssSteer {
    /// Steering for `queue` with the port's RSS key and redirection table.
    pub fn new(key: [u8; 40], reta: Vec<u16>, queue: u16) -> Option<RssSteer> {
        (!reta.is_empty() && reta.contains(&queue)).then(|| RssSteer { key, reta: reta.into_boxed_slice(), queue })
    }

    /// The Toeplitz hash of `input` under `key` (input at most 36 bytes).
    pub fn toeplitz(key: &[u8; 40], input: &[u8]) -> u32 {
        let mut h = 0u32;
        for (i, &byte) in input.iter().enumerate().take(36) {
            for bit in 0..8 {
                if byte & (0x80 >> bit) != 0 {
                    h ^= window(key, i * 8 + bit);
                }
            }
        }
        h
    }

    /// The queue the NIC picks for a packet from `src:sport` to `dst:dport`.
    pub fn queue_of(&self, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> u16 {
        let mut input = [0u8; 12];
        input[..4].copy_from_slice(&src.octets());
        input[4..8].copy_from_slice(&dst.octets());
        input[8..10].copy_from_slice(&sport.to_be_bytes());
        input[10..12].copy_from_slice(&dport.to_be_bytes());
        let h = Self::toeplitz(&self.key, &input);
        self.reta[h as usize % self.reta.len()]
    }

    /// Hash of a reply with destination port 0; XOR in [`RssSteer::port_part`] for a port.
    fn base(&self, src: u32, dst: u32, sport: u16) -> u32 {
        let mut input = [0u8; 12];
        input[..4].copy_from_slice(&src.to_be_bytes());
        input[4..8].copy_from_slice(&dst.to_be_bytes());
        input[8..10].copy_from_slice(&sport.to_be_bytes());
        Self::toeplitz(&self.key, &input)
    }

    /// The Toeplitz hash is linear (XOR) in the input bits: the destination port's share.
    fn port_part(&self, dport: u16) -> u32 {
        (0..16).filter(|b| dport & (0x8000 >> b) != 0).fold(0, |h, b| h ^ window(&self.key, 80 + b))
    }

    fn accepts(&self, base: u32, dport: u16) -> bool {
        let h = base ^ self.port_part(dport);
        self.reta[h as usize % self.reta.len()] == self.queue
    }
}

/// The 32 key bits starting at bit `i`.
fn window(key: &[u8; 40], i: usize) -> u32 {
    let byte = i / 8;
    let mut v = 0u64;
    for k in 0..5 {
        v = (v << 8) | u64::from(key.get(byte + k).copied().unwrap_or(0));
    }
    ((v << (i % 8)) >> 8) as u32
}

/// Sizes, limits and timeouts of a [`ConnTable`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatConfig {
    /// Most entries in the table.
    pub capacity: u32,
    /// Most entries per tunnel.
    pub per_tunnel: u32,
    /// Tunnel slots are `0..tunnels`.
    pub tunnels: u32,
    /// First NAT port (and ICMP id).
    pub port_lo: u16,
    /// Last NAT port (and ICMP id).
    pub port_hi: u16,
    /// Candidate ports tried for a new flow before it is refused.
    pub max_port_tries: u32,
    /// Idle timeouts.
    pub timeouts: Timeouts,
    /// Hash seed (random per table, so flows cannot be chosen to collide).
    pub seed: u64,
    /// Pick only ports whose replies RSS sends to this worker.
    pub steer: Option<RssSteer>,
}

impl Default for NatConfig {
    fn default() -> Self {
        NatConfig {
            capacity: 65536,
            per_tunnel: 4096,
            tunnels: 4096,
            port_lo: 1024,
            port_hi: 65535,
            max_port_tries: 128,
            timeouts: Timeouts::default(),
            seed: 0x5eed_d1a1_9a7e,
            steer: None,
        }
    }
}

/// Why a packet was not translated. `#[repr(u8)]` to index counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[repr(u8)]
pub enum NatError {
    /// Not a valid IPv4 packet, or an L4 header too short.
    #[error("malformed packet")]
    Malformed = 0,
    /// A fragment: only whole packets are translated.
    #[error("fragment")]
    Fragment,
    /// A protocol (or ICMP type) the table does not track.
    #[error("protocol not tracked")]
    Unsupported,
    /// The table is full: the new flow is refused.
    #[error("connection table full")]
    TableFull,
    /// The tunnel has its maximum number of entries.
    #[error("per-tunnel connection limit reached")]
    TunnelFull,
    /// No free port (or, without NAT, the reply tuple is taken by another tunnel's flow).
    #[error("no free port")]
    NoPort,
    /// A reply without an entry.
    #[error("no connection entry")]
    NoEntry,
    /// A tunnel slot at or above `NatConfig::tunnels`.
    #[error("tunnel slot out of range")]
    BadTunnel,
}

impl NatError {
    /// Number of reasons.
    pub const COUNT: usize = NatError::BadTunnel as usize + 1;
}

/// Counters of one table; written only by its owning worker, readable anywhere.
#[derive(Debug, Default)]
pub struct NatCounters {
    /// Packets translated outbound.
    pub outbound: AtomicU64,
    /// Replies translated back.
    pub replies: AtomicU64,
    /// Entries created.
    pub created: AtomicU64,
    /// Entries removed because they expired.
    pub expired: AtomicU64,
    /// Packets refused, by [`NatError`].
    pub errors: [AtomicU64; NatError::COUNT],
    /// Entries now.
    pub live: AtomicU64,
}

/// Stores only a new value: an established flow's packets (same coarse time, same state) then
/// read their entry without dirtying its cache line, so 100 000 flows do not turn every lookup
/// into a later write-back.
#[inline]
fn set_if_changed<T: PartialEq>(slot: &mut T, v: T) {
    if *slot != v {
        *slot = v;
    }
}

/// Single-writer increment: the owning worker is the only writer, so a plain load and store
/// (no locked read-modify-write) is exact.
#[inline]
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

impl NatCounters {
    /// Refusals for one reason.
    pub fn error(&self, e: NatError) -> u64 {
        self.errors[e as usize].load(Ordering::Relaxed)
    }
}

/// A packet's flow parsed and hashed once ([`ConnTable::parse_outbound`],
/// [`ConnTable::parse_reply`]): prefetch with it ([`ConnTable::prefetch`]), then translate with
/// it ([`ConnTable::admit_parsed`], [`ConnTable::reply_parsed`]) — the packet's addresses and
/// ports must not change in between.
#[derive(Clone, Copy, Debug)]
pub struct Parsed {
    l4: L4,
    /// The forward (outbound) or reply hash; 0 for an untracked protocol.
    hash: u32,
    tunnel: u32,
    reply: bool,
}

/// Which memory [`ConnTable::prefetch_outbound`] / [`ConnTable::prefetch_reply`] pull into the
/// cache: first the index slot, then (a pass later, once the slot is cached) the entry it
/// points to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefetch {
    /// The hash-index slot of the packet's flow.
    Index,
    /// The entry the slot names (reads the slot).
    Entry,
}

#[inline]
fn prefetch<T>(p: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it never faults or changes memory, and `p` is a valid
    // reference anyway. SSE (which provides it) is part of the x86_64 baseline.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>((p as *const T).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Result of an outbound translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outbound {
    /// The packet started a new flow (count a policy hit).
    pub new_flow: bool,
    /// Source address after translation.
    pub addr: Ipv4Addr,
    /// Source port (ICMP id) after translation.
    pub port: u16,
}

/// Result of a reply translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Tunnel slot the reply goes to.
    pub tunnel: u32,
    /// The client address the reply is now addressed to.
    pub client: Ipv4Addr,
    /// The verdict that admitted the flow ([`ConnTable::admit`]), to count the reply under the
    /// same policy; `None` for entries made by [`ConnTable::outbound`].
    pub verdict: Option<Verdict>,
}

/// What [`ConnTable::admit`] decided for a packet from a tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Forward: the flow has an entry (translated with NAT, tracked without), so replies pass.
    Tracked {
        /// The policy that accepts the flow.
        verdict: Verdict,
        /// The packet created the entry (count a policy hit).
        new_flow: bool,
    },
    /// Forward untracked: accepted without NAT, but a protocol the table cannot follow
    /// (neither TCP, UDP nor ICMP echo); replies need a policy of their own.
    Untracked(Verdict),
    /// Drop: a deny policy or the implicit deny. An entry the flow had is removed, so its
    /// replies stop too.
    Denied(Verdict),
}

/// The flow as the client sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fwd {
    tunnel: u32,
    src: u32,
    dst: u32,
    sport: u16,
    dport: u16,
    proto: u8,
}

/// The reply's tuple, as seen arriving from the LAN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rev {
    src: u32,
    dst: u32,
    sport: u16,
    dport: u16,
    proto: u8,
}

const OPENING: u8 = 0;
const ESTABLISHED: u8 = 1;
const CLOSING: u8 = 2;

/// One connection; a cache line each, so a lookup that reaches its entry costs one miss.
#[derive(Clone, Copy, Debug)]
#[repr(align(64))]
struct Entry {
    fwd: Fwd,
    nat_addr: u32,
    nat_port: u16,
    state: u8,
    live: bool,
    expires: u64,
    /// The verdict that admitted the flow, cached so a packet of a known flow skips the policy
    /// lookup while the set that gave it is still the running one.
    verdict: Option<Verdict>,
}

impl Entry {
    fn rev(&self) -> Rev {
        Rev {
            src: self.fwd.dst,
            dst: self.nat_addr,
            sport: self.fwd.dport,
            dport: self.nat_port,
            proto: self.fwd.proto,
        }
    }
}

fn mix(seed: u64, a: u64, b: u64) -> u32 {
    let mut h = (a ^ seed).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h = (h.rotate_left(29) ^ b).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 31;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    (h >> 32) as u32
}

impl Fwd {
    fn hash(&self, seed: u64) -> u32 {
        let a = (u64::from(self.src) << 32) | u64::from(self.dst);
        let b = (u64::from(self.tunnel) << 40)
            ^ (u64::from(self.proto) << 32)
            ^ (u64::from(self.sport) << 16)
            ^ u64::from(self.dport);
        mix(seed, a, b)
    }
}

impl Rev {
    fn hash(&self, seed: u64) -> u32 {
        let a = (u64::from(self.src) << 32) | u64::from(self.dst);
        let b = (u64::from(self.proto) << 32) ^ (u64::from(self.sport) << 16) ^ u64::from(self.dport);
        mix(seed ^ 0x7265_7665_7273_6521, a, b)
    }
}

/// An open-addressed index: slot = (hash << 32) | (entry + 1), 0 = empty.
#[derive(Debug)]
struct Index {
    slots: HugeSlice<u64>,
    mask: usize,
}

impl Index {
    fn new(capacity: u32) -> Index {
        // At most 50 % load: probes stay short and an empty slot always ends a search.
        let n = (capacity as usize * 2).next_power_of_two().max(16);
        Index { slots: HugeSlice::new(n, 0), mask: n - 1 }
    }

    #[inline]
    fn find(&self, h: u32, mut eq: impl FnMut(u32) -> bool) -> Option<(usize, u32)> {
        let mut i = h as usize & self.mask;
        loop {
            let s = self.slots[i];
            if s == 0 {
                return None;
            }
            let e = (s as u32).wrapping_sub(1);
            if (s >> 32) as u32 == h && eq(e) {
                return Some((i, e));
            }
            i = (i + 1) & self.mask;
        }
    }

    fn insert(&mut self, h: u32, e: u32) {
        let mut i = h as usize & self.mask;
        while self.slots[i] != 0 {
            i = (i + 1) & self.mask;
        }
        self.slots[i] = (u64::from(h) << 32) | u64::from(e + 1);
    }

    /// Empties `slot` and shifts later members of the probe run back (no tombstones).
    fn remove(&mut self, mut hole: usize) {
        let mut j = hole;
        loop {
            j = (j + 1) & self.mask;
            let s = self.slots[j];
            if s == 0 {
                break;
            }
            let home = (s >> 32) as usize & self.mask;
            // The entry at j may move to the hole unless its home lies cyclically in (hole, j].
            let stays = if hole <= j { hole < home && home <= j } else { hole < home || home <= j };
            if !stays {
                self.slots[hole] = s;
                hole = j;
            }
        }
        self.slots[hole] = 0;
    }
}

/// Where the L4 fields of a parsed packet are.
#[derive(Clone, Copy, Debug)]
struct L4 {
    proto: u8,
    /// Offset of the L4 header (at most 60: IHL is 4 bits of 32-bit words).
    off: u8,
    src: u32,
    dst: u32,
    /// Source port, or ICMP id.
    sport: u16,
    /// Destination port, or 0 for ICMP.
    dport: u16,
    icmp_type: u8,
    tcp_flags: u8,
}

const IKE_PORT: u16 = 500;
const NATT_PORT: u16 = 4500;
const TCP_FIN: u8 = 0x01;
const TCP_RST: u8 = 0x04;
const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;

fn parse(pkt: &[u8]) -> Result<L4, NatError> {
    let l4 = parse_any(pkt)?;
    match l4.proto {
        ip_proto::TCP | ip_proto::UDP | ip_proto::ICMP => Ok(l4),
        _ => Err(NatError::Unsupported),
    }
}

impl L4 {
    /// Whether the table can follow the flow (and find its replies).
    fn trackable(&self) -> bool {
        match self.proto {
            ip_proto::TCP | ip_proto::UDP => true,
            ip_proto::ICMP => self.icmp_type == ICMP_ECHO_REQUEST,
            _ => false,
        }
    }

    fn fwd(&self, tunnel: u32) -> Fwd {
        Fwd { tunnel, src: self.src, dst: self.dst, sport: self.sport, dport: self.dport, proto: self.proto }
    }

    /// `base` (interfaces and groups) with this packet's addresses, protocol and ports.
    fn key(&self, base: &FlowKey) -> FlowKey {
        let icmp = self.proto == ip_proto::ICMP;
        FlowKey {
            proto: self.proto,
            src: Ipv4Addr::from(self.src),
            dst: Ipv4Addr::from(self.dst),
            sport: if icmp { 0 } else { self.sport },
            dport: self.dport,
            icmp_type: self.icmp_type,
            ..*base
        }
    }
}

/// `base` (interfaces and groups) completed from an IPv4 packet's addresses, protocol and
/// ports (ICMP: the type), for a policy lookup without a connection entry.
pub fn flow_key(pkt: &[u8], base: &FlowKey) -> Result<FlowKey, NatError> {
    parse_any(pkt).map(|l4| l4.key(base))
}

/// Parses any IPv4 packet that is not a fragment; ports stay 0 for protocols without them.
fn parse_any(pkt: &[u8]) -> Result<L4, NatError> {
    let ip = ipv4::Packet::new_checked(pkt).map_err(|_| NatError::Malformed)?;
    if ip.version() != 4 {
        return Err(NatError::Malformed);
    }
    if ip.is_fragment() {
        return Err(NatError::Fragment);
    }
    let off = usize::from(ip.header_len());
    let l4 = ip.payload();
    let be = |at: usize| u16::from_be_bytes([l4[at], l4[at + 1]]);
    let (src, dst) = (u32::from(ip.src_addr()), u32::from(ip.dst_addr()));
    let proto = ip.next_header();
    let mut r = L4 { proto, off: off as u8, src, dst, sport: 0, dport: 0, icmp_type: 0, tcp_flags: 0 };
    match proto {
        ip_proto::TCP if l4.len() >= 20 => {
            (r.sport, r.dport, r.tcp_flags) = (be(0), be(2), l4[13]);
        }
        ip_proto::UDP if l4.len() >= 8 => (r.sport, r.dport) = (be(0), be(2)),
        ip_proto::ICMP if l4.len() >= 8 => (r.icmp_type, r.sport) = (l4[0], be(4)),
        ip_proto::TCP | ip_proto::UDP | ip_proto::ICMP => return Err(NatError::Malformed),
        _ => {}
    }
    Ok(r)
}

/// Accumulates RFC 1624 eqn. 3 terms: HC' = ~(~HC + ~m + m'), for several changed words.
#[derive(Clone, Copy)]
struct Delta(u32);

impl Delta {
    fn word(&mut self, old: u16, new: u16) {
        self.0 += u32::from(!old) + u32::from(new);
    }
    fn addr(&mut self, old: u32, new: u32) {
        self.word((old >> 16) as u16, (new >> 16) as u16);
        self.word(old as u16, new as u16);
    }
    fn apply(self, hc: u16) -> u16 {
        !checksum::fold(u32::from(!hc) + self.0)
    }
}

fn get16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Rewrites the source (`is_src`) or destination address and port of a parsed packet.
fn rewrite(pkt: &mut [u8], l4: &L4, is_src: bool, addr: u32, port: u16) {
    let (old_addr, old_port, addr_at, port_at) = if is_src {
        (l4.src, l4.sport, 12, usize::from(l4.off))
    } else {
        (l4.dst, l4.dport, 16, usize::from(l4.off) + 2)
    };
    let mut ipd = Delta(0);
    ipd.addr(old_addr, addr);
    put16(pkt, 10, ipd.apply(get16(pkt, 10)));
    pkt[addr_at..addr_at + 4].copy_from_slice(&addr.to_be_bytes());
    let mut l4d = Delta(0);
    match l4.proto {
        ip_proto::TCP => {
            l4d.addr(old_addr, addr);
            l4d.word(old_port, port);
            let at = usize::from(l4.off) + 16;
            put16(pkt, at, l4d.apply(get16(pkt, at)));
            put16(pkt, port_at, port);
        }
        ip_proto::UDP => {
            let at = usize::from(l4.off) + 6;
            let hc = get16(pkt, at);
            // RFC 768: a zero checksum means none was computed; it stays zero.
            if hc != 0 {
                l4d.addr(old_addr, addr);
                l4d.word(old_port, port);
                // RFC 768: a computed zero is sent as all ones.
                let v = l4d.apply(hc);
                put16(pkt, at, if v == 0 { 0xffff } else { v });
            }
            put16(pkt, port_at, port);
        }
        _ => {
            // ICMP: no pseudo-header; the id (at offset 4 for echo) is the "port".
            let id_at = usize::from(l4.off) + 4;
            l4d.word(get16(pkt, id_at), port);
            let at = usize::from(l4.off) + 2;
            put16(pkt, at, l4d.apply(get16(pkt, at)));
            put16(pkt, id_at, port);
        }
    }
}

/// A worker's connection table. See the module documentation.
#[derive(Debug)]
pub struct ConnTable {
    cfg: NatConfig,
    entries: HugeSlice<Entry>,
    free: Vec<u32>,
    fwd: Index,
    rev: Index,
    per_tunnel: Box<[u32]>,
    cursor: usize,
    counters: Arc<NatCounters>,
}

impl ConnTable {
    /// A table with every bit of memory it will use allocated now.
    pub fn new(cfg: NatConfig) -> ConnTable {
        let cap = cfg.capacity;
        let empty = Entry {
            fwd: Fwd { tunnel: 0, src: 0, dst: 0, sport: 0, dport: 0, proto: 0 },
            nat_addr: 0,
            nat_port: 0,
            state: 0,
            live: false,
            expires: 0,
            verdict: None,
        };
        ConnTable {
            entries: HugeSlice::new(cap as usize, empty),
            free: (0..cap).rev().collect(),
            fwd: Index::new(cap),
            rev: Index::new(cap),
            per_tunnel: vec![0; cfg.tunnels as usize].into_boxed_slice(),
            cursor: 0,
            counters: Arc::new(NatCounters::default()),
            cfg,
        }
    }

    /// The counters, to read from another thread.
    pub fn counters(&self) -> Arc<NatCounters> {
        Arc::clone(&self.counters)
    }

    /// Entries now.
    pub fn len(&self) -> usize {
        self.entries.len() - self.free.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries of one tunnel now.
    pub fn tunnel_len(&self, tunnel: u32) -> u32 {
        self.per_tunnel.get(tunnel as usize).copied().unwrap_or(0)
    }

    #[cold]
    fn refuse<T>(&self, e: NatError) -> Result<T, NatError> {
        bump(&self.counters.errors[e as usize], 1);
        Err(e)
    }

    fn timeout(&self, proto: u8, state: u8) -> u64 {
        self.cfg.timeouts.of(proto, state)
    }

    fn tcp_state(state: u8, flags: u8) -> u8 {
        if flags & (TCP_FIN | TCP_RST) != 0 {
            CLOSING
        } else {
            state
        }
    }

    /// Starts loading what [`ConnTable::outbound`] will read for this packet, so a burst's cache
    /// misses overlap: call with [`Prefetch::Index`] for every packet of the burst, then with
    /// [`Prefetch::Entry`], then translate. Does nothing for a packet that does not parse.
    #[inline]
    pub fn prefetch_outbound(&self, tunnel: u32, pkt: &[u8], stage: Prefetch) {
        if let Ok(l4) = parse(pkt) {
            let fwd = Fwd { tunnel, src: l4.src, dst: l4.dst, sport: l4.sport, dport: l4.dport, proto: l4.proto };
            self.prefetch_hash(&self.fwd, fwd.hash(self.cfg.seed), stage);
        }
    }

    /// The same as [`ConnTable::prefetch_outbound`] for [`ConnTable::reply`].
    #[inline]
    pub fn prefetch_reply(&self, pkt: &[u8], stage: Prefetch) {
        if let Ok(l4) = parse(pkt) {
            let (sport, dport) = if l4.proto == ip_proto::ICMP { (0, l4.sport) } else { (l4.sport, l4.dport) };
            let rev = Rev { src: l4.src, dst: l4.dst, sport, dport, proto: l4.proto };
            self.prefetch_hash(&self.rev, rev.hash(self.cfg.seed), stage);
        }
    }

    #[inline]
    fn prefetch_hash(&self, ix: &Index, h: u32, stage: Prefetch) {
        let i = h as usize & ix.mask;
        match stage {
            Prefetch::Index => prefetch(&ix.slots[i]),
            Prefetch::Entry => {
                let s = ix.slots[i];
                if let Some(e) = self.entries.get((s as u32).wrapping_sub(1) as usize) {
                    prefetch(e);
                }
            }
        }
    }

    /// Translates a packet a client sent through `tunnel`: source becomes `nat_addr` with a
    /// port (ICMP id) chosen for the flow, or stays as it is with `None` (tracking only).
    pub fn outbound(
        &mut self,
        now: u64,
        tunnel: u32,
        pkt: &mut [u8],
        nat_addr: Option<Ipv4Addr>,
    ) -> Result<Outbound, NatError> {
        let l4 = match parse(pkt) {
            Ok(l4) => l4,
            Err(e) => return self.refuse(e),
        };
        if l4.proto == ip_proto::ICMP && l4.icmp_type != ICMP_ECHO_REQUEST {
            return self.refuse(NatError::Unsupported);
        }
        let fwd = Fwd { tunnel, src: l4.src, dst: l4.dst, sport: l4.sport, dport: l4.dport, proto: l4.proto };
        let h = fwd.hash(self.cfg.seed);
        let mut new_flow = false;
        let e = match self.fwd.find(h, |e| self.entries[e as usize].fwd == fwd) {
            Some((_, e)) if self.entries[e as usize].expires > now => e,
            found => {
                if let Some((slot, e)) = found {
                    self.expire(slot, e);
                }
                let nat = nat_addr.map_or(l4.src, u32::from);
                match self.create(now, h, fwd, nat) {
                    Ok(e) => {
                        new_flow = true;
                        e
                    }
                    Err(err) => return self.refuse(err),
                }
            }
        };
        let (addr, port) = self.forward(now, e, &l4, pkt);
        Ok(Outbound { new_flow, addr: Ipv4Addr::from(addr), port })
    }

    /// The common tail of an outbound packet with entry `e`: TCP state, expiry, rewrite.
    #[inline]
    fn forward(&mut self, now: u64, e: u32, l4: &L4, pkt: &mut [u8]) -> (u32, u16) {
        let ent = &mut self.entries[e as usize];
        if ent.fwd.proto == ip_proto::TCP {
            let state = Self::tcp_state(ent.state, l4.tcp_flags);
            set_if_changed(&mut ent.state, state);
        }
        let (addr, port, proto, state) = (ent.nat_addr, ent.nat_port, ent.fwd.proto, ent.state);
        set_if_changed(&mut ent.expires, now.saturating_add(self.cfg.timeouts.of(proto, state)));
        if addr != l4.src || port != l4.sport {
            rewrite(pkt, l4, true, addr, port);
        }
        bump(&self.counters.outbound, 1);
        (addr, port)
    }

    /// Firewall and NAT in one pass for a packet a client sent through `tunnel`: the flow's
    /// entry is found with one hash; a known flow whose cached verdict came from `set` skips
    /// the policy lookup; otherwise `set` is consulted with `base` (interfaces and groups)
    /// completed from the packet. An accepted flow gets (or keeps) an entry — translated to
    /// `nat_addr` when the policy says `nat`, tracked as it is otherwise — and the packet is
    /// rewritten. Errors are the table's refusals (malformed, fragment, full, no port, a
    /// protocol NAT cannot translate); they are counted here.
    ///
    /// After a reload a known flow is checked again: still accepted, it keeps its translation
    /// (when the NAT setting is unchanged); denied, its entry is removed.
    #[inline]
    pub fn admit(
        &mut self,
        now: u64,
        tunnel: u32,
        pkt: &mut [u8],
        set: &PolicySet,
        base: &FlowKey,
        nat_addr: Ipv4Addr,
    ) -> Result<Admit, NatError> {
        let p = self.parse_outbound(tunnel, pkt)?;
        self.admit_parsed(now, &p, pkt, set, base, nat_addr)
    }

    /// Parses (and hashes) a decrypted packet from `tunnel` for [`ConnTable::admit_parsed`];
    /// refusals (malformed, fragment) are counted here.
    #[inline]
    pub fn parse_outbound(&self, tunnel: u32, pkt: &[u8]) -> Result<Parsed, NatError> {
        let l4 = match parse_any(pkt) {
            Ok(l4) => l4,
            Err(e) => return self.refuse(e),
        };
        let hash = if l4.trackable() { l4.fwd(tunnel).hash(self.cfg.seed) } else { 0 };
        Ok(Parsed { l4, hash, tunnel, reply: false })
    }

    /// Starts loading the index slot ([`Prefetch::Index`]) or, a pass later, the entry
    /// ([`Prefetch::Entry`]) a parsed packet will use.
    #[inline]
    pub fn prefetch(&self, p: &Parsed, stage: Prefetch) {
        if p.reply {
            self.prefetch_hash(&self.rev, p.hash, stage);
        } else if p.l4.trackable() {
            self.prefetch_hash(&self.fwd, p.hash, stage);
        }
    }

    /// [`ConnTable::admit`] for a packet parsed by [`ConnTable::parse_outbound`].
    #[inline]
    pub fn admit_parsed(
        &mut self,
        now: u64,
        p: &Parsed,
        pkt: &mut [u8],
        set: &PolicySet,
        base: &FlowKey,
        nat_addr: Ipv4Addr,
    ) -> Result<Admit, NatError> {
        let l4 = p.l4;
        if !l4.trackable() {
            return self.admit_untracked(&l4, set, base);
        }
        let fwd = l4.fwd(p.tunnel);
        let h = p.hash;
        let entries = &self.entries;
        let found = self.fwd.find(h, |e| entries[e as usize].fwd == fwd).map(|(_, e)| e);
        let mut new_flow = false;
        let (e, verdict) = match found {
            Some(e) if self.entries[e as usize].expires > now => {
                let ent = &self.entries[e as usize];
                match ent.verdict {
                    Some(v) if v.is_from(set) => (e, v),
                    cached => {
                        let v = set.lookup(&l4.key(base));
                        let want = if v.nat { u32::from(nat_addr) } else { l4.src };
                        if !v.accepts() {
                            self.remove(e);
                            return Ok(Admit::Denied(v));
                        }
                        if cached.is_some() && ent.nat_addr != want {
                            // NAT switched on or off (or the egress address moved): a new
                            // translation is a new flow as far as the server can tell.
                            self.remove(e);
                            match self.create(now, h, fwd, want) {
                                Ok(e) => {
                                    new_flow = true;
                                    (e, v)
                                }
                                Err(err) => return self.refuse(err),
                            }
                        } else {
                            (e, v)
                        }
                    }
                }
            }
            found => {
                if let Some(e) = found {
                    self.remove(e);
                    bump(&self.counters.expired, 1);
                }
                let v = set.lookup(&l4.key(base));
                if !v.accepts() {
                    return Ok(Admit::Denied(v));
                }
                let want = if v.nat { u32::from(nat_addr) } else { l4.src };
                match self.create(now, h, fwd, want) {
                    Ok(e) => {
                        new_flow = true;
                        (e, v)
                    }
                    Err(err) => return self.refuse(err),
                }
            }
        };
        set_if_changed(&mut self.entries[e as usize].verdict, Some(verdict));
        self.forward(now, e, &l4, pkt);
        Ok(Admit::Tracked { verdict, new_flow })
    }

    #[cold]
    fn admit_untracked(&self, l4: &L4, set: &PolicySet, base: &FlowKey) -> Result<Admit, NatError> {
        let v = set.lookup(&l4.key(base));
        if !v.accepts() {
            Ok(Admit::Denied(v))
        } else if v.nat {
            self.refuse(NatError::Unsupported)
        } else {
            Ok(Admit::Untracked(v))
        }
    }

    fn create(&mut self, now: u64, h: u32, fwd: Fwd, nat: u32) -> Result<u32, NatError> {
        let t = fwd.tunnel as usize;
        let Some(&in_tunnel) = self.per_tunnel.get(t) else {
            return Err(NatError::BadTunnel);
        };
        if self.free.is_empty() {
            return Err(NatError::TableFull);
        }
        if in_tunnel >= self.cfg.per_tunnel {
            return Err(NatError::TunnelFull);
        }
        let port = self.pick_port(&fwd, nat, h)?;
        let Some(e) = self.free.pop() else {
            return Err(NatError::TableFull);
        };
        let state = OPENING;
        self.entries[e as usize] = Entry {
            fwd,
            nat_addr: nat,
            nat_port: port,
            state,
            live: true,
            expires: now.saturating_add(self.timeout(fwd.proto, state)),
            verdict: None,
        };
        self.fwd.insert(h, e);
        let rev = self.entries[e as usize].rev();
        self.rev.insert(rev.hash(self.cfg.seed), e);
        self.per_tunnel[t] += 1;
        bump(&self.counters.created, 1);
        bump(&self.counters.live, 1);
        Ok(e)
    }

    /// A port (ICMP id) for the flow whose reply tuple is free and, with steering, whose reply
    /// RSS sends here. Without NAT (`nat == fwd.src`) the client's own port, if free.
    fn pick_port(&self, fwd: &Fwd, nat: u32, h: u32) -> Result<u16, NatError> {
        let mut rev = Rev { src: fwd.dst, dst: nat, sport: fwd.dport, dport: fwd.sport, proto: fwd.proto };
        let taken = |rev: &Rev| {
            let entries = &self.entries;
            self.rev.find(rev.hash(self.cfg.seed), |e| entries[e as usize].rev() == *rev).is_some()
        };
        if nat == fwd.src {
            return if taken(&rev) { Err(NatError::NoPort) } else { Ok(fwd.sport) };
        }
        let (lo, hi) = (self.cfg.port_lo.min(self.cfg.port_hi), self.cfg.port_hi.max(self.cfg.port_lo));
        let n = u32::from(hi - lo) + 1;
        let base =
            self.cfg.steer.as_ref().filter(|_| fwd.proto != ip_proto::ICMP).map(|s| s.base(rev.src, nat, rev.sport));
        let start = h.rotate_left(16) % n;
        for t in 0..self.cfg.max_port_tries.min(n) {
            let port = lo + ((start + t) % n) as u16;
            // The NAT address is the gateway's own: a reply to port 500 or 4500 there would be
            // taken for IKE or ESP in UDP (RFC 3948), so those are never handed out (ICMP ids
            // are not ports and may take any value).
            if fwd.proto != ip_proto::ICMP && (port == IKE_PORT || port == NATT_PORT) {
                continue;
            }
            if let (Some(s), Some(b)) = (&self.cfg.steer, base) {
                if !s.accepts(b, port) {
                    continue;
                }
            }
            rev.dport = port;
            if !taken(&rev) {
                return Ok(port);
            }
        }
        Err(NatError::NoPort)
    }

    /// Translates a reply arriving from the LAN back to the client and says which tunnel it
    /// belongs to.
    pub fn reply(&mut self, now: u64, pkt: &mut [u8]) -> Result<Reply, NatError> {
        let p = self.parse_reply(pkt)?;
        self.reply_parsed(now, &p, pkt)
    }

    /// Parses (and hashes) a packet from the LAN for [`ConnTable::reply_parsed`]; refusals
    /// are counted here.
    #[inline]
    pub fn parse_reply(&self, pkt: &[u8]) -> Result<Parsed, NatError> {
        let l4 = match parse(pkt) {
            Ok(l4) => l4,
            Err(e) => return self.refuse(e),
        };
        if l4.proto == ip_proto::ICMP && l4.icmp_type != ICMP_ECHO_REPLY {
            return self.refuse(NatError::Unsupported);
        }
        let hash = Self::rev_of(&l4).hash(self.cfg.seed);
        Ok(Parsed { l4, hash, tunnel: 0, reply: true })
    }

    /// The reply tuple of a packet from the LAN (ICMP: the echo id is the destination "port").
    #[inline]
    fn rev_of(l4: &L4) -> Rev {
        let (sport, dport) = if l4.proto == ip_proto::ICMP { (0, l4.sport) } else { (l4.sport, l4.dport) };
        Rev { src: l4.src, dst: l4.dst, sport, dport, proto: l4.proto }
    }

    /// [`ConnTable::reply`] for a packet parsed by [`ConnTable::parse_reply`].
    #[inline]
    pub fn reply_parsed(&mut self, now: u64, p: &Parsed, pkt: &mut [u8]) -> Result<Reply, NatError> {
        let l4 = p.l4;
        let rev = Self::rev_of(&l4);
        let dport = rev.dport;
        let entries = &self.entries;
        let e = match self.rev.find(p.hash, |e| entries[e as usize].rev() == rev) {
            Some((_, e)) if self.entries[e as usize].expires > now => e,
            Some((_, e)) => {
                self.remove(e);
                bump(&self.counters.expired, 1);
                return self.refuse(NatError::NoEntry);
            }
            None => return self.refuse(NatError::NoEntry),
        };
        let ent = &mut self.entries[e as usize];
        let state = match ent.fwd.proto {
            ip_proto::TCP => Self::tcp_state(if ent.state == OPENING { ESTABLISHED } else { ent.state }, l4.tcp_flags),
            _ => ESTABLISHED,
        };
        set_if_changed(&mut ent.state, state);
        let (client, cport, tunnel, proto, state, verdict) =
            (ent.fwd.src, ent.fwd.sport, ent.fwd.tunnel, ent.fwd.proto, ent.state, ent.verdict);
        set_if_changed(&mut ent.expires, now.saturating_add(self.cfg.timeouts.of(proto, state)));
        if client != l4.dst || cport != dport {
            // For ICMP, `rewrite` puts the port into the echo id.
            rewrite(pkt, &l4, false, client, cport);
        }
        bump(&self.counters.replies, 1);
        Ok(Reply { tunnel, client: Ipv4Addr::from(client), verdict })
    }

    fn expire(&mut self, _slot: usize, e: u32) {
        self.remove(e);
        bump(&self.counters.expired, 1);
    }

    fn remove(&mut self, e: u32) {
        let ent = self.entries[e as usize];
        if !ent.live {
            return;
        }
        let seed = self.cfg.seed;
        let entries = &self.entries;
        if let Some((slot, _)) = self.fwd.find(ent.fwd.hash(seed), |x| x == e) {
            self.fwd.remove(slot);
        }
        let rev = ent.rev();
        if let Some((slot, _)) = self.rev.find(rev.hash(seed), |x| entries[x as usize].live && x == e) {
            self.rev.remove(slot);
        }
        self.entries[e as usize].live = false;
        if let Some(c) = self.per_tunnel.get_mut(ent.fwd.tunnel as usize) {
            *c = c.saturating_sub(1);
        }
        self.free.push(e);
        let live = self.counters.live.load(Ordering::Relaxed);
        self.counters.live.store(live.saturating_sub(1), Ordering::Relaxed);
    }

    /// Looks at up to `budget` entry slots from where the last sweep stopped and removes those
    /// expired at `now`; returns how many were removed.
    pub fn sweep(&mut self, now: u64, budget: usize) -> usize {
        let n = self.entries.len();
        if n == 0 {
            return 0;
        }
        let mut removed = 0;
        for _ in 0..budget.min(n) {
            let e = self.cursor;
            self.cursor = (self.cursor + 1) % n;
            let ent = &self.entries[e];
            if ent.live && ent.expires <= now {
                self.remove(e as u32);
                removed += 1;
            }
        }
        bump(&self.counters.expired, removed as u64);
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_backward_shift_keeps_every_member_reachable() {
        let mut ix = Index::new(8);
        // Eight entries all homed at slot 3, then remove from the middle.
        for e in 0..8 {
            ix.insert(3, e);
        }
        ix.remove(ix.find(3, |e| e == 2).unwrap().0);
        ix.remove(ix.find(3, |e| e == 5).unwrap().0);
        for e in [0, 1, 3, 4, 6, 7] {
            assert!(ix.find(3, |x| x == e).is_some(), "entry {e}");
        }
        assert!(ix.find(3, |x| x == 2).is_none());
        assert_eq!(ix.slots.iter().filter(|&&s| s != 0).count(), 6);
    }

    #[test]
    fn an_entry_is_one_cache_line() {
        assert_eq!(core::mem::size_of::<Entry>(), 64);
    }

    #[test]
    fn rfc1624_incremental_update_matches_recompute() {
        // RFC 1624 §4 example: HC = 0xdd2f, m = 0x5555 -> m' = 0x3285 gives HC' = 0x0000.
        let mut d = Delta(0);
        d.word(0x5555, 0x3285);
        assert_eq!(d.apply(0xdd2f), 0x0000);
    }
}
