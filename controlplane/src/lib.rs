//! dialgate control plane: configuration, users and tokens, IKE driver and `diagnose`.
pub mod auth;
pub mod config;
pub mod diagnose;
pub mod driver;
pub mod firewall;
pub mod gateway;
pub mod pool;
pub mod posture;
pub mod supervise;
