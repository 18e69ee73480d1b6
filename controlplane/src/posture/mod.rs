//! Security posture before the tunnel (seed 002): posture-server connectors, the tag check
//! between user authentication and the CHILD_SA, the RS256 token fallback, and diagnose output.
//!
//! How to wire it (see `dialgate run`):
//! ```text
//! if let Some(p) = posture::build(&cfg, &gw.name)? {
//!     tokio::spawn(p.refresher.run(|line| eprintln!("{line}")));
//!     responder.set_client_check(Box::new(p.check));
//! }
//! ```
//! The check is synchronous and only reads the shared [`PostureCache`]; the [`Refresher`] does
//! the network I/O (one periodic fetch per `config endpoint-control fctems` entry, bounded by
//! `call-timeout`) and, after each round, reports accepted tunnels that lost their tag on
//! [`Posture::lost`]. The API is documented in `controlplane/posture/API.md`.

pub mod api;
pub mod cache;
pub mod check;
pub mod client;
pub mod connector;
pub mod diagnose;
pub mod jwt;
pub mod server;

#[cfg(test)]
mod tests;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

pub use cache::{ConnectorState, PostureCache};
pub use check::{PostureCheck, Sessions, TagRef};
pub use diagnose::{render_dynamic_list, render_ec_shm_list};

use crate::config::objects::RemoteGwMatch;
use crate::config::Config;

/// Why posture cannot be set up for a tunnel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostureError {
    /// A tag names a connector that is not configured (validation normally catches this).
    #[error("phase1-interface {tunnel:?}: tag {tag:?} needs endpoint-control fctems {connector:?}")]
    NoConnector {
        /// Tunnel.
        tunnel: String,
        /// Configured tag.
        tag: String,
        /// Missing connector.
        connector: String,
    },
    /// A connector's settings do not work (bad server, CA file or key file).
    #[error("endpoint-control fctems {0:?}: {1}")]
    Connector(String, String),
}

/// Everything posture needs for one tunnel.
#[derive(Debug)]
pub struct Posture {
    /// The check for `Responder::set_client_check`.
    pub check: PostureCheck,
    /// The cache refresher to spawn.
    pub refresher: Refresher,
    /// IKE SPIs of accepted tunnels that lost their tag, with the reason, after each refresh
    /// round (to be deleted with `Responder::delete_ike_sa`).
    pub lost: mpsc::UnboundedReceiver<(u64, String)>,
}

/// Periodically fetches every connector of a tunnel into the cache. Clone: a supervisor starts
/// a fresh copy when one fails (the cache it fills is shared).
#[derive(Debug, Clone)]
pub struct Refresher {
    connectors: Vec<(connector::Endpoint, Duration)>,
    cache: PostureCache,
    check: PostureCheck,
    lost: mpsc::UnboundedSender<(u64, String)>,
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Refresher {
    /// Runs forever: fetch every connector when due, then report tunnels that lost their tag.
    pub async fn run(self, mut log: impl FnMut(String) + Send) {
        let start = tokio::time::Instant::now();
        let mut due: Vec<tokio::time::Instant> = vec![start; self.connectors.len()];
        let mut last_ok: Vec<Option<bool>> = vec![None; self.connectors.len()];
        loop {
            let now = tokio::time::Instant::now();
            for (i, (ep, every)) in self.connectors.iter().enumerate() {
                if due[i] > now {
                    continue;
                }
                due[i] = now + *every;
                let ok = match connector::fetch(ep).await {
                    Ok(snap) => {
                        let (t, e) = (snap.tags.len(), snap.endpoints.len());
                        self.cache.store(&ep.name, snap, unix_now());
                        if last_ok[i] != Some(true) {
                            log(format!("posture {}: synced from {} ({t} tags, {e} endpoints)", ep.name, ep.url()));
                        }
                        true
                    }
                    Err(err) => {
                        if last_ok[i] != Some(false) {
                            log(format!(
                                "posture {}: {} unreachable, tokens are verified instead: {err}",
                                ep.name,
                                ep.url()
                            ));
                        }
                        self.cache.store_error(&ep.name, err);
                        false
                    }
                };
                last_ok[i] = Some(ok);
            }
            for (spi, why) in self.check.lost_sessions(unix_now()) {
                log(format!("posture: IKE SA {spi:016x} lost its ZTNA tag ({why})"));
                self.check.sessions.forget(spi);
                let _ = self.lost.send((spi, why));
            }
            let next = due.iter().min().copied().unwrap_or(now + Duration::from_secs(60));
            tokio::time::sleep_until(next.max(tokio::time::Instant::now() + Duration::from_millis(50))).await;
        }
    }
}

/// Posture for phase1 `phase1`: `Ok(None)` unless it has `remote-gw-match ztna`.
pub fn build(cfg: &Config, phase1: &str) -> Result<Option<Posture>, PostureError> {
    let Some(p1) = cfg.phase1(phase1) else { return Ok(None) };
    if p1.remote_gw_match != RemoteGwMatch::Ztna {
        return Ok(None);
    }
    let cache = PostureCache::new();
    let check = PostureCheck::new(p1.ems_sn_check.0, &p1.remote_gw_ztna_tags, cache.clone());
    let mut connectors = Vec::new();
    for tag in &check.tags {
        if connectors.iter().any(|(e, _): &(connector::Endpoint, Duration)| e.name == tag.connector) {
            continue;
        }
        let e = cfg.fctems.iter().find(|e| e.name == tag.connector).ok_or_else(|| PostureError::NoConnector {
            tunnel: phase1.to_string(),
            tag: tag.configured.clone(),
            connector: tag.connector.clone(),
        })?;
        let fail = |m: String| PostureError::Connector(e.name.clone(), m);
        let key = if e.jwt_public_key.is_empty() {
            None
        } else {
            let data = std::fs::read(&e.jwt_public_key).map_err(|err| fail(format!("{}: {err}", e.jwt_public_key)))?;
            Some(jwt::TokenKey::from_pem_or_der(&data).map_err(|err| fail(format!("{}: {err}", e.jwt_public_key)))?)
        };
        cache.insert(ConnectorState::new(
            &e.name,
            &e.serial_number,
            &e.tenant_id,
            key,
            u64::from(e.out_of_sync_threshold),
        ));
        let ep = connector::Endpoint::from_config(e).map_err(fail)?;
        connectors.push((ep, Duration::from_secs(u64::from(e.status_check_interval))));
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let refresher = Refresher { connectors, cache, check: check.clone(), lost: tx };
    Ok(Some(Posture { check, refresher, lost: rx }))
}
