//! Packet buffers that can grow at both ends without reallocating.
//!
//! ESP encapsulation adds headers in front of a packet and a trailer behind it; decapsulation
//! removes them. `PacketBuf` is the one interface the ESP engine needs from a buffer, so the
//! same code runs on DPDK mbufs (headroom/tailroom in the mbuf) and on `HeadroomBuf` (tests,
//! pcap tools). Growing never allocates: a buffer without room reports `None`.

/// A packet whose start and end can move within a fixed backing store.
pub trait PacketBuf {
    /// The packet bytes.
    fn data(&self) -> &[u8];
    /// The packet bytes, writable.
    fn data_mut(&mut self) -> &mut [u8];
    /// Grows the packet by `n` bytes at the front; `None` if there is not enough headroom.
    fn prepend(&mut self, n: usize) -> Option<&mut [u8]>;
    /// Grows the packet by `n` bytes at the back; `None` if there is not enough tailroom.
    fn append(&mut self, n: usize) -> Option<&mut [u8]>;
    /// Removes `n` bytes from the front; `false` (and no change) if the packet is shorter.
    fn adj(&mut self, n: usize) -> bool;
    /// Removes `n` bytes from the back; `false` (and no change) if the packet is shorter.
    fn trim(&mut self, n: usize) -> bool;
    /// Packet length in bytes.
    fn len(&self) -> usize {
        self.data().len()
    }
    /// Whether the packet is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A heap-backed buffer with fixed headroom and capacity, allocated once and reused.
#[derive(Clone, Debug)]
pub struct HeadroomBuf {
    store: Box<[u8]>,
    start: usize,
    end: usize,
}

impl HeadroomBuf {
    /// Default headroom: room for Ethernet + IPv6 + UDP + ESP header + IV with margin,
    /// the same as DPDK's `RTE_PKTMBUF_HEADROOM`.
    pub const DEFAULT_HEADROOM: usize = 128;

    /// An empty buffer with `headroom` bytes before the start and `capacity` bytes in all.
    pub fn with_capacity(headroom: usize, capacity: usize) -> Self {
        let headroom = headroom.min(capacity);
        Self { store: vec![0u8; capacity].into_boxed_slice(), start: headroom, end: headroom }
    }

    /// A buffer holding `data` after the default headroom, with 256 bytes of tailroom.
    pub fn from_slice(data: &[u8]) -> Self {
        let mut b = Self::with_capacity(Self::DEFAULT_HEADROOM, Self::DEFAULT_HEADROOM + data.len() + 256);
        b.reset(data);
        b
    }

    /// Replaces the contents with `data` (placed after the original headroom); `false` if it does
    /// not fit.
    pub fn reset(&mut self, data: &[u8]) -> bool {
        let head = Self::DEFAULT_HEADROOM.min(self.store.len());
        if head + data.len() > self.store.len() {
            return false;
        }
        self.start = head;
        self.end = head + data.len();
        self.store[self.start..self.end].copy_from_slice(data);
        true
    }

    /// Bytes available in front of the packet.
    pub fn headroom(&self) -> usize {
        self.start
    }

    /// Bytes available behind the packet.
    pub fn tailroom(&self) -> usize {
        self.store.len() - self.end
    }
}

impl PacketBuf for HeadroomBuf {
    #[inline]
    fn data(&self) -> &[u8] {
        &self.store[self.start..self.end]
    }
    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.store[self.start..self.end]
    }
    #[inline]
    fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        if n > self.start {
            return None;
        }
        self.start -= n;
        Some(&mut self.store[self.start..self.start + n])
    }
    #[inline]
    fn append(&mut self, n: usize) -> Option<&mut [u8]> {
        if n > self.tailroom() {
            return None;
        }
        let old = self.end;
        self.end += n;
        Some(&mut self.store[old..self.end])
    }
    #[inline]
    fn adj(&mut self, n: usize) -> bool {
        if n > self.end - self.start {
            return false;
        }
        self.start += n;
        true
    }
    #[inline]
    fn trim(&mut self, n: usize) -> bool {
        if n > self.end - self.start {
            return false;
        }
        self.end -= n;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grow_and_shrink_both_ends() {
        let mut b = HeadroomBuf::with_capacity(4, 12);
        assert!(b.append(3).is_some());
        b.data_mut().copy_from_slice(&[1, 2, 3]);
        b.prepend(2).unwrap().copy_from_slice(&[9, 8]);
        assert_eq!(b.data(), &[9, 8, 1, 2, 3]);
        assert!(b.prepend(3).is_none(), "only 2 bytes of headroom left");
        assert!(b.append(6).is_none(), "only 5 bytes of tailroom left");
        assert_eq!(b.data(), &[9, 8, 1, 2, 3], "failed growth changes nothing");
        assert!(b.adj(2) && b.trim(1));
        assert_eq!(b.data(), &[1, 2]);
        assert!(!b.adj(3) && !b.trim(3));
        assert_eq!(b.len(), 2);
    }
}
