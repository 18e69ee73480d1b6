//! dialgate control plane: configuration, users and tokens, IKE driver and `diagnose`.
pub mod auth;
pub mod config;
pub mod firewall;
