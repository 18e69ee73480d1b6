//! Packet-buffer pools (`rte_pktmbuf_pool_create`) with explicit sizes.
//!
//! Size pools explicitly: DPDK's example defaults (8191 mbufs × 2 KiB per port plus caches)
//! do not fit in the `-m 1024 --no-huge` memory used on machines without hugepages. A
//! [`Mempool`] is a shared handle (clone it into each worker); the pool is freed when the last
//! handle goes *and* no mbuf is out, otherwise it is deliberately leaked so outstanding
//! [`Mbuf`]s never point into freed memory.

use std::ptr::NonNull;
use std::sync::Arc;

use arrayvec::ArrayVec;

use crate::eal::Eal;
use crate::error::{c_name, Error, Result};
use crate::mbuf::Mbuf;
use crate::sys;

/// Longest pool name DPDK accepts (RTE_MEMPOOL_NAMESIZE minus the terminator).
pub const MAX_NAME_LEN: usize = 25;

/// Sizes for a packet-buffer pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// Number of mbufs (a power of two minus one is the most memory-efficient).
    pub mbufs: u32,
    /// Per-lcore cache size (≤ 512 and ≤ mbufs / 1.5); 0 disables the cache.
    pub cache: u32,
    /// Data room per mbuf, headroom included (`RTE_MBUF_DEFAULT_BUF_SIZE` = 2176).
    pub data_room: u16,
    /// NUMA socket to allocate on; `None` for any.
    pub socket: Option<u32>,
}

impl PoolConfig {
    /// Default data room: 2048 bytes of data after DPDK's 128-byte headroom.
    pub const DEFAULT_DATA_ROOM: u16 = sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16;

    /// `mbufs` buffers of the default size with a 256-entry per-lcore cache.
    pub fn new(mbufs: u32) -> Self {
        Self { mbufs, cache: 256.min(mbufs * 2 / 3), data_room: Self::DEFAULT_DATA_ROOM, socket: None }
    }
}

struct PoolInner {
    mp: NonNull<sys::rte_mempool>,
    eal: Eal,
}

// SAFETY: the default pktmbuf pool uses the multi-producer/multi-consumer ring ops, so get/put
// from several threads at once is supported; the per-lcore caches are indexed by the calling
// thread's lcore id (non-EAL threads bypass them).
unsafe impl Send for PoolInner {}
// SAFETY: as for Send; every method takes `&self` and is one of DPDK's thread-safe pool calls.
unsafe impl Sync for PoolInner {}

impl Drop for PoolInner {
    fn drop(&mut self) {
        // SAFETY: the pool pointer is valid until rte_mempool_free below.
        let in_use = unsafe { sys::rte_mempool_in_use_count(self.mp.as_ptr()) };
        if in_use == 0 {
            // SAFETY: no handle and no mbuf refers to the pool any more.
            unsafe { sys::rte_mempool_free(self.mp.as_ptr()) };
        } else {
            // Mbufs outlive the pool handle: keep pool and EAL alive for the rest of the process.
            std::mem::forget(self.eal.clone());
        }
    }
}

/// A packet-buffer pool (shared handle).
#[derive(Clone)]
pub struct Mempool {
    inner: Arc<PoolInner>,
}

impl std::fmt::Debug for Mempool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mempool").field("avail", &self.avail()).field("in_use", &self.in_use()).finish()
    }
}

impl Mempool {
    /// Creates a pktmbuf pool named `name` (unique per process, ≤ 25 bytes).
    pub fn new(eal: &Eal, name: &str, cfg: PoolConfig) -> Result<Mempool> {
        let cname = c_name(name, MAX_NAME_LEN)?;
        if cfg.mbufs == 0 || cfg.cache > 512 || (cfg.cache > 0 && u64::from(cfg.cache) * 3 > u64::from(cfg.mbufs) * 2) {
            return Err(Error::InvalidParameter(format!(
                "pool {name}: need mbufs > 0 and cache ≤ min(512, mbufs/1.5), got {cfg:?}"
            )));
        }
        if usize::from(cfg.data_room) <= sys::RTE_PKTMBUF_HEADROOM as usize {
            return Err(Error::InvalidParameter(format!("pool {name}: data room must exceed the headroom")));
        }
        let socket = cfg.socket.map_or(sys::SOCKET_ID_ANY, |s| s as i32);
        // SAFETY: the EAL is initialised (we hold `eal`); cname is a valid C string.
        let mp =
            unsafe { sys::rte_pktmbuf_pool_create(cname.as_ptr(), cfg.mbufs, cfg.cache, 0, cfg.data_room, socket) };
        let mp = NonNull::new(mp).ok_or_else(|| Error::from_rte_errno("rte_pktmbuf_pool_create"))?;
        Ok(Mempool { inner: Arc::new(PoolInner { mp, eal: eal.clone() }) })
    }

    /// The raw pool pointer, for ethdev queue setup.
    pub(crate) fn as_ptr(&self) -> *mut sys::rte_mempool {
        self.inner.mp.as_ptr()
    }

    /// Takes one mbuf (empty, default headroom); `None` when the pool is exhausted.
    #[inline]
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool is valid while `self` lives; a non-null result is a fresh mbuf we own.
        let m = unsafe { sys::dg_pktmbuf_alloc(self.as_ptr()) };
        // SAFETY: non-null mbufs from rte_pktmbuf_alloc are exclusively ours.
        NonNull::new(m).map(|m| unsafe { Mbuf::from_raw(m) })
    }

    /// Fills `out` up to its capacity with fresh mbufs, all or nothing; `false` if the pool
    /// cannot supply them all (then `out` is unchanged).
    pub fn alloc_bulk<const N: usize>(&self, out: &mut ArrayVec<Mbuf, N>) -> bool {
        let want = out.remaining_capacity();
        if want == 0 {
            return true;
        }
        let mut raw = [std::ptr::null_mut::<sys::rte_mbuf>(); N];
        // SAFETY: raw has room for `want` ≤ N pointers; on success DPDK fills all of them.
        let rc = unsafe { sys::dg_pktmbuf_alloc_bulk(self.as_ptr(), raw.as_mut_ptr(), want as u32) };
        if rc != 0 {
            return false;
        }
        for &m in &raw[..want] {
            if let Some(m) = NonNull::new(m) {
                // SAFETY: each pointer is a fresh mbuf we own; capacity was checked above.
                out.push(unsafe { Mbuf::from_raw(m) });
            }
        }
        true
    }

    /// Mbufs currently free in the pool (caches included).
    pub fn avail(&self) -> u32 {
        // SAFETY: the pool is valid while `self` lives.
        unsafe { sys::rte_mempool_avail_count(self.as_ptr()) }
    }

    /// Mbufs currently taken from the pool.
    pub fn in_use(&self) -> u32 {
        // SAFETY: the pool is valid while `self` lives.
        unsafe { sys::rte_mempool_in_use_count(self.as_ptr()) }
    }
}
