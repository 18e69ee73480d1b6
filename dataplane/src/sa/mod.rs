//! Security associations as the workers see them: hot runtime structs (`runtime`) and the
//! lock-free tables that hold them (`table`).
pub mod runtime;
pub mod table;

pub use runtime::{InboundSa, Lifetime, OutboundSa, SaCounters, SaEvent, Tunnel, UdpEncap};
