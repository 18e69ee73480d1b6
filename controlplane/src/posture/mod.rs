//! Security posture before the tunnel (seed 002): the FortiClient data and RS256 tag tokens.

pub mod client;
pub mod jwt;
