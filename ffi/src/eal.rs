//! The Environment Abstraction Layer: initialise once, launch work on lcores, clean up last.
//!
//! Drive it as: `let eal = Eal::init(&["--no-huge", "-m", "1024", ...])?;` on the thread that is
//! to become the main lcore, create pools/ports/rings from `&eal`, `eal.launch(lcore, closure)`
//! for each worker and `join` the returned handles. [`Eal`] is a cheap clone of a shared handle;
//! every pool, port and ring keeps one, so `rte_eal_cleanup` runs only after the last of them
//! (and the last `Eal`) is dropped. DPDK cannot be initialised again after that, so a second
//! `init` in the same process returns [`Error::EalAlreadyInitialised`].

use std::ffi::{c_char, c_int, c_void, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::sys;

/// Set by the first `Eal::init` and never cleared: DPDK allows one initialisation per process.
static INITIALISED: AtomicBool = AtomicBool::new(false);

/// Runs `rte_eal_cleanup` when the last handle goes.
struct EalInner {
    main_lcore: u32,
}

impl Drop for EalInner {
    fn drop(&mut self) {
        // SAFETY: this is the last reference to the EAL: every pool, port and ring holds an
        // `Eal` clone, so no DPDK object created through this crate is still in use.
        unsafe {
            sys::rte_eal_cleanup();
        }
    }
}

/// A handle on the initialised EAL (clone it freely; cleanup runs after the last clone).
#[derive(Clone)]
pub struct Eal {
    inner: Arc<EalInner>,
}

impl std::fmt::Debug for Eal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Eal").field("main_lcore", &self.inner.main_lcore).finish()
    }
}

impl Eal {
    /// Initialises the EAL with `args` (EAL options only; the program name is supplied).
    ///
    /// The calling thread becomes the main lcore and is pinned to its CPU by DPDK.
    pub fn init<S: AsRef<str>>(args: &[S]) -> Result<Eal> {
        if INITIALISED.swap(true, Ordering::SeqCst) {
            return Err(Error::EalAlreadyInitialised);
        }
        let mut owned = Vec::with_capacity(args.len() + 1);
        owned.push(CString::new("dialgate").map_err(|_| Error::InvalidName("dialgate".into()))?);
        for a in args {
            let a = a.as_ref();
            owned.push(CString::new(a).map_err(|_| Error::InvalidName(a.to_owned()))?);
        }
        // DPDK keeps pointers into argv (and permutes the array), so both live for the process.
        let strings: &'static [CString] = Box::leak(owned.into_boxed_slice());
        let argv: &'static mut [*mut c_char] =
            Box::leak(strings.iter().map(|s| s.as_ptr().cast_mut()).collect::<Vec<_>>().into_boxed_slice());
        let argc = c_int::try_from(argv.len()).map_err(|_| Error::InvalidParameter("too many EAL arguments".into()))?;
        // SAFETY: argv holds argc valid NUL-terminated strings that are never freed; the
        // INITIALISED flag guarantees this is the only rte_eal_init call in the process.
        let rc = unsafe { sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if rc < 0 {
            return Err(Error::from_rte_errno("rte_eal_init"));
        }
        // SAFETY: the EAL is initialised; this reads its configuration.
        let main_lcore = unsafe { sys::rte_get_main_lcore() };
        Ok(Eal { inner: Arc::new(EalInner { main_lcore }) })
    }

    /// The main lcore (the thread that called `init`).
    pub fn main_lcore(&self) -> u32 {
        self.inner.main_lcore
    }

    /// Number of enabled lcores, the main one included.
    pub fn lcore_count(&self) -> u32 {
        // SAFETY: reads EAL configuration set up by init.
        unsafe { sys::rte_lcore_count() }
    }

    /// The enabled worker lcores (every enabled lcore but the main one), in ascending order.
    pub fn worker_lcores(&self) -> Vec<u32> {
        let mut out = Vec::new();
        let mut id = u32::MAX; // rte_get_next_lcore starts after `i`, wrapping from -1
        loop {
            // SAFETY: reads EAL configuration; skip_main=1, wrap=0 ends with RTE_MAX_LCORE.
            id = unsafe { sys::rte_get_next_lcore(id, 1, 0) };
            if id >= sys::RTE_MAX_LCORE {
                return out;
            }
            out.push(id);
        }
    }

    /// NUMA socket of `lcore`.
    pub fn lcore_socket(&self, lcore: u32) -> u32 {
        // SAFETY: rte_lcore_to_socket_id bounds-checks the id against RTE_MAX_LCORE.
        unsafe { sys::rte_lcore_to_socket_id(lcore) }
    }

    /// Runs `f` on worker `lcore`; join the returned handle to get its return value.
    ///
    /// Must be called on the main lcore. A panic inside `f` is caught at the lcore boundary
    /// (unwinding into C is undefined) and reported by `join` as `-1`.
    pub fn launch<F>(&self, lcore: u32, f: F) -> Result<Launched>
    where
        F: FnOnce() -> i32 + Send + 'static,
    {
        if crate::lcore::current() != Some(self.inner.main_lcore) {
            return Err(Error::NotMainLcore("Eal::launch"));
        }
        let boxed: Box<Box<dyn FnOnce() -> i32 + Send>> = Box::new(Box::new(f));
        let arg = Box::into_raw(boxed).cast::<c_void>();
        // SAFETY: trampoline takes ownership of `arg` exactly once when DPDK runs it; on failure
        // DPDK never runs it and we reclaim the box below.
        let rc = unsafe { sys::rte_eal_remote_launch(Some(trampoline), arg, lcore) };
        if rc != 0 {
            // SAFETY: launch failed, so `arg` was not handed to the trampoline; reclaim it.
            drop(unsafe { Box::from_raw(arg.cast::<Box<dyn FnOnce() -> i32 + Send>>()) });
            return Err(Error::dpdk("rte_eal_remote_launch", rc));
        }
        Ok(Launched { lcore, joined: false, eal: self.clone() })
    }
}

/// The function DPDK runs on the worker lcore: unboxes and calls the closure.
extern "C" fn trampoline(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` came from Box::into_raw in `launch` and DPDK passes it to us exactly once.
    let f = unsafe { Box::from_raw(arg.cast::<Box<dyn FnOnce() -> i32 + Send>>()) };
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(-1)
}

/// A function running on a worker lcore.
///
/// Dropping it without `join` still waits for the function on the main lcore, so the EAL
/// (which the handle keeps alive) is never cleaned up under a running worker.
#[derive(Debug)]
#[must_use = "join the lcore to learn how its function ended"]
pub struct Launched {
    lcore: u32,
    joined: bool,
    eal: Eal,
}

impl Launched {
    /// The lcore it runs on.
    pub fn lcore(&self) -> u32 {
        self.lcore
    }

    /// Waits for the function to return and yields its return value (`-1` after a panic).
    pub fn join(mut self) -> Result<i32> {
        if crate::lcore::current() != Some(self.eal.inner.main_lcore) {
            return Err(Error::NotMainLcore("Launched::join"));
        }
        self.joined = true;
        // SAFETY: called on the main lcore for an lcore we launched on.
        Ok(unsafe { sys::rte_eal_wait_lcore(self.lcore) })
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        if !self.joined && crate::lcore::current() == Some(self.eal.inner.main_lcore) {
            // SAFETY: on the main lcore, for an lcore we launched on.
            unsafe { sys::rte_eal_wait_lcore(self.lcore) };
        }
    }
}
