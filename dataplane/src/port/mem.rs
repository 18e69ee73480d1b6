//! In-memory ports: a preallocated buffer pool and lock-free per-queue FIFOs.
//!
//! Build a [`MemNet`] with a [`MemConfig`], hand each worker a [`MemIo`] (`net.io()`), and
//! from the test side `inject` frames into a port's rx queue and `drain_tx` what the workers
//! transmitted. `patch(a, b)` turns port `a`'s transmissions into port `b`'s receptions (same
//! queue index), so two workers or a generator and a worker can be chained. All queues are
//! bounded lock-free MPMC queues and the pool is filled once at construction, so `rx_burst`,
//! `tx_burst` and `alloc` never allocate and the test side may run on another thread.
//!
//! The pool hands out the buffer freed last, as a DPDK mempool's per-lcore cache does (the
//! product's pools have one, `ffi::PoolConfig::cache`): that buffer is likely still cached. A
//! FIFO pool cycles every buffer through the caches instead — 9 MB with the default 4096
//! buffers — evicting the workers' tables and making benchmarks on these ports slower than
//! on a NIC in a way that hits a worker with large tables hardest.

use std::mem::ManuallyDrop;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use crossbeam_queue::ArrayQueue;

use super::{Burst, PacketIo};
use crate::buf::{HeadroomBuf, PacketBuf};

/// Sizes of an in-memory network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemConfig {
    /// Number of ports.
    pub ports: u16,
    /// Rx queues and tx queues per port.
    pub queues: u16,
    /// Capacity of each queue in packets.
    pub queue_depth: usize,
    /// Buffers in the pool (shared by all ports).
    pub buffers: usize,
    /// Bytes per buffer, headroom included (`HeadroomBuf::DEFAULT_HEADROOM` = 128 of them).
    pub buf_size: usize,
}

impl Default for MemConfig {
    fn default() -> Self {
        Self { ports: 2, queues: 1, queue_depth: 1024, buffers: 4096, buf_size: 2176 }
    }
}

/// Buffers not in use, allocated once and shared by every [`MemBuf`] for its way home: a
/// lock-free stack (last freed, first handed out). Slot `i` of the pool is always buffer `i`;
/// while free, its box is in `boxes[i]` and `below[i]` names the free slot under it.
struct Pool {
    /// The top slot plus one (0: empty) in the low half; in the high half a count of pushes,
    /// so that a pop racing with a pop and push of the same slot fails its exchange (ABA).
    head: AtomicU64,
    below: Box<[AtomicU32]>,
    boxes: Box<[AtomicPtr<Slot>]>,
    len: AtomicUsize,
}

impl Pool {
    fn new(n: usize, fill: impl Fn(u32) -> Box<Slot>) -> Pool {
        let n = n.min(u32::MAX as usize - 1);
        let pool = Pool {
            head: AtomicU64::new(0),
            below: (0..n).map(|_| AtomicU32::new(0)).collect(),
            boxes: (0..n).map(|_| AtomicPtr::new(ptr::null_mut())).collect(),
            len: AtomicUsize::new(0),
        };
        for i in 0..n as u32 {
            pool.push(fill(i));
        }
        pool
    }

    fn push(&self, slot: Box<Slot>) {
        let i = slot.index as usize;
        let (Some(bx), Some(below)) = (self.boxes.get(i), self.below.get(i)) else { return };
        // Published to the popper by the release exchange below.
        bx.store(Box::into_raw(slot), Ordering::Relaxed);
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            below.store(head as u32, Ordering::Relaxed);
            let new = (((head >> 32) + 1) << 32) | (i as u64 + 1);
            match self.head.compare_exchange_weak(head, new, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => head = now,
            }
        }
        self.len.fetch_add(1, Ordering::Relaxed);
    }

    fn pop(&self) -> Option<Box<Slot>> {
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            let i = (head as u32).checked_sub(1)? as usize;
            // Stale if another thread took `i` meanwhile; then the exchange fails (the push
            // count moved on) and this reads again.
            let below = self.below[i].load(Ordering::Relaxed);
            let new = (head & !u64::from(u32::MAX)) | u64::from(below);
            match self.head.compare_exchange_weak(head, new, Ordering::Acquire, Ordering::Acquire) {
                Ok(_) => {
                    self.len.fetch_sub(1, Ordering::Relaxed);
                    let raw = self.boxes[i].swap(ptr::null_mut(), Ordering::Relaxed);
                    // SAFETY: the exchange made this thread the only one to have popped slot
                    // `i` since its push, which stored its box (`Box::into_raw`, visible: the
                    // push's release exchange heads the release sequence this acquire read);
                    // the swap took it out, so it is turned back into a box exactly once.
                    return Some(unsafe { Box::from_raw(raw) });
                }
                Err(now) => head = now,
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for bx in self.boxes.iter() {
            let raw = bx.swap(ptr::null_mut(), Ordering::Relaxed);
            if !raw.is_null() {
                // SAFETY: a non-null pointer here is a free slot's box from `Box::into_raw`,
                // taken out by the swap; no other reference to the pool exists in `drop`.
                drop(unsafe { Box::from_raw(raw) });
            }
        }
    }
}

/// A pool buffer and its way home, boxed once when the pool is filled.
struct Slot {
    buf: HeadroomBuf,
    /// Its place in the pool.
    index: u32,
    /// Weak: the pool owns its free slots, so a strong reference here would keep it alive
    /// forever.
    pool: Weak<Pool>,
}

/// A buffer from a [`MemNet`]'s pool; returns itself to the pool on drop.
///
/// One pointer, as a DPDK mbuf is: a worker moves buffers between its stages by value, and
/// a fat handle there would make the in-memory port cost what no NIC port costs (and
/// skew every benchmark that runs on it).
pub struct MemBuf {
    slot: ManuallyDrop<Box<Slot>>,
}

impl std::fmt::Debug for MemBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemBuf")
            .field("len", &self.slot.buf.len())
            .field("headroom", &self.slot.buf.headroom())
            .finish()
    }
}

impl MemBuf {
    /// Free bytes before the packet.
    pub fn headroom(&self) -> usize {
        self.slot.buf.headroom()
    }
    /// Free bytes after the packet.
    pub fn tailroom(&self) -> usize {
        self.slot.buf.tailroom()
    }
}

// Inline like the DPDK mbuf's (`ffi`): the workers are generic over the buffer and built in
// other crates, where a plain call here costs each packet several calls the mbuf does not.
impl PacketBuf for MemBuf {
    #[inline]
    fn data(&self) -> &[u8] {
        self.slot.buf.data()
    }
    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        self.slot.buf.data_mut()
    }
    #[inline]
    fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        self.slot.buf.prepend(n)
    }
    #[inline]
    fn append(&mut self, n: usize) -> Option<&mut [u8]> {
        self.slot.buf.append(n)
    }
    #[inline]
    fn adj(&mut self, n: usize) -> bool {
        self.slot.buf.adj(n)
    }
    #[inline]
    fn trim(&mut self, n: usize) -> bool {
        self.slot.buf.trim(n)
    }
}

impl Drop for MemBuf {
    fn drop(&mut self) {
        // SAFETY: `drop` runs once and nothing reads `self.slot` after this.
        let slot = unsafe { ManuallyDrop::take(&mut self.slot) };
        if let Some(pool) = slot.pool.upgrade() {
            pool.push(slot);
        }
    }
}

/// Per-port counters kept by the in-memory network.
#[derive(Debug, Default)]
pub struct MemPortStats {
    /// Packets taken by `rx_burst`.
    pub rx: AtomicU64,
    /// Packets accepted by `tx_burst`.
    pub tx: AtomicU64,
    /// Packets `tx_burst` refused because the tx (or patched rx) queue was full.
    pub tx_full: AtomicU64,
    /// Frames `inject` refused (pool empty or rx queue full).
    pub inject_failed: AtomicU64,
}

struct MemPort {
    rx: Vec<ArrayQueue<MemBuf>>,
    tx: Vec<ArrayQueue<MemBuf>>,
    /// Port whose rx queues receive this port's transmissions; `u32::MAX` for none.
    patch: AtomicU32,
    mac: [u8; 6],
    stats: MemPortStats,
}

struct Shared {
    pool: Arc<Pool>,
    ports: Vec<MemPort>,
    headroom: usize,
}

/// An in-memory network of ports (the test/harness side; clone freely).
#[derive(Clone)]
pub struct MemNet {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MemNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemNet").field("ports", &self.shared.ports.len()).field("free", &self.free_buffers()).finish()
    }
}

impl MemNet {
    /// Builds the network and fills its pool (the only allocation it ever makes).
    pub fn new(cfg: &MemConfig) -> MemNet {
        let buffers = cfg.buffers.max(1);
        let pool = Arc::new_cyclic(|home: &Weak<Pool>| {
            Pool::new(buffers, |index| {
                let buf = HeadroomBuf::with_capacity(HeadroomBuf::DEFAULT_HEADROOM, cfg.buf_size);
                Box::new(Slot { buf, index, pool: home.clone() })
            })
        });
        let depth = cfg.queue_depth.max(1);
        let queues = usize::from(cfg.queues.max(1));
        let ports = (0..cfg.ports)
            .map(|p| MemPort {
                rx: (0..queues).map(|_| ArrayQueue::new(depth)).collect(),
                tx: (0..queues).map(|_| ArrayQueue::new(depth)).collect(),
                patch: AtomicU32::new(u32::MAX),
                // Locally administered, unicast: 02:00:00:00:<port hi>:<port lo + 1>.
                mac: [0x02, 0, 0, 0, (p >> 8) as u8, (p as u8).wrapping_add(1)],
                stats: MemPortStats::default(),
            })
            .collect();
        let headroom = HeadroomBuf::DEFAULT_HEADROOM.min(cfg.buf_size);
        MemNet { shared: Arc::new(Shared { pool, ports, headroom }) }
    }

    /// A `PacketIo` handle for a worker (any number may exist; queues are MPMC).
    pub fn io(&self) -> MemIo {
        MemIo { shared: self.shared.clone() }
    }

    /// Makes everything transmitted on `from` arrive on `to`'s rx queue of the same index.
    pub fn patch(&self, from: u16, to: u16) {
        if let Some(p) = self.shared.ports.get(usize::from(from)) {
            p.patch.store(u32::from(to), Ordering::Release);
        }
    }

    /// Puts a copy of `frame` on `(port, queue)`'s rx queue; `false` if the pool is empty, the
    /// frame does not fit a buffer, the queue is full or does not exist.
    pub fn inject(&self, port: u16, queue: u16, frame: &[u8]) -> bool {
        let Some(p) = self.shared.ports.get(usize::from(port)) else { return false };
        let ok = (|| {
            let q = p.rx.get(usize::from(queue))?;
            let mut b = alloc(&self.shared.pool)?;
            b.append(frame.len())?.copy_from_slice(frame);
            q.push(b).ok()
        })()
        .is_some();
        if !ok {
            p.stats.inject_failed.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// Removes and returns (as byte vectors) everything transmitted on `(port, queue)`.
    pub fn drain_tx(&self, port: u16, queue: u16) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        if let Some(q) = self.shared.ports.get(usize::from(port)).and_then(|p| p.tx.get(usize::from(queue))) {
            while let Some(b) = q.pop() {
                out.push(b.data().to_vec());
            }
        }
        out
    }

    /// Removes and returns everything transmitted on any queue of `port`, queue by queue.
    pub fn drain_tx_all(&self, port: u16) -> Vec<Vec<u8>> {
        let queues = self.shared.ports.get(usize::from(port)).map_or(0, |p| p.tx.len());
        (0..queues).flat_map(|q| self.drain_tx(port, q as u16)).collect()
    }

    /// Packets waiting on `(port, queue)`'s rx queue.
    pub fn rx_pending(&self, port: u16, queue: u16) -> usize {
        self.shared.ports.get(usize::from(port)).and_then(|p| p.rx.get(usize::from(queue))).map_or(0, ArrayQueue::len)
    }

    /// Buffers currently in the pool (the rest are in queues or held by workers).
    pub fn free_buffers(&self) -> usize {
        self.shared.pool.len.load(Ordering::Relaxed)
    }

    /// Counters of `port`.
    pub fn stats(&self, port: u16) -> Option<&MemPortStats> {
        self.shared.ports.get(usize::from(port)).map(|p| &p.stats)
    }

    /// The headroom every fresh buffer starts with.
    pub fn headroom(&self) -> usize {
        self.shared.headroom
    }
}

fn alloc(pool: &Arc<Pool>) -> Option<MemBuf> {
    let mut slot = pool.pop()?;
    slot.buf.reset(&[]);
    Some(MemBuf { slot: ManuallyDrop::new(slot) })
}

/// A worker's handle on a [`MemNet`].
#[derive(Clone)]
pub struct MemIo {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MemIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemIo")
    }
}

impl PacketIo for MemIo {
    type Buf = MemBuf;

    fn rx_burst<const N: usize>(&mut self, port: u16, queue: u16, out: &mut Burst<MemBuf, N>) -> usize {
        let Some(p) = self.shared.ports.get(usize::from(port)) else { return 0 };
        let Some(q) = p.rx.get(usize::from(queue)) else { return 0 };
        let mut n = 0;
        while !out.is_full() {
            let Some(b) = q.pop() else { break };
            out.push(b);
            n += 1;
        }
        p.stats.rx.fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    fn tx_burst<const N: usize>(&mut self, port: u16, queue: u16, pkts: &mut Burst<MemBuf, N>) -> usize {
        let Some(p) = self.shared.ports.get(usize::from(port)) else { return 0 };
        let patch = p.patch.load(Ordering::Acquire);
        let target = if patch == u32::MAX {
            p.tx.get(usize::from(queue))
        } else {
            self.shared.ports.get(patch as usize).and_then(|peer| peer.rx.get(usize::from(queue)))
        };
        let Some(q) = target else { return 0 };
        let mut sent = 0;
        let mut unsent: Burst<MemBuf, N> = Burst::new();
        {
            let mut it = pkts.drain(..);
            for b in it.by_ref() {
                if let Err(b) = q.push(b) {
                    // Queue full: this one and all after it stay, in order.
                    unsent.push(b);
                    break;
                }
                sent += 1;
            }
            unsent.extend(it);
        }
        p.stats.tx.fetch_add(sent as u64, Ordering::Relaxed);
        p.stats.tx_full.fetch_add(unsent.len() as u64, Ordering::Relaxed);
        *pkts = unsent;
        sent
    }

    fn alloc(&mut self) -> Option<MemBuf> {
        alloc(&self.shared.pool)
    }

    fn mac(&self, port: u16) -> Option<[u8; 6]> {
        self.shared.ports.get(usize::from(port)).map(|p| p.mac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, len: usize) -> Vec<u8> {
        (0..len).map(|i| tag ^ i as u8).collect()
    }

    #[test]
    fn inject_rx_tx_drain_round_trip() {
        let net = MemNet::new(&MemConfig { ports: 2, queues: 2, buffers: 64, ..MemConfig::default() });
        let mut io = net.io();
        for i in 0..5 {
            assert!(net.inject(0, 1, &frame(i, 60 + usize::from(i))));
        }
        assert_eq!(net.rx_pending(0, 1), 5);
        let mut burst: Burst<MemBuf, 4> = Burst::new();
        assert_eq!(io.rx_burst(0, 0, &mut burst), 0, "queue 0 is empty");
        assert_eq!(io.rx_burst(0, 1, &mut burst), 4, "limited by the burst capacity");
        assert_eq!(io.rx_burst(0, 1, &mut burst), 0, "burst is full");
        assert_eq!(burst[2].data(), frame(2, 62).as_slice());
        assert_eq!(burst[0].headroom(), HeadroomBuf::DEFAULT_HEADROOM);
        assert_eq!(net.free_buffers(), 59);
        assert_eq!(io.tx_burst(1, 0, &mut burst), 4);
        assert!(burst.is_empty());
        let out = net.drain_tx(1, 0);
        assert_eq!(out, (0..4).map(|i| frame(i, 60 + usize::from(i))).collect::<Vec<_>>());
        assert_eq!(net.free_buffers(), 63, "drained buffers returned; one still queued");
        assert_eq!(net.stats(0).unwrap().rx.load(Ordering::Relaxed), 4);
        assert_eq!(net.stats(1).unwrap().tx.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn esp_sized_growth_in_place() {
        let net = MemNet::new(&MemConfig::default());
        let mut io = net.io();
        assert!(net.inject(0, 0, &[0x45; 100]));
        let mut burst: Burst<MemBuf> = Burst::new();
        io.rx_burst(0, 0, &mut burst);
        let b = &mut burst[0];
        // Outer Ethernet + IPv4 + UDP + ESP header + IV in front, pad + trailer + ICV behind.
        b.prepend(14 + 20 + 8 + 8 + 8).unwrap().fill(0xee);
        b.append(2 + 2 + 16).unwrap().fill(0xcc);
        assert_eq!(b.len(), 178);
        assert_eq!(&b.data()[58..158], &[0x45; 100][..]);
        assert_eq!(b.headroom(), HeadroomBuf::DEFAULT_HEADROOM - 58);
        assert!(b.prepend(b.headroom() + 1).is_none());
        assert!(b.append(b.tailroom() + 1).is_none());
        assert!(b.adj(58) && b.trim(20));
        assert_eq!(b.data(), &[0x45; 100][..]);
    }

    #[test]
    fn full_tx_queue_keeps_unsent_in_order() {
        let net = MemNet::new(&MemConfig { ports: 1, queue_depth: 3, buffers: 16, ..MemConfig::default() });
        let mut io = net.io();
        let mut burst: Burst<MemBuf, 8> = Burst::new();
        for i in 0..5 {
            let mut b = io.alloc().unwrap();
            b.append(1).unwrap()[0] = i;
            burst.push(b);
        }
        assert_eq!(io.tx_burst(0, 0, &mut burst), 3);
        assert_eq!(burst.iter().map(|b| b.data()[0]).collect::<Vec<_>>(), vec![3, 4]);
        assert_eq!(net.stats(0).unwrap().tx_full.load(Ordering::Relaxed), 2);
        assert_eq!(net.drain_tx(0, 0), vec![vec![0], vec![1], vec![2]]);
        assert_eq!(io.tx_burst(0, 0, &mut burst), 2);
        assert_eq!(net.drain_tx_all(0), vec![vec![3], vec![4]]);
        assert_eq!(io.tx_burst(0, 5, &mut burst), 0, "no queue 5");
        assert_eq!(io.tx_burst(9, 0, &mut burst), 0, "no port 9");
    }

    #[test]
    fn a_buffer_is_one_pointer_and_may_outlive_its_network() {
        assert_eq!(std::mem::size_of::<MemBuf>(), std::mem::size_of::<usize>());
        let net = MemNet::new(&MemConfig { ports: 1, queues: 1, queue_depth: 4, buffers: 4, buf_size: 256 });
        let mut io = net.io();
        let kept = io.alloc().unwrap();
        assert_eq!(net.free_buffers(), 3);
        drop(kept);
        assert_eq!(net.free_buffers(), 4, "a dropped buffer goes home");
        let orphan = io.alloc().unwrap();
        drop(io);
        drop(net);
        // Its pool is gone: dropping it frees it instead of returning it.
        drop(orphan);
    }

    #[test]
    fn pool_exhaustion_and_return() {
        let net = MemNet::new(&MemConfig { ports: 1, buffers: 3, ..MemConfig::default() });
        let mut io = net.io();
        let bufs: Vec<MemBuf> = std::iter::from_fn(|| io.alloc()).take(10).collect();
        assert_eq!(bufs.len(), 3);
        assert!(!net.inject(0, 0, &[1; 60]), "pool empty");
        assert_eq!(net.stats(0).unwrap().inject_failed.load(Ordering::Relaxed), 1);
        drop(bufs);
        assert_eq!(net.free_buffers(), 3);
        let b = io.alloc().unwrap();
        assert!(b.is_empty(), "reused buffers come back empty");
        assert!(!net.inject(0, 0, &[0; 4096]), "frame larger than a buffer");
        assert!(!net.inject(7, 0, &[0; 60]), "no such port");
        assert!(!net.inject(0, 3, &[0; 60]), "no such queue");
    }

    /// The buffer freed last is the next one handed out (it is the one still in cache).
    #[test]
    fn the_pool_hands_out_the_buffer_freed_last() {
        let net = MemNet::new(&MemConfig { ports: 1, buffers: 8, ..MemConfig::default() });
        let mut io = net.io();
        let bufs: Vec<MemBuf> = (0..5).map(|_| io.alloc().unwrap()).collect();
        let addr = |b: &MemBuf| b.data().as_ptr() as usize;
        let order: Vec<usize> = bufs.iter().map(addr).collect();
        drop(bufs);
        let back: Vec<MemBuf> = (0..5).map(|_| io.alloc().unwrap()).collect();
        assert_eq!(back.iter().map(addr).collect::<Vec<_>>(), order.iter().rev().copied().collect::<Vec<_>>());
        drop(back);
        let again: Vec<usize> = (0..5).map(|_| io.alloc().unwrap()).map(|b| addr(&b)).collect();
        assert!(again.iter().all(|&a| a == order[0]), "each freed at once, so the same one again");
    }

    /// Threads taking and returning buffers at once never get the same buffer twice and lose
    /// none.
    #[test]
    fn the_pool_survives_concurrent_alloc_and_free() {
        const THREADS: usize = 4;
        let net = MemNet::new(&MemConfig { ports: 1, buffers: 64, ..MemConfig::default() });
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let mut io = net.io();
                s.spawn(move || {
                    let mut held: Vec<MemBuf> = Vec::new();
                    for round in 0..20_000usize {
                        if (round + t) % 3 != 0 {
                            if let Some(mut b) = io.alloc() {
                                assert!(b.is_empty(), "a handed-out buffer comes back empty");
                                b.append(8).unwrap().copy_from_slice(&(round * THREADS + t).to_le_bytes());
                                held.push(b);
                            }
                        } else if let Some(b) = held.pop() {
                            let mark = usize::from_le_bytes(b.data().try_into().unwrap());
                            assert_eq!(mark, (mark / THREADS) * THREADS + t, "another thread wrote my buffer");
                        }
                        if held.len() > 12 {
                            held.clear();
                        }
                    }
                });
            }
        });
        assert_eq!(net.free_buffers(), 64);
        let mut io = net.io();
        let all: std::collections::HashSet<usize> =
            (0..64).map(|_| io.alloc().unwrap().data().as_ptr() as usize).collect();
        assert_eq!(all.len(), 1, "freed at once: one buffer reused");
        let held: Vec<MemBuf> = (0..64).map(|_| io.alloc().unwrap()).collect();
        let distinct: std::collections::HashSet<usize> = held.iter().map(|b| b.data().as_ptr() as usize).collect();
        assert_eq!(distinct.len(), 64, "all 64 buffers still there, each once");
        assert!(io.alloc().is_none());
    }

    #[test]
    fn patched_ports_deliver_to_peer_rx() {
        let net = MemNet::new(&MemConfig { ports: 2, queues: 2, ..MemConfig::default() });
        net.patch(0, 1);
        let mut io = net.io();
        let mut burst: Burst<MemBuf> = Burst::new();
        let mut b = io.alloc().unwrap();
        b.append(3).unwrap().copy_from_slice(b"abc");
        burst.push(b);
        assert_eq!(io.tx_burst(0, 1, &mut burst), 1);
        assert!(net.drain_tx(0, 1).is_empty(), "patched tx bypasses the tx queue");
        assert_eq!(io.rx_burst(1, 1, &mut burst), 1);
        assert_eq!(burst[0].data(), b"abc");
        assert_eq!(io.mac(0), Some([2, 0, 0, 0, 0, 1]));
        assert_eq!(io.mac(1), Some([2, 0, 0, 0, 0, 2]));
        assert_eq!(io.mac(2), None);
    }

    #[test]
    fn worker_thread_echoes_while_test_injects() {
        const N: usize = 20_000;
        let net = MemNet::new(&MemConfig { ports: 2, queue_depth: 256, buffers: 1024, ..MemConfig::default() });
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let worker = {
            let (mut io, stop) = (net.io(), stop.clone());
            std::thread::spawn(move || {
                let mut burst: Burst<MemBuf> = Burst::new();
                let mut refused = 0usize;
                while !stop.load(Ordering::Acquire) {
                    // Like a worker with back-pressure: keep what the tx queue refused and
                    // retry it before taking more.
                    if burst.is_empty() {
                        io.rx_burst(0, 0, &mut burst);
                        for b in burst.iter_mut() {
                            b.data_mut()[0] ^= 0xff;
                        }
                    }
                    io.tx_burst(1, 0, &mut burst);
                    refused += burst.len();
                }
                refused
            })
        };
        let mut received = Vec::with_capacity(N);
        let mut next = 0usize;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while received.len() < N && std::time::Instant::now() < deadline {
            while next < N && net.inject(0, 0, &(next as u32).to_be_bytes()) {
                next += 1;
            }
            received.extend(net.drain_tx(1, 0));
        }
        stop.store(true, Ordering::Release);
        let refused = worker.join().unwrap();
        assert_eq!(received.len(), N, "frames lost ({refused} tx refusals retried)");
        for (i, f) in received.iter().enumerate() {
            let mut want = (i as u32).to_be_bytes();
            want[0] ^= 0xff;
            assert_eq!(f.as_slice(), &want, "frame {i}");
        }
        assert_eq!(net.free_buffers(), 1024, "every buffer returned");
    }
}
