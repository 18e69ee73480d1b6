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
//! - With a firewall policy ([`crate::policy::PolicySet`]): [`ConnTable::parse_outbound`],
//!   then [`ConnTable::admit_parsed`], does the policy check and the translation in one lookup, caching the verdict in the entry so a
//!   known flow skips the policy until the set is replaced. A worker that prefetches parses
//!   once, into where it keeps the flow ([`ConnTable::parse_outbound_into`] /
//!   [`ConnTable::parse_reply_into`]), prefetches the index slot with the result
//!   ([`ConnTable::prefetch`]), a few packets later the entry ([`ConnTable::prefetch_entry`],
//!   which remembers it in the parsed flow), and translates ([`ConnTable::admit_known`], else
//!   [`ConnTable::admit_parsed`]; [`ConnTable::reply_verdict`]) starting from that entry.
//!   A translated flow's checksum updates are sums computed when its entry is made.
//! - The worker's session fast path: [`ConnTable::forward_fast`]
//!   for a known flow whose entry caches its next hop ([`Hop`], [`ConnTable::set_hop`]);
//!   [`ConnTable::reply_fast`] for a known flow's reply. Both check without changing anything
//!   first, so a miss takes the full way uncounted.
//!
//! Where an entry lives: at its reply tuple's home (`ConnTable::reply_home`: the reply hash
//! mapped onto the entries), when that entry is free — a NAT'd flow tries up to 64 ports for
//! one whose home is free (98 % of flows of a full table are at home in the test). A reply
//! then needs no index: its parse names the home as the candidate, the prefetch loads that
//! one line, and the lookup checks the key there (the reply index is the way for the rest).
//! Outbound packets go through the forward index as before.
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
//! flow, 54 ns a packet owned, 58 ns behind an uncontended mutex, and two threads sharing the
//! mutex 78 ns a packet together, slower than one thread alone — per-worker tables scale with
//! workers, a shared one does not). For a burst, prefetch ([`ConnTable::prefetch_outbound`]) in two
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
use crate::policy::{FlowKey, PolicySet, Verdict, VerdictTag};
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
            ip_proto::TCP => self.tcp(state),
            ip_proto::UDP => self.udp,
            _ => self.icmp,
        }
    }

    /// A TCP connection's timeout in `state`.
    #[inline(always)]
    fn tcp(&self, state: u8) -> u64 {
        if state == ESTABLISHED {
            self.tcp_established
        } else {
            self.tcp_transitory
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
    /// Outbound packets a worker sent on their entry's cached hop (the session fast path; also
    /// in `outbound`).
    pub fast: AtomicU64,
    /// Replies a worker translated on the session fast path, straight on to their client's
    /// tunnel (also in `replies`).
    pub fast_replies: AtomicU64,
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
#[derive(Clone, Copy, Debug, Default)]
pub struct Parsed {
    l4: L4,
    /// The forward (outbound) or reply hash; 0 for an untracked protocol.
    hash: u32,
    /// [`L4::trackable`], asked once.
    tracked: bool,
    /// The entry the flow is looked for in first, plus one (0: none): for a tunnel packet the
    /// one [`ConnTable::prefetch_entry`] loaded, for a reply its home (set by the parse).
    cand: u32,
    tunnel: u32,
    reply: bool,
}

impl Parsed {
    /// The entry [`ConnTable::prefetch_entry`] found for the flow (a hint, checked before
    /// use), if it found one.
    pub fn candidate(&self) -> Option<u32> {
        self.cand.checked_sub(1)
    }
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

/// Index slots an entry prefetch looks through for the flow's hash. At the index's load about
/// 1 % of flows sit 4 or more slots from home: with a limit of 4 their entries were not
/// prefetched, and each of those packets waited for DRAM twice in the park's run (index, then
/// entry) — 9 cycles per packet on average at 100 000 flows. Reading on, sometimes into the next
/// index line, costs less; 16 covers all but a few in 10 000 (8 and 32 measured slower).
const PREFETCH_PROBES: usize = 16;

/// `ConnTable::free_at` of an entry in use.
const NOT_FREE: u32 = u32::MAX;

/// Port candidates a new NAT'd flow tries for one whose reply tuple's home entry is free.
const HOME_TRIES: u32 = 64;

#[inline(always)]
fn prefetch<T>(p: &T) {
    prefetch_at(p as *const T);
}

/// [`prefetch`] of an address that need not be valid.
#[inline(always)]
fn prefetch_at<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it never faults or changes memory, whatever the address.
    // SSE (which provides it) is part of the x86_64 baseline.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast());
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
    /// The verdict that admitted the flow ([`ConnTable::admit_parsed`]), to count the reply under the
    /// same policy; `None` for entries made by [`ConnTable::outbound`].
    pub verdict: Option<VerdictTag>,
}

/// What [`ConnTable::admit_parsed`] decided for a packet from a tunnel.
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
    /// The verdict that admitted the flow ([`VerdictTag`] parts; stamp 0: none), cached so a
    /// packet of a known flow skips the policy lookup while the set that gave it is still the
    /// running one. Kept as two fields: a whole `Verdict` would leave no room for `hop`.
    stamp: u32,
    slot: u16,
    /// Where the flow's packets leave, for the worker's session fast path.
    hop: Hop,
    /// Checksum adjustments of the translation, fixed for the life of the entry.
    sums: Sums,
}

/// The link a known flow's packets leave by (port and next hop's MAC address), cached in its
/// entry by a worker so that they skip the route and neighbour lookups: the session fast path
/// (`worker::firewall`). Valid while `gen` is the worker's route generation, which changes
/// with every route or neighbour change; 0 is never one, so a new entry has none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hop {
    /// The worker's route generation when the hop was found.
    pub gen: u32,
    /// Egress port.
    pub port: u16,
    /// The next hop's MAC address.
    pub mac: [u8; 6],
}

const _: () = assert!(core::mem::size_of::<Entry>() == 64, "an entry is one cache line");

/// The RFC 1624 sums (Σ ~old + new, folded) that a flow's translation adds to the IPv4 and L4
/// checksums, one pair per direction. Old and new values are the same for every packet of
/// the flow, so they are summed once when the entry is made rather than per packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Sums {
    /// Whether packets are rewritten at all (false for a tracked, untranslated flow).
    translated: bool,
    fwd_ip: u16,
    fwd_l4: u16,
    rev_ip: u16,
    rev_l4: u16,
}

impl Sums {
    fn of(fwd: &Fwd, nat_addr: u32, nat_port: u16) -> Sums {
        let one_way = |from_addr: u32, from_port: u16, to_addr: u32, to_port: u16| {
            let mut ip = Delta(0);
            ip.addr(from_addr, to_addr);
            let mut l4 = Delta(0);
            // ICMP has no pseudo-header: only the echo id enters its checksum.
            if fwd.proto != ip_proto::ICMP {
                l4.addr(from_addr, to_addr);
            }
            l4.word(from_port, to_port);
            (checksum::fold(ip.0), checksum::fold(l4.0))
        };
        let (fwd_ip, fwd_l4) = one_way(fwd.src, fwd.sport, nat_addr, nat_port);
        let (rev_ip, rev_l4) = one_way(nat_addr, nat_port, fwd.src, fwd.sport);
        Sums { translated: nat_addr != fwd.src || nat_port != fwd.sport, fwd_ip, fwd_l4, rev_ip, rev_l4 }
    }
}

impl Entry {
    #[inline(always)]
    fn verdict(&self) -> Option<VerdictTag> {
        VerdictTag::from_parts(self.stamp, self.slot)
    }

    /// Whether this is the entry of tunnel packet `p`'s flow ([`Fwd`] equality, field by field).
    #[inline(always)]
    fn carries(&self, p: &Parsed) -> bool {
        let (f, l4) = (&self.fwd, &p.l4);
        f.src == l4.src
            && f.dst == l4.dst
            && f.sport == l4.sport
            && f.dport == l4.dport
            && f.proto == l4.proto
            && f.tunnel == p.tunnel
    }

    /// Whether reply `p` (parsed by [`ConnTable::parse_reply`]) answers this entry's flow
    /// ([`Rev`] equality with [`Entry::rev`], field by field).
    #[inline(always)]
    fn answered_by(&self, p: &Parsed) -> bool {
        let l4 = &p.l4;
        self.fwd.dst == l4.src
            && self.nat_addr == l4.dst
            && self.fwd.dport == l4.sport
            && self.nat_port == l4.dport
            && self.fwd.proto == l4.proto
    }

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

#[inline(always)]
fn mix(seed: u64, a: u64, b: u64) -> u32 {
    let mut h = (a ^ seed).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h = (h.rotate_left(29) ^ b).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 31;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    (h >> 32) as u32
}

impl Fwd {
    #[inline(always)]
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
    /// The reply tuple of a packet from the LAN parsed for a reply (`parse_into::<true>`).
    #[inline(always)]
    fn of_reply(l4: &L4) -> Rev {
        Rev { src: l4.src, dst: l4.dst, sport: l4.sport, dport: l4.dport, proto: l4.proto }
    }

    #[inline(always)]
    fn hash(&self, seed: u64) -> u32 {
        let a = (u64::from(self.src) << 32) | u64::from(self.dst);
        let b = (u64::from(self.proto) << 32) ^ (u64::from(self.sport) << 16) ^ u64::from(self.dport);
        mix(seed ^ 0x7265_7665_7273_6521, a, b)
    }
}

/// An open-addressed index of 4-byte slots: the entry plus one in the low bits (as many as
/// the capacity needs), the top bits of the flow's hash above them (a tag that rules out
/// almost every other flow without reading its entry); 0 = empty. Half the memory of slots
/// holding the whole hash (1 MiB instead of 2 at 131 072 entries); throughput measured the
/// same either way (`bench/README.md`).
#[derive(Debug)]
struct Index {
    slots: HugeSlice<u32>,
    mask: usize,
    /// The low bits of a slot that hold entry + 1.
    emask: u32,
}

impl Index {
    fn new(capacity: u32) -> Index {
        // At most 50 % load: probes stay short and an empty slot always ends a search.
        let n = (capacity as usize * 2).next_power_of_two().max(16);
        let ebits = 32 - capacity.leading_zeros();
        let emask = u32::MAX.checked_shr(32 - ebits).unwrap_or(0);
        Index { slots: HugeSlice::new(n, 0), mask: n - 1, emask }
    }

    /// The entry a full slot names.
    #[inline(always)]
    fn entry(&self, s: u32) -> u32 {
        (s & self.emask).wrapping_sub(1)
    }

    /// Whether full slot `s` may be a flow with hash `h` (its tag matches).
    #[inline(always)]
    fn tagged(&self, s: u32, h: u32) -> bool {
        (s ^ h) & !self.emask == 0
    }

    #[inline]
    fn find(&self, h: u32, mut eq: impl FnMut(u32) -> bool) -> Option<(usize, u32)> {
        let mut i = h as usize & self.mask;
        loop {
            let s = self.slots[i];
            if s == 0 {
                return None;
            }
            if self.tagged(s, h) && eq(self.entry(s)) {
                return Some((i, self.entry(s)));
            }
            i = (i + 1) & self.mask;
        }
    }

    fn insert(&mut self, h: u32, e: u32) {
        let mut i = h as usize & self.mask;
        while self.slots[i] != 0 {
            i = (i + 1) & self.mask;
        }
        self.slots[i] = (h & !self.emask) | (e + 1);
    }

    /// Empties `slot` and shifts later members of the probe run back (no tombstones).
    /// `hash_of` gives an entry's hash (a slot keeps only its top bits).
    fn remove(&mut self, mut hole: usize, hash_of: impl Fn(u32) -> u32) {
        let mut j = hole;
        loop {
            j = (j + 1) & self.mask;
            let s = self.slots[j];
            if s == 0 {
                break;
            }
            let home = hash_of(self.entry(s)) as usize & self.mask;
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
#[derive(Clone, Copy, Debug, Default)]
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

#[inline(always)]
fn parse(pkt: &[u8]) -> Result<L4, NatError> {
    let l4 = parse_any(pkt)?;
    match l4.proto {
        ip_proto::TCP | ip_proto::UDP | ip_proto::ICMP => Ok(l4),
        _ => Err(NatError::Unsupported),
    }
}

impl L4 {
    /// Whether the table can follow the flow (and find its replies).
    #[inline(always)]
    fn trackable(&self) -> bool {
        match self.proto {
            ip_proto::TCP | ip_proto::UDP => true,
            ip_proto::ICMP => self.icmp_type == ICMP_ECHO_REQUEST,
            _ => false,
        }
    }

    #[inline(always)]
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
    let mut l4 = L4::default();
    parse_into::<false>(pkt, &mut l4)?;
    Ok(l4)
}

/// [`parse_any`] into `r`, field by field (`r` is left in an unspecified state on error).
///
/// This runs for every packet through the firewall. The fixed header is read once as an
/// array (one bounds check, not one per field), and the fields are stored straight where the
/// worker keeps them: building the struct on the stack and copying it over read back, with
/// wide loads, what narrow stores had just written, and the failed store forwarding cost
/// more than the parse.
///
/// With `REPLY`, for a packet from the LAN that may be a reply ([`ConnTable::parse_reply`]):
/// TCP, UDP and ICMP echo replies only (anything else is `Unsupported`), and the ports are
/// the reply tuple's (ICMP: the echo id is the destination "port", the source 0), so the
/// tuple is the parsed fields as they are ([`Rev::of_reply`]).
#[inline(always)]
fn parse_into<const REPLY: bool>(pkt: &[u8], r: &mut L4) -> Result<(), NatError> {
    let Some(h) = pkt.first_chunk::<20>() else { return Err(NatError::Malformed) };
    let off = usize::from(h[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if h[0] >> 4 != 4 || off < 20 || total < off || total > pkt.len() {
        return Err(NatError::Malformed);
    }
    // More-fragments flag or a fragment offset.
    if u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0 {
        return Err(NatError::Fragment);
    }
    let proto = h[9];
    let l4 = &pkt[off..total];
    let (sport, dport, icmp_type, tcp_flags) = match proto {
        ip_proto::TCP => {
            let Some(t) = l4.first_chunk::<20>() else { return Err(NatError::Malformed) };
            (get16(t, 0), get16(t, 2), 0, t[13])
        }
        ip_proto::UDP => {
            let Some(u) = l4.first_chunk::<8>() else { return Err(NatError::Malformed) };
            (get16(u, 0), get16(u, 2), 0, 0)
        }
        ip_proto::ICMP => {
            let Some(i) = l4.first_chunk::<8>() else { return Err(NatError::Malformed) };
            if !REPLY {
                (get16(i, 4), 0, i[0], 0)
            } else if i[0] == ICMP_ECHO_REPLY {
                (0, get16(i, 4), i[0], 0)
            } else {
                return Err(NatError::Unsupported);
            }
        }
        _ if REPLY => return Err(NatError::Unsupported),
        _ => (0, 0, 0, 0),
    };
    r.proto = proto;
    r.off = off as u8;
    r.src = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
    r.dst = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
    r.sport = sport;
    r.dport = dport;
    r.icmp_type = icmp_type;
    r.tcp_flags = tcp_flags;
    Ok(())
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
}

#[inline(always)]
fn get16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline(always)]
fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// RFC 1624 eqn. 3 with the changed words' terms summed beforehand: HC' = ~(~HC + sum).
#[inline(always)]
fn adjust(hc: u16, sum: u16) -> u16 {
    !add16(!hc, sum)
}

/// One's-complement sum of two 16-bit values: one end-around carry is enough (at most
/// 0xfffe + 1), where [`checksum::fold`] of a longer sum needs two.
#[inline(always)]
fn add16(a: u16, b: u16) -> u16 {
    let s = u32::from(a) + u32::from(b);
    ((s & 0xffff) + (s >> 16)) as u16
}

/// RFC 1624's ~m + m' for a TTL decrement: the TTL is the high byte of IPv4 header word 4,
/// so it is 0xfeff whatever the protocol byte beside it.
const TTL_SUM: u16 = 0xfeff;

/// [`translate`] for a translated flow, else nothing; with `TTL` also the TTL decrement of
/// a forwarded packet (TTL above 1, checked by the caller), folded into the same checksum
/// update when there is a translation.
#[inline(always)]
fn rewrite<const TTL: bool>(
    pkt: &mut [u8],
    l4: &L4,
    outbound: bool,
    addr: u32,
    port: u16,
    translated: bool,
    (ip_sum, l4_sum): (u16, u16),
) {
    if !translated {
        if TTL && pkt.len() >= ipv4::HEADER_LEN {
            ipv4::Packet::new_unchecked(pkt).decrement_hop_limit();
        }
        return;
    }
    let ip_sum = if TTL && pkt.len() >= usize::from(l4.off).max(ipv4::HEADER_LEN) {
        pkt[8] = pkt[8].wrapping_sub(1);
        add16(ip_sum, TTL_SUM)
    } else {
        ip_sum
    };
    translate(pkt, l4, outbound, addr, port, (ip_sum, l4_sum));
}

/// A packet of `ent`'s flow on its way out: TCP state, expiry (by `timeouts`, one dispatch on
/// the protocol for both), and the rewrite to the NAT address and port ([`rewrite`]).
#[inline(always)]
fn translate_out<const TTL: bool>(ent: &mut Entry, timeouts: &Timeouts, now: u64, l4: &L4, pkt: &mut [u8]) {
    let timeout = match ent.fwd.proto {
        ip_proto::TCP => {
            let state = ConnTable::tcp_state(ent.state, l4.tcp_flags);
            set_if_changed(&mut ent.state, state);
            timeouts.tcp(state)
        }
        ip_proto::UDP => timeouts.udp,
        _ => timeouts.icmp,
    };
    set_if_changed(&mut ent.expires, now.saturating_add(timeout));
    let sums = ent.sums;
    rewrite::<TTL>(pkt, l4, true, ent.nat_addr, ent.nat_port, sums.translated, (sums.fwd_ip, sums.fwd_l4));
}

/// A reply of `ent`'s flow: TCP state, expiry (by `timeouts`), and the rewrite back to the
/// client ([`rewrite`]); the verdict that admitted the flow.
#[inline(always)]
fn translate_back<const TTL: bool>(
    ent: &mut Entry,
    timeouts: &Timeouts,
    now: u64,
    l4: &L4,
    pkt: &mut [u8],
) -> Option<VerdictTag> {
    // One dispatch on the protocol for both the state and its timeout.
    let (state, timeout) = match ent.fwd.proto {
        ip_proto::TCP => {
            let state = ConnTable::tcp_state(if ent.state == OPENING { ESTABLISHED } else { ent.state }, l4.tcp_flags);
            (state, timeouts.tcp(state))
        }
        ip_proto::UDP => (ESTABLISHED, timeouts.udp),
        _ => (ESTABLISHED, timeouts.icmp),
    };
    set_if_changed(&mut ent.state, state);
    set_if_changed(&mut ent.expires, now.saturating_add(timeout));
    let sums = ent.sums;
    // For ICMP, `translate` puts the port into the echo id.
    rewrite::<TTL>(pkt, l4, false, ent.fwd.src, ent.fwd.sport, sums.translated, (sums.rev_ip, sums.rev_l4));
    ent.verdict()
}

/// Rewrites a packet of an entry's flow: the source address and port (ICMP: echo id) on the
/// way out, the destination on the way back, adjusting the checksums by the entry's
/// precomputed sums ([`Sums`]). `parse_any` has checked that the headers are there.
#[inline(always)]
fn translate(pkt: &mut [u8], l4: &L4, outbound: bool, addr: u32, port: u16, (ip_sum, l4_sum): (u16, u16)) {
    // Fixed-size views: one bounds check each instead of one per field.
    let (ip, rest) = pkt.split_at_mut(usize::from(l4.off).min(pkt.len()));
    let Some(ip) = ip.first_chunk_mut::<20>() else { return };
    let hc = get16(ip, 10);
    put16(ip, 10, adjust(hc, ip_sum));
    let addr_at = if outbound { 12 } else { 16 };
    ip[addr_at..addr_at + 4].copy_from_slice(&addr.to_be_bytes());
    let Some(l4h) = rest.first_chunk_mut::<8>() else { return };
    let port_at = if outbound { 0 } else { 2 };
    match l4.proto {
        ip_proto::TCP => {
            put16(l4h, port_at, port);
            if let Some(tcp) = rest.first_chunk_mut::<20>() {
                let hc = get16(tcp, 16);
                put16(tcp, 16, adjust(hc, l4_sum));
            }
        }
        ip_proto::UDP => {
            let hc = get16(l4h, 6);
            // RFC 768: a zero checksum means none was computed; it stays zero, and a computed
            // zero is sent as all ones.
            if hc != 0 {
                let v = adjust(hc, l4_sum);
                put16(l4h, 6, if v == 0 { 0xffff } else { v });
            }
            put16(l4h, port_at, port);
        }
        _ => {
            let hc = get16(l4h, 2);
            put16(l4h, 2, adjust(hc, l4_sum));
            put16(l4h, 4, port);
        }
    }
}

/// A worker's connection table. See the module documentation.
#[derive(Debug)]
pub struct ConnTable {
    cfg: NatConfig,
    entries: HugeSlice<Entry>,
    /// Free entries (a stack), and each entry's position in it ([`NOT_FREE`] when in use), so
    /// that a chosen entry can be taken out of the middle (`take_free`).
    free: Vec<u32>,
    free_at: Box<[u32]>,
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
            stamp: 0,
            slot: 0,
            hop: Hop::default(),
            sums: Sums::default(),
        };
        ConnTable {
            entries: HugeSlice::new(cap as usize, empty),
            free: (0..cap).rev().collect(),
            free_at: (0..cap).map(|e| cap - 1 - e).collect(),
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
            let _ = self.prefetch_hash(&self.fwd, l4.fwd(tunnel).hash(self.cfg.seed), stage);
        }
    }

    /// The same as [`ConnTable::prefetch_outbound`] for [`ConnTable::reply`].
    #[inline]
    pub fn prefetch_reply(&self, pkt: &[u8], stage: Prefetch) {
        let mut l4 = L4::default();
        if parse_into::<true>(pkt, &mut l4).is_ok() {
            let _ = self.prefetch_hash(&self.rev, Rev::of_reply(&l4).hash(self.cfg.seed), stage);
        }
    }

    /// Returns, for [`Prefetch::Entry`], the entry prefetched (the first in the probe run with
    /// the flow's hash: the flow's own, unless another flow shares the hash).
    #[inline(always)]
    fn prefetch_hash(&self, ix: &Index, h: u32, stage: Prefetch) -> Option<u32> {
        let i = h as usize & ix.mask;
        match stage {
            Prefetch::Index => {
                // `i` is masked into the index; a prefetch cannot fault anyway.
                prefetch_at(ix.slots.as_ptr().wrapping_add(i));
                None
            }
            Prefetch::Entry => {
                // The first slot of the probe run with the flow's hash: at the index's load a
                // quarter of flows are not in their home slot, and prefetching the home slot's
                // entry would load someone else's.
                let mut i = i;
                for _ in 0..PREFETCH_PROBES {
                    let s = ix.slots[i];
                    if s == 0 {
                        return None;
                    }
                    if ix.tagged(s, h) {
                        let e = ix.entry(s);
                        // A slot names an entry of the table; a prefetch cannot fault anyway.
                        prefetch_at(self.entries.as_ptr().wrapping_add(e as usize));
                        return Some(e);
                    }
                    i = (i + 1) & ix.mask;
                }
                None
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
        let fwd = l4.fwd(tunnel);
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
        let (addr, port) = self.forward::<false>(now, e, &l4, pkt);
        Ok(Outbound { new_flow, addr: Ipv4Addr::from(addr), port })
    }

    /// The common tail of an outbound packet with entry `e`: TCP state, expiry, rewrite; with
    /// `TTL` also the TTL decrement, in the same checksum update.
    #[inline(always)]
    fn forward<const TTL: bool>(&mut self, now: u64, e: u32, l4: &L4, pkt: &mut [u8]) -> (u32, u16) {
        let ent = &mut self.entries[e as usize];
        translate_out::<TTL>(ent, &self.cfg.timeouts, now, l4, pkt);
        bump(&self.counters.outbound, 1);
        (ent.nat_addr, ent.nat_port)
    }

    /// Parses (and hashes) a decrypted packet from `tunnel` for [`ConnTable::admit_parsed`];
    /// refusals (malformed, fragment) are counted here.
    #[inline]
    pub fn parse_outbound(&self, tunnel: u32, pkt: &[u8]) -> Result<Parsed, NatError> {
        let mut p = Parsed::default();
        self.parse_outbound_into(tunnel, pkt, &mut p)?;
        Ok(p)
    }

    /// [`ConnTable::parse_outbound`] into `p` (left unspecified on error): a worker parses
    /// into where it keeps the flow until the packet goes through (parsing into a temporary
    /// and copying it over stalled store forwarding).
    #[inline(always)]
    pub fn parse_outbound_into(&self, tunnel: u32, pkt: &[u8], p: &mut Parsed) -> Result<(), NatError> {
        if let Err(e) = parse_into::<false>(pkt, &mut p.l4) {
            return self.refuse(e);
        }
        p.tracked = p.l4.trackable();
        p.hash = if p.tracked { p.l4.fwd(tunnel).hash(self.cfg.seed) } else { 0 };
        p.tunnel = tunnel;
        p.reply = false;
        p.cand = 0;
        Ok(())
    }

    /// Starts loading the index slot ([`Prefetch::Index`]) or, a pass later, the entry
    /// ([`Prefetch::Entry`]) a parsed packet will use.
    #[inline(always)]
    pub fn prefetch(&self, p: &Parsed, stage: Prefetch) {
        if p.reply {
            // A reply's entry is found at its home without the index (see `pick_port`).
            // The home is always an entry of the table (`reply_home`); a prefetch of any
            // address is harmless anyway, so there is nothing to check.
            if stage == Prefetch::Index {
                prefetch_at(self.entries.as_ptr().wrapping_add(p.cand.wrapping_sub(1) as usize));
            }
        } else if p.tracked {
            let _ = self.prefetch_hash(&self.fwd, p.hash, stage);
        }
    }

    /// [`Prefetch::Entry`] that also remembers in `p` which entry it loaded, so the
    /// translation starts from the entry (checked to be the flow's) instead of going through
    /// the index again: one dependent load less on every packet's way.
    #[inline(always)]
    pub fn prefetch_entry(&self, p: &mut Parsed) {
        // A reply's candidate is its home entry, loading since `prefetch`.
        if p.reply || !p.tracked {
            return;
        }
        p.cand = self.prefetch_hash(&self.fwd, p.hash, Prefetch::Entry).map_or(0, |e| e + 1);
    }

    /// The live entry of a parsed tunnel packet's flow: the prefetched candidate if it is that
    /// flow's (a flow has one live entry, so a matching key is proof), else through the index.
    /// The key is compared with the parsed fields where they lie: a copy of it to compare
    /// with went through the stack, five stores and loads per packet.
    #[inline(always)]
    fn find_fwd(&self, p: &Parsed) -> Option<u32> {
        if let Some(e) = p.cand.checked_sub(1) {
            if self.entries.get(e as usize).is_some_and(|x| x.live && x.carries(p)) {
                return Some(e);
            }
        }
        let entries = &self.entries;
        self.fwd.find(p.hash, |e| entries[e as usize].carries(p)).map(|(_, e)| e)
    }

    /// [`ConnTable::find_fwd`] for a parsed reply (reply tuples are unique in the table too).
    #[inline(always)]
    fn find_rev(&self, p: &Parsed) -> Option<u32> {
        if let Some(e) = p.cand.checked_sub(1) {
            if self.entries.get(e as usize).is_some_and(|x| x.live && x.answered_by(p)) {
                return Some(e);
            }
        }
        let entries = &self.entries;
        self.rev.find(p.hash, |e| entries[e as usize].answered_by(p)).map(|(_, e)| e)
    }

    /// Firewall and NAT in one pass for a packet a client sent through a tunnel, parsed by
    /// [`ConnTable::parse_outbound`]: the flow's entry is found with one hash; a known flow
    /// whose cached verdict came from `set` skips the policy lookup; otherwise `set` is
    /// consulted with `base` (interfaces and groups) completed from the packet. An accepted flow
    /// gets (or keeps) an entry — translated to `nat_addr` when the policy says `nat`, tracked
    /// as it is otherwise — and the packet is rewritten. Errors are the table's refusals (full,
    /// no port, a protocol NAT cannot translate); they are counted here.
    ///
    /// After a reload a known flow is checked again: still accepted, it keeps its translation
    /// (when the NAT setting is unchanged); denied, its entry is removed.
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
        if let Some(e) = self.known(now, p, set) {
            if let Some(verdict) = self.entries[e as usize].verdict().and_then(|t| set.verdict_of(t)) {
                self.forward::<false>(now, e, &p.l4, pkt);
                return Ok(Admit::Tracked { verdict, new_flow: false });
            }
        }
        self.admit_slow(now, p, pkt, set, base, nat_addr)
    }

    /// The common case of [`ConnTable::admit_parsed`], without the policy: a packet of a
    /// live flow whose cached verdict came from `set`, routed out of `port`, is translated and
    /// its verdict returned. `None`: anything else (new, expired, untracked, a verdict from an
    /// earlier set), which wants [`ConnTable::admit_parsed`]; the packet is untouched then.
    ///
    /// A flow whose entry cached a hop on another port than `port` has moved: its cached
    /// verdict (given for the old egress interface) and hop are forgotten here, so that
    /// [`ConnTable::admit_parsed`] asks the policy again.
    #[inline(always)]
    pub fn admit_known(
        &mut self,
        now: u64,
        p: &Parsed,
        pkt: &mut [u8],
        set: &PolicySet,
        port: u16,
    ) -> Option<VerdictTag> {
        let e = self.flow_entry(p)?;
        let ent = &mut self.entries[e as usize];
        if ent.hop.gen != 0 && ent.hop.port != port {
            ent.stamp = 0;
            ent.hop = Hop::default();
            return None;
        }
        if ent.stamp != set.stamp() || ent.expires <= now {
            return None;
        }
        self.forward::<false>(now, e, &p.l4, pkt);
        self.entries[e as usize].verdict()
    }

    /// The live entry of a parsed tunnel packet's flow, if it has one (changes nothing).
    #[inline(always)]
    pub fn flow_entry(&self, p: &Parsed) -> Option<u32> {
        if p.reply || !p.tracked {
            return None;
        }
        self.find_fwd(p)
    }

    /// The entry of a live flow whose cached verdict came from `set` (changes nothing).
    #[inline(always)]
    fn known(&self, now: u64, p: &Parsed, set: &PolicySet) -> Option<u32> {
        let e = self.flow_entry(p)?;
        let ent = &self.entries[e as usize];
        (ent.stamp == set.stamp() && ent.expires > now).then_some(e)
    }

    /// The session fast path for a parsed tunnel packet: the live entry of its flow, whose
    /// cached verdict came from `set` and whose cached hop is of route generation `gen`,
    /// translates it (TTL decremented: the caller checked it is above 1, the packet is
    /// forwarded) and is refreshed; returns that hop and the verdict to count the packet
    /// under. `None` changes and counts nothing, so the packet can take the full way.
    ///
    /// One call rather than a check and a translation, so the entry is reached once.
    #[inline(always)]
    pub fn forward_fast(
        &mut self,
        now: u64,
        p: &Parsed,
        set: &PolicySet,
        gen: u32,
        pkt: &mut [u8],
    ) -> Option<(Hop, VerdictTag)> {
        let e = self.known(now, p, set)?;
        let ent = self.entries.get_mut(e as usize)?;
        let hop = ent.hop;
        if hop.gen != gen {
            return None;
        }
        // `known` checked that the entry has a verdict.
        let v = ent.verdict().unwrap_or(VerdictTag::NONE);
        translate_out::<true>(ent, &self.cfg.timeouts, now, &p.l4, pkt);
        let c = &*self.counters;
        bump(&c.outbound, 1);
        bump(&c.fast, 1);
        Some((hop, v))
    }

    /// Caches `hop` in live entry `e` ([`ConnTable::flow_entry`]).
    pub fn set_hop(&mut self, e: u32, hop: Hop) {
        if let Some(ent) = self.entries.get_mut(e as usize).filter(|x| x.live) {
            set_if_changed(&mut ent.hop, hop);
        }
    }

    /// The rest of [`ConnTable::admit_parsed`]: a new, expired or untracked flow, or a verdict
    /// from an earlier set.
    #[cold]
    #[inline(never)]
    fn admit_slow(
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
        let found = self.find_fwd(p);
        let mut new_flow = false;
        let (e, verdict) = match found {
            Some(e) if self.entries[e as usize].expires > now => {
                let ent = &self.entries[e as usize];
                match ent.verdict().and_then(|t| set.verdict_of(t)) {
                    Some(v) => (e, v),
                    None => {
                        let cached = ent.stamp != 0;
                        let v = set.lookup(&l4.key(base));
                        let want = if v.nat { u32::from(nat_addr) } else { l4.src };
                        if !v.accepts() {
                            self.remove(e);
                            return Ok(Admit::Denied(v));
                        }
                        if cached && ent.nat_addr != want {
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
        let (stamp, slot) = verdict.tag().parts();
        let ent = &mut self.entries[e as usize];
        set_if_changed(&mut ent.stamp, stamp);
        set_if_changed(&mut ent.slot, slot);
        self.forward::<false>(now, e, &l4, pkt);
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
        let (port, home) = self.pick_port(&fwd, nat, h)?;
        let e = match home {
            Some(e) if self.take_free(e) => e,
            _ => self.pop_free().ok_or(NatError::TableFull)?,
        };
        let state = OPENING;
        self.entries[e as usize] = Entry {
            fwd,
            nat_addr: nat,
            nat_port: port,
            state,
            live: true,
            expires: now.saturating_add(self.timeout(fwd.proto, state)),
            stamp: 0,
            slot: 0,
            hop: Hop::default(),
            sums: Sums::of(&fwd, nat, port),
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
    ///
    /// Also the entry to put the flow in: its reply tuple's home ([`ConnTable::reply_home`]) when
    /// that entry is free, so that replies find their entry without the reply index. With NAT
    /// the port is chosen for that too (among the first [`HOME_TRIES`] candidates, else the
    /// first free port and any entry).
    fn pick_port(&self, fwd: &Fwd, nat: u32, h: u32) -> Result<(u16, Option<u32>), NatError> {
        let mut rev = Rev { src: fwd.dst, dst: nat, sport: fwd.dport, dport: fwd.sport, proto: fwd.proto };
        let seed = self.cfg.seed;
        let taken = |rev: &Rev| {
            let entries = &self.entries;
            self.rev.find(rev.hash(seed), |e| entries[e as usize].rev() == *rev).is_some()
        };
        let free_home = |rev: &Rev| {
            let e = self.reply_home(rev.hash(seed));
            self.entries.get(e as usize).is_some_and(|x| !x.live).then_some(e)
        };
        if nat == fwd.src {
            return if taken(&rev) { Err(NatError::NoPort) } else { Ok((fwd.sport, free_home(&rev))) };
        }
        let mut fallback = None;
        let (lo, hi) = (self.cfg.port_lo.min(self.cfg.port_hi), self.cfg.port_hi.max(self.cfg.port_lo));
        let n = u32::from(hi - lo) + 1;
        let base =
            self.cfg.steer.as_ref().filter(|_| fwd.proto != ip_proto::ICMP).map(|s| s.base(rev.src, nat, rev.sport));
        let start = h.rotate_left(16) % n;
        for t in 0..self.cfg.max_port_tries.min(n) {
            if t >= HOME_TRIES && fallback.is_some() {
                break;
            }
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
            let home = if t < HOME_TRIES { free_home(&rev) } else { None };
            if home.is_none() && fallback.is_some() {
                continue;
            }
            if !taken(&rev) {
                if home.is_some() {
                    return Ok((port, home));
                }
                fallback = Some(port);
            }
        }
        fallback.map(|p| (p, None)).ok_or(NatError::NoPort)
    }

    /// The entry a reply tuple with hash `h` would rather live in (multiply-shift onto the
    /// entries, no power of two needed).
    #[inline(always)]
    fn reply_home(&self, h: u32) -> u32 {
        ((u64::from(h) * self.entries.len() as u64) >> 32) as u32
    }

    /// Takes free entry `e` out of the free stack; false if it is not free.
    fn take_free(&mut self, e: u32) -> bool {
        let Some(&at) = self.free_at.get(e as usize) else { return false };
        if at == NOT_FREE {
            return false;
        }
        let Some(last) = self.free.pop() else { return false };
        if last != e {
            self.free[at as usize] = last;
            self.free_at[last as usize] = at;
        }
        self.free_at[e as usize] = NOT_FREE;
        true
    }

    fn pop_free(&mut self) -> Option<u32> {
        let e = self.free.pop()?;
        self.free_at[e as usize] = NOT_FREE;
        Some(e)
    }

    fn push_free(&mut self, e: u32) {
        self.free_at[e as usize] = self.free.len() as u32;
        self.free.push(e);
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
        let mut p = Parsed::default();
        self.parse_reply_into(pkt, &mut p)?;
        Ok(p)
    }

    /// [`ConnTable::parse_reply`] into `p` (left unspecified on error).
    #[inline(always)]
    pub fn parse_reply_into(&self, pkt: &[u8], p: &mut Parsed) -> Result<(), NatError> {
        if let Err(e) = parse_into::<true>(pkt, &mut p.l4) {
            return self.refuse(e);
        }
        p.hash = Rev::of_reply(&p.l4).hash(self.cfg.seed);
        p.tracked = true;
        p.tunnel = 0;
        p.reply = true;
        // Where the flow's entry lives unless it had to go elsewhere (`pick_port`).
        p.cand = self.reply_home(p.hash) + 1;
        Ok(())
    }

    /// [`ConnTable::reply`] for a packet parsed by [`ConnTable::parse_reply`].
    #[inline]
    pub fn reply_parsed(&mut self, now: u64, p: &Parsed, pkt: &mut [u8]) -> Result<Reply, NatError> {
        let e = self.reply_entry(now, p, pkt)?;
        let ent = &self.entries[e as usize];
        Ok(Reply { tunnel: ent.fwd.tunnel, client: Ipv4Addr::from(ent.fwd.src), verdict: ent.verdict() })
    }

    /// [`ConnTable::reply_parsed`] for a worker that needs only the verdict that admitted the
    /// flow (to count the reply under it): the result fits in two registers, where a
    /// [`Reply`] goes through memory, and reading that back right away stalled the pipeline.
    #[inline]
    pub fn reply_verdict(&mut self, now: u64, p: &Parsed, pkt: &mut [u8]) -> Result<Option<VerdictTag>, NatError> {
        let e = self.reply_entry(now, p, pkt)?;
        Ok(self.entries[e as usize].verdict())
    }

    /// Finds, refreshes and translates back the entry of a parsed reply; its index.
    #[inline(always)]
    fn reply_entry(&mut self, now: u64, p: &Parsed, pkt: &mut [u8]) -> Result<u32, NatError> {
        let e = match self.find_rev(p) {
            Some(e) if self.entries[e as usize].expires > now => e,
            Some(e) => {
                self.remove(e);
                bump(&self.counters.expired, 1);
                return self.refuse(NatError::NoEntry);
            }
            None => return self.refuse(NatError::NoEntry),
        };
        self.reply_translate::<false>(now, e, &p.l4, pkt);
        Ok(e)
    }

    /// The entry of a parsed reply's live flow (the lookup of [`ConnTable::reply_fast`]);
    /// changes (and counts) nothing.
    #[inline(always)]
    pub fn reply_known(&self, now: u64, p: &Parsed) -> Option<u32> {
        if !p.reply {
            return None;
        }
        let e = self.find_rev(p)?;
        (self.entries[e as usize].expires > now).then_some(e)
    }

    /// The session fast path for a parsed reply: finds its live flow's entry, asks `way_back`
    /// for the way to the client the entry names (the worker: the client's SA), and only with
    /// one translates the packet back, decrements its TTL (which the caller checked is above
    /// 1: the packet is forwarded) and refreshes the entry. `None` changes and counts nothing,
    /// so the packet can take the full way ([`ConnTable::reply_verdict`]). Returns the way and
    /// the verdict to count the reply under.
    ///
    /// One call rather than a lookup, a question and a translation: the entry is reached
    /// (and bounds-checked) once.
    #[inline(always)]
    pub fn reply_fast<W>(
        &mut self,
        now: u64,
        p: &Parsed,
        pkt: &mut [u8],
        way_back: impl FnOnce(Ipv4Addr) -> Option<W>,
    ) -> Option<(W, VerdictTag)> {
        let e = self.reply_known(now, p)?;
        let ent = self.entries.get_mut(e as usize)?;
        let way = way_back(Ipv4Addr::from(ent.fwd.src))?;
        let v = translate_back::<true>(ent, &self.cfg.timeouts, now, &p.l4, pkt);
        let c = &*self.counters;
        bump(&c.replies, 1);
        bump(&c.fast_replies, 1);
        Some((way, v.unwrap_or(VerdictTag::NONE)))
    }

    /// The common tail of a reply with entry `e`: TCP state, expiry, rewrite.
    #[inline(always)]
    fn reply_translate<const TTL: bool>(&mut self, now: u64, e: u32, l4: &L4, pkt: &mut [u8]) {
        translate_back::<TTL>(&mut self.entries[e as usize], &self.cfg.timeouts, now, l4, pkt);
        bump(&self.counters.replies, 1);
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
            self.fwd.remove(slot, |x| entries[x as usize].fwd.hash(seed));
        }
        let rev = ent.rev();
        if let Some((slot, _)) = self.rev.find(rev.hash(seed), |x| entries[x as usize].live && x == e) {
            self.rev.remove(slot, |x| entries[x as usize].rev().hash(seed));
        }
        self.entries[e as usize].live = false;
        if let Some(c) = self.per_tunnel.get_mut(ent.fwd.tunnel as usize) {
            *c = c.saturating_sub(1);
        }
        self.push_free(e);
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
        // A compare, not `% n`: a division per entry was most of the sweep's cost.
        let next = |e: usize| if e + 1 == n { 0 } else { e + 1 };
        let mut removed = 0;
        for _ in 0..budget.min(n) {
            let e = self.cursor;
            self.cursor = next(e);
            let ent = &self.entries[e];
            if ent.live && ent.expires <= now {
                self.remove(e as u32);
                removed += 1;
            }
        }
        // The next sweep's entries, which the traffic may not have touched for a long time:
        // loaded from now on, they do not stall that sweep.
        let mut e = self.cursor;
        for _ in 0..budget.min(n) {
            prefetch(&self.entries[e]);
            e = next(e);
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
        ix.remove(ix.find(3, |e| e == 2).unwrap().0, |_| 3);
        ix.remove(ix.find(3, |e| e == 5).unwrap().0, |_| 3);
        for e in [0, 1, 3, 4, 6, 7] {
            assert!(ix.find(3, |x| x == e).is_some(), "entry {e}");
        }
        assert!(ix.find(3, |x| x == 2).is_none());
        assert_eq!(ix.slots.iter().filter(|&&s| s != 0).count(), 6);
    }

    /// A slot keeps the hash's top bits as a tag: flows with the same home slot but other
    /// hashes are passed over without asking about their entries, and the largest entry of a
    /// table (capacity a power of two, the tightest fit) comes back as itself.
    #[test]
    fn index_tags_tell_flows_apart_without_their_entries() {
        for cap in [8u32, 1024, 131_072] {
            let mut ix = Index::new(cap);
            let (a, b) = (0xaaaa_0003u32, 0x5555_0003u32);
            ix.insert(a, 0);
            ix.insert(b, cap - 1);
            let mut asked = Vec::new();
            let found = ix.find(b, |e| {
                asked.push(e);
                true
            });
            assert_eq!(found.map(|(_, e)| e), Some(cap - 1), "capacity {cap}");
            assert_eq!(asked, vec![cap - 1], "capacity {cap}: only the tagged entry was asked about");
            assert_eq!(ix.find(a, |_| true).map(|(_, e)| e), Some(0));
            assert!(ix.find(0x1234_0003, |_| true).is_none(), "capacity {cap}: an untagged hash finds nothing");
        }
    }

    /// Against a model: entries with random hashes (many sharing home slots) in,
    /// half of them out again in random order; every survivor is found as itself, no
    /// removed one is, and the slots left are exactly the survivors.
    #[test]
    fn index_with_random_hashes_matches_a_model() {
        let cap = 1000u32;
        let mut ix = Index::new(cap);
        let mut x = 0x9e37_79b9u32;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        // Hashes from a small set of home slots, so probe runs are long and wrap around.
        let hashes: Vec<u32> = (0..cap).map(|_| (next() & 0xffff_0000) | (next() % 64 + 2000)).collect();
        for (e, &h) in hashes.iter().enumerate() {
            ix.insert(h, e as u32);
        }
        let mut order: Vec<u32> = (0..cap).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, next() as usize % (i + 1));
        }
        let (gone, kept) = order.split_at(cap as usize / 2);
        for &e in gone {
            let (slot, found) = ix.find(hashes[e as usize], |x| x == e).expect("present before removal");
            assert_eq!(found, e);
            ix.remove(slot, |x| hashes[x as usize]);
        }
        for &e in kept {
            assert_eq!(ix.find(hashes[e as usize], |x| x == e).map(|(_, f)| f), Some(e), "entry {e} kept");
        }
        for &e in gone {
            assert!(ix.find(hashes[e as usize], |x| x == e).is_none(), "entry {e} removed");
        }
        assert_eq!(ix.slots.iter().filter(|&&s| s != 0).count(), kept.len());
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
        assert_eq!(adjust(0xdd2f, checksum::fold(d.0)), 0x0000);
    }
}
