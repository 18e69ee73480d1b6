//! A `PacketIo` wrapper that injects faults: drop, truncate or corrupt every Nth packet.
//!
//! Deterministic by design (counters, no randomness) so a test can predict exactly which
//! packets are hit: packet k (1-based, counted per direction over every packet that passes,
//! retries included) is dropped if `drop_every` divides k; otherwise truncated to
//! `truncate_to` bytes if `truncate_every` divides k; and corrupted (one byte at offset
//! `k % len` XOR 0x01) if `corrupt_every` divides k. A packet dropped on tx counts as accepted
//! (it was lost on the wire, not refused by the queue).

use std::num::NonZeroU64;

use super::{Burst, PacketIo};
use crate::buf::PacketBuf;

/// The faults for one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Drop every Nth packet.
    pub drop_every: Option<NonZeroU64>,
    /// Truncate every Nth packet to `truncate_to` bytes.
    pub truncate_every: Option<NonZeroU64>,
    /// Length truncated packets are cut to.
    pub truncate_to: usize,
    /// Flip one bit in every Nth packet.
    pub corrupt_every: Option<NonZeroU64>,
}

/// What a fault did to one packet.
enum Verdict {
    Keep,
    Drop,
}

/// Counts of injected faults per direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Packets seen.
    pub seen: u64,
    /// Packets dropped.
    pub dropped: u64,
    /// Packets truncated.
    pub truncated: u64,
    /// Packets corrupted.
    pub corrupted: u64,
}

impl Faults {
    fn hits(every: Option<NonZeroU64>, k: u64) -> bool {
        every.is_some_and(|n| k.is_multiple_of(n.get()))
    }

    fn apply<B: PacketBuf>(&self, counts: &mut FaultCounts, b: &mut B) -> Verdict {
        counts.seen += 1;
        let k = counts.seen;
        if Self::hits(self.drop_every, k) {
            counts.dropped += 1;
            return Verdict::Drop;
        }
        if Self::hits(self.truncate_every, k) && b.len() > self.truncate_to {
            let cut = b.len() - self.truncate_to;
            b.trim(cut);
            counts.truncated += 1;
        }
        if Self::hits(self.corrupt_every, k) && !b.is_empty() {
            let at = (k % b.len() as u64) as usize;
            b.data_mut()[at] ^= 0x01;
            counts.corrupted += 1;
        }
        Verdict::Keep
    }
}

/// Injects [`Faults`] into the packets passing through `inner`.
#[derive(Debug)]
pub struct FaultIo<D> {
    inner: D,
    rx: Faults,
    tx: Faults,
    rx_counts: FaultCounts,
    tx_counts: FaultCounts,
}

impl<D: PacketIo> FaultIo<D> {
    /// Wraps `inner` with faults on receive and on transmit.
    pub fn new(inner: D, rx: Faults, tx: Faults) -> Self {
        Self { inner, rx, tx, rx_counts: FaultCounts::default(), tx_counts: FaultCounts::default() }
    }

    /// Faults injected on receive so far.
    pub fn rx_counts(&self) -> FaultCounts {
        self.rx_counts
    }

    /// Faults injected on transmit so far.
    pub fn tx_counts(&self) -> FaultCounts {
        self.tx_counts
    }

    /// The wrapped I/O.
    pub fn inner(&mut self) -> &mut D {
        &mut self.inner
    }
}

impl<D: PacketIo> PacketIo for FaultIo<D> {
    type Buf = D::Buf;

    fn rx_burst<const N: usize>(&mut self, port: u16, queue: u16, out: &mut Burst<D::Buf, N>) -> usize {
        let start = out.len();
        self.inner.rx_burst(port, queue, out);
        let mut i = start;
        while i < out.len() {
            match self.rx.apply(&mut self.rx_counts, &mut out[i]) {
                Verdict::Drop => drop(out.remove(i)),
                Verdict::Keep => i += 1,
            }
        }
        out.len() - start
    }

    fn tx_burst<const N: usize>(&mut self, port: u16, queue: u16, pkts: &mut Burst<D::Buf, N>) -> usize {
        let before = pkts.len();
        let mut i = 0;
        while i < pkts.len() {
            match self.tx.apply(&mut self.tx_counts, &mut pkts[i]) {
                Verdict::Drop => drop(pkts.remove(i)),
                Verdict::Keep => i += 1,
            }
        }
        let dropped = before - pkts.len();
        dropped + self.inner.tx_burst(port, queue, pkts)
    }

    fn alloc(&mut self) -> Option<D::Buf> {
        self.inner.alloc()
    }

    fn free_burst<const N: usize>(&mut self, bufs: &mut Burst<D::Buf, N>) {
        self.inner.free_burst(bufs);
    }

    fn mac(&self, port: u16) -> Option<[u8; 6]> {
        self.inner.mac(port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::mem::{MemConfig, MemNet};

    fn nz(n: u64) -> Option<NonZeroU64> {
        NonZeroU64::new(n)
    }

    fn frame(i: u8) -> Vec<u8> {
        (0..64).map(|j| i.wrapping_mul(31) ^ j).collect()
    }

    #[test]
    fn rx_drop_truncate_corrupt_hit_exactly_the_nth() {
        let net = MemNet::new(&MemConfig { ports: 1, ..MemConfig::default() });
        let rx = Faults { drop_every: nz(3), truncate_every: nz(2), truncate_to: 20, corrupt_every: nz(5) };
        let mut io = FaultIo::new(net.io(), rx, Faults::default());
        for i in 1..=10 {
            assert!(net.inject(0, 0, &frame(i)));
        }
        let mut burst: Burst<_> = Burst::new();
        assert_eq!(io.rx_burst(0, 0, &mut burst), 7, "packets 3, 6, 9 dropped");
        let got: Vec<Vec<u8>> = burst.iter().map(|b| b.data().to_vec()).collect();
        let mut expect = Vec::new();
        for k in [1u8, 2, 4, 5, 7, 8, 10] {
            let mut f = frame(k);
            if k % 2 == 0 {
                f.truncate(20);
            }
            if k % 5 == 0 {
                let at = usize::from(k) % f.len();
                f[at] ^= 1;
            }
            expect.push(f);
        }
        assert_eq!(got, expect);
        assert_eq!(io.rx_counts(), FaultCounts { seen: 10, dropped: 3, truncated: 4, corrupted: 2 });
        // Dropped buffers went back to the pool.
        drop(burst);
        assert_eq!(net.free_buffers(), MemConfig::default().buffers);
    }

    #[test]
    fn tx_drop_counts_as_accepted() {
        let net = MemNet::new(&MemConfig { ports: 1, ..MemConfig::default() });
        let tx = Faults { drop_every: nz(2), ..Faults::default() };
        let mut io = FaultIo::new(net.io(), Faults::default(), tx);
        let mut burst: Burst<_, 8> = Burst::new();
        for i in 0..4u8 {
            let mut b = io.alloc().unwrap();
            b.append(60).unwrap().copy_from_slice(&frame(i)[..60]);
            burst.push(b);
        }
        assert_eq!(io.tx_burst(0, 0, &mut burst), 4);
        assert!(burst.is_empty());
        let out = net.drain_tx(0, 0);
        assert_eq!(out, vec![frame(0)[..60].to_vec(), frame(2)[..60].to_vec()]);
        assert_eq!(io.tx_counts().dropped, 2);
    }

    #[test]
    fn no_faults_is_transparent() {
        let net = MemNet::new(&MemConfig { ports: 1, ..MemConfig::default() });
        let mut io = FaultIo::new(net.io(), Faults::default(), Faults::default());
        assert!(net.inject(0, 0, &frame(1)));
        let mut burst: Burst<_> = Burst::new();
        assert_eq!(io.rx_burst(0, 0, &mut burst), 1);
        assert_eq!(burst[0].data(), frame(1).as_slice());
        assert_eq!(io.mac(0), net.io().mac(0));
    }
}
