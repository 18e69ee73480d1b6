//! Lock-free SA tables: the shared outbound table (RCU publication with per-worker quiescent
//! counters), the per-worker inbound shards, and the SPI layout that makes an inbound lookup
//! one array index.
//!
//! # Who owns what
//!
//! * **Outbound** ([`OutboundTable`]) is shared by every worker: LAN traffic towards one client
//!   may arrive on any LAN queue. The control plane publishes an `OutboundSa` into a slot
//!   (`install`, `remove`); workers read it without a lock or a reference count. An
//!   `OutboundSa`'s mutable state (sequence number, counters, lifetime latches) is atomic, so
//!   several workers sealing for one client draw distinct sequence numbers.
//!   The slot of a remote-access client is its virtual IPv4 address minus the pool base (the
//!   pool is contiguous), found by subtraction; tunnels to other destinations get slots after
//!   the pool and are reached through the LPM (`route.rs`).
//! * **Inbound** ([`InboundShard`]) is one table *per worker*, owned by it (`&mut`): the
//!   replay window is plain state that must have a single writer. We choose our SPIs, and the
//!   SPI names the owning worker, the slot and a generation ([`SpiParts`]). A worker that
//!   receives ESP for another worker's SPI hands the packet over on that worker's handoff ring
//!   (see `worker`), so correctness does not depend on RSS steering; the control plane still
//!   picks the owner where the flow lands (RSS) so that handoffs stay rare. Installing and
//!   deleting inbound SAs are commands on the owner's command ring, applied between bursts,
//!   which is that worker's own quiescent point: no other thread ever dereferences the entry.
//!   Deleted entries go back to the control plane on the event ring (final counters, and the
//!   free happens there, not in the worker).
//!
//! # RCU with quiescent-state counters ([`Rcu`])
//!
//! Each worker registers an [`RcuReader`] and calls [`RcuReader::quiescent`] between bursts —
//! a point where it holds no reference into any table. A [`ReadGuard`] borrows the reader, so
//! `quiescent` (which takes `&mut`) cannot be called while a reference obtained through the
//! guard is alive. A writer unpublishes an entry, bumps the domain's grace-period token and
//! keeps the old entry until every registered reader has reported a quiescent state at or after
//! that token (or is offline); only then is it freed, on the writer's thread (`reclaim`).
//! Readers never allocate, free, lock, or write anything but their own cache-padded counter.

use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use core::ptr;
use core::sync::atomic::{fence, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_utils::CachePadded;

use crate::esp::DropReason;
use crate::policy::{GroupMask, IfIndex};
use crate::sa::{InboundSa, OutboundSa};

/// A reader's counter value meaning "offline: holds no references".
const OFFLINE: u64 = 0;

/// An RCU domain: the readers (workers) whose quiescent states gate reclamation.
#[derive(Clone)]
pub struct Rcu {
    inner: Arc<RcuInner>,
}

struct RcuInner {
    /// Grace-period token; starts at 1 and grows with every retirement.
    token: AtomicU64,
    /// Last token each reader observed at a quiescent point, or `OFFLINE`.
    readers: Box<[CachePadded<AtomicU64>]>,
    /// Which reader indices are taken.
    taken: Mutex<Vec<bool>>,
}

impl core::fmt::Debug for Rcu {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Rcu").field("token", &self.inner.token.load(Ordering::Relaxed)).finish()
    }
}

impl Rcu {
    /// A domain for at most `max_readers` concurrently registered readers.
    pub fn new(max_readers: usize) -> Rcu {
        let readers = (0..max_readers).map(|_| CachePadded::new(AtomicU64::new(OFFLINE))).collect();
        Rcu {
            inner: Arc::new(RcuInner {
                token: AtomicU64::new(1),
                readers,
                taken: Mutex::new(vec![false; max_readers]),
            }),
        }
    }

    /// Registers a reader (online from now on); `None` when `max_readers` are registered.
    pub fn register(&self) -> Option<RcuReader> {
        let idx = {
            let mut taken = self.inner.taken.lock().unwrap_or_else(|e| e.into_inner());
            let idx = taken.iter().position(|t| !t)?;
            taken[idx] = true;
            idx
        };
        let mut r = RcuReader { rcu: self.clone(), idx, online: false };
        r.online();
        Some(r)
    }

    /// Starts a grace period after something was unpublished; returns its token.
    fn start_grace_period(&self) -> u64 {
        self.inner.token.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Whether every reader has passed a quiescent point at or after `token`.
    fn passed(&self, token: u64) -> bool {
        self.inner.readers.iter().all(|r| {
            let v = r.load(Ordering::SeqCst);
            v == OFFLINE || v >= token
        })
    }

    fn same(&self, other: &Rcu) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

/// One reader (a worker) of an RCU domain. Not `Clone`; going out of scope takes it offline.
pub struct RcuReader {
    rcu: Rcu,
    idx: usize,
    online: bool,
}

impl core::fmt::Debug for RcuReader {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RcuReader").field("idx", &self.idx).field("online", &self.online).finish()
    }
}

impl RcuReader {
    /// Reports a quiescent state: no reference obtained through an earlier guard survives.
    /// One load and one store; call it between bursts.
    #[inline]
    pub fn quiescent(&mut self) {
        let t = self.rcu.inner.token.load(Ordering::Acquire);
        // Release: every read of the tables made before this point is complete before a
        // writer can observe the new value and free what was read.
        self.rcu.inner.readers[self.idx].store(t, Ordering::Release);
    }

    /// Takes the reader offline (a stopped or idle worker must not hold up reclamation).
    pub fn offline(&mut self) {
        self.rcu.inner.readers[self.idx].store(OFFLINE, Ordering::Release);
        self.online = false;
    }

    /// Brings the reader back online.
    pub fn online(&mut self) {
        let t = self.rcu.inner.token.load(Ordering::SeqCst);
        self.rcu.inner.readers[self.idx].store(t, Ordering::SeqCst);
        // Order the announcement before any table read that follows: a writer that saw us
        // offline unpublished its entry before we can load the slot.
        fence(Ordering::SeqCst);
        self.online = true;
    }

    /// A read-side guard; references obtained through it live no longer than it.
    #[inline]
    pub fn read(&self) -> ReadGuard<'_> {
        ReadGuard { reader: self }
    }

    /// The domain this reader belongs to.
    pub fn domain(&self) -> &Rcu {
        &self.rcu
    }
}

impl Drop for RcuReader {
    fn drop(&mut self) {
        self.offline();
        let mut taken = self.rcu.inner.taken.lock().unwrap_or_else(|e| e.into_inner());
        taken[self.idx] = false;
    }
}

/// Proof that the holder is an online reader between two quiescent points.
pub struct ReadGuard<'r> {
    reader: &'r RcuReader,
}

impl core::fmt::Debug for ReadGuard<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("ReadGuard")
    }
}

/// Errors from table updates (control-plane side).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// The slot index is beyond the table.
    #[error("slot {0} is outside the table")]
    NoSuchSlot(u32),
    /// The address is not in the virtual-address pool.
    #[error("{0} is not in the virtual address pool")]
    NotInPool(Ipv4Addr),
}

/// The shared outbound SA table (see the module docs).
pub struct OutboundTable {
    rcu: Rcu,
    pool_base: u32,
    pool_len: u32,
    slots: Box<[AtomicPtr<OutboundSa>]>,
    /// Unpublished entries waiting for their grace period, with its token.
    retired: Mutex<Vec<(u64, Box<OutboundSa>)>>,
}

impl core::fmt::Debug for OutboundTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OutboundTable")
            .field("pool_base", &Ipv4Addr::from(self.pool_base))
            .field("pool_len", &self.pool_len)
            .field("slots", &self.slots.len())
            .finish()
    }
}

impl OutboundTable {
    /// A table for a pool of `pool_len` virtual addresses from `pool_base`, plus `extra`
    /// slots for tunnels reached through routes.
    pub fn new(rcu: &Rcu, pool_base: Ipv4Addr, pool_len: u32, extra: u32) -> OutboundTable {
        let n = pool_len as usize + extra as usize;
        OutboundTable {
            rcu: rcu.clone(),
            pool_base: u32::from(pool_base),
            pool_len,
            slots: (0..n).map(|_| AtomicPtr::new(ptr::null_mut())).collect(),
            retired: Mutex::new(Vec::new()),
        }
    }

    /// Number of slots.
    pub fn capacity(&self) -> u32 {
        self.slots.len() as u32
    }

    /// The slot of a client's virtual address: one subtraction and a bounds check.
    #[inline]
    pub fn slot_of(&self, vip: Ipv4Addr) -> Option<u32> {
        let off = u32::from(vip).wrapping_sub(self.pool_base);
        (off < self.pool_len).then_some(off)
    }

    /// The virtual address a pool slot stands for.
    pub fn vip_of(&self, slot: u32) -> Option<Ipv4Addr> {
        (slot < self.pool_len).then(|| Ipv4Addr::from(self.pool_base.wrapping_add(slot)))
    }

    /// The SA in `slot`, valid while `guard` lives. `None` for an empty slot, a slot out of
    /// range, or a guard of another RCU domain.
    #[inline]
    pub fn get<'g>(&'g self, slot: u32, guard: &'g ReadGuard<'_>) -> Option<&'g OutboundSa> {
        if !guard.reader.rcu.same(&self.rcu) {
            return None;
        }
        let p = self.slots.get(slot as usize)?.load(Ordering::Acquire);
        // SAFETY: a non-null pointer in a slot came from Box::into_raw and is freed only after
        // every online reader passed a quiescent point following its removal. The guard
        // borrows an online reader of this table's domain, and `quiescent` needs `&mut` of
        // that reader, so the reference cannot outlive the grace period that protects it.
        unsafe { p.as_ref() }
    }

    /// The SA for a client's virtual address (pool slots only).
    #[inline]
    pub fn get_vip<'g>(&'g self, vip: Ipv4Addr, guard: &'g ReadGuard<'_>) -> Option<&'g OutboundSa> {
        self.get(self.slot_of(vip)?, guard)
    }

    /// Publishes `sa` in `slot`, retiring what was there (control plane).
    pub fn install(&self, slot: u32, sa: OutboundSa) -> Result<(), TableError> {
        let cell = self.slots.get(slot as usize).ok_or(TableError::NoSuchSlot(slot))?;
        let new = Box::into_raw(Box::new(sa));
        let old = cell.swap(new, Ordering::SeqCst);
        self.retire(old);
        Ok(())
    }

    /// Publishes `sa` for the client at `vip`.
    pub fn install_vip(&self, vip: Ipv4Addr, sa: OutboundSa) -> Result<u32, TableError> {
        let slot = self.slot_of(vip).ok_or(TableError::NotInPool(vip))?;
        self.install(slot, sa)?;
        Ok(slot)
    }

    /// Empties `slot`; returns whether it held an SA. The SA is freed by a later `reclaim`.
    pub fn remove(&self, slot: u32) -> Result<bool, TableError> {
        let cell = self.slots.get(slot as usize).ok_or(TableError::NoSuchSlot(slot))?;
        let old = cell.swap(ptr::null_mut(), Ordering::SeqCst);
        let had = !old.is_null();
        self.retire(old);
        Ok(had)
    }

    /// Reads a published SA from the control plane (counters, sequence number) without a
    /// reader registration: `f` runs under the retire lock, so nothing is freed meanwhile.
    pub fn inspect<R>(&self, slot: u32, f: impl FnOnce(&OutboundSa) -> R) -> Option<R> {
        let _hold = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        let p = self.slots.get(slot as usize)?.load(Ordering::Acquire);
        // SAFETY: entries are unpublished and freed only by `install`/`remove` followed by
        // `reclaim`; `reclaim` takes the `retired` lock we hold, and `retire` pushes under it,
        // so an entry loaded here is not freed before `f` returns.
        unsafe { p.as_ref() }.map(f)
    }

    fn retire(&self, old: *mut OutboundSa) {
        if old.is_null() {
            return;
        }
        // SAFETY: `old` came from Box::into_raw and was just unpublished by our swap, so we
        // own it; readers may still hold references, hence the grace period before dropping.
        let boxed = unsafe { Box::from_raw(old) };
        let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        let token = self.rcu.start_grace_period();
        retired.push((token, boxed));
        drop(retired);
        self.reclaim();
    }

    /// Frees every retired entry whose grace period has passed; returns how many.
    pub fn reclaim(&self) -> usize {
        let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        let before = retired.len();
        retired.retain(|(token, _)| !self.rcu.passed(*token));
        before - retired.len()
    }

    /// Retired entries still waiting for readers.
    pub fn pending(&self) -> usize {
        self.retired.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for OutboundTable {
    fn drop(&mut self) {
        for cell in self.slots.iter() {
            let p = cell.swap(ptr::null_mut(), Ordering::SeqCst);
            if !p.is_null() {
                // SAFETY: we are the last owner of the table (`&mut self`), so no guard can
                // reference its entries; `p` came from Box::into_raw.
                drop(unsafe { Box::from_raw(p) });
            }
        }
    }
}

/// How an SPI we allocate is laid out: `generation (8) | worker (5) | slot (19)`.
///
/// The generation is never 0, so our SPIs are ≥ 2^24 and never in the range 1–255 that
/// RFC 4303 §2.1 reserves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpiParts {
    /// Bumped each time the slot is reused: packets for an old SA in the slot are stale.
    pub generation: u8,
    /// The worker that owns the inbound SA.
    pub worker: u8,
    /// Index in that worker's shard.
    pub slot: u32,
}

impl SpiParts {
    /// Workers an SPI can name.
    pub const MAX_WORKERS: usize = 32;
    /// Slots per worker an SPI can name.
    pub const MAX_SLOTS: u32 = 1 << 19;

    /// Decodes an SPI (any 32-bit value decodes; lookups reject what is not ours).
    #[inline]
    pub fn from_spi(spi: u32) -> SpiParts {
        SpiParts { generation: (spi >> 24) as u8, worker: ((spi >> 19) & 0x1f) as u8, slot: spi & 0x7_ffff }
    }

    /// Encodes; `None` if a field is out of range or the generation is 0.
    pub fn to_spi(self) -> Option<u32> {
        if self.generation == 0 || usize::from(self.worker) >= Self::MAX_WORKERS || self.slot >= Self::MAX_SLOTS {
            return None;
        }
        Some(u32::from(self.generation) << 24 | u32::from(self.worker) << 19 | self.slot)
    }
}

/// Hands out inbound SPIs per worker (control plane): free slots, and a generation per slot
/// that changes on every reuse.
#[derive(Debug)]
pub struct SpiAllocator {
    workers: Vec<WorkerSpis>,
}

#[derive(Debug)]
struct WorkerSpis {
    free: Vec<u32>,
    generation: Vec<u8>,
    live: Vec<bool>,
}

impl SpiAllocator {
    /// Allocator for `workers` shards of `slots` entries each (clamped to the SPI layout).
    pub fn new(workers: usize, slots: u32) -> SpiAllocator {
        let workers = workers.min(SpiParts::MAX_WORKERS);
        let slots = slots.min(SpiParts::MAX_SLOTS);
        SpiAllocator {
            workers: (0..workers)
                .map(|_| WorkerSpis {
                    free: (0..slots).rev().collect(),
                    generation: vec![0; slots as usize],
                    live: vec![false; slots as usize],
                })
                .collect(),
        }
    }

    /// A fresh SPI owned by `worker`; `None` when its shard is full.
    pub fn allocate(&mut self, worker: u8) -> Option<u32> {
        let w = self.workers.get_mut(usize::from(worker))?;
        let slot = w.free.pop()?;
        let g = &mut w.generation[slot as usize];
        *g = if *g == u8::MAX { 1 } else { *g + 1 };
        w.live[slot as usize] = true;
        SpiParts { generation: *g, worker, slot }.to_spi()
    }

    /// Returns an SPI's slot for reuse (with the next generation); `false` if it was not live.
    pub fn release(&mut self, spi: u32) -> bool {
        let p = SpiParts::from_spi(spi);
        let Some(w) = self.workers.get_mut(usize::from(p.worker)) else { return false };
        match (w.live.get(p.slot as usize), w.generation.get(p.slot as usize)) {
            (Some(true), Some(&g)) if g == p.generation => {
                w.live[p.slot as usize] = false;
                w.free.push(p.slot);
                true
            }
            _ => false,
        }
    }
}

/// An inbound SA as a worker holds it: the ESP state plus what the worker checks around it.
#[derive(Debug)]
pub struct InboundEntry {
    /// The ESP receive state (replay window: single writer, the owning worker).
    pub sa: InboundSa,
    /// The inner source address the client was assigned (anti-spoof).
    pub vip: IpAddr,
    /// The outer source (address and, with NAT-T, port) the client was last seen from; a
    /// change is reported once per change (NAT rebinding, RFC 3948 / RFC 7296 §2.23).
    pub peer: Option<SocketAddr>,
    /// Whether a packet has been received yet (the first one is reported).
    pub seen: bool,
    /// The firewall's view of the tunnel (interface index, user groups, connection-table id).
    pub tunnel: TunnelTag,
}

/// What the firewall needs to know about the tunnel an inbound SA belongs to; the control
/// plane fills it in at install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelTag {
    /// The tunnel's interface index in the policy set (its phase-1 interface); `IfIndex::MAX`
    /// when unknown, which only `srcintf any` policies match.
    pub if_index: IfIndex,
    /// The authenticated user's groups (for policies that name `groups`).
    pub groups: GroupMask,
    /// The tunnel's id in the connection table (per-tunnel limits); `None` uses the inbound
    /// slot. A stable id (such as the virtual address's pool offset) keeps NAT entries across
    /// a CHILD_SA rekey, which moves the SA to a new slot.
    pub conn_id: Option<u32>,
}

impl Default for TunnelTag {
    fn default() -> Self {
        TunnelTag { if_index: IfIndex::MAX, groups: GroupMask::NONE, conn_id: None }
    }
}

impl InboundEntry {
    /// An entry for a freshly installed SA (no firewall tag: see [`InboundEntry::with_tunnel`]).
    pub fn new(sa: InboundSa, vip: IpAddr, peer: Option<SocketAddr>) -> InboundEntry {
        InboundEntry { sa, vip, peer, seen: false, tunnel: TunnelTag::default() }
    }

    /// The same entry with its firewall tag.
    pub fn with_tunnel(mut self, tunnel: TunnelTag) -> InboundEntry {
        self.tunnel = tunnel;
        self
    }
}

/// A worker's own inbound SA table, indexed by the slot bits of the SPI.
#[derive(Debug)]
pub struct InboundShard {
    worker: u8,
    slots: Box<[Option<Box<InboundEntry>>]>,
}

/// Where an SPI leads from the point of view of one worker.
#[derive(Debug)]
pub enum InboundLookup<'a> {
    /// This worker owns the SA.
    Local(&'a mut InboundEntry, u32),
    /// Another worker owns it: hand the packet over.
    Remote(u8),
}

impl InboundShard {
    /// An empty shard of `slots` entries for worker `worker`.
    pub fn new(worker: u8, slots: u32) -> InboundShard {
        let slots = slots.min(SpiParts::MAX_SLOTS);
        InboundShard { worker, slots: (0..slots).map(|_| None).collect() }
    }

    /// The worker this shard belongs to.
    pub fn worker(&self) -> u8 {
        self.worker
    }

    /// Number of slots.
    pub fn capacity(&self) -> u32 {
        self.slots.len() as u32
    }

    /// Finds the SA for `spi`: one index. Empty slot → `UnknownSpi`; a slot holding another
    /// generation → `StaleSpi`.
    #[inline]
    pub fn lookup(&mut self, spi: u32) -> Result<InboundLookup<'_>, DropReason> {
        let p = SpiParts::from_spi(spi);
        if p.worker != self.worker {
            return Ok(InboundLookup::Remote(p.worker));
        }
        match self.slots.get_mut(p.slot as usize) {
            Some(Some(e)) if e.sa.spi == spi => Ok(InboundLookup::Local(e, p.slot)),
            Some(Some(_)) => Err(DropReason::StaleSpi),
            _ => Err(DropReason::UnknownSpi),
        }
    }

    /// Installs an entry at the slot its SPI names; returns the entry it replaced, or gives
    /// the entry back if the SPI does not belong to this shard.
    pub fn install(&mut self, entry: Box<InboundEntry>) -> Result<Option<Box<InboundEntry>>, Box<InboundEntry>> {
        let p = SpiParts::from_spi(entry.sa.spi);
        if p.worker != self.worker || p.generation == 0 {
            return Err(entry);
        }
        match self.slots.get_mut(p.slot as usize) {
            Some(cell) => Ok(cell.replace(entry)),
            None => Err(entry),
        }
    }

    /// Removes the entry with exactly this SPI (a stale SPI removes nothing).
    pub fn remove(&mut self, spi: u32) -> Option<Box<InboundEntry>> {
        let p = SpiParts::from_spi(spi);
        if p.worker != self.worker {
            return None;
        }
        let cell = self.slots.get_mut(p.slot as usize)?;
        if cell.as_ref().is_some_and(|e| e.sa.spi == spi) {
            cell.take()
        } else {
            None
        }
    }

    /// The entry for `spi`, if installed (control-plane style inspection in tests and tools).
    pub fn get(&self, spi: u32) -> Option<&InboundEntry> {
        let p = SpiParts::from_spi(spi);
        self.slots.get(p.slot as usize)?.as_deref().filter(|e| e.sa.spi == spi && p.worker == self.worker)
    }

    /// Installed entries.
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// Whether no entry is installed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::esp::{Algorithm, Backend, Transform};
    use crate::sa::{Lifetime, Tunnel};

    fn out_sa(spi: u32) -> OutboundSa {
        let t = Transform::new(Algorithm::Aes128Gcm, Backend::AwsLc, &[7; 20], &[]).unwrap();
        let tunnel =
            Tunnel { local: "192.0.2.1".parse().unwrap(), remote: "198.51.100.2".parse().unwrap(), encap: None };
        OutboundSa::new(spi, t, tunnel, false, Lifetime::default())
    }

    fn in_entry(spi: u32) -> Box<InboundEntry> {
        let t = Transform::new(Algorithm::Aes128Gcm, Backend::AwsLc, &[7; 20], &[]).unwrap();
        let sa = InboundSa::new(spi, t, false, 64, Lifetime::default());
        Box::new(InboundEntry::new(sa, "10.212.134.200".parse().unwrap(), None))
    }

    #[test]
    fn spi_layout_round_trip_and_reserved_range() {
        let p = SpiParts { generation: 3, worker: 17, slot: 0x7_fffe };
        let spi = p.to_spi().unwrap();
        assert_eq!(SpiParts::from_spi(spi), p);
        assert!(spi >= 1 << 24, "never in RFC 4303's reserved 1..=255");
        assert_eq!(SpiParts { generation: 0, ..p }.to_spi(), None);
        assert_eq!(SpiParts { worker: 32, ..p }.to_spi(), None);
        assert_eq!(SpiParts { slot: 1 << 19, ..p }.to_spi(), None);
    }

    #[test]
    fn allocator_bumps_generation_on_reuse() {
        let mut a = SpiAllocator::new(2, 2);
        let s1 = a.allocate(1).unwrap();
        let s2 = a.allocate(1).unwrap();
        assert_eq!(a.allocate(1), None, "shard full");
        assert_ne!(SpiParts::from_spi(s1).slot, SpiParts::from_spi(s2).slot);
        assert!(a.release(s1));
        assert!(!a.release(s1), "double release refused");
        let s3 = a.allocate(1).unwrap();
        let (p1, p3) = (SpiParts::from_spi(s1), SpiParts::from_spi(s3));
        assert_eq!(p1.slot, p3.slot);
        assert_eq!(p3.generation, p1.generation + 1);
        assert_eq!(a.allocate(7), None, "no such worker");
    }

    #[test]
    fn shard_lookup_unknown_stale_remote() {
        let mut a = SpiAllocator::new(2, 8);
        let mut shard = InboundShard::new(0, 8);
        let spi = a.allocate(0).unwrap();
        assert_eq!(shard.lookup(spi).unwrap_err(), DropReason::UnknownSpi);
        assert!(shard.install(in_entry(spi)).unwrap().is_none());
        assert!(matches!(shard.lookup(spi), Ok(InboundLookup::Local(e, _)) if e.sa.spi == spi));
        // Reuse the slot with a new generation: the old SPI is now stale.
        a.release(spi);
        let spi2 = a.allocate(0).unwrap();
        assert!(shard.install(in_entry(spi2)).unwrap().is_some(), "replaced the old entry");
        assert_eq!(shard.lookup(spi).unwrap_err(), DropReason::StaleSpi);
        assert!(shard.remove(spi).is_none(), "a stale SPI removes nothing");
        let other = a.allocate(1).unwrap();
        assert!(matches!(shard.lookup(other), Ok(InboundLookup::Remote(1))));
        assert!(shard.install(in_entry(other)).is_err(), "not this shard's SPI");
        assert!(shard.remove(spi2).is_some());
        assert_eq!(shard.lookup(spi2).unwrap_err(), DropReason::UnknownSpi);
        assert!(shard.is_empty());
    }

    #[test]
    fn pool_slots_by_subtraction() {
        let rcu = Rcu::new(1);
        let t = OutboundTable::new(&rcu, "10.212.134.0".parse().unwrap(), 256, 4);
        assert_eq!(t.slot_of("10.212.134.200".parse().unwrap()), Some(200));
        assert_eq!(t.slot_of("10.212.135.0".parse().unwrap()), None);
        assert_eq!(t.slot_of("10.212.133.255".parse().unwrap()), None, "below the base wraps, rejected");
        assert_eq!(t.vip_of(7), Some("10.212.134.7".parse().unwrap()));
        assert_eq!(t.vip_of(256), None, "extra slots have no address");
        assert_eq!(t.capacity(), 260);
        assert_eq!(t.install(260, out_sa(1)), Err(TableError::NoSuchSlot(260)));
        assert_eq!(
            t.install_vip("10.0.0.1".parse().unwrap(), out_sa(1)),
            Err(TableError::NotInPool("10.0.0.1".parse().unwrap()))
        );
    }

    #[test]
    fn retired_entry_waits_for_every_reader() {
        let rcu = Rcu::new(2);
        let table = OutboundTable::new(&rcu, "10.0.0.0".parse().unwrap(), 4, 0);
        let mut r1 = rcu.register().unwrap();
        let mut r2 = rcu.register().unwrap();
        table.install(1, out_sa(0x100)).unwrap();
        {
            let g = r1.read();
            let sa = table.get(1, &g).unwrap();
            assert_eq!(sa.spi, 0x100);
            table.install(1, out_sa(0x200)).unwrap();
            assert_eq!(table.pending(), 1, "r1 may still use the old SA");
            assert_eq!(sa.spi, 0x100, "still readable under the guard");
            assert_eq!(table.get(1, &g).unwrap().spi, 0x200, "new readers see the new SA");
        }
        r1.quiescent();
        assert_eq!(table.reclaim(), 0, "r2 has not passed a quiescent point");
        r2.quiescent();
        assert_eq!(table.reclaim(), 1);
        assert_eq!(table.pending(), 0);
        // An offline reader does not hold up reclamation.
        r2.offline();
        assert!(table.remove(1).unwrap());
        r1.quiescent();
        assert_eq!(table.reclaim(), 1);
        assert!(!table.remove(1).unwrap(), "already empty");
        assert_eq!(table.inspect(1, |s| s.spi), None);
        // A guard of another domain reads nothing.
        let other = Rcu::new(1);
        let r3 = other.register().unwrap();
        table.install(2, out_sa(0x300)).unwrap();
        assert!(table.get(2, &r3.read()).is_none());
        assert_eq!(table.inspect(2, |s| s.spi), Some(0x300));
    }

    #[test]
    fn reader_slots_are_reused() {
        let rcu = Rcu::new(1);
        let r = rcu.register().unwrap();
        assert!(rcu.register().is_none());
        drop(r);
        assert!(rcu.register().is_some());
    }
}
