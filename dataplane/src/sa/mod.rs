//! Security associations as the workers see them: hot runtime structs (`runtime`).
pub mod runtime;

pub use runtime::{InboundSa, Lifetime, OutboundSa, SaCounters, SaEvent, Tunnel, UdpEncap};
