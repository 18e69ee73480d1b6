//! The documents of dialgate's posture API (`controlplane/posture/API.md`), shared by the
//! connector (client) and `dialgate posture-server`.
//!
//! How to use it: the server loads a [`Snapshot`] from its JSON file, calls
//! [`Snapshot::resolved`] and serves it at [`SNAPSHOT_PATH`]; the connector fetches that path and
//! stores the parsed [`Snapshot`] in the cache.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// The one document a connector fetches.
pub const SNAPSHOT_PATH: &str = "/api/v1/posture";
/// Header carrying the connector's configured tenant id.
pub const TENANT_HEADER: &str = "x-dialgate-tenant";

/// Everything a posture server publishes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The server's serial number (what clients report as EMSSN).
    pub serial: String,
    /// The tenant id (what clients report as EMSID).
    #[serde(default)]
    pub tenant: String,
    /// Tags and the endpoint addresses they resolve to.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// Endpoint records.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// PEM `PUBLIC KEY` that verifies endpoint tag tokens, if the server issues them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_public_key: Option<String>,
}

/// A posture tag.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    /// Name without connector prefix, e.g. `all_registered_clients`.
    pub name: String,
    /// Numeric id (shown by `diagnose firewall dynamic list`).
    #[serde(default)]
    pub id: u32,
    /// Addresses: `a.b.c.d` or ranges `a.b.c.d-e.f.g.h`.
    #[serde(default)]
    pub addresses: Vec<String>,
}

/// An endpoint record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Endpoint {
    /// Unique id (FORTICLIENT_CONNECT `UID`).
    pub uid: String,
    /// The endpoint's own address.
    pub address: String,
    /// MAC addresses.
    pub mac: Vec<String>,
    /// Serial of the managing server.
    pub serial: String,
    /// Tenant id.
    pub tenant: String,
    /// Serial of the endpoint's certificate.
    pub cert_serial: String,
    /// Address as the server saw it (after NAT).
    pub public_address: String,
    /// Quarantined.
    pub quarantined: bool,
    /// Online.
    pub online: bool,
    /// Registered.
    pub registered: bool,
    /// On the corporate network.
    pub on_net: bool,
    /// Client version.
    pub client_version: String,
    /// Tag names (without connector prefix).
    pub tags: Vec<String>,
}

/// One address entry as a range.
pub fn parse_range(s: &str) -> Option<(Ipv4Addr, Ipv4Addr)> {
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b): (Ipv4Addr, Ipv4Addr) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
            (a <= b).then_some((a, b))
        }
        None => {
            let a = s.trim().parse().ok()?;
            Some((a, a))
        }
    }
}

impl Tag {
    /// The parsed address ranges (entries that do not parse are skipped).
    pub fn ranges(&self) -> impl Iterator<Item = (Ipv4Addr, Ipv4Addr)> + '_ {
        self.addresses.iter().filter_map(|a| parse_range(a))
    }

    /// True if `ip` is one of the tag's addresses.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.ranges().any(|(a, b)| a <= ip && ip <= b)
    }
}

impl Snapshot {
    /// Checks the document: a serial, parseable addresses, unique tag names.
    pub fn validate(&self) -> Result<(), String> {
        if self.serial.is_empty() {
            return Err("serial is empty".into());
        }
        let mut names = std::collections::HashSet::new();
        for t in &self.tags {
            if !names.insert(t.name.as_str()) {
                return Err(format!("tag {:?} appears twice", t.name));
            }
            if let Some(bad) = t.addresses.iter().find(|a| parse_range(a).is_none()) {
                return Err(format!("tag {:?}: bad address {bad:?}", t.name));
            }
        }
        for e in &self.endpoints {
            if e.uid.is_empty() {
                return Err("an endpoint has no uid".into());
            }
            if !e.address.is_empty() && e.address.parse::<Ipv4Addr>().is_err() {
                return Err(format!("endpoint {:?}: bad address {:?}", e.uid, e.address));
            }
        }
        Ok(())
    }

    /// The served form: every tag named by an endpoint exists, and its address list also holds
    /// the addresses of the endpoints carrying it (tags get ids in order when they have none).
    pub fn resolved(&self) -> Snapshot {
        let mut out = self.clone();
        let mut index: BTreeMap<String, usize> =
            out.tags.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        for e in &self.endpoints {
            for name in &e.tags {
                let i = *index.entry(name.clone()).or_insert_with(|| {
                    out.tags.push(Tag { name: name.clone(), id: 0, addresses: vec![] });
                    out.tags.len() - 1
                });
                if !e.address.is_empty() && !out.tags[i].addresses.contains(&e.address) {
                    out.tags[i].addresses.push(e.address.clone());
                }
            }
        }
        let mut next = out.tags.iter().map(|t| t.id).max().unwrap_or(0) + 1;
        for t in &mut out.tags {
            if t.id == 0 {
                t.id = next;
                next += 1;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_feed_their_tags() {
        let s = Snapshot {
            serial: "FCTEMS1".into(),
            tags: vec![Tag { name: "a".into(), id: 6, addresses: vec!["10.0.0.1-10.0.0.3".into()] }],
            endpoints: vec![Endpoint {
                uid: "U1".into(),
                address: "172.16.200.242".into(),
                tags: vec!["a".into(), "all_registered_clients".into()],
                ..Default::default()
            }],
            ..Default::default()
        };
        s.validate().unwrap();
        let r = s.resolved();
        assert_eq!(r.tags[0].addresses, ["10.0.0.1-10.0.0.3", "172.16.200.242"]);
        assert_eq!(r.tags[1].name, "all_registered_clients");
        assert_eq!(r.tags[1].id, 7);
        assert!(r.tags[0].contains("10.0.0.2".parse().unwrap()));
        assert!(!r.tags[0].contains("10.0.0.4".parse().unwrap()));
        let mut bad = s.clone();
        bad.tags[0].addresses.push("10.0.0.9-10.0.0.1".into());
        assert!(bad.validate().unwrap_err().contains("bad address"));
    }
}
