//! Errors from the DPDK wrappers: which call failed and DPDK's errno text.
//!
//! DPDK reports failures either as a negative errno return value (ethdev) or as `-1`/`NULL`
//! plus `rte_errno` (EAL, mempool, ring); both end up as [`Error::Dpdk`].

use std::ffi::CStr;

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// What went wrong in a DPDK wrapper.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `Eal::init` was called a second time in this process (DPDK cannot re-initialise).
    #[error("the EAL can be initialised only once per process")]
    EalAlreadyInitialised,
    /// A string handed to DPDK contains a NUL byte or is too long for DPDK's name fields.
    #[error("invalid name or argument {0:?}")]
    InvalidName(String),
    /// A parameter outside what the wrapper or DPDK accepts.
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    /// The call must be made on the EAL main lcore (the thread that ran `Eal::init`).
    #[error("{0} must be called on the EAL main lcore")]
    NotMainLcore(&'static str),
    /// The requested queue handle was already taken.
    #[error("port {port} {dir} queue {queue} is already owned by another handle")]
    QueueTaken {
        /// Port id.
        port: u16,
        /// "rx" or "tx".
        dir: &'static str,
        /// Queue index.
        queue: u16,
    },
    /// The port cannot be stopped while queue handles are alive.
    #[error("port {0} still has queue handles in use")]
    QueuesInUse(u16),
    /// A DPDK function failed.
    #[error("{call} failed: {msg} (errno {errno})")]
    Dpdk {
        /// The DPDK function that failed.
        call: &'static str,
        /// Positive errno value.
        errno: i32,
        /// DPDK's description of the errno.
        msg: String,
    },
}

#[cfg(dpdk)]
impl Error {
    /// Builds an [`Error::Dpdk`] for `call` from a (positive or negative) errno value.
    pub(crate) fn dpdk(call: &'static str, errno: i32) -> Self {
        let errno = errno.abs();
        // SAFETY: rte_strerror returns a pointer to a static (or per-lcore) NUL-terminated string
        // for any errno value; we copy it out immediately.
        let msg = unsafe { CStr::from_ptr(crate::sys::rte_strerror(errno)) };
        Error::Dpdk { call, errno, msg: msg.to_string_lossy().into_owned() }
    }

    /// Builds an [`Error::Dpdk`] for `call` from the calling thread's `rte_errno`.
    pub(crate) fn from_rte_errno(call: &'static str) -> Self {
        // SAFETY: dg_errno only reads the calling thread's rte_errno.
        let errno = unsafe { crate::sys::dg_errno() };
        Self::dpdk(call, errno)
    }
}

/// Converts `s` into a C string for a DPDK object name of at most `max` bytes.
#[cfg(dpdk)]
pub(crate) fn c_name(s: &str, max: usize) -> Result<std::ffi::CString> {
    if s.is_empty() || s.len() > max {
        return Err(Error::InvalidName(s.to_owned()));
    }
    std::ffi::CString::new(s).map_err(|_| Error::InvalidName(s.to_owned()))
}

#[cfg(not(dpdk))]
#[allow(dead_code)]
fn _unused(_: &CStr) {}
