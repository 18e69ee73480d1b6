//! The shared posture cache: per connector, the last snapshot, when it was fetched and whether
//! the last refresh worked.
//!
//! How to use it: one [`PostureCache`] is shared (it is a cheap `Clone` handle) between the
//! refresher tasks (writers, [`PostureCache::store`] / [`PostureCache::store_error`]), the
//! synchronous [`super::PostureCheck`] and the diagnose renderers (readers). Locks are held only
//! to copy or replace data, never across I/O.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use super::api::Snapshot;
use super::jwt::TokenKey;

/// What one connector knows.
#[derive(Debug, Clone, Default)]
pub struct ConnectorState {
    /// Connector name (`EMS1`).
    pub name: String,
    /// `serial-number` from the configuration (may be empty: then the server's is used).
    pub configured_serial: String,
    /// `tenant-id` from the configuration.
    pub configured_tenant: String,
    /// The key from `jwt-public-key`, if configured.
    pub configured_key: Option<TokenKey>,
    /// The last snapshot fetched.
    pub snapshot: Option<Arc<Snapshot>>,
    /// The key the server published in its last snapshot.
    pub server_key: Option<TokenKey>,
    /// Unix time of the last successful fetch.
    pub fetched_unix: Option<u64>,
    /// False when the last refresh failed or timed out.
    pub last_ok: bool,
    /// The last refresh error.
    pub last_error: Option<String>,
    /// After this many seconds without a successful fetch the snapshot is stale.
    pub stale_after: u64,
}

impl ConnectorState {
    /// A connector that has not fetched yet.
    pub fn new(name: &str, serial: &str, tenant: &str, key: Option<TokenKey>, stale_after: u64) -> Self {
        Self {
            name: name.to_string(),
            configured_serial: serial.to_string(),
            configured_tenant: tenant.to_string(),
            configured_key: key,
            stale_after,
            ..Default::default()
        }
    }

    /// The snapshot if the last refresh worked and is recent enough at `now_unix`.
    pub fn fresh(&self, now_unix: u64) -> Option<&Snapshot> {
        let t = self.fetched_unix?;
        if self.last_ok && now_unix.saturating_sub(t) <= self.stale_after {
            self.snapshot.as_deref()
        } else {
            None
        }
    }

    /// The serial clients must report: the configured one, else the server's.
    pub fn serial(&self) -> Option<&str> {
        if !self.configured_serial.is_empty() {
            return Some(&self.configured_serial);
        }
        self.snapshot.as_ref().map(|s| s.serial.as_str()).filter(|s| !s.is_empty())
    }

    /// The key that verifies tag tokens: the configured one, else the server's last.
    pub fn token_key(&self) -> Option<&TokenKey> {
        self.configured_key.as_ref().or(self.server_key.as_ref())
    }
}

/// Shared handle to every connector's state.
#[derive(Debug, Clone, Default)]
pub struct PostureCache {
    inner: Arc<RwLock<BTreeMap<String, ConnectorState>>>,
}

impl PostureCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a connector.
    pub fn insert(&self, state: ConnectorState) {
        self.write(|m| {
            m.insert(state.name.clone(), state);
        });
    }

    /// Records a successful fetch of `connector` at `now_unix`.
    pub fn store(&self, connector: &str, snapshot: Snapshot, now_unix: u64) {
        let key = snapshot.token_public_key.as_deref().and_then(|p| TokenKey::from_pem_or_der(p.as_bytes()).ok());
        self.write(|m| {
            if let Some(c) = m.get_mut(connector) {
                c.snapshot = Some(Arc::new(snapshot));
                if key.is_some() {
                    c.server_key = key;
                }
                c.fetched_unix = Some(now_unix);
                c.last_ok = true;
                c.last_error = None;
            }
        });
    }

    /// Records a failed or timed-out refresh: the connector is stale from now on.
    pub fn store_error(&self, connector: &str, error: String) {
        self.write(|m| {
            if let Some(c) = m.get_mut(connector) {
                c.last_ok = false;
                c.last_error = Some(error);
            }
        });
    }

    /// A copy of one connector's state.
    pub fn get(&self, connector: &str) -> Option<ConnectorState> {
        self.read(|m| m.get(connector).cloned())
    }

    /// Copies of every connector's state, by name.
    pub fn all(&self) -> Vec<ConnectorState> {
        self.read(|m| m.values().cloned().collect())
    }

    fn read<T>(&self, f: impl FnOnce(&BTreeMap<String, ConnectorState>) -> T) -> T {
        // A writer that panicked left whole values behind; reading them is fine.
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        f(&g)
    }

    fn write(&self, f: impl FnOnce(&mut BTreeMap<String, ConnectorState>)) {
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staleness() {
        let c = PostureCache::new();
        c.insert(ConnectorState::new("EMS1", "", "", None, 30));
        assert!(c.get("EMS1").unwrap().fresh(100).is_none(), "never fetched");
        c.store("EMS1", Snapshot { serial: "FCTEMS1".into(), ..Default::default() }, 100);
        let s = c.get("EMS1").unwrap();
        assert!(s.fresh(130).is_some());
        assert!(s.fresh(131).is_none(), "older than stale_after");
        assert_eq!(s.serial(), Some("FCTEMS1"));
        c.store_error("EMS1", "connection refused".into());
        let s = c.get("EMS1").unwrap();
        assert!(s.fresh(101).is_none(), "the last refresh failed");
        assert_eq!(s.serial(), Some("FCTEMS1"), "the serial survives an outage");
    }
}
