//! The posture check between user authentication and the CHILD_SA (seed 002), and the
//! re-check of established tunnels when tags change.
//!
//! How to use it: build a [`PostureCheck`] (usually through [`super::build`]) and hand it to
//! `Responder::set_client_check`. It reads the shared [`PostureCache`] only; network I/O is the
//! refresher's job. Accepted clients are remembered in [`Sessions`]; call
//! [`PostureCheck::lost_sessions`] after each refresh to learn which IKE SAs lost their tag (or
//! whose token expired while the server is unreachable) and must be deleted, and
//! [`Sessions::forget`] when an IKE SA closes.
//!
//! Order (seed 002): FORTICLIENT_CONNECT data → `ems-sn-check` (EMSSN equals the connector's
//! serial) → each `remote-gw-ztna-tags` entry in order, first match wins: with a fresh cache the
//! client's own address (its `IP` field) must be in the tag's address list; with a stale cache
//! (server unreachable or slower than its timeout) the client's RS256 tag token is verified
//! instead and must name the tag.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use dialgate_ike::message::{Notify, NotifyType};
use dialgate_ike::responder::{CheckVerdict, ClientCheck, ClientInfo};

use super::cache::PostureCache;
use super::client::{
    ClientData, FORTICLIENT_CONNECT, ZTNA_TAGS_CHECK_FAILURE, ZTNA_TAGS_CHECK_SUCCESS, ZTNA_TAG_TOKEN,
};
use super::jwt;

/// A configured tag: `EMS1_ZTNA_all_registered_clients` = connector `EMS1`, tag
/// `all_registered_clients`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRef {
    /// As configured.
    pub configured: String,
    /// Connector name.
    pub connector: String,
    /// Tag name on the posture server.
    pub tag: String,
}

impl TagRef {
    /// Splits a configured tag name at `_ZTNA_`.
    pub fn parse(configured: &str) -> Option<Self> {
        let (c, t) = configured.split_once("_ZTNA_")?;
        (!c.is_empty() && !t.is_empty()).then(|| Self {
            configured: configured.to_string(),
            connector: c.to_string(),
            tag: t.to_string(),
        })
    }

    /// The name the debug lines print (`ZTNA_all_registered_clients`).
    pub fn short(&self) -> String {
        format!("ZTNA_{}", self.tag)
    }
}

/// How a client's tag was matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchedBy {
    /// The posture server's address list.
    Server,
    /// The client's token (valid until `exp`).
    Token {
        /// Token expiry, Unix seconds.
        exp: u64,
    },
}

/// A successful match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagMatch {
    /// The configured tag that matched.
    pub tag: TagRef,
    /// How.
    pub by: MatchedBy,
}

/// An accepted client, kept for re-checks.
#[derive(Debug, Clone)]
pub struct Session {
    /// The FortiClient UID.
    pub uid: String,
    /// The address it reported.
    pub ip: Option<Ipv4Addr>,
    /// Its last tag token, if any (never logged).
    pub token: Option<Vec<u8>>,
    /// The match at acceptance.
    pub matched: TagMatch,
}

/// The accepted clients of one tunnel by IKE SPI; a cheap `Clone` handle.
#[derive(Debug, Clone, Default)]
pub struct Sessions(Arc<Mutex<HashMap<u64, Session>>>);

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Session>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops a closed IKE SA.
    pub fn forget(&self, spi: u64) {
        self.lock().remove(&spi);
    }

    /// Moves a session to the rekeyed IKE SA.
    pub fn rekey(&self, old: u64, new: u64) {
        let mut m = self.lock();
        if let Some(s) = m.remove(&old) {
            m.insert(new, s);
        }
    }

    /// Replaces the token of an IKE SA (a token update in INFORMATIONAL).
    pub fn update_token(&self, spi: u64, token: Vec<u8>) {
        if let Some(s) = self.lock().get_mut(&spi) {
            s.token = Some(token);
        }
    }

    /// A copy of one session.
    pub fn get(&self, spi: u64) -> Option<Session> {
        self.lock().get(&spi).cloned()
    }

    /// Number of sessions.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

/// The check of one `remote-gw-match ztna` phase1.
#[derive(Debug, Clone)]
pub struct PostureCheck {
    /// `ems-sn-check enable`.
    pub ems_sn_check: bool,
    /// `remote-gw-ztna-tags`, in order.
    pub tags: Vec<TagRef>,
    /// The shared cache.
    pub cache: PostureCache,
    /// Clock skew allowed for tokens, seconds.
    pub skew: u64,
    /// Accepted clients.
    pub sessions: Sessions,
}

fn printable(data: &[u8]) -> String {
    String::from_utf8_lossy(data).chars().map(|c| if c.is_control() { ' ' } else { c }).take(512).collect()
}

impl PostureCheck {
    /// A check over `tags` (configured names; ones without `_ZTNA_` are skipped).
    pub fn new(ems_sn_check: bool, tags: &[String], cache: PostureCache) -> Self {
        Self {
            ems_sn_check,
            tags: tags.iter().filter_map(|t| TagRef::parse(t)).collect(),
            cache,
            skew: jwt::DEFAULT_SKEW,
            sessions: Sessions::default(),
        }
    }

    /// The serial check: `Ok` if `emssn` equals the serial of a connector the tags use.
    pub fn serial_ok(&self, emssn: &str) -> bool {
        let mut names: Vec<&str> = self.tags.iter().map(|t| t.connector.as_str()).collect();
        names.dedup();
        names
            .iter()
            .filter_map(|n| self.cache.get(n))
            .any(|c| c.serial().is_some_and(|s| !emssn.is_empty() && s == emssn))
    }

    /// Tags in order, first match wins; `Err` carries the reason. Debug lines go to `debug`.
    pub fn match_tags(
        &self,
        ip: Option<Ipv4Addr>,
        uid: &str,
        token: Option<&[u8]>,
        now_unix: u64,
        debug: &mut Vec<String>,
    ) -> Result<TagMatch, String> {
        let mut why: Vec<String> = Vec::new();
        for tag in &self.tags {
            let Some(conn) = self.cache.get(&tag.connector) else {
                why.push(format!("no posture server {}", tag.connector));
                continue;
            };
            if let Some(snap) = conn.fresh(now_unix) {
                let hit = ip.is_some_and(|ip| snap.tags.iter().any(|t| t.name == tag.tag && t.contains(ip)));
                if hit {
                    debug.push(format!("EMS ZTNA tags check success {}", tag.short()));
                    return Ok(TagMatch { tag: tag.clone(), by: MatchedBy::Server });
                }
                match ip {
                    Some(ip) => why.push(format!("{ip} not in {}", tag.configured)),
                    None => why.push("client sent no IP".to_string()),
                }
                continue;
            }
            // The server is unreachable or stale: the token is the fallback.
            let Some(token) = token else {
                why.push(format!("posture server {} unreachable and no tag token", tag.connector));
                continue;
            };
            let Some(key) = conn.token_key() else {
                why.push(format!("posture server {} unreachable and no token key", tag.connector));
                continue;
            };
            match jwt::verify(token, key, now_unix, self.skew, uid) {
                Ok(v) if v.tags.contains(&tag.tag) => {
                    debug.push(format!("EMS ZTNA token tags check success {}", tag.short()));
                    return Ok(TagMatch { tag: tag.clone(), by: MatchedBy::Token { exp: v.exp } });
                }
                Ok(_) => why.push(format!("token does not carry {}", tag.tag)),
                Err(e) => why.push(e.to_string()),
            }
        }
        why.dedup();
        Err(why.join("; "))
    }

    /// The IKE SAs whose client no longer matches any tag at `now_unix`, with the reason.
    pub fn lost_sessions(&self, now_unix: u64) -> Vec<(u64, String)> {
        let all: Vec<(u64, Session)> = self.sessions.lock().iter().map(|(k, v)| (*k, v.clone())).collect();
        let mut lost = Vec::new();
        for (spi, s) in all {
            let mut dbg = Vec::new();
            if let Err(why) = self.match_tags(s.ip, &s.uid, s.token.as_deref(), now_unix, &mut dbg) {
                lost.push((spi, why));
            }
        }
        lost.sort();
        lost
    }

    fn refuse(&self, reason: String, mut debug: Vec<String>, tags_failed: bool) -> CheckVerdict {
        if tags_failed {
            debug.push("EMS ZTNA tags check failure, abort".into());
            debug.push("Negotiate SA Error: EMS ZTNA tags check failed".into());
            debug.push("sending IKE_AUTH ZTNA TAGS check failure notification response".into());
        }
        let shown = if tags_failed { "EMS ZTNA tags check failed".to_string() } else { reason.clone() };
        CheckVerdict::Refuse {
            reason,
            debug,
            notify: Some(Notify::new(NotifyType(ZTNA_TAGS_CHECK_FAILURE), shown.into_bytes())),
        }
    }
}

impl ClientCheck for PostureCheck {
    fn update(&mut self, spi: u64, notifies: &[Notify]) {
        if let Some(t) = notifies.iter().find(|n| n.ty == NotifyType(ZTNA_TAG_TOKEN)) {
            self.sessions.update_token(spi, t.data.clone());
        }
    }

    fn rekeyed(&mut self, old: u64, new: u64) {
        self.sessions.rekey(old, new);
    }

    fn closed(&mut self, spi: u64) {
        self.sessions.forget(spi);
    }

    fn check(&mut self, client: &ClientInfo<'_>) -> CheckVerdict {
        let mut debug = Vec::new();
        let fct = client.notifies.iter().find(|n| n.ty == NotifyType(FORTICLIENT_CONNECT));
        let token = client.notifies.iter().find(|n| n.ty == NotifyType(ZTNA_TAG_TOKEN)).map(|n| n.data.as_slice());
        let Some(fct) = fct else {
            return self.refuse("no FortiClient data (FORTICLIENT_CONNECT)".into(), debug, false);
        };
        debug.push("processing notify type FORTICLIENT_CONNECT".into());
        debug.push(format!("received FCT data len = {}, data = '{}'", fct.data.len(), printable(&fct.data)));
        let data = match ClientData::parse(&fct.data) {
            Ok(d) => d,
            Err(e) => return self.refuse(e.to_string(), debug, false),
        };
        debug.push(format!("received FCT-UID : {}", data.uid));
        debug.push(format!("received EMS SN : {}", data.emssn));
        debug.push(format!("received EMS tenant ID : {}", data.emsid));
        if let Some(t) = token {
            // The token is a bearer credential: its length only.
            debug.push("processing notify type ZTNA_TAG".into());
            debug.push(format!("received ZTNA tags update token (len={})", t.len()));
        }
        if self.ems_sn_check {
            if !self.serial_ok(&data.emssn) {
                debug.push("EMS SN check failed".into());
                return self.refuse(format!("EMS serial number {:?} does not match", data.emssn), debug, false);
            }
            debug.push("EMS SN check passed".into());
        }
        match self.match_tags(data.ip, &data.uid, token, client.now_unix, &mut debug) {
            Ok(m) => {
                let mut notifies = Vec::new();
                if token.is_some() {
                    debug.push("send EMS_ZTNA_TAGS_CHECK_SUCCESS".into());
                    notifies
                        .push(Notify::new(NotifyType(ZTNA_TAGS_CHECK_SUCCESS), m.tag.configured.clone().into_bytes()));
                }
                self.sessions.lock().insert(
                    client.spi,
                    Session { uid: data.uid, ip: data.ip, token: token.map(<[u8]>::to_vec), matched: m },
                );
                CheckVerdict::Accept { debug, notifies }
            }
            Err(why) => self.refuse(format!("EMS ZTNA tags check failed: {why}"), debug, true),
        }
    }
}
