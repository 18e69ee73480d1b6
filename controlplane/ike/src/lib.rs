//! Sans-IO IKEv2 protocol core (RFC 7296): no sockets, no clock, no threads.
