//! Large lookup tables on transparent huge pages.
//!
//! The connection table's index and entries (megabytes, read at random per packet) on 4 KiB
//! pages cost a TLB miss on most lookups — and in a VM with nested paging a miss is a
//! two-dimensional page walk. A table allocated 2 MiB-aligned and marked `MADV_HUGEPAGE` gets
//! 2 MiB pages wherever the kernel's transparent huge pages are `always` or `madvise` (Debian's
//! default); elsewhere it is ordinary memory. All of it is allocated and written once, at
//! construction, never on the packet path.

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// The huge page size on x86-64 and arm64 (with 4 KiB base pages).
const HUGE: usize = 2 << 20;

/// A fixed-length slice of `T`; from 2 MiB up, 2 MiB-aligned and advised onto huge pages.
pub struct HugeSlice<T: Copy> {
    ptr: NonNull<T>,
    len: usize,
    layout: Layout,
}

// SAFETY: a HugeSlice owns its elements like a Box<[T]>; sending or sharing it is as safe as
// sending or sharing the `T`s.
unsafe impl<T: Copy + Send> Send for HugeSlice<T> {}
// SAFETY: as above; `&HugeSlice` only gives `&[T]`.
unsafe impl<T: Copy + Sync> Sync for HugeSlice<T> {}

impl<T: Copy> HugeSlice<T> {
    /// `len` copies of `fill`.
    pub fn new(len: usize, fill: T) -> HugeSlice<T> {
        let bytes = std::mem::size_of::<T>().checked_mul(len.max(1)).expect("table size").max(1);
        // A table smaller than one huge page stays ordinary memory: a huge page for it would
        // mostly be waste (and small tables fit the TLB anyway).
        let huge = bytes >= HUGE;
        // Rounded up to whole huge pages: the last one is not shared with other allocations.
        let (size, align) = if huge {
            (bytes.div_ceil(HUGE) * HUGE, HUGE.max(std::mem::align_of::<T>()))
        } else {
            (bytes, std::mem::align_of::<T>())
        };
        let layout = Layout::from_size_align(size, align).expect("table layout");
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe { alloc(layout) };
        let Some(ptr) = NonNull::new(raw.cast::<T>()) else { handle_alloc_error(layout) };
        if huge {
            // Before the first write, so the pages are faulted in as huge pages. A refusal (THP
            // off, old kernel) leaves ordinary pages: only slower.
            // SAFETY: the range is exactly the allocation just made, 2 MiB-aligned.
            unsafe {
                libc::madvise(raw.cast(), size, libc::MADV_HUGEPAGE);
            }
        }
        for i in 0..len {
            // SAFETY: `i < len` elements fit in the allocation, which is aligned for `T`.
            unsafe { ptr.as_ptr().add(i).write(fill) };
        }
        HugeSlice { ptr, len, layout }
    }
}

impl<T: Copy> Deref for HugeSlice<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `len` initialised elements start at `ptr` and live as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> DerefMut for HugeSlice<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> Drop for HugeSlice<T> {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; `T: Copy` has no destructor to run.
        unsafe { dealloc(self.ptr.as_ptr().cast(), self.layout) }
    }
}

impl<T: Copy + std::fmt::Debug> std::fmt::Debug for HugeSlice<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HugeSlice").field("len", &self.len).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filled_aligned_and_writable() {
        let mut s = HugeSlice::new(300_000, 7u64);
        assert_eq!(s.len(), 300_000);
        assert_eq!(s.as_ptr() as usize % HUGE, 0);
        assert!(s.iter().all(|&v| v == 7));
        s[299_999] = 9;
        assert_eq!(s[299_999], 9);
        let empty: HugeSlice<u32> = HugeSlice::new(0, 0);
        assert!(empty.is_empty());
        // Small tables are ordinary allocations, aligned for their type only.
        let small = HugeSlice::new(1000, [3u8; 64]);
        assert_eq!(small.len(), 1000);
        assert!(small.iter().all(|e| e[63] == 3));
    }
}
