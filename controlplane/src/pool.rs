//! The mode-cfg address pool of a dial-up tunnel: the phase1 `ipv4-start-ip`/`ipv4-end-ip`
//! range, or the ranges of the address object named by `ipv4-name` (`assign-ip-from name`).
//!
//! How to drive it: build a [`RangePool`] once per phase1 and hand it to the IKE responder as its
//! [`AddressPool`]; the responder allocates an address when a client asks for one in CP and
//! releases it when the IKE SA goes. The lowest free address is handed out, so addresses are
//! reused as soon as they are returned.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use dialgate_ike::responder::AddressPool;

/// A pool over one or more inclusive IPv4 ranges.
#[derive(Clone, Debug, Default)]
pub struct RangePool {
    ranges: Vec<(u32, u32)>,
    used: BTreeSet<u32>,
}

impl RangePool {
    /// A pool over the inclusive ranges (empty or reversed ranges are ignored).
    pub fn new(ranges: &[(Ipv4Addr, Ipv4Addr)]) -> Self {
        let ranges = ranges.iter().map(|(s, e)| (u32::from(*s), u32::from(*e))).filter(|(s, e)| s <= e).collect();
        Self { ranges, used: BTreeSet::new() }
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

    fn contains(&self, a: u32) -> bool {
        self.ranges.iter().any(|(s, e)| (*s..=*e).contains(&a))
    }
}

impl AddressPool for RangePool {
    fn allocate(&mut self, _user: &str) -> Option<Ipv4Addr> {
        for &(s, e) in &self.ranges {
            // Walk the used addresses of this range in order: the first gap is the lowest free one.
            let mut next = s;
            for &u in self.used.range(s..=e) {
                if u != next {
                    break;
                }
                if u == e {
                    next = e;
                    break;
                }
                next = u + 1;
            }
            if !self.used.contains(&next) {
                self.used.insert(next);
                return Some(Ipv4Addr::from(next));
            }
        }
        None
    }

    fn release(&mut self, addr: Ipv4Addr) {
        let a = u32::from(addr);
        if self.contains(a) {
            self.used.remove(&a);
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
}
