//! Compiled firewall policy: ordered rules, first match wins, default deny.
//!
//! How to drive it:
//! - The control plane describes each rule as a [`PolicySpec`] (interfaces as indexes, address
//!   sets as ranges, services as [`ServiceEntry`]s — FortiOS's predefined ones come from
//!   [`predefined_service`]) and calls [`PolicySet::compile`], passing the running set so the
//!   counters of policies that keep their id carry over.
//! - It publishes the set through a [`SharedPolicy`] (`store`); each worker keeps a
//!   [`PolicyReader`] and calls [`PolicyReader::current`] once per burst. A reload is one atomic
//!   pointer swap: a burst sees the old set or the new one, never a mixture. Retired sets are
//!   freed by the control plane ([`SharedPolicy::reclaim`]) once no worker holds them, so a
//!   worker never runs the allocator.
//! - Per packet: [`PolicySet::lookup`] with a [`FlowKey`] gives a [`Verdict`]; then
//!   [`PolicySet::count`] adds the packet to the matched policy's counters (`new_flow` counts a
//!   hit: the caller knows when a flow starts, e.g. when the NAT table creates an entry).
//!
//! Lookup allocates nothing and takes no lock. It is the bit-vector scheme: every dimension
//! (incoming interface, outgoing interface, source address, destination address, protocol with
//! destination port or ICMP type) is cut into elementary intervals, and each interval carries a
//! bitmap of the policies that match it. A lookup is three binary searches plus two array
//! indexes, then the AND of five bitmaps; the lowest set bit is the first matching policy. The
//! few policies that need more than that (source ports, user groups) are flagged and checked in
//! full when their bit comes up. Memory grows as policies × intervals, so the set is limited to
//! [`MAX_POLICIES`].

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, Cache};

use crate::wire::ip_proto;

/// An interface index as the data plane numbers ports and tunnels (the control plane's choice).
pub type IfIndex = u16;

/// Most policies a set holds (the bitmaps grow as policies × intervals).
pub const MAX_POLICIES: usize = 4096;

/// Most interfaces (ports and tunnels) a set distinguishes.
pub const MAX_INTERFACES: usize = 4096;

/// The user groups a flow's tunnel authenticated as, one bit per group (at most 64 groups; the
/// control plane numbers them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct GroupMask(pub u64);

impl GroupMask {
    /// No group.
    pub const NONE: GroupMask = GroupMask(0);
}

/// What the worker knows about one packet, as the policy sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Interface (port or tunnel) the packet came in on.
    pub in_if: IfIndex,
    /// Interface the route sends it out of.
    pub out_if: IfIndex,
    /// IP protocol.
    pub proto: u8,
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// TCP/UDP source port (0 otherwise).
    pub sport: u16,
    /// TCP/UDP destination port (0 otherwise).
    pub dport: u16,
    /// ICMP type (0 for other protocols).
    pub icmp_type: u8,
    /// Groups of the user behind the incoming tunnel ([`GroupMask::NONE`] for a port).
    pub groups: GroupMask,
}

impl FlowKey {
    /// The interfaces and groups of a key, addresses and ports still empty (the connection
    /// table fills them in from the packet: `nat::flow_key`).
    pub fn between(in_if: IfIndex, out_if: IfIndex, groups: GroupMask) -> FlowKey {
        FlowKey {
            in_if,
            out_if,
            proto: 0,
            src: Ipv4Addr::UNSPECIFIED,
            dst: Ipv4Addr::UNSPECIFIED,
            sport: 0,
            dport: 0,
            icmp_type: 0,
            groups,
        }
    }
}

/// What a policy does with matching traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Forward.
    Accept,
    /// Drop.
    Deny,
}

/// The outcome of a lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The matching policy's id; 0 for the implicit deny (as FortiOS numbers it).
    pub policy_id: u32,
    /// Accept or deny.
    pub action: Action,
    /// Source NAT to the outgoing interface address.
    pub nat: bool,
    /// Counter slot in the set that produced the verdict.
    slot: u16,
    /// [`PolicySet::stamp`] of that set.
    stamp: u32,
}

impl Verdict {
    /// Whether `set` produced this verdict (a verdict cached before a reload is stale).
    #[inline]
    pub fn is_from(&self, set: &PolicySet) -> bool {
        self.stamp == set.stamp
    }

    /// Whether the packet may pass.
    pub fn accepts(&self) -> bool {
        self.action == Action::Accept
    }

    /// What a connection entry keeps of the verdict and a tally counts by.
    #[inline]
    pub fn tag(&self) -> VerdictTag {
        VerdictTag { stamp: self.stamp, slot: self.slot }
    }
}

/// A verdict's set and counter position, without the rest: what a connection entry caches of
/// the verdict that admitted its flow (6 bytes there, where a whole [`Verdict`] is 12: the
/// room for the flow's next hop) and what the per-worker policy tally counts by. Eight bytes,
/// one register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerdictTag {
    stamp: u32,
    slot: u16,
}

impl VerdictTag {
    /// A tag of no set (stamps are never 0): counts nothing.
    pub(crate) const NONE: VerdictTag = VerdictTag { stamp: 0, slot: 0 };

    /// From the parts a connection entry stores (`stamp` 0: no verdict).
    #[inline(always)]
    pub(crate) fn from_parts(stamp: u32, slot: u16) -> Option<VerdictTag> {
        (stamp != 0).then_some(VerdictTag { stamp, slot })
    }

    /// The set's stamp and the counter position, to store.
    #[inline(always)]
    pub(crate) fn parts(&self) -> (u32, u16) {
        (self.stamp, self.slot)
    }

    /// Whether `set` produced the verdict.
    #[inline(always)]
    pub fn is_from(&self, set: &PolicySet) -> bool {
        self.stamp == set.stamp
    }

    /// The counter position in its set.
    #[inline(always)]
    pub(crate) fn counter_slot(&self) -> usize {
        usize::from(self.slot)
    }
}

/// An inclusive port range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// First port.
    pub lo: u16,
    /// Last port.
    pub hi: u16,
}

impl PortRange {
    /// Every port, 0–65535.
    pub const ANY: PortRange = PortRange { lo: 0, hi: 65535 };
    /// One port.
    pub const fn one(p: u16) -> PortRange {
        PortRange { lo: p, hi: p }
    }
    /// `lo..=hi`.
    pub const fn new(lo: u16, hi: u16) -> PortRange {
        PortRange { lo, hi }
    }
    fn contains(&self, p: u16) -> bool {
        self.lo <= p && p <= self.hi
    }
    fn is_any(&self) -> bool {
        self.lo == 0 && self.hi == 65535
    }
}

/// One element of a service: what protocol and ports it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServiceEntry {
    /// Every IP packet (`ALL`, `protocol IP` number 0).
    Any,
    /// Every packet of one IP protocol (`protocol IP` with `protocol-number`).
    Proto(u8),
    /// TCP with destination and source ports in range (`tcp-portrange DST[:SRC]`).
    Tcp {
        /// Destination ports.
        dst: PortRange,
        /// Source ports.
        src: PortRange,
    },
    /// UDP with destination and source ports in range (`udp-portrange DST[:SRC]`).
    Udp {
        /// Destination ports.
        dst: PortRange,
        /// Source ports.
        src: PortRange,
    },
    /// ICMP, one type or every type (`protocol ICMP`, `icmptype`).
    Icmp {
        /// The ICMP type, or `None` for all.
        icmp_type: Option<u8>,
    },
}

impl ServiceEntry {
    const fn tcp(lo: u16, hi: u16) -> ServiceEntry {
        ServiceEntry::Tcp { dst: PortRange::new(lo, hi), src: PortRange::ANY }
    }
    const fn udp(lo: u16, hi: u16) -> ServiceEntry {
        ServiceEntry::Udp { dst: PortRange::new(lo, hi), src: PortRange::ANY }
    }

    fn matches(&self, k: &FlowKey) -> bool {
        match *self {
            ServiceEntry::Any => true,
            ServiceEntry::Proto(p) => k.proto == p,
            ServiceEntry::Tcp { dst, src } => {
                k.proto == ip_proto::TCP && dst.contains(k.dport) && src.contains(k.sport)
            }
            ServiceEntry::Udp { dst, src } => {
                k.proto == ip_proto::UDP && dst.contains(k.dport) && src.contains(k.sport)
            }
            ServiceEntry::Icmp { icmp_type } => {
                k.proto == ip_proto::ICMP && (icmp_type.is_none() || icmp_type == Some(k.icmp_type))
            }
        }
    }

    /// Whether matching needs the source port (not captured by the bitmaps).
    fn needs_sport(&self) -> bool {
        matches!(self, ServiceEntry::Tcp { src, .. } | ServiceEntry::Udp { src, .. } if !src.is_any())
    }
}

/// The definition of a FortiOS predefined service, or `None` for a name that is not one.
///
/// Definitions follow FortiOS's factory `firewall service custom` entries (`tcp-portrange`,
/// `udp-portrange`, `protocol ICMP` with `icmptype`).
pub fn predefined_service(name: &str) -> Option<&'static [ServiceEntry]> {
    use ServiceEntry as S;
    const ALL: &[S] = &[S::Any];
    const ALL_TCP: &[S] = &[S::tcp(1, 65535)];
    const ALL_UDP: &[S] = &[S::udp(1, 65535)];
    const ALL_ICMP: &[S] = &[S::Icmp { icmp_type: None }];
    // ICMP echo request (RFC 792).
    const PING: &[S] = &[S::Icmp { icmp_type: Some(8) }];
    const HTTP: &[S] = &[S::tcp(80, 80)];
    const HTTPS: &[S] = &[S::tcp(443, 443)];
    const SSH: &[S] = &[S::tcp(22, 22)];
    const DNS: &[S] = &[S::tcp(53, 53), S::udp(53, 53)];
    const NTP: &[S] = &[S::tcp(123, 123), S::udp(123, 123)];
    const SNMP: &[S] = &[S::tcp(161, 162), S::udp(161, 162)];
    const SMTP: &[S] = &[S::tcp(25, 25)];
    const IMAP: &[S] = &[S::tcp(143, 143)];
    const POP3: &[S] = &[S::tcp(110, 110)];
    const RDP: &[S] = &[S::tcp(3389, 3389)];
    const SAMBA: &[S] = &[S::tcp(139, 139)];
    const TELNET: &[S] = &[S::tcp(23, 23)];
    const FTP: &[S] = &[S::tcp(21, 21)];
    Some(match name {
        "ALL" => ALL,
        "ALL_TCP" => ALL_TCP,
        "ALL_UDP" => ALL_UDP,
        "ALL_ICMP" => ALL_ICMP,
        "PING" => PING,
        "HTTP" => HTTP,
        "HTTPS" => HTTPS,
        "SSH" => SSH,
        "DNS" => DNS,
        "NTP" => NTP,
        "SNMP" => SNMP,
        "SMTP" => SMTP,
        "IMAP" => IMAP,
        "POP3" => POP3,
        "RDP" => RDP,
        "SAMBA" => SAMBA,
        "TELNET" => TELNET,
        "FTP" => FTP,
        _ => return None,
    })
}

/// A set of IPv4 addresses as sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AddrSet {
    ranges: Vec<(u32, u32)>,
}

impl AddrSet {
    /// Every address (`all`).
    pub fn all() -> AddrSet {
        AddrSet { ranges: vec![(0, u32::MAX)] }
    }

    /// The union of inclusive ranges; a range given backwards is read forwards.
    pub fn from_ranges(it: impl IntoIterator<Item = (Ipv4Addr, Ipv4Addr)>) -> AddrSet {
        let mut v: Vec<(u32, u32)> = it
            .into_iter()
            .map(|(a, b)| {
                let (a, b) = (u32::from(a), u32::from(b));
                (a.min(b), a.max(b))
            })
            .collect();
        v.sort_unstable();
        let mut out: Vec<(u32, u32)> = Vec::with_capacity(v.len());
        for (lo, hi) in v {
            match out.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => out.push((lo, hi)),
            }
        }
        AddrSet { ranges: out }
    }

    /// A prefix `addr/len` (host bits ignored).
    pub fn prefix(addr: Ipv4Addr, len: u8) -> AddrSet {
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len.min(32))) };
        let lo = u32::from(addr) & mask;
        AddrSet { ranges: vec![(lo, lo | !mask)] }
    }

    /// Whether `a` is in the set.
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        let a = u32::from(a);
        let i = self.ranges.partition_point(|r| r.1 < a);
        self.ranges.get(i).is_some_and(|r| r.0 <= a)
    }

    /// The ranges, sorted.
    pub fn ranges(&self) -> impl Iterator<Item = (Ipv4Addr, Ipv4Addr)> + '_ {
        self.ranges.iter().map(|&(a, b)| (Ipv4Addr::from(a), Ipv4Addr::from(b)))
    }

    /// Whether the set is empty (matches nothing).
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

/// Which interfaces a policy names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IfMatch {
    /// `any`.
    Any,
    /// These interfaces.
    List(Vec<IfIndex>),
}

/// One policy as the control plane describes it, names already resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicySpec {
    /// Policy id (`edit N`), 1 or more.
    pub id: u32,
    /// Incoming interfaces.
    pub src_if: IfMatch,
    /// Outgoing interfaces.
    pub dst_if: IfMatch,
    /// Source addresses.
    pub src: AddrSet,
    /// Destination addresses.
    pub dst: AddrSet,
    /// Services: the policy matches a packet any entry matches.
    pub services: Vec<ServiceEntry>,
    /// Accept or deny.
    pub action: Action,
    /// Source NAT.
    pub nat: bool,
    /// User groups, one of which the flow's user must belong to ([`GroupMask::NONE`]: no
    /// condition).
    pub groups: GroupMask,
}

/// Why a policy set does not compile.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// More than [`MAX_POLICIES`] policies.
    #[error("{0} policies; at most {MAX_POLICIES} are supported")]
    TooManyPolicies(usize),
    /// An interface index at or above the interface count.
    #[error("policy {id}: interface index {index} is not below the interface count {count}")]
    BadInterface {
        /// Policy id.
        id: u32,
        /// The index.
        index: IfIndex,
        /// The interface count given to `compile`.
        count: usize,
    },
    /// More than [`MAX_INTERFACES`] interfaces.
    #[error("{0} interfaces; at most {MAX_INTERFACES} are supported")]
    TooManyInterfaces(usize),
    /// Two policies with one id.
    #[error("policy id {0} appears twice")]
    DuplicateId(u32),
    /// Id 0 is the implicit deny.
    #[error("policy id 0 is reserved for the implicit deny")]
    ZeroId,
}

/// Counters of one policy, shared by every worker (relaxed atomics; one cache line).
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct PolicyCounters {
    packets: AtomicU64,
    bytes: AtomicU64,
    hits: AtomicU64,
}

/// A snapshot of [`PolicyCounters`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CounterSnapshot {
    /// Packets matched.
    pub packets: u64,
    /// Bytes matched (IP length).
    pub bytes: u64,
    /// Flows (sessions) started under the policy.
    pub hits: u64,
}

impl PolicyCounters {
    /// Reads the counters (each one atomically; the three together are not a snapshot).
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            packets: self.packets.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            hits: self.hits.load(Ordering::Relaxed),
        }
    }
}

/// What `diagnose` shows of one compiled policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyInfo {
    /// Policy id (0: implicit deny).
    pub id: u32,
    /// Accept or deny.
    pub action: Action,
    /// Source NAT.
    pub nat: bool,
    /// Counters now.
    pub counters: CounterSnapshot,
}

#[derive(Debug)]
struct Rule {
    id: u32,
    action: Action,
    nat: bool,
    groups: GroupMask,
    services: Box<[ServiceEntry]>,
}

impl Rule {
    /// The full check of the parts the bitmaps leave out (source ports, groups).
    fn verify(&self, k: &FlowKey) -> bool {
        (self.groups.0 == 0 || self.groups.0 & k.groups.0 != 0) && self.services.iter().any(|s| s.matches(k))
    }
}

/// Elementary intervals of one numeric dimension, each with its policy bitmap.
#[derive(Debug)]
struct Intervals {
    /// Start of each interval; `starts[0] == 0`, strictly increasing.
    starts: Box<[u32]>,
    /// `starts.len() * words` bitmap words.
    bits: Box<[u64]>,
}

impl Intervals {
    /// Builds intervals from `(lo, hi, policy)` triples (inclusive bounds).
    fn build(words: usize, items: &[(u32, u32, usize)]) -> Intervals {
        let mut cuts: Vec<u32> = vec![0];
        for &(lo, hi, _) in items {
            cuts.push(lo);
            if let Some(n) = hi.checked_add(1) {
                cuts.push(n);
            }
        }
        cuts.sort_unstable();
        cuts.dedup();
        let mut bits = vec![0u64; cuts.len() * words];
        for &(lo, hi, p) in items {
            let first = cuts.partition_point(|&c| c < lo);
            let end = match hi.checked_add(1) {
                Some(n) => cuts.partition_point(|&c| c < n),
                None => cuts.len(),
            };
            for i in first..end {
                bits[i * words + p / 64] |= 1 << (p % 64);
            }
        }
        Intervals { starts: cuts.into_boxed_slice(), bits: bits.into_boxed_slice() }
    }

    #[inline]
    fn row(&self, x: u32, words: usize) -> &[u64] {
        // starts[0] == 0, so at least one start is <= x.
        let i = self.starts.partition_point(|&s| s <= x).saturating_sub(1);
        &self.bits[i * words..(i + 1) * words]
    }
}

/// A compiled, immutable policy set. Build with [`PolicySet::compile`].
#[derive(Debug)]
pub struct PolicySet {
    words: usize,
    rules: Box<[Rule]>,
    /// `rules.len() + 1` counters; the last is the implicit deny.
    counters: Box<[Arc<PolicyCounters>]>,
    /// Policies needing [`Rule::verify`].
    verify: Box<[u64]>,
    /// `(interfaces + 1) * words`; the last row is for an index out of range (`any` only).
    in_if: Box<[u64]>,
    out_if: Box<[u64]>,
    n_if: usize,
    src: Intervals,
    dst: Intervals,
    tcp: Intervals,
    udp: Intervals,
    /// 256 ICMP types × words.
    icmp: Box<[u64]>,
    /// 256 IP protocols × words (TCP, UDP and ICMP rows unused).
    proto: Box<[u64]>,
    generation: u64,
    /// Unique per compiled set in this process (never 0): lets a connection entry remember
    /// which set its cached verdict came from.
    stamp: u32,
}

/// Source of [`PolicySet::stamp`]s.
static STAMPS: AtomicU32 = AtomicU32::new(1);

impl PolicySet {
    /// An empty set: everything is denied by the implicit policy.
    pub fn deny_all() -> PolicySet {
        // An empty list of specs always compiles.
        match PolicySet::compile(&[], 0, None) {
            Ok(s) => s,
            Err(_) => unreachable!("an empty policy list compiles"),
        }
    }

    /// Compiles `specs` in order for `interfaces` interfaces (indexes `0..interfaces`). Counters of
    /// policies whose id exists in `previous` are shared with it, so they keep counting across a
    /// reload.
    pub fn compile(
        specs: &[PolicySpec],
        interfaces: usize,
        previous: Option<&PolicySet>,
    ) -> Result<PolicySet, PolicyError> {
        if specs.len() > MAX_POLICIES {
            return Err(PolicyError::TooManyPolicies(specs.len()));
        }
        if interfaces > MAX_INTERFACES {
            return Err(PolicyError::TooManyInterfaces(interfaces));
        }
        let mut ids = std::collections::HashSet::new();
        for s in specs {
            if s.id == 0 {
                return Err(PolicyError::ZeroId);
            }
            if !ids.insert(s.id) {
                return Err(PolicyError::DuplicateId(s.id));
            }
            for m in [&s.src_if, &s.dst_if] {
                if let IfMatch::List(l) = m {
                    if let Some(&index) = l.iter().find(|&&i| usize::from(i) >= interfaces) {
                        return Err(PolicyError::BadInterface { id: s.id, index, count: interfaces });
                    }
                }
            }
        }
        let words = specs.len().div_ceil(64).max(1);
        let set = |v: &mut [u64], row: usize, p: usize| v[row * words + p / 64] |= 1 << (p % 64);

        let mut in_if = vec![0u64; (interfaces + 1) * words];
        let mut out_if = vec![0u64; (interfaces + 1) * words];
        for (p, s) in specs.iter().enumerate() {
            for (table, m) in [(&mut in_if, &s.src_if), (&mut out_if, &s.dst_if)] {
                match m {
                    IfMatch::Any => (0..=interfaces).for_each(|row| set(table, row, p)),
                    IfMatch::List(l) => l.iter().for_each(|&i| set(table, usize::from(i), p)),
                }
            }
        }

        let addr_items = |f: fn(&PolicySpec) -> &AddrSet| -> Vec<(u32, u32, usize)> {
            specs.iter().enumerate().flat_map(|(p, s)| f(s).ranges.iter().map(move |&(a, b)| (a, b, p))).collect()
        };
        let src = Intervals::build(words, &addr_items(|s| &s.src));
        let dst = Intervals::build(words, &addr_items(|s| &s.dst));

        let mut tcp_items = Vec::new();
        let mut udp_items = Vec::new();
        let mut icmp = vec![0u64; 256 * words];
        let mut proto = vec![0u64; 256 * words];
        let mut verify = vec![0u64; words];
        for (p, s) in specs.iter().enumerate() {
            if s.groups.0 != 0 || s.services.iter().any(ServiceEntry::needs_sport) {
                set(&mut verify, 0, p);
            }
            for e in &s.services {
                match *e {
                    ServiceEntry::Any => {
                        tcp_items.push((0, 65535, p));
                        udp_items.push((0, 65535, p));
                        (0..256).for_each(|t| set(&mut icmp, t, p));
                        (0..256).for_each(|t| set(&mut proto, t, p));
                    }
                    ServiceEntry::Proto(n) => match n {
                        ip_proto::TCP => tcp_items.push((0, 65535, p)),
                        ip_proto::UDP => udp_items.push((0, 65535, p)),
                        ip_proto::ICMP => (0..256).for_each(|t| set(&mut icmp, t, p)),
                        n => set(&mut proto, usize::from(n), p),
                    },
                    ServiceEntry::Tcp { dst, .. } => tcp_items.push((u32::from(dst.lo), u32::from(dst.hi), p)),
                    ServiceEntry::Udp { dst, .. } => udp_items.push((u32::from(dst.lo), u32::from(dst.hi), p)),
                    ServiceEntry::Icmp { icmp_type: Some(t) } => set(&mut icmp, usize::from(t), p),
                    ServiceEntry::Icmp { icmp_type: None } => (0..256).for_each(|t| set(&mut icmp, t, p)),
                }
            }
        }

        let find_prev = |id: u32| {
            previous.and_then(|prev| prev.rules.iter().position(|r| r.id == id).map(|i| Arc::clone(&prev.counters[i])))
        };
        let mut counters: Vec<Arc<PolicyCounters>> =
            specs.iter().map(|s| find_prev(s.id).unwrap_or_default()).collect();
        counters.push(previous.map(|p| Arc::clone(&p.counters[p.rules.len()])).unwrap_or_default());
        let rules = specs
            .iter()
            .map(|s| Rule {
                id: s.id,
                action: s.action,
                nat: s.nat && s.action == Action::Accept,
                groups: s.groups,
                services: s.services.clone().into_boxed_slice(),
            })
            .collect();
        Ok(PolicySet {
            words,
            rules,
            counters: counters.into_boxed_slice(),
            verify: verify.into_boxed_slice(),
            in_if: in_if.into_boxed_slice(),
            out_if: out_if.into_boxed_slice(),
            n_if: interfaces,
            src,
            dst,
            tcp: Intervals::build(words, &tcp_items),
            udp: Intervals::build(words, &udp_items),
            icmp: icmp.into_boxed_slice(),
            proto: proto.into_boxed_slice(),
            generation: previous.map_or(1, |p| p.generation + 1),
            // Skip 0 on wrap-around: 0 means "no verdict cached".
            stamp: STAMPS.fetch_add(1, Ordering::Relaxed).max(1),
        })
    }

    /// The first policy matching `k`, or the implicit deny. Allocates nothing, takes no lock.
    #[inline]
    pub fn lookup(&self, k: &FlowKey) -> Verdict {
        let w = self.words;
        // Interface tables have n_if + 1 rows; an index out of range uses the last (`any`).
        let ia = usize::from(k.in_if).min(self.n_if) * w;
        let ib = usize::from(k.out_if).min(self.n_if) * w;
        let a = &self.in_if[ia..ia + w];
        let b = &self.out_if[ib..ib + w];
        let s = self.src.row(u32::from(k.src), w);
        let d = self.dst.row(u32::from(k.dst), w);
        let p = match k.proto {
            ip_proto::TCP => self.tcp.row(u32::from(k.dport), w),
            ip_proto::UDP => self.udp.row(u32::from(k.dport), w),
            ip_proto::ICMP => &self.icmp[usize::from(k.icmp_type) * w..(usize::from(k.icmp_type) + 1) * w],
            n => &self.proto[usize::from(n) * w..(usize::from(n) + 1) * w],
        };
        for i in 0..w {
            let mut m = a[i] & b[i] & s[i] & d[i] & p[i];
            while m != 0 {
                let bit = m.trailing_zeros() as usize;
                let idx = i * 64 + bit;
                if self.verify[i] & (1 << bit) == 0 || self.rules[idx].verify(k) {
                    let r = &self.rules[idx];
                    return Verdict {
                        policy_id: r.id,
                        action: r.action,
                        nat: r.nat,
                        slot: idx as u16,
                        stamp: self.stamp,
                    };
                }
                m &= m - 1;
            }
        }
        self.implicit_deny()
    }

    /// The whole verdict a tag of this set stands for; `None` for a tag of another set.
    pub fn verdict_of(&self, t: VerdictTag) -> Option<Verdict> {
        if !t.is_from(self) {
            return None;
        }
        Some(match self.rules.get(t.counter_slot()) {
            Some(r) => Verdict { policy_id: r.id, action: r.action, nat: r.nat, slot: t.slot, stamp: self.stamp },
            None => self.implicit_deny(),
        })
    }

    #[cold]
    fn implicit_deny(&self) -> Verdict {
        Verdict { policy_id: 0, action: Action::Deny, nat: false, slot: self.rules.len() as u16, stamp: self.stamp }
    }

    /// The same lookup by a plain scan in order (reference for tests and benchmarks).
    pub fn lookup_linear(&self, k: &FlowKey, specs: &[PolicySpec]) -> u32 {
        let m = |m: &IfMatch, i: IfIndex| match m {
            IfMatch::Any => true,
            IfMatch::List(l) => l.contains(&i),
        };
        specs
            .iter()
            .find(|s| {
                m(&s.src_if, k.in_if)
                    && m(&s.dst_if, k.out_if)
                    && s.src.contains(k.src)
                    && s.dst.contains(k.dst)
                    && (s.groups.0 == 0 || s.groups.0 & k.groups.0 != 0)
                    && s.services.iter().any(|e| e.matches(k))
            })
            .map_or(0, |s| s.id)
    }

    /// Adds one packet of `bytes` to the counters of the verdict's policy; `new_flow` also
    /// counts a hit. `v` must come from this set (a verdict from another set counts nothing).
    #[inline]
    pub fn count(&self, v: &Verdict, bytes: u32, new_flow: bool) {
        if v.stamp == self.stamp {
            self.add_at(usize::from(v.slot), 1, u64::from(bytes), u64::from(new_flow));
        }
    }

    /// Adds `packets`, `bytes` and `hits` at once to the policy at counter position `slot`
    /// ([`VerdictTag::counter_slot`] of a verdict of this set): a worker's tally of one poll, one
    /// atomic add per counter instead of one per packet.
    pub(crate) fn add_at(&self, slot: usize, packets: u64, bytes: u64, hits: u64) {
        if let Some(c) = self.counters.get(slot) {
            c.packets.fetch_add(packets, Ordering::Relaxed);
            c.bytes.fetch_add(bytes, Ordering::Relaxed);
            if hits != 0 {
                c.hits.fetch_add(hits, Ordering::Relaxed);
            }
        }
    }

    /// The policies in order, then the implicit deny (id 0), with their counters.
    pub fn policies(&self) -> impl Iterator<Item = PolicyInfo> + '_ {
        self.rules
            .iter()
            .map(|r| (r.id, r.action, r.nat))
            .chain(std::iter::once((0, Action::Deny, false)))
            .zip(self.counters.iter())
            .map(|((id, action, nat), c)| PolicyInfo { id, action, nat, counters: c.snapshot() })
    }

    /// Counters of a policy by id (0: implicit deny).
    pub fn counters(&self, id: u32) -> Option<CounterSnapshot> {
        self.policies().find(|p| p.id == id).map(|p| p.counters)
    }

    /// Number of policies (without the implicit deny).
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no policies (everything is denied).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// 1 for a first set, one more for each set compiled with a `previous`.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// A number no other set compiled in this process has (never 0).
    #[inline]
    pub fn stamp(&self) -> u32 {
        self.stamp
    }
}

/// The running policy set, swapped atomically on reload (arc-swap: readers take no lock and
/// never wait for a writer).
#[derive(Debug)]
pub struct SharedPolicy {
    current: Arc<ArcSwap<PolicySet>>,
    retired: Mutex<Vec<Arc<PolicySet>>>,
}

impl SharedPolicy {
    /// Starts with `set`.
    pub fn new(set: PolicySet) -> SharedPolicy {
        SharedPolicy { current: Arc::new(ArcSwap::from_pointee(set)), retired: Mutex::new(Vec::new()) }
    }

    /// The running set (control-plane side; workers use a [`PolicyReader`]).
    pub fn load(&self) -> Arc<PolicySet> {
        self.current.load_full()
    }

    /// Publishes `set`. The previous set is kept until [`SharedPolicy::reclaim`] finds no reader
    /// holds it, so that the last reference is never dropped (and memory freed) on a worker.
    pub fn store(&self, set: PolicySet) {
        let old = self.current.swap(Arc::new(set));
        if let Ok(mut r) = self.retired.lock() {
            r.push(old);
        }
    }

    /// Frees retired sets no reader holds any more; returns how many are still held.
    pub fn reclaim(&self) -> usize {
        match self.retired.lock() {
            Ok(mut r) => {
                r.retain(|s| Arc::strong_count(s) > 1);
                r.len()
            }
            Err(_) => 0,
        }
    }

    /// A reader for one worker.
    pub fn reader(&self) -> PolicyReader {
        PolicyReader { cache: Cache::new(Arc::clone(&self.current)) }
    }
}

/// A worker's handle on the running set: [`PolicyReader::current`] costs one atomic load when
/// nothing changed.
pub struct PolicyReader {
    cache: Cache<Arc<ArcSwap<PolicySet>>, Arc<PolicySet>>,
}

impl std::fmt::Debug for PolicyReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyReader").finish_non_exhaustive()
    }
}

impl PolicyReader {
    /// The running set; call once per burst so one burst sees one set.
    #[inline]
    pub fn current(&mut self) -> &Arc<PolicySet> {
        self.cache.load()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(proto: u8, dport: u16) -> FlowKey {
        FlowKey {
            in_if: 0,
            out_if: 1,
            proto,
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(192, 168, 1, 1),
            sport: 40000,
            dport,
            icmp_type: 0,
            groups: GroupMask::NONE,
        }
    }

    #[test]
    fn intervals_cover_the_whole_space() {
        let t = Intervals::build(1, &[(10, 20, 0), (15, u32::MAX, 1)]);
        assert_eq!(t.row(0, 1)[0], 0);
        assert_eq!(t.row(10, 1)[0], 1);
        assert_eq!(t.row(16, 1)[0], 3);
        assert_eq!(t.row(21, 1)[0], 2);
        assert_eq!(t.row(u32::MAX, 1)[0], 2);
    }

    #[test]
    fn addr_set_merges_adjacent_ranges() {
        let s = AddrSet::from_ranges([
            (Ipv4Addr::new(10, 0, 0, 0), Ipv4Addr::new(10, 0, 0, 255)),
            (Ipv4Addr::new(10, 0, 1, 0), Ipv4Addr::new(10, 0, 1, 9)),
        ]);
        assert_eq!(s.ranges().count(), 1);
        assert!(s.contains(Ipv4Addr::new(10, 0, 1, 9)));
        assert!(!s.contains(Ipv4Addr::new(10, 0, 1, 10)));
    }

    #[test]
    fn service_with_source_ports_is_verified() {
        let spec = PolicySpec {
            id: 1,
            src_if: IfMatch::Any,
            dst_if: IfMatch::Any,
            src: AddrSet::all(),
            dst: AddrSet::all(),
            services: vec![ServiceEntry::Tcp { dst: PortRange::one(80), src: PortRange::new(1024, 65535) }],
            action: Action::Accept,
            nat: false,
            groups: GroupMask::NONE,
        };
        let set = PolicySet::compile(&[spec], 2, None).unwrap();
        assert_eq!(set.lookup(&key(ip_proto::TCP, 80)).policy_id, 1);
        let mut k = key(ip_proto::TCP, 80);
        k.sport = 1000;
        assert_eq!(set.lookup(&k).policy_id, 0);
    }
}
