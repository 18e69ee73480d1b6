//! Per-thread lcore identity and the TSC clock the workers use for drain timers.
//!
//! These are cheap (inlined by DPDK, called through the shim) and safe from any thread: a thread
//! that DPDK did not create reports `None` from [`current`].

use crate::sys;

/// The calling thread's lcore id, or `None` on a thread that is not an EAL lcore.
pub fn current() -> Option<u32> {
    // SAFETY: reads the calling thread's per-lcore variable; valid before and after EAL init.
    let id = unsafe { sys::dg_lcore_id() };
    (id != sys::LCORE_ID_ANY).then_some(id)
}

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no preconditions.
    unsafe { sys::dg_rdtsc() }
}

/// TSC ticks per second, as calibrated by `rte_eal_init` (0 before init).
pub fn tsc_hz() -> u64 {
    // SAFETY: reads a value the EAL computed at init.
    unsafe { sys::dg_get_tsc_hz() }
}
