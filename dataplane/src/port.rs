//! Packet I/O: the `PacketIo` trait the poll-mode workers drive, and its implementations.
//!
//! A worker owns one `PacketIo` value and calls, per loop iteration:
//! `rx_burst(port, queue, &mut burst)` for each (port, queue) it polls, processes the buffers
//! in place (`PacketBuf`: `data_mut`, `prepend`/`append` for ESP encapsulation, `adj`/`trim`
//! for decapsulation), moves each into a per-port tx [`Burst`] and calls
//! `tx_burst(port, txq, &mut tx)`; whatever is left in `tx` afterwards was not accepted (a
//! full queue) and is the worker's to count and drop (`free_burst`, or just let it go out of
//! scope). Bursts are fixed-capacity arrays ([`Burst`], an `ArrayVec`), so nothing here
//! allocates per packet. Buffers free themselves on drop.
//!
//! Implementations:
//! * [`mem::MemIo`] — an in-memory network of ports with injectable rx queues and drainable tx
//!   queues, backed by a preallocated buffer pool (tests, benchmarks, tools; no EAL).
//! * [`pcap::PcapIo`] — wraps any `PacketIo` and records rx and/or tx packets to a pcap file.
//! * [`fault::FaultIo`] — wraps any `PacketIo` and drops / truncates / corrupts every Nth packet.
//! * DPDK ethdev: `dialgate_ffi::io::EthdevIo` (`Buf = Mbuf`). It lives in the `ffi` crate,
//!   which depends on this one, so the data plane itself never links DPDK.

use arrayvec::ArrayVec;

use crate::buf::PacketBuf;

pub mod fault;
pub mod mem;
pub mod pcap;

/// The usual burst size (DPDK's customary 32 packets per rx/tx call).
pub const BURST: usize = 32;

/// A fixed-capacity burst of buffers, moved to and from the I/O without allocating.
pub type Burst<B, const N: usize = BURST> = ArrayVec<B, N>;

/// Packet rx/tx for poll-mode workers (see the module docs for the calling pattern).
pub trait PacketIo {
    /// The packet buffer type (an mbuf, or an in-memory buffer with headroom).
    type Buf: PacketBuf + Send;

    /// Receives up to `out.remaining_capacity()` packets from `(port, queue)`, appending them
    /// to `out`; returns how many were appended. A queue this handle does not own yields 0.
    fn rx_burst<const N: usize>(&mut self, port: u16, queue: u16, out: &mut Burst<Self::Buf, N>) -> usize;

    /// Transmits from the front of `pkts` on `(port, queue)`. Accepted packets are removed
    /// from `pkts`; those not accepted stay, in order, at its front. Returns how many were
    /// accepted.
    fn tx_burst<const N: usize>(&mut self, port: u16, queue: u16, pkts: &mut Burst<Self::Buf, N>) -> usize;

    /// Takes an empty buffer (default headroom) for a locally generated packet (ARP reply,
    /// ICMP, IKE from the control plane); `None` when the pool is exhausted.
    fn alloc(&mut self) -> Option<Self::Buf>;

    /// Frees every buffer in `bufs` (implementations may do it in one bulk operation).
    fn free_burst<const N: usize>(&mut self, bufs: &mut Burst<Self::Buf, N>) {
        bufs.clear();
    }

    /// The MAC address of `port`, `None` if there is no such port.
    fn mac(&self, port: u16) -> Option<[u8; 6]>;
}
