//! Packet I/O: the `PacketIo` trait the workers poll, and its in-memory loopback.
