//! IPv4 longest-prefix match: a fixed-capacity multibit trie (stride 8, at most four memory
//! reads per lookup), and the next hops workers route to.
//!
//! Each worker owns its [`RouteTable`] and changes it only through `RouteAdd`/`RouteDel`
//! commands applied between bursts, so lookups need neither locks nor RCU. All memory (trie
//! nodes and the rule list) is allocated when the table is built; `insert` fails with
//! [`RouteError::Full`] rather than allocate inside a worker.
//!
//! Layout: a prefix of length `len` lives in the node at level `(len - 1) / 8`, expanded over
//! the `2^(8 - rem)` entries it covers (controlled prefix expansion). Each entry remembers the
//! length of the rule that wrote it, so a longer rule is never overwritten by a shorter one,
//! and deleting a rule restores the next-longest rule of the same level; shorter rules of
//! upper levels are found on the way down.

use core::net::Ipv4Addr;

/// Where a worker sends a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextHop {
    /// On the link of `port`: the destination itself is resolved with ARP.
    Connected {
        /// DPDK port id.
        port: u16,
    },
    /// Through a gateway on the link of `port`.
    Gateway {
        /// DPDK port id.
        port: u16,
        /// The gateway's address (resolved with ARP).
        via: Ipv4Addr,
    },
    /// Into the tunnel whose outbound SA is in this slot of the outbound table.
    Tunnel {
        /// Outbound table slot.
        slot: u32,
    },
}

/// Route table update failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// Prefix length above 32.
    #[error("prefix length {0} is above 32")]
    BadLength(u8),
    /// No trie node or rule slot left (the table never grows inside a worker).
    #[error("route table full")]
    Full,
}

const NONE: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Entry<V: Copy> {
    val: Option<V>,
    /// Length of the rule that wrote `val`.
    len: u8,
    child: u32,
}

#[derive(Clone, Copy)]
struct Rule<V: Copy> {
    prefix: u32,
    len: u8,
    val: V,
}

/// A longest-prefix-match table over IPv4 with values `V`.
pub struct Lpm<V: Copy> {
    default: Option<V>,
    nodes: Vec<[Entry<V>; 256]>,
    used: usize,
    rules: Vec<Rule<V>>,
    max_rules: usize,
}

impl<V: Copy> core::fmt::Debug for Lpm<V> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Lpm").field("rules", &self.rules.len()).field("nodes", &self.used).finish()
    }
}

/// The routes of one worker.
pub type RouteTable = Lpm<NextHop>;

fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

impl<V: Copy> Lpm<V> {
    /// A table with room for `max_rules` prefixes and `max_nodes` trie nodes (one node covers
    /// one /8, /16 or /24 with longer prefixes under it; each node is 256 entries).
    pub fn new(max_rules: usize, max_nodes: usize) -> Lpm<V> {
        let empty = [Entry { val: None, len: 0, child: NONE }; 256];
        Lpm {
            default: None,
            nodes: vec![empty; max_nodes.max(1)],
            used: 1,
            rules: Vec::with_capacity(max_rules),
            max_rules,
        }
    }

    /// The value of the longest prefix containing `addr`.
    #[inline]
    pub fn lookup(&self, addr: Ipv4Addr) -> Option<V> {
        let o = addr.octets();
        let mut best = self.default;
        let mut node = 0usize;
        for b in o {
            let e = &self.nodes[node][usize::from(b)];
            if e.val.is_some() {
                best = e.val;
            }
            if e.child == NONE {
                break;
            }
            node = e.child as usize;
        }
        best
    }

    /// Adds or replaces the route for `prefix/len` (host bits are ignored).
    pub fn insert(&mut self, prefix: Ipv4Addr, len: u8, val: V) -> Result<(), RouteError> {
        if len > 32 {
            return Err(RouteError::BadLength(len));
        }
        let p = u32::from(prefix) & mask(len);
        let existing = self.rules.iter().position(|r| r.prefix == p && r.len == len);
        if existing.is_none() && self.rules.len() >= self.max_rules {
            return Err(RouteError::Full);
        }
        if len == 0 {
            self.default = Some(val);
        } else {
            let node = self.walk(p, len, true).ok_or(RouteError::Full)?;
            for e in self.range(node, p, len) {
                if e.val.is_none() || e.len <= len {
                    e.val = Some(val);
                    e.len = len;
                }
            }
        }
        match existing {
            Some(i) => self.rules[i].val = val,
            None => self.rules.push(Rule { prefix: p, len, val }),
        }
        Ok(())
    }

    /// Removes the route for exactly `prefix/len`; returns whether there was one.
    pub fn remove(&mut self, prefix: Ipv4Addr, len: u8) -> bool {
        if len > 32 {
            return false;
        }
        let p = u32::from(prefix) & mask(len);
        let Some(i) = self.rules.iter().position(|r| r.prefix == p && r.len == len) else { return false };
        self.rules.swap_remove(i);
        if len == 0 {
            self.default = None;
            return true;
        }
        let level_floor = (len - 1) / 8 * 8;
        // The longest remaining rule of the same trie level that covers this prefix takes over
        // the entries this rule wrote; shorter ones live in upper levels already.
        let heir = self
            .rules
            .iter()
            .filter(|r| r.len < len && r.len > level_floor && p & mask(r.len) == r.prefix)
            .max_by_key(|r| r.len)
            .copied();
        if let Some(node) = self.walk(p, len, false) {
            for e in self.range(node, p, len) {
                if e.len == len {
                    e.val = heir.map(|h| h.val);
                    e.len = heir.map_or(0, |h| h.len);
                }
            }
        }
        true
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no routes.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Every route, in no particular order.
    pub fn routes(&self) -> impl Iterator<Item = (Ipv4Addr, u8, V)> + '_ {
        self.rules.iter().map(|r| (Ipv4Addr::from(r.prefix), r.len, r.val))
    }

    /// The node at the level where a `len`-bit prefix lives, creating the path if `create`.
    fn walk(&mut self, p: u32, len: u8, create: bool) -> Option<usize> {
        let level = usize::from((len - 1) / 8);
        let o = p.to_be_bytes();
        let mut node = 0usize;
        for &b in &o[..level] {
            let child = self.nodes[node][usize::from(b)].child;
            node = if child != NONE {
                child as usize
            } else if create && self.used < self.nodes.len() {
                let n = self.used;
                self.used += 1;
                self.nodes[node][usize::from(b)].child = n as u32;
                n
            } else {
                return None;
            };
        }
        Some(node)
    }

    /// The entries of `node` a `len`-bit prefix covers.
    fn range(&mut self, node: usize, p: u32, len: u8) -> impl Iterator<Item = &mut Entry<V>> {
        let level = (len - 1) / 8;
        let rem = len - level * 8;
        let byte = p.to_be_bytes()[usize::from(level)];
        let first = usize::from(byte & (0xffu16 << (8 - rem)) as u8);
        let count = 1usize << (8 - rem);
        self.nodes[node][first..first + count].iter_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins_in_any_insert_order() {
        for order in [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]] {
            let routes =
                [(ip("0.0.0.0"), 0, 1u32), (ip("10.0.0.0"), 8, 2), (ip("10.1.0.0"), 16, 3), (ip("10.1.2.0"), 23, 4)];
            let mut t = Lpm::new(16, 16);
            for i in order {
                let (p, l, v) = routes[i];
                t.insert(p, l, v).unwrap();
            }
            assert_eq!(t.lookup(ip("192.0.2.1")), Some(1));
            assert_eq!(t.lookup(ip("10.9.9.9")), Some(2));
            assert_eq!(t.lookup(ip("10.1.9.9")), Some(3));
            assert_eq!(t.lookup(ip("10.1.3.200")), Some(4), "/23 covers 10.1.2.0-10.1.3.255");
            assert_eq!(t.lookup(ip("10.1.4.1")), Some(3));
        }
    }

    #[test]
    fn remove_restores_the_covering_route() {
        let mut t = Lpm::new(16, 16);
        t.insert(ip("10.1.0.0"), 16, 1u32).unwrap();
        t.insert(ip("10.1.0.0"), 20, 2).unwrap();
        t.insert(ip("10.1.0.0"), 24, 3).unwrap();
        t.insert(ip("10.1.0.7"), 32, 4).unwrap();
        assert_eq!(t.lookup(ip("10.1.0.7")), Some(4));
        assert!(t.remove(ip("10.1.0.7"), 32));
        assert_eq!(t.lookup(ip("10.1.0.7")), Some(3));
        assert!(t.remove(ip("10.1.0.0"), 24));
        assert_eq!(t.lookup(ip("10.1.0.7")), Some(2), "the /20 of the same level takes over");
        assert!(t.remove(ip("10.1.0.0"), 20));
        assert_eq!(t.lookup(ip("10.1.0.7")), Some(1));
        assert!(!t.remove(ip("10.1.0.0"), 20), "already gone");
        assert!(t.remove(ip("10.1.0.0"), 16));
        assert_eq!(t.lookup(ip("10.1.0.7")), None);
        assert!(t.is_empty());
    }

    #[test]
    fn replace_value_and_host_bits_ignored() {
        let mut t = Lpm::new(4, 4);
        t.insert(ip("192.168.1.77"), 24, 'a').unwrap();
        t.insert(ip("192.168.1.0"), 24, 'b').unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t.lookup(ip("192.168.1.1")), Some('b'));
        assert_eq!(t.insert(ip("1.0.0.0"), 33, 'c'), Err(RouteError::BadLength(33)));
    }

    #[test]
    fn capacity_is_fixed() {
        let mut t = Lpm::new(2, 2);
        t.insert(ip("10.0.0.0"), 16, 1).unwrap();
        assert_eq!(t.insert(ip("10.1.0.0"), 24, 2), Err(RouteError::Full), "needs a third node");
        t.insert(ip("10.0.0.0"), 12, 3).unwrap();
        assert_eq!(t.insert(ip("11.0.0.0"), 8, 4), Err(RouteError::Full), "rule list full");
        t.insert(ip("10.0.0.0"), 16, 5).unwrap();
        assert_eq!(t.lookup(ip("10.0.1.1")), Some(5), "replacing needs no new rule slot");
    }

    fn linear(rules: &[(u32, u8, u16)], a: u32) -> Option<u16> {
        rules.iter().filter(|(p, l, _)| a & mask(*l) == p & mask(*l)).max_by_key(|(_, l, _)| *l).map(|r| r.2)
    }

    proptest! {
        /// The trie agrees with a linear longest-prefix scan after random inserts and deletes.
        #[test]
        fn agrees_with_linear_scan(
            ops in proptest::collection::vec((any::<bool>(), 0u32..64, 0u8..=32, any::<u16>()), 1..60),
            probes in proptest::collection::vec(any::<u32>(), 32),
        ) {
            let mut t = Lpm::new(128, 512);
            let mut model: Vec<(u32, u8, u16)> = Vec::new();
            for (add, hi, len, v) in ops {
                // Cluster prefixes so that they overlap.
                let p = (0x0a00_0000 | hi << 14) & mask(len);
                if add {
                    t.insert(Ipv4Addr::from(p), len, v).unwrap();
                    model.retain(|r| !(r.0 == p && r.1 == len));
                    model.push((p, len, v));
                } else {
                    let had = model.iter().any(|r| r.0 == p && r.1 == len);
                    prop_assert_eq!(t.remove(Ipv4Addr::from(p), len), had);
                    model.retain(|r| !(r.0 == p && r.1 == len));
                }
            }
            for a in probes.into_iter().map(|x| 0x0a00_0000 | (x & 0x00ff_ffff)).chain([0x0a00_0000, 0x0aff_ffff, 0x0b00_0000]) {
                prop_assert_eq!(t.lookup(Ipv4Addr::from(a)), linear(&model, a), "{}", Ipv4Addr::from(a));
            }
        }
    }
}
