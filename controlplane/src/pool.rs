//! The mode-cfg address pool of a dial-up tunnel: the phase1 `ipv4-start-ip`/`ipv4-end-ip`
//! range, or the ranges of the address object named by `ipv4-name` (`assign-ip-from name`).
//!
//! How to drive it: build a [`RangePool`] once per phase1 and hand it to the IKE responder as its
//! [`AddressPool`]; the responder allocates an address when a client asks for one in CP and
//! releases it when the IKE SA goes. The lowest free address is handed out, so addresses are
//! reused as soon as they are returned.

use std::collections::{BTreeSet, HashSet};
use std::net::Ipv4Addr;

use dialgate_ike::responder::AddressPool;

/// A pool over one or more inclusive IPv4 ranges.
///
/// Each range hands out from a cursor that only moves up, plus the addresses returned below it:
/// the lowest free address in O(log n), where walking the used addresses made a login cost
/// O(n) with n tunnels up.
#[derive(Clone, Debug, Default)]
pub struct RangePool {
    ranges: Vec<(u32, u32)>,
    /// Per range: the lowest address never handed out (`u64`: past the end of 255.255.255.255).
    next: Vec<u64>,
    /// Per range: addresses below `next` that came back.
    free: Vec<BTreeSet<u32>>,
    used: HashSet<u32>,
}

impl RangePool {
    /// A pool over the inclusive ranges (empty or reversed ranges are ignored).
    pub fn new(ranges: &[(Ipv4Addr, Ipv4Addr)]) -> Self {
        let ranges: Vec<(u32, u32)> =
            ranges.iter().map(|(s, e)| (u32::from(*s), u32::from(*e))).filter(|(s, e)| s <= e).collect();
        let next = ranges.iter().map(|r| u64::from(r.0)).collect();
        let free = vec![BTreeSet::new(); ranges.len()];
        Self { ranges, next, free, used: HashSet::new() }
    }

    /// Number of addresses in the pool.
    pub fn capacity(&self) -> u64 {
        self.ranges.iter().map(|(s, e)| u64::from(e - s) + 1).sum()
    }

    /// Number of addresses handed out.
    pub fn in_use(&self) -> usize {
        self.used.len()
    }

    /// Whether `addr` is currently handed out.
    pub fn is_allocated(&self, addr: Ipv4Addr) -> bool {
        self.used.contains(&u32::from(addr))
    }

    /// The smallest range covering every address of the pool (the data plane indexes its
    /// outbound table by address minus the first one), or `None` for an empty pool.
    pub fn span(&self) -> Option<(Ipv4Addr, Ipv4Addr)> {
        let lo = self.ranges.iter().map(|r| r.0).min()?;
        let hi = self.ranges.iter().map(|r| r.1).max()?;
        Some((Ipv4Addr::from(lo), Ipv4Addr::from(hi)))
    }
}

impl AddressPool for RangePool {
    fn allocate(&mut self, _user: &str) -> Option<Ipv4Addr> {
        for (i, &(_, e)) in self.ranges.iter().enumerate() {
            loop {
                let a = if let Some(a) = self.free[i].pop_first() {
                    a
                } else if self.next[i] <= u64::from(e) {
                    self.next[i] += 1;
                    (self.next[i] - 1) as u32
                } else {
                    break;
                };
                // Overlapping ranges share addresses: one handed out by another range is skipped.
                if self.used.insert(a) {
                    return Some(Ipv4Addr::from(a));
                }
            }
        }
        None
    }

    fn release(&mut self, addr: Ipv4Addr) {
        let a = u32::from(addr);
        if !self.used.remove(&a) {
            return;
        }
        if let Some(i) = self.ranges.iter().position(|(s, e)| (*s..=*e).contains(&a)) {
            self.free[i].insert(a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn hands_out_lowest_free_and_reuses_released() {
        let mut p = RangePool::new(&[(ip("10.40.40.2"), ip("10.40.40.4"))]);
        assert_eq!(p.capacity(), 3);
        assert_eq!(p.allocate("a"), Some(ip("10.40.40.2")));
        assert_eq!(p.allocate("b"), Some(ip("10.40.40.3")));
        assert_eq!(p.allocate("c"), Some(ip("10.40.40.4")));
        assert_eq!(p.allocate("d"), None);
        p.release(ip("10.40.40.3"));
        assert!(!p.is_allocated(ip("10.40.40.3")));
        assert_eq!(p.allocate("e"), Some(ip("10.40.40.3")));
        assert_eq!(p.in_use(), 3);
    }

    #[test]
    fn several_ranges_and_foreign_release() {
        let mut p = RangePool::new(&[(ip("10.0.0.1"), ip("10.0.0.1")), (ip("10.0.1.255"), ip("10.0.2.0"))]);
        assert_eq!(p.allocate("a"), Some(ip("10.0.0.1")));
        assert_eq!(p.allocate("b"), Some(ip("10.0.1.255")));
        assert_eq!(p.allocate("c"), Some(ip("10.0.2.0")));
        assert_eq!(p.allocate("d"), None);
        p.release(ip("192.0.2.1"));
        assert_eq!(p.in_use(), 3);
    }

    #[test]
    fn range_ending_at_broadcast_does_not_overflow() {
        let mut p = RangePool::new(&[(ip("255.255.255.254"), ip("255.255.255.255"))]);
        assert_eq!(p.allocate("a"), Some(ip("255.255.255.254")));
        assert_eq!(p.allocate("b"), Some(ip("255.255.255.255")));
        assert_eq!(p.allocate("c"), None);
    }

    #[test]
    fn lowest_free_across_many_returns() {
        let mut p = RangePool::new(&[(ip("10.40.0.1"), ip("10.40.3.254"))]);
        let all: Vec<Ipv4Addr> = (0..1000).map(|_| p.allocate("u").unwrap()).collect();
        assert_eq!((all[0], all[999]), (ip("10.40.0.1"), ip("10.40.3.232")));
        // Returned out of order, handed out again lowest first, then the cursor goes on.
        for i in [700, 3, 500] {
            p.release(all[i]);
        }
        p.release(all[3]);
        assert_eq!(p.in_use(), 997, "a second release of the same address changes nothing");
        assert_eq!(p.allocate("x"), Some(all[3]));
        assert_eq!(p.allocate("y"), Some(all[500]));
        assert_eq!(p.allocate("z"), Some(all[700]));
        assert_eq!(p.allocate("w"), Some(ip("10.40.3.233")));
    }

    #[test]
    fn overlapping_ranges_never_hand_out_an_address_twice() {
        let mut p = RangePool::new(&[(ip("10.0.0.1"), ip("10.0.0.3")), (ip("10.0.0.2"), ip("10.0.0.4"))]);
        let got: Vec<Ipv4Addr> = std::iter::from_fn(|| p.allocate("u")).collect();
        assert_eq!(got, [ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3"), ip("10.0.0.4")]);
    }
}
