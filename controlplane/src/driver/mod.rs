//! Drivers: what feeds the sans-IO IKE responder with datagrams and time, and carries its output
//! away. This module and its children are the only tokio code of the control plane.
//!
//! How to drive it: build a responder (see [`crate::gateway`]), then run [`udp::run`] with the
//! listen address, an [`SaSink`] (where CHILD_SA installs go: the DPDK data plane later,
//! [`LogOnlySink`] until then) and a shutdown future. Events become log lines through
//! [`EventLog`]: `Debug` lines in the FortiOS `diagnose debug application ike` style on stderr,
//! one summary line per established SA, installed CHILD_SA and failure on stdout (never keys).
//! Built with [`EventLog::with_diag`], the log also feeds [`crate::diagnose::Diag`]: the SA
//! registry sees every event before the log consumes it, and every debug line is offered to
//! the `diagnose debug` stream with the peer's address (tell the log which datagram is being
//! processed with [`EventLog::set_peer`]).

pub mod connect;
#[cfg(dpdk)]
pub mod dpdk;
pub mod udp;

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};

use dialgate_ike::crypto::{Encr, Entropy, Integ};
use dialgate_ike::message::TrafficSelector;
use dialgate_ike::proposal::EspSuite;
use dialgate_ike::responder::{AddressPool, ChildSa, CloseReason, Event, Path, Responder, Transmit, UserVerifier};

use crate::diagnose::{Diag, EventSource};
use crate::supervise::Step;

/// Where negotiated CHILD_SAs go: the seam to the data plane.
pub trait SaSink {
    /// Installs an inbound/outbound ESP SA pair (the keys move with it and are zeroized on drop).
    fn install(&mut self, sa: ChildSa);
    /// Removes every CHILD_SA of IKE SA `ike_spi`.
    fn remove_ike_sa(&mut self, ike_spi: u64);
    /// Removes one CHILD_SA (the peer deleted it, e.g. after a rekey).
    fn remove_child(&mut self, _ike_spi: u64, _inbound_spi: u32) {}
    /// IKE SA `ike_spi` is established for `user` (before its CHILD_SAs are installed).
    fn established(&mut self, _ike_spi: u64, _user: Option<&str>) {}
    /// The IKE SA `old` was rekeyed into `new`: its CHILD_SAs now belong to `new`.
    fn rekey_ike_sa(&mut self, _old: u64, _new: u64) {}
}

/// Takes what the responder produced: its events first (to `on_event`: logs, and the SA
/// sink's installs and removals), then its datagrams (to `send`). In that order so that a
/// CHILD_SA is in the data plane before the response that lets the peer use it leaves: a peer
/// may send on a new SA as soon as it has the response (strongSwan does, right after a rekey),
/// and a data plane that has not installed it yet drops that packet (`unknown_spi`).
pub fn drain<R: Entropy, V: UserVerifier, P: AddressPool, C>(
    responder: &mut Responder<R, V, P>,
    cx: &mut C,
    mut on_event: impl FnMut(&mut C, Event),
    mut send: impl FnMut(&mut C, Transmit),
) {
    while let Some(ev) = responder.poll_event() {
        on_event(cx, ev);
    }
    while let Some(t) = responder.poll_transmit() {
        send(cx, t);
    }
}

/// The next IKE SA the control plane wants deleted (posture loss), or never when there is no
/// such channel.
pub async fn next_delete(
    rx: &mut Option<tokio::sync::mpsc::UnboundedReceiver<(u64, String)>>,
) -> Option<(u64, String)> {
    match rx.as_mut() {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

/// The next user whose token push an administrator approved (`diagnose user token approve`).
pub async fn next_approval(rx: &mut Option<tokio::sync::mpsc::UnboundedReceiver<String>>) -> Option<String> {
    match rx.as_mut() {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

/// A sink for hosts without a data plane: it only counts (the keys are dropped, hence zeroized).
#[derive(Debug, Default)]
pub struct LogOnlySink {
    /// CHILD_SAs received.
    pub installed: u64,
}

impl SaSink for LogOnlySink {
    fn install(&mut self, _sa: ChildSa) {
        self.installed += 1;
    }
    fn remove_ike_sa(&mut self, _ike_spi: u64) {}
}

/// The FortiOS proposal name of an ESP suite (`aes128gcm`, `aes256-sha256`, ...).
pub fn suite_name(s: &EspSuite) -> String {
    let cipher = match s.encr {
        Encr::AesCbc { key_len } => format!("aes{}", key_len * 8),
        Encr::AesGcm16 { key_len } => format!("aes{}gcm", key_len * 8),
        Encr::ChaCha20Poly1305 => "chacha20poly1305".to_string(),
    };
    match s.integ {
        None => cipher,
        Some(i) => {
            let h = match i {
                Integ::HmacSha1_96 => "sha1",
                Integ::HmacSha256_128 => "sha256",
                Integ::HmacSha384_192 => "sha384",
                Integ::HmacSha512_256 => "sha512",
            };
            format!("{cipher}-{h}")
        }
    }
}

fn ts_list(ts: &[TrafficSelector]) -> String {
    let v: Vec<String> = ts
        .iter()
        .map(|t| {
            if t.start_addr == t.end_addr {
                t.start_addr.to_string()
            } else {
                format!("{}-{}", t.start_addr, t.end_addr)
            }
        })
        .collect();
    v.join(",")
}

/// The one-line summary of a CHILD_SA (SPIs, suite, selectors, endpoints, address; no keys).
pub fn child_summary(sa: &ChildSa) -> String {
    format!(
        "install child SA: in_spi={:08x} out_spi={:08x} suite={} esn={} encap={} peer={} local={} tsi={} tsr={} assigned={}",
        sa.inbound_spi,
        sa.outbound_spi,
        suite_name(&sa.suite),
        if sa.esn { "yes" } else { "no" },
        if sa.udp_encap { "udp" } else { "none" },
        sa.path.remote,
        sa.path.local,
        ts_list(&sa.tsi),
        ts_list(&sa.tsr),
        sa.assigned.map_or_else(|| "none".to_string(), |a| a.to_string()),
    )
}

/// Turns responder events into log lines and data-plane commands, and feeds `diagnose`.
#[derive(Debug)]
pub struct EventLog {
    tunnel: String,
    serials: HashMap<u64, u32>,
    next_serial: u32,
    /// The peer of each IKE SA, as far as the driver told us ([`EventLog::set_peer`]).
    peers: HashMap<u64, SocketAddr>,
    /// The datagram whose events are being drained.
    current: Option<Path>,
    /// Without [`EventLog::set_peer`]: the peer named by the last "received SA_INIT msg from"
    /// line (the responder queues a datagram's events in order, so the SPI lines that follow
    /// are that peer's even when a driver drains several datagrams' events at once).
    init_peer: Option<SocketAddr>,
    diag: Option<Diag>,
}

/// Our SPI of the IKE SA an event is about.
fn event_spi(ev: &Event) -> Option<u64> {
    match ev {
        Event::IkeSaEstablished { spi, .. }
        | Event::InitialContact { spi, .. }
        | Event::AuthFailed { spi, .. }
        | Event::IkeSaClosed { spi, .. } => Some(*spi),
        Event::InstallChildSa(sa) => Some(sa.ike_spi),
        Event::Debug { spi, .. } => *spi,
        _ => None,
    }
}

impl EventLog {
    /// A log for the tunnel (phase1) `tunnel`.
    pub fn new(tunnel: &str) -> Self {
        Self {
            tunnel: tunnel.to_string(),
            serials: HashMap::new(),
            next_serial: 0,
            peers: HashMap::new(),
            current: None,
            init_peer: None,
            diag: None,
        }
    }

    /// A log that also feeds `diag` (the SA registry and the debug stream of `diagnose`).
    pub fn with_diag(tunnel: &str, diag: Diag) -> Self {
        Self { diag: Some(diag), ..Self::new(tunnel) }
    }

    /// The `diagnose` handle, if any (drivers publish their counters through it).
    pub fn diag(&self) -> Option<&Diag> {
        self.diag.as_ref()
    }

    /// Tells the log which datagram the events drained next were caused by (`None` for
    /// timeouts). The responder's events carry our SPI but not always the peer, so this is how
    /// debug lines before IKE_AUTH get the address the `rem-addr4` filter needs. Drain events
    /// after each datagram for this to be exact.
    pub fn set_peer(&mut self, path: Option<Path>) {
        self.current = path;
        self.init_peer = None;
    }

    /// Writes a driver's own debug line (`ike V=root:0:NAME: text`) to stderr and the debug
    /// stream.
    pub fn line(&mut self, remote: Option<IpAddr>, text: &str) {
        let l = format!("{}{}", self.prefix(None), printable(text));
        let _ = writeln!(std::io::stderr(), "{l}");
        if let Some(d) = &self.diag {
            d.debug(remote, &l);
        }
    }

    /// The prefix of a line about IKE SA `spi`: `ike V=root:0:NAME:SERIAL: ` (serials number the
    /// IKE SAs in order of first appearance, as the seed's debug output does).
    pub fn prefix(&mut self, spi: Option<u64>) -> String {
        match spi {
            Some(spi) => {
                let n = self.serial(spi);
                format!("ike V=root:0:{}:{}: ", self.tunnel, n)
            }
            None => format!("ike V=root:0:{}: ", self.tunnel),
        }
    }

    /// The serial of IKE SA `spi` (numbered in order of first appearance).
    fn serial(&mut self, spi: u64) -> u32 {
        let next = &mut self.next_serial;
        *self.serials.entry(spi).or_insert_with(|| {
            *next += 1;
            *next
        })
    }

    /// Handles one event: logs it, and forwards SA installs and removals to `sink`.
    pub fn handle(&mut self, ev: Event, sink: &mut dyn SaSink) {
        let spi = event_spi(&ev);
        if let Event::Debug { spi: None, line } = &ev {
            let peer = line
                .strip_prefix("responder received SA_INIT msg from ")
                .or_else(|| line.split_once(", sending COOKIE to ").map(|(_, a)| a));
            if let Some(a) = peer {
                self.init_peer = a.trim().parse().ok();
            }
        }
        let current = self.current.map(|p| p.remote).or(self.init_peer);
        // The peer: from the event itself, else learned for this SA, else the datagram's.
        let event_path = match &ev {
            Event::IkeSaEstablished { path, .. } => Some(*path),
            Event::InstallChildSa(sa) => Some(sa.path),
            _ => None,
        };
        let remote = match spi {
            Some(spi) => {
                let known = event_path.map(|p| p.remote).or_else(|| self.peers.get(&spi).copied());
                let r = known.or(current);
                if let Some(r) = r {
                    self.peers.insert(spi, r);
                }
                r
            }
            None => current,
        };
        if let Some(d) = self.diag.clone() {
            let serial = spi.map(|s| self.serial(s));
            let local = event_path.or(self.current).map(|p| p.local);
            d.on_event(&EventSource { tunnel: &self.tunnel, serial, remote, local }, &ev);
        }
        if let Event::IkeSaClosed { spi, .. } = &ev {
            self.peers.remove(spi);
        }
        match ev {
            Event::Debug { spi, line } => {
                let p = self.prefix(spi);
                let l = format!("{p}{}", printable(&line));
                let _ = writeln!(std::io::stderr(), "{l}");
                if let Some(d) = &self.diag {
                    d.debug(remote.map(|r| r.ip()), &l);
                }
            }
            Event::IkeSaEstablished { spi, path, user, peer_id, assigned } => {
                sink.established(spi, user.as_deref());
                let p = self.prefix(Some(spi));
                out(format!(
                    "{p}IKE SA established: spi={spi:016x} peer={} peer-id={peer_id} eap-user={} assigned={}",
                    path.remote,
                    user.as_deref().unwrap_or("none"),
                    assigned.map_or_else(|| "none".to_string(), |a| a.to_string()),
                ));
            }
            Event::InstallChildSa(sa) => {
                let p = self.prefix(Some(sa.ike_spi));
                out(format!("{p}{}", child_summary(&sa)));
                sink.install(sa);
            }
            Event::InitialContact { spi, peer_id } => {
                let p = self.prefix(Some(spi));
                let _ = writeln!(std::io::stderr(), "{p}initial contact from {}", printable(&peer_id));
            }
            Event::AuthFailed { spi, user, reason } => {
                let p = self.prefix(Some(spi));
                out(format!("{p}authentication failed: user=\"{user}\" reason: {reason}"));
            }
            Event::IkeSaClosed { spi, reason } => {
                let p = self.prefix(Some(spi));
                let why = match reason {
                    CloseReason::NegotiationTimeout => "negotiation timeout",
                    CloseReason::AuthFailed => "authentication failed",
                    CloseReason::Deleted => "deleted",
                    CloseReason::DeadPeer => "dead peer (DPD)",
                    CloseReason::Replaced => "replaced by a new SA of the same peer (INITIAL_CONTACT)",
                };
                out(format!("{p}IKE SA closed: {why}"));
                sink.remove_ike_sa(spi);
                self.serials.remove(&spi);
            }
            Event::IkeSaRekeyed { old_spi, new_spi } => {
                // The new SA keeps the old one's serial: it is the same tunnel to the reader.
                if let Some(n) = self.serials.get(&old_spi).copied() {
                    self.serials.insert(new_spi, n);
                }
                let p = self.prefix(Some(new_spi));
                out(format!("{p}IKE SA rekeyed: spi={old_spi:016x} -> spi={new_spi:016x}"));
                sink.rekey_ike_sa(old_spi, new_spi);
            }
            Event::ChildSaDeleted { ike_spi, inbound_spi, outbound_spi } => {
                let p = self.prefix(Some(ike_spi));
                out(format!("{p}delete child SA: in_spi={inbound_spi:08x} out_spi={outbound_spi:08x}"));
                sink.remove_child(ike_spi, inbound_spi);
            }
            other => {
                let _ = writeln!(
                    std::io::stderr(),
                    "ike V=root:0:{}: event {}",
                    self.tunnel,
                    printable(&format!("{other:?}"))
                );
            }
        }
    }
}

/// The supervision both drivers put around the responder loop: each step runs under
/// [`Step`], `diagnose test application ike fault` fails the next one, and a failure is logged,
/// counted (`supervision: ike_restarts=N` in `vpn ike stats`) and contained — the loop goes on.
pub(crate) struct LoopGuard(Step);

impl LoopGuard {
    /// A guard whose restarts `log`'s `diagnose` handle shows.
    pub(crate) fn new(log: &EventLog) -> Self {
        let step = Step::default();
        if let Some(d) = log.diag() {
            d.watch_restarts("ike", step.counter());
        }
        LoopGuard(step)
    }

    /// Runs one step; `true` when it failed (and was logged).
    pub(crate) fn run(&mut self, log: &mut EventLog, f: impl FnOnce(&mut EventLog)) -> bool {
        let drill = log.diag().is_some_and(Diag::take_fault_drill);
        let r = self.0.run(|| {
            if drill {
                panic!("fault drill (diagnose test application ike fault)");
            }
            f(log);
        });
        let Err(why) = r else { return false };
        let n = self.0.restarts();
        log.line(None, &format!("control-plane step failed: {why}; contained, the loop goes on (restart {n})"));
        true
    }
}

fn out(line: String) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{}", printable(&line));
    let _ = o.flush();
}

/// `text` with control characters escaped (`\n`, `\u{1b}`, …). Identities and user names come
/// from the peer: a name with a newline must not forge a second log line, nor an escape
/// sequence repaint the operator's terminal.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("alice"), "alice");
        assert!(matches!(printable("bob ü"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(printable("eve\nike V=root:0:x: IKE SA established"), "eve\\nike V=root:0:x: IKE SA established");
        assert_eq!(printable("a\u{1b}[2Jb\r\t\u{7f}"), "a\\u{1b}[2Jb\\r\\t\\u{7f}");
    }

    #[test]
    fn suite_names_follow_fortios() {
        let s = |w: &str| suite_name(&EspSuite::parse(w).unwrap());
        for w in ["aes128-sha1", "aes256-sha256", "aes128gcm", "aes256gcm", "chacha20poly1305", "aes256-sha512"] {
            assert_eq!(s(w), w);
        }
    }

    #[test]
    fn serials_number_sas_in_order() {
        let mut l = EventLog::new("Test-Dialup");
        assert_eq!(l.prefix(Some(0xaa)), "ike V=root:0:Test-Dialup:1: ");
        assert_eq!(l.prefix(Some(0xbb)), "ike V=root:0:Test-Dialup:2: ");
        assert_eq!(l.prefix(Some(0xaa)), "ike V=root:0:Test-Dialup:1: ");
        assert_eq!(l.prefix(None), "ike V=root:0:Test-Dialup: ");
    }
}
