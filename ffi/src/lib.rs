//! Thin safe wrappers over Debian's DPDK 22.11.
//!
//! Bindings come from bindgen (an allowlist of `rte_*` functions and types) plus a C shim
//! (`shim/`) for DPDK's static inline functions; every `unsafe` block carries a `// SAFETY:`
//! note. Start with [`Eal::init`], then create a [`Mempool`], configure [`Port`]s and take
//! their queue handles, create [`Ring`]s, and launch workers with [`Eal::launch`].
//! [`io::EthdevIo`] is the data plane's `PacketIo` over DPDK queues: the implementation lives
//! here so that `dialgate-dataplane` never depends on DPDK.
//!
//! EAL arguments that work on a host without hugepages or a NIC (this project's VM):
//! `--no-huge -m 1024 --no-pci --no-shconf --no-telemetry --file-prefix=<unique> -l 0-1`
//! plus `--vdev=net_ring0`, `--vdev=net_af_packet0,iface=<veth>`, `--vdev=net_tap0` or
//! `--vdev=net_null0` (drivers load from Debian's plugin directory; see `build.rs`). Size
//! mempools explicitly ([`PoolConfig`]); DPDK's example defaults do not fit in `-m 1024`.
//! `--in-memory` does not combine with `--no-huge` (DPDK then forces legacy memory).
//!
//! Built without libdpdk (pkg-config cannot find it, or `DIALGATE_NO_DPDK` is set), the crate
//! only exports [`AVAILABLE`] = `false` and its error type.

pub mod error;
pub use error::{Error, Result};

/// Whether this build has DPDK (libdpdk was found at build time).
pub const AVAILABLE: bool = cfg!(dpdk);

#[cfg(dpdk)]
#[allow(missing_docs, non_camel_case_types, non_upper_case_globals, non_snake_case, unreachable_pub)]
#[allow(dead_code, clippy::all, clippy::undocumented_unsafe_blocks)]
pub mod sys {
    //! Raw bindgen output (allowlisted `rte_*` functions and types) and the `dg_*` shim.
    include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
}

#[cfg(dpdk)]
pub mod eal;
#[cfg(dpdk)]
pub mod io;
#[cfg(dpdk)]
pub mod lcore;
#[cfg(dpdk)]
pub mod mbuf;
#[cfg(dpdk)]
pub mod mempool;
#[cfg(dpdk)]
pub mod port;
#[cfg(dpdk)]
pub mod ring;

#[cfg(dpdk)]
pub use eal::{Eal, Launched};
#[cfg(dpdk)]
pub use mbuf::Mbuf;
#[cfg(dpdk)]
pub use mempool::{Mempool, PoolConfig};
#[cfg(dpdk)]
pub use port::{Port, PortConfig, PortStats, RxQueue, TxQueue};
#[cfg(dpdk)]
pub use ring::{Consumer, Producer, Ring, RingItem, RingMode};
