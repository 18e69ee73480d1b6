//! Bounded lock-free rings (`rte_ring`) carrying owned pointers between lcores.
//!
//! A [`Ring<T>`] moves values of a pointer-sized owning type ([`RingItem`]: `Mbuf`, `Box<U>`)
//! and never loses one: bursts enqueue from the front of an `ArrayVec` and leave what did not
//! fit there (a full ring is the caller's to count, never a block), and dropping the ring
//! drains and drops what is still inside. The shared [`Ring`] uses DPDK's multi-producer /
//! multi-consumer paths from `&self`; [`Ring::into_spsc`] turns it into one [`Producer`] and
//! one [`Consumer`] that use the cheaper single-producer / single-consumer paths, which is
//! sound only because each of those handles is unique and not `Sync`.

use std::ffi::c_void;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;

use arrayvec::ArrayVec;

use crate::eal::Eal;
use crate::error::{c_name, Error, Result};
use crate::mbuf::Mbuf;
use crate::sys;

/// Longest ring name DPDK accepts (RTE_RING_NAMESIZE minus "RG_" and the terminator).
pub const MAX_NAME_LEN: usize = 28;

/// A value that travels through a ring as one pointer.
///
/// # Safety
/// `from_ptr(into_ptr(x))` must give back `x`, and `into_ptr` must never return null.
pub unsafe trait RingItem: Send + Sized {
    /// Gives up ownership as a non-null pointer.
    fn into_ptr(self) -> NonNull<c_void>;
    /// Takes ownership back.
    ///
    /// # Safety
    /// `p` must come from `into_ptr` of the same type and be used only once.
    unsafe fn from_ptr(p: NonNull<c_void>) -> Self;
}

// SAFETY: Mbuf::into_raw/from_raw round-trip the same non-null mbuf pointer.
unsafe impl RingItem for Mbuf {
    fn into_ptr(self) -> NonNull<c_void> {
        self.into_raw().cast()
    }
    unsafe fn from_ptr(p: NonNull<c_void>) -> Self {
        // SAFETY: the caller guarantees p came from into_ptr and is used once.
        unsafe { Mbuf::from_raw(p.cast()) }
    }
}

// SAFETY: Box::into_raw is never null and Box::from_raw undoes it.
unsafe impl<U: Send> RingItem for Box<U> {
    fn into_ptr(self) -> NonNull<c_void> {
        // SAFETY: Box::into_raw never returns null.
        unsafe { NonNull::new_unchecked(Box::into_raw(self).cast()) }
    }
    unsafe fn from_ptr(p: NonNull<c_void>) -> Self {
        // SAFETY: the caller guarantees p came from Box::into_raw of a Box<U>, used once.
        unsafe { Box::from_raw(p.as_ptr().cast()) }
    }
}

/// How producers and consumers will use the ring (DPDK's `RING_F_SP_ENQ`/`RING_F_SC_DEQ`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingMode {
    /// Any number of producers and consumers (`&self` methods on [`Ring`]).
    MpMc,
    /// One producer and one consumer (use [`Ring::into_spsc`]).
    SpSc,
}

struct RingInner<T: RingItem> {
    r: NonNull<sys::rte_ring>,
    _eal: Eal,
    _items: PhantomData<T>,
}

// SAFETY: the ring stores owned `T: Send` values; DPDK's mp/mc paths are thread-safe, and the
// sp/sc paths are only reachable through unique, non-Sync Producer/Consumer handles.
unsafe impl<T: RingItem> Send for RingInner<T> {}
// SAFETY: as above; shared access only reaches the mp/mc (thread-safe) paths.
unsafe impl<T: RingItem> Sync for RingInner<T> {}

impl<T: RingItem> Drop for RingInner<T> {
    fn drop(&mut self) {
        let mut buf = [std::ptr::null_mut::<c_void>(); 32];
        loop {
            // SAFETY: last handle: nobody else uses the ring; buf has room for 32 pointers.
            let n = unsafe { sys::dg_ring_mc_dequeue_burst(self.r.as_ptr(), buf.as_mut_ptr(), 32) } as usize;
            if n == 0 {
                break;
            }
            for &p in &buf[..n] {
                if let Some(p) = NonNull::new(p) {
                    // SAFETY: every pointer in the ring came from T::into_ptr.
                    drop(unsafe { T::from_ptr(p) });
                }
            }
        }
        // SAFETY: the ring is empty and unreferenced.
        unsafe { sys::rte_ring_free(self.r.as_ptr()) }
    }
}

impl<T: RingItem> RingInner<T> {
    /// # Safety
    /// `enq` must be a DPDK enqueue-burst entry point this handle is allowed to use.
    #[inline]
    unsafe fn enqueue<const N: usize>(
        &self,
        items: &mut ArrayVec<T, N>,
        enq: unsafe extern "C" fn(*mut sys::rte_ring, *const *mut c_void, u32) -> u32,
    ) -> usize {
        let len = items.len();
        if len == 0 {
            return 0;
        }
        let mut raw = [std::ptr::null_mut::<c_void>(); N];
        for (slot, it) in raw.iter_mut().zip(items.drain(..)) {
            *slot = it.into_ptr().as_ptr();
        }
        // SAFETY: raw holds len owned pointers; the caller vouches for `enq`.
        let n = unsafe { enq(self.r.as_ptr(), raw.as_ptr(), len as u32) } as usize;
        for &p in &raw[n..len] {
            if let Some(p) = NonNull::new(p) {
                // SAFETY: not enqueued, so still ours; capacity: we drained `len` ≥ this many.
                items.push(unsafe { T::from_ptr(p) });
            }
        }
        n
    }

    /// # Safety
    /// `deq` must be a DPDK dequeue-burst entry point this handle is allowed to use.
    #[inline]
    unsafe fn dequeue<const N: usize>(
        &self,
        out: &mut ArrayVec<T, N>,
        deq: unsafe extern "C" fn(*mut sys::rte_ring, *mut *mut c_void, u32) -> u32,
    ) -> usize {
        let want = out.remaining_capacity();
        if want == 0 {
            return 0;
        }
        let mut raw = [std::ptr::null_mut::<c_void>(); N];
        // SAFETY: raw has room for want ≤ N pointers; the caller vouches for `deq`.
        let n = unsafe { deq(self.r.as_ptr(), raw.as_mut_ptr(), want as u32) } as usize;
        for &p in &raw[..n] {
            if let Some(p) = NonNull::new(p) {
                // SAFETY: every pointer in the ring came from T::into_ptr; capacity checked.
                out.push(unsafe { T::from_ptr(p) });
            }
        }
        n
    }

    fn count(&self) -> usize {
        // SAFETY: reads the ring's head/tail.
        unsafe { sys::dg_ring_count(self.r.as_ptr()) as usize }
    }

    fn free_count(&self) -> usize {
        // SAFETY: reads the ring's head/tail.
        unsafe { sys::dg_ring_free_count(self.r.as_ptr()) as usize }
    }
}

/// A bounded multi-producer/multi-consumer ring of `T` (clone the handle to share it).
pub struct Ring<T: RingItem> {
    inner: Arc<RingInner<T>>,
}

impl<T: RingItem> Clone for Ring<T> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

impl<T: RingItem> std::fmt::Debug for Ring<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring").field("count", &self.count()).field("free", &self.free_count()).finish()
    }
}

impl<T: RingItem> Ring<T> {
    /// Creates a ring named `name` (unique, ≤ 28 bytes) holding `capacity` items exactly
    /// (`RING_F_EXACT_SZ`).
    pub fn new(_eal: &Eal, name: &str, capacity: u32, mode: RingMode) -> Result<Ring<T>> {
        let cname = c_name(name, MAX_NAME_LEN)?;
        if capacity == 0 || capacity >= (1 << 31) {
            return Err(Error::InvalidParameter(format!("ring {name}: capacity {capacity}")));
        }
        let mut flags = sys::RING_F_EXACT_SZ;
        if mode == RingMode::SpSc {
            flags |= sys::RING_F_SP_ENQ | sys::RING_F_SC_DEQ;
        }
        // SAFETY: EAL initialised (we hold `_eal`); valid name.
        let r = unsafe { sys::rte_ring_create(cname.as_ptr(), capacity, sys::SOCKET_ID_ANY, flags) };
        let r = NonNull::new(r).ok_or_else(|| Error::from_rte_errno("rte_ring_create"))?;
        Ok(Ring { inner: Arc::new(RingInner { r, _eal: _eal.clone(), _items: PhantomData }) })
    }

    /// Enqueues from the front of `items` (multi-producer safe); what did not fit stays in
    /// `items`. Returns how many were enqueued.
    #[inline]
    pub fn enqueue_burst<const N: usize>(&self, items: &mut ArrayVec<T, N>) -> usize {
        // SAFETY: the mp path is safe with any number of concurrent producers.
        unsafe { self.inner.enqueue(items, mp_enq) }
    }

    /// Dequeues up to `out.remaining_capacity()` items (multi-consumer safe).
    #[inline]
    pub fn dequeue_burst<const N: usize>(&self, out: &mut ArrayVec<T, N>) -> usize {
        // SAFETY: the mc path is safe with any number of concurrent consumers.
        unsafe { self.inner.dequeue(out, mc_deq) }
    }

    /// Items currently in the ring.
    pub fn count(&self) -> usize {
        self.inner.count()
    }

    /// Free slots.
    pub fn free_count(&self) -> usize {
        self.inner.free_count()
    }

    /// Splits into the single producer and single consumer; fails if other handles exist.
    pub fn into_spsc(self) -> std::result::Result<(Producer<T>, Consumer<T>), Ring<T>> {
        if Arc::strong_count(&self.inner) != 1 {
            return Err(self);
        }
        let p = Producer { inner: self.inner.clone(), _not_sync: PhantomData };
        Ok((p, Consumer { inner: self.inner, _not_sync: PhantomData }))
    }
}

/// The unique producer of a single-producer ring.
pub struct Producer<T: RingItem> {
    inner: Arc<RingInner<T>>,
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

impl<T: RingItem> Producer<T> {
    /// Enqueues from the front of `items` (single-producer path); what did not fit stays.
    #[inline]
    pub fn enqueue_burst<const N: usize>(&mut self, items: &mut ArrayVec<T, N>) -> usize {
        // SAFETY: this is the ring's only producer (unique, !Sync, made by into_spsc).
        unsafe { self.inner.enqueue(items, sp_enq) }
    }

    /// Free slots.
    pub fn free_count(&self) -> usize {
        self.inner.free_count()
    }
}

/// The unique consumer of a single-consumer ring.
pub struct Consumer<T: RingItem> {
    inner: Arc<RingInner<T>>,
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

impl<T: RingItem> Consumer<T> {
    /// Dequeues up to `out.remaining_capacity()` items (single-consumer path).
    #[inline]
    pub fn dequeue_burst<const N: usize>(&mut self, out: &mut ArrayVec<T, N>) -> usize {
        // SAFETY: this is the ring's only consumer (unique, !Sync, made by into_spsc).
        unsafe { self.inner.dequeue(out, sc_deq) }
    }

    /// Items waiting.
    pub fn count(&self) -> usize {
        self.inner.count()
    }
}

impl<T: RingItem> std::fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").field("free", &self.free_count()).finish()
    }
}

impl<T: RingItem> std::fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("count", &self.count()).finish()
    }
}

unsafe extern "C" fn mp_enq(r: *mut sys::rte_ring, o: *const *mut c_void, n: u32) -> u32 {
    // SAFETY: forwarded contract of RingInner::enqueue.
    unsafe { sys::dg_ring_mp_enqueue_burst(r, o, n) }
}
unsafe extern "C" fn sp_enq(r: *mut sys::rte_ring, o: *const *mut c_void, n: u32) -> u32 {
    // SAFETY: forwarded contract of RingInner::enqueue.
    unsafe { sys::dg_ring_sp_enqueue_burst(r, o, n) }
}
unsafe extern "C" fn mc_deq(r: *mut sys::rte_ring, o: *mut *mut c_void, n: u32) -> u32 {
    // SAFETY: forwarded contract of RingInner::dequeue.
    unsafe { sys::dg_ring_mc_dequeue_burst(r, o, n) }
}
unsafe extern "C" fn sc_deq(r: *mut sys::rte_ring, o: *mut *mut c_void, n: u32) -> u32 {
    // SAFETY: forwarded contract of RingInner::dequeue.
    unsafe { sys::dg_ring_sc_dequeue_burst(r, o, n) }
}
