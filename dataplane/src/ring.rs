//! Bounded lock-free rings between the control plane and the workers, and the messages they
//! carry.
//!
//! * [`Command`] — control → each worker (one ring per worker): inbound SA install/delete
//!   (to the worker the SPI names), routes and neighbours (to every worker). Workers apply
//!   commands between bursts. A full command ring refuses the push and gives the command back
//!   (`Err(cmd)`); the control plane retries later.
//! * [`Exception`] — workers → control (one shared ring): IKE datagrams (UDP 500, and UDP
//!   4500 behind the non-ESP marker) with their addresses, ports and the port/queue they
//!   arrived on. The packet buffer itself travels (zero copy); dropping it frees it.
//! * [`TxRequest`] — control → a worker: an IKE datagram to send; the worker adds UDP, IPv4
//!   (and the non-ESP marker when either port is 4500, RFC 3948 §2.2) and Ethernet.
//! * [`Event`] — workers → control (one shared ring): SA lifetime/sequence events, the first
//!   packet of an SA, NAT rebinding, keepalives, learned neighbours, retired inbound SAs.
//!
//! Every ring is a `crossbeam_queue::ArrayQueue` (allocated once, lock-free, MPMC). A worker
//! never waits on a ring: a push that finds it full is counted as `DropReason::QueueFull` by
//! the worker and the message is dropped.

use core::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use crate::buf::PacketBuf;
use crate::route::NextHop;
use crate::sa::table::InboundEntry;
use crate::sa::SaEvent;

/// One end of a bounded lock-free ring; clone it to get another end.
pub struct Ring<T> {
    q: Arc<ArrayQueue<T>>,
}

impl<T> Clone for Ring<T> {
    fn clone(&self) -> Self {
        Ring { q: self.q.clone() }
    }
}

impl<T> core::fmt::Debug for Ring<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Ring").field("len", &self.q.len()).field("capacity", &self.q.capacity()).finish()
    }
}

impl<T> Ring<T> {
    /// A ring of `capacity` messages (at least 1), allocated now.
    pub fn new(capacity: usize) -> Ring<T> {
        Ring { q: Arc::new(ArrayQueue::new(capacity.max(1))) }
    }

    /// Enqueues, or gives the message back when the ring is full. Never blocks.
    #[inline]
    pub fn push(&self, msg: T) -> Result<(), T> {
        self.q.push(msg)
    }

    /// Dequeues one message.
    #[inline]
    pub fn pop(&self) -> Option<T> {
        self.q.pop()
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.q.len()
    }

    /// Whether the ring is empty.
    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    /// Capacity.
    pub fn capacity(&self) -> usize {
        self.q.capacity()
    }
}

/// A control-plane instruction for one worker.
#[derive(Debug)]
pub enum Command {
    /// Install (or replace) the inbound SA at the slot its SPI names in this worker's shard.
    InstallInbound(Box<InboundEntry>),
    /// Delete the inbound SA with this SPI; the worker returns it as [`Event::InboundRetired`].
    DeleteInbound {
        /// Our SPI.
        spi: u32,
    },
    /// Add or replace a route.
    RouteAdd {
        /// Network address.
        prefix: Ipv4Addr,
        /// Prefix length.
        len: u8,
        /// Where it leads.
        hop: NextHop,
    },
    /// Delete a route.
    RouteDel {
        /// Network address.
        prefix: Ipv4Addr,
        /// Prefix length.
        len: u8,
    },
    /// Set a neighbour's MAC address (static, or learned by another worker).
    NeighbourAdd {
        /// Port the neighbour is on.
        port: u16,
        /// Its IPv4 address.
        ip: Ipv4Addr,
        /// Its MAC address.
        mac: [u8; 6],
    },
}

/// An IKE datagram handed to the control plane.
pub struct Exception<B> {
    /// Port it arrived on.
    pub port: u16,
    /// Rx queue it arrived on.
    pub queue: u16,
    /// The peer's address and UDP port (as seen, possibly NAT-mapped).
    pub src: SocketAddrV4,
    /// Our address and port it was sent to (500 or 4500).
    pub dst: SocketAddrV4,
    /// The whole frame as received.
    pub buf: B,
    /// Offset of the IKE message (after UDP and the non-ESP marker) in `buf`.
    pub offset: usize,
}

impl<B: PacketBuf> Exception<B> {
    /// The IKE message.
    pub fn payload(&self) -> &[u8] {
        self.buf.data().get(self.offset..).unwrap_or(&[])
    }
}

impl<B> core::fmt::Debug for Exception<B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Exception").field("port", &self.port).field("src", &self.src).field("dst", &self.dst).finish()
    }
}

/// An IKE datagram for a worker to send.
pub struct TxRequest<B> {
    /// Our address and port (500 or 4500).
    pub src: SocketAddrV4,
    /// The peer's address and port.
    pub dst: SocketAddrV4,
    /// A buffer holding only the IKE message (no marker), with headroom for the headers.
    pub buf: B,
}

impl<B> core::fmt::Debug for TxRequest<B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TxRequest").field("src", &self.src).field("dst", &self.dst).finish()
    }
}

/// Which way an SA event concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Our SPI, traffic from the client.
    Inbound,
    /// The client's SPI, traffic to it.
    Outbound,
}

/// Something a worker reports to the control plane.
#[derive(Debug)]
pub enum Event {
    /// An SA crossed a lifetime or ran out of sequence numbers.
    Sa {
        /// The SA's SPI.
        spi: u32,
        /// Which direction's SA.
        dir: Direction,
        /// What happened.
        event: SaEvent,
    },
    /// The first packet was received on an inbound SA (DPD / "established" bookkeeping).
    FirstPacket {
        /// Our SPI.
        spi: u32,
        /// Outer source it came from.
        from: SocketAddr,
    },
    /// An inbound SA's packets now come from another outer address or UDP port (NAT
    /// rebinding): the outbound SA's remote should follow.
    PeerMoved {
        /// Our SPI.
        spi: u32,
        /// The new outer source.
        from: SocketAddr,
    },
    /// A NAT-T keepalive (RFC 3948 §2.3) arrived: the peer behind this address is alive.
    Keepalive {
        /// Outer source.
        from: SocketAddrV4,
    },
    /// A worker learned a neighbour's MAC address from ARP (rebroadcast it to the others).
    NeighbourLearned {
        /// Port.
        port: u16,
        /// Neighbour address.
        ip: Ipv4Addr,
        /// Its MAC.
        mac: [u8; 6],
    },
    /// A deleted inbound SA, with its final counters; the control plane frees it.
    InboundRetired(Box<InboundEntry>),
}
