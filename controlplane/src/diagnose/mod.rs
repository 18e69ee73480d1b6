//! `diagnose`: what the running gateway knows, for `dialgate diagnose …` over a Unix socket.
//!
//! How to drive it:
//! 1. Build one [`Diag`] per process ([`Diag::new`]); describe the configured tunnels with
//!    [`Diag::add_tunnel`] (see [`TunnelInfo::from_config`]) and the users with a token with
//!    [`Diag::set_two_factor_users`] (2FA is derived from the configuration: a user with
//!    `set two-factor fortitoken` who logged in has had the code checked).
//! 2. Hand a clone to the driver's [`crate::driver::EventLog`] ([`crate::driver::EventLog::with_diag`]):
//!    every responder event then reaches [`Diag::on_event`] before the log consumes it, and every
//!    FortiOS-style debug line reaches [`Diag::debug`]. A driver may also publish its counters
//!    ([`Diag::set_driver_counters`], [`Diag::set_responder_stats`]) and plug in per-SA traffic
//!    counters ([`Diag::set_sa_counters`] with an [`SaCounterSource`]; without one, `stat:` shows
//!    zeros).
//! 3. Run [`server::serve`] (or [`server::Server::bind`] then [`server::Server::serve`]) on the
//!    control socket next to the driver; `dialgate diagnose …` talks to it.
//!
//! The registry holds the IKE SAs from their first event until [`Event::IkeSaClosed`]: closed
//! SAs leave the lists. A CHILD_SA is kept as SPIs, suite, selectors and addresses; its keys
//! are never copied out of the [`ChildSa`] (so nothing here can print them).
//!
//! The debug stream follows FortiOS: `diagnose debug application ike -1` sets the level,
//! `diagnose vpn ike log filter rem-addr4 X` the filter, and `diagnose debug enable` starts the
//! output — here a streaming command that keeps its connection open and receives every line
//! that passes the filter until the client goes away or `diagnose debug disable`/`reset`.
//! Lines are delivered with `try_send` on bounded channels: a slow reader loses lines (counted),
//! the driver never waits.

pub mod render;
pub mod server;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use dialgate_ike::message::TrafficSelector;
use dialgate_ike::responder::{ChildSa, CloseReason, Event, Stats};
use tokio::sync::mpsc;

use crate::config::objects::{DpdMode, NatTraversal, TwoFactor};
use crate::config::Config;

/// Lines a stream client may fall behind before lines are dropped for it.
const STREAM_QUEUE: usize = 4096;

/// Which posture listing `diagnose` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostureList<'a> {
    /// `firewall dynamic list [TAG]`: tags and their endpoint addresses.
    DynamicList(Option<&'a str>),
    /// `endpoint ec-shm list`: the endpoint records.
    EcShmList,
}

/// The FortiClient UID a posture check recorded for an IKE SA.
pub type ClientUid = Arc<dyn Fn(u64) -> Option<String> + Send + Sync>;

/// Renders a posture listing (set by the driver of a tunnel that checks posture).
pub type PostureRenderer = Arc<dyn Fn(PostureList<'_>) -> String + Send + Sync>;

/// Packet and byte counters of one CHILD_SA, as `stat: rxp=… txp=… rxb=… txb=…` shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SaStats {
    /// Packets received (decrypted).
    pub rxp: u64,
    /// Packets sent (encrypted).
    pub txp: u64,
    /// Bytes received.
    pub rxb: u64,
    /// Bytes sent.
    pub txb: u64,
}

impl std::ops::AddAssign for SaStats {
    fn add_assign(&mut self, o: SaStats) {
        self.rxp += o.rxp;
        self.txp += o.txp;
        self.rxb += o.rxb;
        self.txb += o.txb;
    }
}

/// Per-SA traffic counters a data plane provides (read when a listing is rendered).
pub trait SaCounterSource: Send + Sync {
    /// The counters of the CHILD_SA with these SPIs, or `None` when the data plane does not
    /// know it.
    fn counters(&self, inbound_spi: u32, outbound_spi: u32) -> Option<SaStats>;
}

/// What `diagnose` shows about a configured dial-up tunnel (phase1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelInfo {
    /// Phase1 name.
    pub name: String,
    /// The phase1 `interface`.
    pub interface: String,
    /// That interface's index (ports numbered in configuration order).
    pub ifindex: u32,
    /// `dpd` mode keyword.
    pub dpd_mode: String,
    /// `dpd-retryinterval` in seconds.
    pub dpd_interval: u32,
    /// `dpd-retrycount`.
    pub dpd_retry: u32,
    /// `nattraversal` is not `disable`.
    pub natt_enabled: bool,
    /// Address pool netmask (`ipv4-netmask`, prefix length).
    pub netmask: u8,
}

impl TunnelInfo {
    /// The tunnels of every phase1 of `cfg`.
    pub fn from_config(cfg: &Config) -> Vec<TunnelInfo> {
        cfg.phase1
            .iter()
            .map(|p| {
                let ifindex = cfg.interfaces.iter().position(|i| i.name == p.interface).map_or(0, |i| i as u32 + 1);
                TunnelInfo {
                    name: p.name.clone(),
                    interface: p.interface.clone(),
                    ifindex,
                    dpd_mode: match p.dpd {
                        DpdMode::Disable => "disable",
                        DpdMode::OnIdle => "on-idle",
                        DpdMode::OnDemand => "on-demand",
                    }
                    .to_string(),
                    dpd_interval: p.dpd_retryinterval,
                    dpd_retry: p.dpd_retrycount,
                    natt_enabled: p.nattraversal != NatTraversal::Disable,
                    netmask: p.ipv4_netmask,
                }
            })
            .collect()
    }

    fn unknown(name: &str) -> TunnelInfo {
        TunnelInfo {
            name: name.to_string(),
            interface: String::new(),
            ifindex: 0,
            dpd_mode: "on-demand".into(),
            dpd_interval: 20,
            dpd_retry: 3,
            natt_enabled: true,
            netmask: 32,
        }
    }
}

/// The users with `set two-factor fortitoken` in `cfg`.
pub fn two_factor_users(cfg: &Config) -> Vec<String> {
    cfg.users.iter().filter(|u| u.two_factor == TwoFactor::Fortitoken).map(|u| u.name.clone()).collect()
}

/// One CHILD_SA as the registry keeps it (no keys).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildEntry {
    /// Our SPI.
    pub inbound_spi: u32,
    /// The peer's SPI.
    pub outbound_spi: u32,
    /// FortiOS proposal name (`aes128gcm`, `aes256-sha256`, …).
    pub suite: String,
    /// Encryption key length in bytes (the key itself is not kept).
    pub key_len: usize,
    /// Integrity algorithm name, or `null`.
    pub auth: &'static str,
    /// Extended sequence numbers.
    pub esn: bool,
    /// ESP in UDP.
    pub udp_encap: bool,
    /// Peer-side selectors (its virtual address).
    pub tsi: Vec<TrafficSelector>,
    /// Our side (split include).
    pub tsr: Vec<TrafficSelector>,
    /// When it was installed.
    pub created: Instant,
}

impl ChildEntry {
    /// The registry's copy of `sa`: SPIs, suite, selectors; never the keys.
    pub fn from_child(sa: &ChildSa, now: Instant) -> ChildEntry {
        use dialgate_ike::crypto::{Encr, Integ};
        let key_len = match sa.suite.encr {
            Encr::AesCbc { key_len } | Encr::AesGcm16 { key_len } => key_len,
            Encr::ChaCha20Poly1305 => 32,
        };
        let auth = match sa.suite.integ {
            None => "null",
            Some(Integ::HmacSha1_96) => "sha1",
            Some(Integ::HmacSha256_128) => "sha256",
            Some(Integ::HmacSha384_192) => "sha384",
            Some(Integ::HmacSha512_256) => "sha512",
        };
        ChildEntry {
            inbound_spi: sa.inbound_spi,
            outbound_spi: sa.outbound_spi,
            suite: crate::driver::suite_name(&sa.suite),
            key_len,
            auth,
            esn: sa.esn,
            udp_encap: sa.udp_encap,
            tsi: sa.tsi.clone(),
            tsr: sa.tsr.clone(),
            created: now,
        }
    }
}

/// One IKE SA (a dial-up instance once established).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IkeEntry {
    /// The phase1 it belongs to.
    pub tunnel: String,
    /// The dial-up instance index (`NAME_0`, `NAME_1`, …), set when established.
    pub index: Option<u32>,
    /// The serial of the debug lines (`ike V=root:0:NAME:SERIAL:`).
    pub serial: u32,
    /// Our IKE SPI.
    pub spi: u64,
    /// The peer's address and port (last seen).
    pub remote: Option<SocketAddr>,
    /// Our address and port.
    pub local: Option<SocketAddr>,
    /// First event seen.
    pub created: Instant,
    /// When it was authenticated.
    pub established: Option<Instant>,
    /// EAP user.
    pub user: Option<String>,
    /// The user has a token (`two-factor fortitoken`) and logged in with it.
    pub two_factor: bool,
    /// The peer's IDi.
    pub peer_id: String,
    /// FortiClient's endpoint UID (posture-checked tunnels), filled in when a listing is made.
    pub client_uid: Option<String>,
    /// Address assigned through CP.
    pub assigned: Option<Ipv4Addr>,
    /// NAT detected on our side / the peer's side (from the IKE_SA_INIT debug lines).
    pub nat: (bool, bool),
    /// Its CHILD_SAs.
    pub children: Vec<ChildEntry>,
}

impl IkeEntry {
    /// The instance name: `NAME_INDEX` once established, the phase1 name before.
    pub fn name(&self) -> String {
        match self.index {
            Some(i) => format!("{}_{i}", self.tunnel),
            None => self.tunnel.clone(),
        }
    }

    /// ESP goes in UDP (NAT-T).
    pub fn natt(&self) -> bool {
        self.children.iter().any(|c| c.udp_encap) || self.nat.0 || self.nat.1
    }
}

/// Where an event comes from, as the [`crate::driver::EventLog`] knows it.
#[derive(Clone, Copy, Debug)]
pub struct EventSource<'a> {
    /// Phase1 name.
    pub tunnel: &'a str,
    /// Serial of the event's IKE SA, if it has one.
    pub serial: Option<u32>,
    /// The peer's address, when known.
    pub remote: Option<SocketAddr>,
    /// Our address of the datagram that caused the event, when known.
    pub local: Option<SocketAddr>,
}

/// A debug application whose lines can be streamed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum App {
    /// The IKE daemon (`ike V=root:0:NAME:SERIAL: …`).
    Ike,
    /// The authentication daemon (`[1898] handle_req-Two-factor token is needed`).
    Fnbamd,
    /// EAP proxy (accepted for the seed's command list; it prints nothing here).
    EapProxy,
}

impl App {
    /// The name used in `diagnose debug application NAME LEVEL`.
    pub fn name(self) -> &'static str {
        match self {
            App::Ike => "ike",
            App::Fnbamd => "fnbamd",
            App::EapProxy => "eap_proxy",
        }
    }

    /// Parses an application name.
    pub fn parse(s: &str) -> Option<App> {
        [App::Ike, App::Fnbamd, App::EapProxy].into_iter().find(|a| a.name() == s)
    }
}

/// `diagnose vpn ike log filter rem-addr4`: an address or an inclusive range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddrFilter {
    /// First address.
    pub start: Ipv4Addr,
    /// Last address.
    pub end: Ipv4Addr,
}

impl AddrFilter {
    /// Whether a line about `remote` passes. Lines whose peer is unknown do not pass a filter.
    pub fn matches(&self, remote: Option<IpAddr>) -> bool {
        match remote {
            Some(IpAddr::V4(a)) => (u32::from(self.start)..=u32::from(self.end)).contains(&u32::from(a)),
            Some(IpAddr::V6(a)) => a.to_ipv4_mapped().is_some_and(|a| self.matches(Some(IpAddr::V4(a)))),
            None => false,
        }
    }
}

/// The debug settings (`diagnose debug info`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DebugSettings {
    /// Levels per application (absent or 0 = off).
    pub levels: HashMap<App, i32>,
    /// The rem-addr4 filter.
    pub filter: Option<AddrFilter>,
    /// Prefix streamed lines with the wall-clock time.
    pub timestamps: bool,
}

impl DebugSettings {
    /// The level of `app` (0 when never set).
    pub fn level(&self, app: App) -> i32 {
        self.levels.get(&app).copied().unwrap_or(0)
    }

    /// Whether a line of `app` about `remote` is streamed.
    pub fn passes(&self, app: App, remote: Option<IpAddr>) -> bool {
        self.level(app) != 0 && self.filter.as_ref().is_none_or(|f| f.matches(remote))
    }
}

#[derive(Default)]
struct State {
    tunnels: Vec<TunnelInfo>,
    two_factor: HashSet<String>,
    sas: BTreeMap<u64, IkeEntry>,
    /// NAT lines seen for a peer before its IKE SA had a SPI (IKE_SA_INIT).
    nat_pending: HashMap<SocketAddr, (bool, bool)>,
    settings: DebugSettings,
    streams: Vec<mpsc::Sender<Arc<str>>>,
    dropped_lines: u64,
    driver: Vec<(String, Vec<(&'static str, u64)>)>,
    responder: Option<Stats>,
    counters: Option<Arc<dyn SaCounterSource>>,
    pushed: HashMap<u32, SaStats>,
    firewall: Option<Arc<dyn Fn() -> String + Send + Sync>>,
    posture: Option<PostureRenderer>,
    client_uid: Option<ClientUid>,
    approvals: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    /// Dial-up instance indexes in use, per tunnel.
    instances: HashMap<String, InstancePool>,
    /// Restart counters of supervised control-plane tasks, by name.
    restarts: Vec<(&'static str, Arc<std::sync::atomic::AtomicU64>)>,
    ike_created: u64,
    ike_established: u64,
    child_created: u64,
}

struct Inner {
    state: Mutex<State>,
    /// Number of open streams: the driver's fast path when nobody listens.
    streams: AtomicUsize,
    started: Instant,
    /// `diagnose test application ike fault` asked the responder loop to fail one step.
    fault_drill: std::sync::atomic::AtomicBool,
}

/// The diagnose handle: the SA registry, the debug stream and the counters. Cheap to clone.
#[derive(Clone)]
pub struct Diag {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Diag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Diag").field("streams", &self.inner.streams.load(Ordering::Relaxed)).finish_non_exhaustive()
    }
}

impl Default for Diag {
    fn default() -> Self {
        Self::new()
    }
}

/// A snapshot of the registry for rendering.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Configured tunnels.
    pub tunnels: Vec<TunnelInfo>,
    /// IKE SAs by our SPI.
    pub sas: Vec<IkeEntry>,
    /// Traffic per inbound SPI.
    pub traffic: HashMap<u32, SaStats>,
    /// When the snapshot was taken.
    pub now: Instant,
}

impl Snapshot {
    /// The tunnel description of `name` (a default one when not configured).
    pub fn tunnel(&self, name: &str) -> TunnelInfo {
        self.tunnels.iter().find(|t| t.name == name).cloned().unwrap_or_else(|| TunnelInfo::unknown(name))
    }
}

/// Wall-clock time as `YYYY-MM-DD HH:MM:SS` (UTC), for `debug console timestamp`.
pub fn timestamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil-from-days (H. Hinnant's algorithm), proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, rem / 60 % 60, rem % 60)
}

impl Diag {
    /// An empty registry with debug output off.
    pub fn new() -> Self {
        Diag {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                streams: AtomicUsize::new(0),
                started: Instant::now(),
                fault_drill: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.inner.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Describes a configured tunnel (replacing one of the same name).
    pub fn add_tunnel(&self, t: TunnelInfo) {
        let mut s = self.lock();
        s.tunnels.retain(|x| x.name != t.name);
        s.tunnels.push(t);
    }

    /// The users who have a token (`two-factor fortitoken`); names compare case-insensitively.
    pub fn set_two_factor_users<I: IntoIterator<Item = String>>(&self, users: I) {
        self.lock().two_factor = users.into_iter().map(|u| u.to_lowercase()).collect();
    }

    /// Plugs in the data plane's per-SA counters.
    pub fn set_sa_counters(&self, c: Arc<dyn SaCounterSource>) {
        self.lock().counters = Some(c);
    }

    /// Publishes the counters of one CHILD_SA (for drivers that push rather than being read).
    pub fn update_sa_stats(&self, inbound_spi: u32, stats: SaStats) {
        self.lock().pushed.insert(inbound_spi, stats);
    }

    /// Publishes a driver's counters (`diagnose vpn ike stats`), replacing the previous ones.
    pub fn set_driver_counters(&self, driver: &str, values: &[(&'static str, u64)]) {
        let mut s = self.lock();
        match s.driver.iter_mut().find(|(n, _)| n == driver) {
            Some((_, v)) => {
                v.clear();
                v.extend_from_slice(values);
            }
            None => s.driver.push((driver.to_string(), values.to_vec())),
        }
    }

    /// Publishes the responder's drop and retransmission counters.
    pub fn set_responder_stats(&self, stats: Stats) {
        self.lock().responder = Some(stats);
    }

    /// Sets the renderer of `diagnose firewall policy list`.
    pub fn set_firewall(&self, f: Arc<dyn Fn() -> String + Send + Sync>) {
        self.lock().firewall = Some(f);
    }

    /// `diagnose firewall policy list`, when a renderer is set.
    pub fn firewall_policy_list(&self) -> Option<String> {
        let f = self.lock().firewall.clone();
        f.map(|f| f())
    }

    /// Where `diagnose user token approve USER` goes: the driver loop that owns the responder.
    pub fn set_approvals(&self, tx: tokio::sync::mpsc::UnboundedSender<String>) {
        self.lock().approvals = Some(tx);
    }

    /// Shows the restarts of supervised task `name` in `vpn ike stats`.
    pub fn watch_restarts(&self, name: &'static str, counter: Arc<std::sync::atomic::AtomicU64>) {
        let mut s = self.lock();
        s.restarts.retain(|(n, _)| *n != name);
        s.restarts.push((name, counter));
    }

    /// `diagnose test application ike fault`: the responder loop's next step fails (a drill of
    /// its supervision). `false` when no loop takes drills (none watched yet).
    pub fn request_fault_drill(&self) -> bool {
        let watched = self.lock().restarts.iter().any(|(n, _)| *n == "ike");
        if watched {
            self.inner.fault_drill.store(true, Ordering::Relaxed);
        }
        watched
    }

    /// Whether a fault drill is due (and clears it).
    pub fn take_fault_drill(&self) -> bool {
        self.inner.fault_drill.swap(false, Ordering::Relaxed)
    }

    /// Approves a pending token push for `user`; `false` when no driver listens.
    pub fn approve_token(&self, user: &str) -> bool {
        let tx = self.lock().approvals.clone();
        tx.is_some_and(|t| t.send(user.to_string()).is_ok())
    }

    /// Where listings find the FortiClient UID of a posture-checked IKE SA.
    pub fn set_client_uid(&self, f: ClientUid) {
        self.lock().client_uid = Some(f);
    }

    /// Sets the renderer of the posture listings (`firewall dynamic list`, `endpoint ec-shm list`).
    pub fn set_posture(&self, f: PostureRenderer) {
        self.lock().posture = Some(f);
    }

    /// A posture listing, when a tunnel checks posture.
    pub fn posture_list(&self, what: PostureList<'_>) -> Option<String> {
        let f = self.lock().posture.clone();
        f.map(|f| f(what))
    }

    /// Records one responder event (called before the event is consumed by the log or sink).
    pub fn on_event(&self, src: &EventSource<'_>, ev: &Event) {
        let now = Instant::now();
        let mut fnbamd = Vec::new();
        {
            let mut s = self.lock();
            let s = &mut *s;
            match ev {
                Event::Debug { spi: None, line } => {
                    // IKE_SA_INIT decides NAT before our SPI is chosen: remember it per peer.
                    let nat = match line.as_str() {
                        "NAT detected: me" => (true, false),
                        "NAT detected: peer" => (false, true),
                        _ => (false, false),
                    };
                    if let (Some(r), true) = (src.remote, nat.0 || nat.1) {
                        let e = s.nat_pending.entry(r).or_default();
                        e.0 |= nat.0;
                        e.1 |= nat.1;
                    }
                }
                Event::Debug { spi: Some(spi), .. } => {
                    entry(s, src, *spi, now);
                }
                Event::IkeSaEstablished { spi, path, user, peer_id, assigned } => {
                    let two_factor = user.as_ref().is_some_and(|u| s.two_factor.contains(&u.to_lowercase()));
                    let e = entry(s, src, *spi, now);
                    e.remote = Some(path.remote);
                    e.local = Some(path.local);
                    e.established = Some(now);
                    // Listed names are the peer's words: escaped like log lines.
                    e.user = user.as_deref().map(|u| crate::driver::printable(u).into_owned());
                    e.two_factor = two_factor;
                    e.peer_id = crate::driver::printable(peer_id).into_owned();
                    e.assigned = *assigned;
                    if e.index.is_none() {
                        // FortiOS numbers dial-up instances with the lowest free index.
                        let tunnel = e.tunnel.clone();
                        let index = s.instances.entry(tunnel).or_default().take();
                        if let Some(e) = s.sas.get_mut(spi) {
                            e.index = Some(index);
                        }
                    }
                    s.ike_established += 1;
                    if two_factor {
                        fnbamd.push("[880] update_auth_token_session-2fa code has already been verified in concatenated password".to_string());
                        fnbamd.push("[1898] handle_req-Two-factor token is not needed".to_string());
                        fnbamd.push("[1902] handle_req-r=0".to_string());
                    }
                }
                Event::InstallChildSa(sa) => {
                    let e = entry(s, src, sa.ike_spi, now);
                    e.remote = Some(sa.path.remote);
                    e.local = Some(sa.path.local);
                    if e.assigned.is_none() {
                        e.assigned = sa.assigned;
                    }
                    e.children.retain(|c| c.inbound_spi != sa.inbound_spi);
                    e.children.push(ChildEntry::from_child(sa, now));
                    s.child_created += 1;
                }
                Event::AuthFailed { spi, user, reason } => {
                    entry(s, src, *spi, now);
                    if reason == "two-factor token is needed" {
                        fnbamd.push("[913] update_auth_token_session-Token is needed".to_string());
                        fnbamd.push("[1898] handle_req-Two-factor token is needed".to_string());
                        fnbamd.push("[1902] handle_req-r=7".to_string());
                        fnbamd.push(format!("ike V=root:0:{}: EAP requires token for user \"{user}\"", src.tunnel));
                    } else if s.two_factor.contains(&user.to_lowercase()) {
                        fnbamd.push("[1902] handle_req-r=1".to_string());
                    }
                }
                Event::IkeSaClosed { spi, reason } => {
                    if let Some(e) = s.sas.remove(spi) {
                        for c in &e.children {
                            s.pushed.remove(&c.inbound_spi);
                        }
                        if let (Some(i), Some(pool)) = (e.index, s.instances.get_mut(&e.tunnel)) {
                            pool.put(i);
                        }
                    }
                    let _: &CloseReason = reason;
                }
                Event::InitialContact { spi, .. } => {
                    entry(s, src, *spi, now);
                }
                Event::IkeSaRekeyed { old_spi, new_spi } => {
                    if let Some(mut e) = s.sas.remove(old_spi) {
                        e.spi = *new_spi;
                        s.sas.insert(*new_spi, e);
                    }
                }
                Event::ChildSaDeleted { ike_spi, inbound_spi, .. } => {
                    if let Some(e) = s.sas.get_mut(ike_spi) {
                        e.children.retain(|c| c.inbound_spi != *inbound_spi);
                    }
                    s.pushed.remove(inbound_spi);
                }
                _ => {}
            }
        }
        let remote = src.remote.map(|r| r.ip());
        for l in fnbamd {
            self.emit(App::Fnbamd, remote, &l);
        }
    }

    /// Streams one `ike` debug line about `remote` (when debug output is on and it passes the
    /// rem-addr4 filter).
    pub fn debug(&self, remote: Option<IpAddr>, line: &str) {
        self.emit(App::Ike, remote, line);
    }

    /// Streams a line of `app`.
    pub fn emit(&self, app: App, remote: Option<IpAddr>, line: &str) {
        if self.inner.streams.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut s = self.lock();
        if !s.settings.passes(app, remote) {
            return;
        }
        let line = crate::driver::printable(line);
        let text: Arc<str> = if s.settings.timestamps {
            format!("{} {line}", timestamp(SystemTime::now())).into()
        } else {
            line.as_ref().into()
        };
        let mut dropped = 0;
        s.streams.retain(|tx| match tx.try_send(text.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                dropped += 1;
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        s.dropped_lines += dropped;
        self.inner.streams.store(s.streams.len(), Ordering::Relaxed);
    }

    /// Opens a debug stream (`diagnose debug enable`): lines arrive on the receiver until
    /// [`Diag::debug_disable`] or the receiver is dropped.
    pub fn subscribe(&self) -> mpsc::Receiver<Arc<str>> {
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        let mut s = self.lock();
        s.streams.retain(|t| !t.is_closed());
        s.streams.push(tx);
        self.inner.streams.store(s.streams.len(), Ordering::Relaxed);
        rx
    }

    /// `diagnose debug disable`: ends every open stream.
    pub fn debug_disable(&self) {
        let mut s = self.lock();
        s.streams.clear();
        self.inner.streams.store(0, Ordering::Relaxed);
    }

    /// `diagnose debug reset`: application levels and timestamps back to off, streams ended
    /// (the rem-addr4 filter stays, as in FortiOS; `log filter clear` removes it).
    pub fn debug_reset(&self) {
        self.debug_disable();
        let mut s = self.lock();
        s.settings.levels.clear();
        s.settings.timestamps = false;
    }

    /// `diagnose debug application APP LEVEL`.
    pub fn set_level(&self, app: App, level: i32) {
        self.lock().settings.levels.insert(app, level);
    }

    /// `diagnose vpn ike log filter rem-addr4 …` (`None`: `log filter clear`).
    pub fn set_filter(&self, f: Option<AddrFilter>) {
        self.lock().settings.filter = f;
    }

    /// `diagnose debug console timestamp enable|disable`.
    pub fn set_timestamps(&self, on: bool) {
        self.lock().settings.timestamps = on;
    }

    /// The current debug settings.
    pub fn settings(&self) -> DebugSettings {
        self.lock().settings.clone()
    }

    /// Number of open debug streams.
    pub fn stream_count(&self) -> usize {
        self.inner.streams.load(Ordering::Relaxed)
    }

    /// Lines dropped because a stream client fell behind.
    pub fn dropped_lines(&self) -> u64 {
        self.lock().dropped_lines
    }

    /// The registry and the counters of every known CHILD_SA.
    pub fn snapshot(&self) -> Snapshot {
        let s = self.lock();
        let mut sas: Vec<IkeEntry> = s.sas.values().cloned().collect();
        let counters = s.counters.clone();
        let uid = s.client_uid.clone();
        let mut traffic = s.pushed.clone();
        drop(s);
        if let Some(uid) = uid {
            for e in &mut sas {
                e.client_uid = uid(e.spi);
            }
        }
        // The data plane's counters are read outside the registry lock.
        if let Some(c) = counters {
            for ch in sas.iter().flat_map(|e| e.children.iter()) {
                if let Some(t) = c.counters(ch.inbound_spi, ch.outbound_spi) {
                    traffic.insert(ch.inbound_spi, t);
                }
            }
        }
        Snapshot { tunnels: self.lock().tunnels.clone(), sas, traffic, now: Instant::now() }
    }

    /// `diagnose vpn ike stats`.
    pub fn stats_text(&self) -> String {
        let s = self.lock();
        render::stats(&render::StatsView {
            uptime: self.inner.started.elapsed(),
            sas: s.sas.len(),
            established: s.sas.values().filter(|e| e.established.is_some()).count(),
            children: s.sas.values().map(|e| e.children.len()).sum(),
            ike_created: s.ike_created,
            ike_established: s.ike_established,
            child_created: s.child_created,
            driver: &s.driver,
            responder: s.responder,
            streams: s.streams.len(),
            dropped_lines: s.dropped_lines,
        }) + &restarts_line(&s.restarts)
    }
}

/// The instance indexes of one dial-up tunnel (`NAME_0`, `NAME_1`, …): always the lowest free
/// one, in O(log n) — a scan of every SA per login made 100 000 tunnels quadratic.
#[derive(Default)]
struct InstancePool {
    /// Every index below `next` is in use unless it is in `free`.
    next: u32,
    free: std::collections::BinaryHeap<std::cmp::Reverse<u32>>,
}

impl InstancePool {
    fn take(&mut self) -> u32 {
        match self.free.pop() {
            Some(std::cmp::Reverse(i)) => i,
            None => {
                self.next += 1;
                self.next - 1
            }
        }
    }

    fn put(&mut self, i: u32) {
        self.free.push(std::cmp::Reverse(i));
    }
}

/// `supervision: ike_restarts=0 posture_refresher_restarts=0` (empty when nothing is supervised).
fn restarts_line(r: &[(&'static str, Arc<std::sync::atomic::AtomicU64>)]) -> String {
    if r.is_empty() {
        return String::new();
    }
    let parts: Vec<String> =
        r.iter().map(|(n, c)| format!("{}_restarts={}", n.replace(' ', "_"), c.load(Ordering::Relaxed))).collect();
    format!("supervision: {}\n", parts.join(" "))
}

/// The entry of `spi`, created on first sight.
fn entry<'a>(s: &'a mut State, src: &EventSource<'_>, spi: u64, now: Instant) -> &'a mut IkeEntry {
    let pending = src.remote.and_then(|r| s.nat_pending.remove(&r));
    if !s.sas.contains_key(&spi) {
        s.ike_created += 1;
        // Drop stale per-peer hints (a peer whose IKE_SA_INIT never produced an SA).
        if s.nat_pending.len() > 1024 {
            s.nat_pending.clear();
        }
    }
    let e = s.sas.entry(spi).or_insert_with(|| IkeEntry {
        tunnel: src.tunnel.to_string(),
        index: None,
        serial: src.serial.unwrap_or(0),
        spi,
        remote: src.remote,
        local: src.local,
        created: now,
        established: None,
        user: None,
        two_factor: false,
        peer_id: String::new(),
        client_uid: None,
        assigned: None,
        nat: (false, false),
        children: Vec::new(),
    });
    if let Some(n) = pending {
        e.nat = (e.nat.0 || n.0, e.nat.1 || n.1);
    }
    if e.remote.is_none() {
        e.remote = src.remote;
    }
    if e.local.is_none() {
        e.local = src.local;
    }
    e
}

#[cfg(test)]
mod tests;
