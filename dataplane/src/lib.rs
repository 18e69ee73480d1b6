//! dialgate data plane: wire views, the ESP engine, SA tables and poll-mode workers.
//!
//! Nothing in this crate performs I/O on its own; packets arrive through a `PacketIo`
//! implementation (DPDK ethdev or an in-memory loopback) and leave the same way.

pub mod buf;
pub mod coremap;
pub mod esp;
pub mod hugemem;
pub mod nat;
pub mod pcap;
pub mod policy;
pub mod port;
pub mod ring;
pub mod route;
pub mod sa;
pub mod wire;
pub mod worker;
