//! An owned packet buffer (`rte_mbuf`), freed back to its pool on drop.
//!
//! [`Mbuf`] implements the data plane's `PacketBuf`, so the ESP engine grows and shrinks it in
//! place using the mbuf's own headroom and tailroom. Packets received without scatter (the only
//! way `Port` configures queues) are single-segment; on a chained mbuf the data accessors see
//! the first segment only, and [`Mbuf::is_contiguous`] says so.

use std::ptr::NonNull;

use crate::sys;

/// An owned `rte_mbuf`.
#[repr(transparent)]
pub struct Mbuf {
    m: NonNull<sys::rte_mbuf>,
}

// SAFETY: an Mbuf is the unique owner of its rte_mbuf; freeing it from another thread is allowed
// by DPDK's mempool (multi-producer put).
unsafe impl Send for Mbuf {}
// SAFETY: `&Mbuf` only permits reads of the owned buffer.
unsafe impl Sync for Mbuf {}

impl std::fmt::Debug for Mbuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mbuf").field("len", &self.data_len()).field("headroom", &self.headroom()).finish()
    }
}

impl Mbuf {
    /// Takes ownership of a raw mbuf.
    ///
    /// # Safety
    /// `m` must be a valid mbuf that nothing else owns or will free.
    #[inline]
    pub unsafe fn from_raw(m: NonNull<sys::rte_mbuf>) -> Self {
        Self { m }
    }

    /// Gives up ownership (the caller must free or transmit it).
    #[inline]
    pub fn into_raw(self) -> NonNull<sys::rte_mbuf> {
        let m = self.m;
        std::mem::forget(self);
        m
    }

    /// The raw pointer, still owned by `self`.
    #[inline]
    pub fn as_ptr(&self) -> *mut sys::rte_mbuf {
        self.m.as_ptr()
    }

    /// Bytes in the first segment.
    #[inline]
    pub fn data_len(&self) -> usize {
        // SAFETY: self owns a valid mbuf.
        usize::from(unsafe { sys::dg_pktmbuf_data_len(self.as_ptr()) })
    }

    /// Bytes in the whole chain.
    #[inline]
    pub fn pkt_len(&self) -> usize {
        // SAFETY: self owns a valid mbuf.
        unsafe { sys::dg_pktmbuf_pkt_len(self.as_ptr()) as usize }
    }

    /// Whether the packet is one segment (so `data` is the whole packet).
    #[inline]
    pub fn is_contiguous(&self) -> bool {
        // SAFETY: self owns a valid mbuf.
        unsafe { sys::dg_pktmbuf_nb_segs(self.as_ptr()) == 1 }
    }

    /// Free bytes before the data.
    #[inline]
    pub fn headroom(&self) -> usize {
        // SAFETY: self owns a valid mbuf.
        usize::from(unsafe { sys::dg_pktmbuf_headroom(self.as_ptr()) })
    }

    /// Free bytes after the data in the last segment.
    #[inline]
    pub fn tailroom(&self) -> usize {
        // SAFETY: self owns a valid mbuf.
        usize::from(unsafe { sys::dg_pktmbuf_tailroom(self.as_ptr()) })
    }

    /// The first segment's bytes.
    #[inline]
    pub fn data(&self) -> &[u8] {
        // SAFETY: mtod points at data_len initialised bytes inside the mbuf we own; the borrow of
        // self keeps the mbuf alive and unmodified for the slice's lifetime.
        unsafe { std::slice::from_raw_parts(sys::dg_pktmbuf_mtod(self.as_ptr()).cast::<u8>(), self.data_len()) }
    }

    /// The first segment's bytes, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `data`, and the unique borrow of self makes the slice exclusive.
        unsafe { std::slice::from_raw_parts_mut(sys::dg_pktmbuf_mtod(self.as_ptr()).cast::<u8>(), self.data_len()) }
    }

    /// Grows the packet by `n` bytes at the back; returns the new bytes, `None` if no room.
    #[inline]
    pub fn append(&mut self, n: usize) -> Option<&mut [u8]> {
        let n16 = u16::try_from(n).ok()?;
        // SAFETY: rte_pktmbuf_append checks the tailroom and returns NULL (changing nothing)
        // when it is too small; otherwise the n bytes it returns lie inside our buffer.
        let p = unsafe { sys::dg_pktmbuf_append(self.as_ptr(), n16) };
        // SAFETY: p points at n writable bytes of the mbuf, exclusively borrowed through self.
        NonNull::new(p.cast::<u8>()).map(|p| unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), n) })
    }

    /// Grows the packet by `n` bytes at the front; returns the new bytes, `None` if no room.
    #[inline]
    pub fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        let n16 = u16::try_from(n).ok()?;
        // SAFETY: rte_pktmbuf_prepend checks the headroom and returns NULL when too small.
        let p = unsafe { sys::dg_pktmbuf_prepend(self.as_ptr(), n16) };
        // SAFETY: p points at n writable bytes at the new start of our mbuf.
        NonNull::new(p.cast::<u8>()).map(|p| unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), n) })
    }

    /// Removes `n` bytes from the front; `false` (nothing changed) if the segment is shorter.
    #[inline]
    pub fn adj(&mut self, n: usize) -> bool {
        let Ok(n16) = u16::try_from(n) else {
            return false;
        };
        // SAFETY: rte_pktmbuf_adj refuses (NULL) when n exceeds the first segment's length.
        unsafe { !sys::dg_pktmbuf_adj(self.as_ptr(), n16).is_null() }
    }

    /// Removes `n` bytes from the back; `false` (nothing changed) if the last segment is shorter.
    #[inline]
    pub fn trim(&mut self, n: usize) -> bool {
        let Ok(n16) = u16::try_from(n) else {
            return false;
        };
        // SAFETY: rte_pktmbuf_trim refuses (-1) when n exceeds the last segment's length.
        unsafe { sys::dg_pktmbuf_trim(self.as_ptr(), n16) == 0 }
    }

    /// Empties the buffer and restores the default headroom (for reuse without a free/alloc).
    #[inline]
    pub fn reset(&mut self) {
        // SAFETY: self owns a valid mbuf; reset only rewrites its metadata.
        unsafe { sys::dg_pktmbuf_reset(self.as_ptr()) }
    }
}

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we own the mbuf and nobody uses it after this.
        unsafe { sys::dg_pktmbuf_free(self.as_ptr()) }
    }
}

/// Frees a burst of mbufs with one bulk call (cheaper than dropping them one by one).
pub fn free_bulk<const N: usize>(bufs: &mut arrayvec::ArrayVec<Mbuf, N>) {
    let mut raw = [std::ptr::null_mut::<sys::rte_mbuf>(); N];
    let n = bufs.len();
    for (slot, m) in raw.iter_mut().zip(bufs.drain(..)) {
        *slot = m.into_raw().as_ptr();
    }
    // SAFETY: the n pointers were owned mbufs whose ownership we just released.
    unsafe { sys::rte_pktmbuf_free_bulk(raw.as_mut_ptr(), n as u32) }
}
