//! The IKEv2 responder: a sans-IO state machine in the style of quinn-proto.
//!
//! How to drive it (the driver owns the socket or the DPDK exception ring and the clock):
//! 1. For every received UDP datagram call [`Responder::handle_datagram`] with the current time,
//!    the [`Path`] (remote and local socket address) and the IKE message bytes. On port 4500 the
//!    driver first checks and strips the 4-byte non-ESP marker (RFC 3948 §2.2; zero SPI means
//!    IKE, anything else is ESP for the data plane); this crate never sees the marker.
//! 2. Then drain [`Responder::poll_transmit`] (datagrams to send; when `Transmit::path.local`
//!    is port 4500 the driver prepends the non-ESP marker) and [`Responder::poll_event`]
//!    (SA installs, established/closed SAs, authentication failures, debug lines).
//! 3. Arm a timer for [`Responder::poll_timeout`] and call [`Responder::handle_timeout`] when it
//!    fires: half-open and unfinished negotiations are removed after `negotiate_timeout`.
//!
//! Randomness ([`crate::crypto::Entropy`]), user verification ([`UserVerifier`]) and address
//! assignment ([`AddressPool`]) are injected. Time is passed in as `Instant`; the Unix time the
//! verifier needs (TOTP) is derived from the anchor given to [`Responder::new`].
//!
//! Exchanges handled (RFC 7296 §1.2, §2.16):
//! ```text
//! Initiator                          Responder
//! HDR, SAi1, KEi, Ni, N(NAT_D)*  -->
//!                                <-- HDR, SAr1, KEr, Nr, N(NAT_D)*, [N(FRAG_SUP)], [N(SHA)]
//! HDR, SK {IDi, [IDr], SAi2, TSi, TSr, [CP(REQ)]}  -->
//!                                <-- HDR, SK {IDr, AUTH(psk), EAP(Identity req)}
//! HDR, SK {EAP(Identity)}  -->   <-- HDR, SK {EAP(MSCHAPv2 Challenge)}
//! HDR, SK {EAP(Response)}  -->   <-- HDR, SK {EAP(MSCHAPv2 Success req)}
//! HDR, SK {EAP(Success resp)}--> <-- HDR, SK {EAP(Success)}
//! HDR, SK {AUTH(msk)}  -->       <-- HDR, SK {AUTH(msk), CP(REPLY), SAr2, TSi, TSr}
//! ```
//! A client that authenticates with the pre-shared key itself (AUTH in its first IKE_AUTH) is
//! answered in one round trip. With [`Config::certificate`] the gateway's AUTH is a digital
//! signature (RFC 7427) preceded by its CERT payloads instead of the PSK AUTH.
//!
//! Token code in a second round (RFC 4739; MULTIPLE_AUTH_SUPPORTED is announced in our
//! IKE_SA_INIT response): when MSCHAPv2 matched only the bare password of a user with a token
//! ([`MsChapOk::token_needed`]) and the client announced MULTIPLE_AUTH_SUPPORTED, the first
//! round ends with AUTH only, then EAP-GTC asks for the code ([`UserVerifier::verify_token`]);
//! EAP-GTC has no MSK, so both AUTHs of that round use SK_pi / SK_pr (RFC 7296 §2.16):
//! ```text
//! HDR, SK {AUTH(msk), N(ANOTHER_AUTH_FOLLOWS)}  -->  <-- HDR, SK {AUTH(msk)}
//! HDR, SK {IDi'}  -->            <-- HDR, SK {EAP(Identity req)}   (eap-identity send-request)
//! HDR, SK {EAP(Identity)}  -->   <-- HDR, SK {EAP(GTC "Two-factor token is needed...")}
//! HDR, SK {EAP(GTC code)}  -->   <-- HDR, SK {EAP(Success)}
//! HDR, SK {AUTH(SK_pi)}  -->     <-- HDR, SK {AUTH(SK_pr), CP(REPLY), SAr2, TSi, TSr}
//! ```
//! An empty GTC answer or `push` holds the exchange (no response, retransmissions ignored)
//! until [`Responder::approve_token`] or `negotiate-timeout`.

mod auth;
mod cert;
mod info;
mod init;
mod rekey;

pub use cert::{pem_blocks, CertError, GatewayCert, ECDSA_WITH_SHA256, SHA256_WITH_RSA};
pub use info::Dpd;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use crate::crypto::{Entropy, Prf};
use crate::keymat::IkeKeys;
use crate::message::{
    peek_header, ExchangeType, Header, Identification, Notify, NotifyType, Payload, TrafficSelector, FLAG_RESPONSE,
};
use crate::proposal::{EspOffer, EspSuite, IkeOffer};
use crate::sk::{Reassembly, SkCipher};

/// The local and remote socket addresses of a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Path {
    /// The peer's address and port.
    pub remote: SocketAddr,
    /// Our address and port the datagram arrived on (or leaves from).
    pub local: SocketAddr,
}

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it from and to.
    pub path: Path,
    /// The IKE message (without non-ESP marker).
    pub payload: Vec<u8>,
}

/// Gateway configuration for the responder (built by the controlplane from phase1/phase2).
#[derive(Clone)]
pub struct Config {
    /// IKE proposals and groups (phase1 `proposal`, `dhgrp`).
    pub ike: IkeOffer,
    /// ESP proposals (phase2 `proposal`, `dhgrp`).
    pub esp: EspOffer,
    /// Our identity (IDr).
    pub local_id: Identification,
    /// The phase1 `psksecret`: the gateway authenticates with it (unless `certificate` is set),
    /// and clients sending a PSK AUTH are checked against it.
    pub psk: Zeroizing<Vec<u8>>,
    /// The phase1 `certificate` (`authmethod signature`): when set, the gateway sends CERT and a
    /// digital-signature AUTH (RFC 7427) instead of the PSK AUTH.
    pub certificate: Option<Arc<GatewayCert>>,
    /// `eap-identity send-request`: ask for the EAP identity instead of using IDi.
    pub eap_identity_request: bool,
    /// Half-open IKE SAs above which COOKIEs are required (RFC 7296 §2.6).
    pub cookie_threshold: usize,
    /// Half-open IKE SAs one peer address may hold; further IKE_SA_INIT requests from that
    /// address are dropped (counted in [`Stats::blocked`]) until some complete or time out.
    /// Cookies alone do not stop a flood from a real address that answers them.
    pub per_address_half_open: usize,
    /// Largest IKE message before SKF fragmentation, when the peer supports it (RFC 7383).
    pub fragment_len: usize,
    /// `negotiate-timeout`: the whole negotiation must finish within it.
    pub negotiate_timeout: Duration,
    /// DNS servers for INTERNAL_IP4_DNS.
    pub dns: Vec<Ipv4Addr>,
    /// Split-include subnets (address, prefix length); empty means everything.
    pub split_include: Vec<(Ipv4Addr, u8)>,
    /// Name sent in the MSCHAPv2 challenge.
    pub server_name: String,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("ike", &self.ike)
            .field("esp", &self.esp)
            .field("local_id", &self.local_id)
            .field("certificate", &self.certificate)
            .field("negotiate_timeout", &self.negotiate_timeout)
            .finish_non_exhaustive()
    }
}

/// A successful MSCHAPv2 check.
pub struct MsChapOk {
    /// The authenticator response "S=" followed by 40 upper-case hex digits (RFC 2759 §8.7).
    pub authenticator_response: String,
    /// The 64-byte MSK (RFC 3079 §3: MasterReceiveKey ‖ MasterSendKey ‖ 32 zero bytes, as EAP
    /// method keys are laid out for IKEv2).
    pub msk: Zeroizing<[u8; 64]>,
    /// Only the bare password matched for a user with a token: the token code must follow in a
    /// second authentication round (RFC 4739, EAP-GTC) or the login fails.
    pub token_needed: bool,
}

/// A refused authentication; `reason` is for logs only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthReject {
    /// Why (never contains a secret).
    pub reason: String,
}

/// Checks user credentials; implemented by the controlplane's auth module.
pub trait UserVerifier {
    /// Checks an EAP-MSCHAPv2 response at Unix time `now_unix`.
    fn verify_mschapv2(
        &mut self,
        user: &str,
        auth_challenge: &[u8; 16],
        peer_challenge: &[u8; 16],
        nt_response: &[u8; 24],
        now_unix: u64,
    ) -> Result<MsChapOk, AuthReject>;

    /// Checks a token code alone for `user` (second round, after [`MsChapOk::token_needed`]).
    /// A code must be accepted at most once; failures count towards lock-out. The default refuses.
    fn verify_token(&mut self, user: &str, code: &str, now_unix: u64) -> Result<(), AuthReject> {
        let _ = (user, code, now_unix);
        Err(AuthReject { reason: "token codes are not supported".into() })
    }
}

/// Hands out internal addresses (mode-cfg pool).
pub trait AddressPool {
    /// An address for `user`, or `None` when the pool is exhausted.
    fn allocate(&mut self, user: &str) -> Option<Ipv4Addr>;
    /// Returns an address to the pool.
    fn release(&mut self, addr: Ipv4Addr);
}

/// Chooses the SPIs of inbound CHILD_SAs. The data plane encodes the owning worker and a table
/// slot in its SPIs, so when one is attached it picks them, not the responder.
pub trait SpiSource: Send {
    /// A fresh inbound SPI (at least 256), or `None` when no slot is free.
    fn allocate(&mut self) -> Option<u32>;
}

/// What the client presented besides its credentials, for the check between user
/// authentication and the CHILD_SA (endpoint posture, RFC 7296 leaves this to policy).
#[derive(Debug)]
pub struct ClientInfo<'a> {
    /// Our SPI of the IKE SA.
    pub spi: u64,
    /// EAP user name, if EAP was used.
    pub user: Option<&'a str>,
    /// The peer's IDi, printable.
    pub peer_id: &'a str,
    /// The peer's address as seen (possibly NAT-mapped).
    pub remote: SocketAddr,
    /// Notifies in the private-use range (40960-65535) of the first IKE_AUTH request, in order.
    pub notifies: &'a [Notify],
    /// Wall-clock Unix time.
    pub now_unix: u64,
}

/// The outcome of a [`ClientCheck`].
#[derive(Debug)]
pub enum CheckVerdict {
    /// Go on to the CHILD_SA; `notifies` are added to the IKE_AUTH response.
    Accept {
        /// Debug lines to log.
        debug: Vec<String>,
        /// Notifies for the response.
        notifies: Vec<Notify>,
    },
    /// Fail IKE_AUTH: the response carries `notify` and AUTHENTICATION_FAILED.
    Refuse {
        /// Why (for the log, never a secret).
        reason: String,
        /// Debug lines to log.
        debug: Vec<String>,
        /// A notify the client can show (e.g. a private posture failure type).
        notify: Option<Notify>,
    },
}

/// A check after user authentication and before the CHILD_SA.
pub trait ClientCheck: Send {
    /// Checks a client that has just authenticated.
    fn check(&mut self, client: &ClientInfo<'_>) -> CheckVerdict;
    /// An established client sent private-use notifies in an INFORMATIONAL request (e.g. a
    /// fresh tag token); the check keeps them for its re-checks.
    fn update(&mut self, _spi: u64, _notifies: &[Notify]) {}
    /// IKE SA `old` was rekeyed into `new`.
    fn rekeyed(&mut self, _old: u64, _new: u64) {}
    /// IKE SA `spi` is gone.
    fn closed(&mut self, _spi: u64) {}
}

/// Keys of one direction of a CHILD_SA.
pub struct DirectionKeys {
    /// Encryption key, with the 4-byte salt appended for AEADs.
    pub encr: Zeroizing<Vec<u8>>,
    /// Integrity key (empty for AEADs).
    pub integ: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for DirectionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DirectionKeys { .. }")
    }
}

/// An ESP SA pair to install in the data plane.
#[derive(Debug)]
pub struct ChildSa {
    /// Our IKE SPI of the parent IKE SA.
    pub ike_spi: u64,
    /// SPI of the inbound SA (chosen by us).
    pub inbound_spi: u32,
    /// SPI of the outbound SA (chosen by the peer).
    pub outbound_spi: u32,
    /// Algorithms.
    pub suite: EspSuite,
    /// Extended sequence numbers.
    pub esn: bool,
    /// Keys for traffic from the peer (initiator → responder).
    pub inbound: DirectionKeys,
    /// Keys for traffic to the peer.
    pub outbound: DirectionKeys,
    /// Traffic selectors on the peer's side (its assigned address).
    pub tsi: Vec<TrafficSelector>,
    /// Traffic selectors on our side (split-include).
    pub tsr: Vec<TrafficSelector>,
    /// Addresses of the IKE SA (the ESP endpoints).
    pub path: Path,
    /// True when ESP must be UDP-encapsulated (NAT detected, or IKE on port 4500).
    pub udp_encap: bool,
    /// The address assigned through CP, if any.
    pub assigned: Option<Ipv4Addr>,
    /// Our (inbound) SPI of the CHILD_SA this one rekeys (CREATE_CHILD_SA with REKEY_SA): keep
    /// the old one until the peer deletes it.
    pub rekeys: Option<u32>,
}

/// Why an IKE SA went away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// `negotiate-timeout` expired before the SA was established.
    NegotiationTimeout,
    /// Authentication failed.
    AuthFailed,
    /// The peer deleted it (INFORMATIONAL DELETE), or the control plane did.
    Deleted,
    /// Dead-peer detection got no answer.
    DeadPeer,
    /// The same identity connected again with INITIAL_CONTACT (RFC 7296 §2.4).
    Replaced,
}

/// Something the driver or the control plane must act on.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// An IKE SA is authenticated and established.
    IkeSaEstablished {
        /// Our SPI.
        spi: u64,
        /// Peer's path.
        path: Path,
        /// EAP user name, if EAP was used.
        user: Option<String>,
        /// The peer's IDi, printable.
        peer_id: String,
        /// Assigned internal address.
        assigned: Option<Ipv4Addr>,
    },
    /// Install this CHILD_SA in the data plane.
    InstallChildSa(ChildSa),
    /// The peer sent INITIAL_CONTACT: older SAs with this identity should go.
    InitialContact {
        /// Our SPI of the new SA.
        spi: u64,
        /// The peer's identity (EAP user when known, else IDi).
        peer_id: String,
    },
    /// The IKE SA was rekeyed (RFC 7296 §2.18): its CHILD_SAs and address now belong to
    /// `new_spi`; the peer will delete `old_spi`.
    IkeSaRekeyed {
        /// Our SPI of the old IKE SA.
        old_spi: u64,
        /// Our SPI of the new IKE SA.
        new_spi: u64,
    },
    /// The peer deleted one CHILD_SA (INFORMATIONAL DELETE): remove it from the data plane.
    ChildSaDeleted {
        /// Our SPI of the IKE SA.
        ike_spi: u64,
        /// Our (inbound) SPI.
        inbound_spi: u32,
        /// The peer's (outbound) SPI.
        outbound_spi: u32,
    },
    /// A user asked for a token push in the EAP-GTC round (empty answer or `push`): the
    /// negotiation waits until [`Responder::approve_token`] is called for `user` or
    /// `negotiate-timeout` expires.
    TokenPushPending {
        /// Our SPI.
        spi: u64,
        /// The user whose token must approve.
        user: String,
    },
    /// A user failed to authenticate.
    AuthFailed {
        /// Our SPI.
        spi: u64,
        /// The user name given.
        user: String,
        /// Why (for the log).
        reason: String,
    },
    /// An IKE SA was removed; its address (if any) was returned to the pool.
    IkeSaClosed {
        /// Our SPI.
        spi: u64,
        /// Why.
        reason: CloseReason,
    },
    /// A debug line in the style of FortiOS `diagnose debug application ike` (no secrets).
    Debug {
        /// Our SPI when known.
        spi: Option<u64>,
        /// The line.
        line: String,
    },
}

/// Counters of what was dropped, for diagnose.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams that did not parse.
    pub malformed: u64,
    /// Encrypted messages whose integrity check failed.
    pub integrity_failed: u64,
    /// Datagrams for unknown SPIs or unexpected message IDs.
    pub unexpected: u64,
    /// Retransmitted requests answered from the cache.
    pub retransmits: u64,
    /// COOKIE challenges sent.
    pub cookies_sent: u64,
    /// IKE_SA_INIT requests dropped because their address held too many half-open SAs.
    pub blocked: u64,
    /// Requests rejected with UNSUPPORTED_CRITICAL_PAYLOAD inside the encrypted payload.
    pub unsupported_critical: u64,
}

pub(crate) enum Phase {
    /// IKE_SA_INIT done, waiting for the first IKE_AUTH.
    Init,
    /// EAP Identity requested.
    EapIdentity { child: auth::PendingChild },
    /// MSCHAPv2 challenge sent.
    EapChallenge { child: auth::PendingChild, user: String, challenge: [u8; 16] },
    /// MSCHAPv2 success request sent, waiting for the peer's success response.
    EapSuccessPending { child: auth::PendingChild, user: String, msk: Zeroizing<[u8; 64]>, token_needed: bool },
    /// EAP Success sent; waiting for the AUTH computed from the MSK. `token_needed`: a second
    /// round (RFC 4739) must follow.
    AwaitAuth { child: auth::PendingChild, user: String, msk: Zeroizing<[u8; 64]>, token_needed: bool },
    /// First round done with ANOTHER_AUTH_FOLLOWS; waiting for the second round's IDi.
    SecondRound { child: auth::PendingChild, user: String },
    /// Second round: EAP Identity requested.
    GtcIdentity { child: auth::PendingChild, user: String, idi: Identification },
    /// Second round: EAP-GTC request for the token code sent.
    Gtc { child: auth::PendingChild, user: String, idi: Identification },
    /// Second round: token push sent; the request `req` is answered once
    /// [`Responder::approve_token`] is called for `user`.
    PushPending { child: auth::PendingChild, user: String, idi: Identification, req: Header },
    /// Second round: EAP Success sent; waiting for the AUTH computed from SK_pi (no MSK).
    AwaitAuth2 { child: auth::PendingChild, user: String, idi: Identification },
    /// MSCHAPv2 failure request sent; the next message ends the exchange.
    EapFailing,
    /// Authenticated.
    Established,
    /// Failed; kept only to answer retransmissions until the deadline.
    Dead,
}

pub(crate) struct IkeSa {
    pub(crate) spi_i: u64,
    pub(crate) spi_r: u64,
    pub(crate) path: Path,
    pub(crate) deadline: Option<Instant>,
    pub(crate) keys: IkeKeys,
    pub(crate) inbound: SkCipher,
    pub(crate) outbound: SkCipher,
    pub(crate) ni: Vec<u8>,
    pub(crate) nr: Vec<u8>,
    pub(crate) init_req: Vec<u8>,
    pub(crate) init_resp: Vec<u8>,
    pub(crate) frag: bool,
    pub(crate) nat_detected: bool,
    pub(crate) expected_mid: u32,
    pub(crate) last_req: Option<Vec<u8>>,
    pub(crate) last_resp: Vec<Vec<u8>>,
    pub(crate) reassembly: Reassembly,
    pub(crate) phase: Phase,
    pub(crate) eap_id: u8,
    pub(crate) assigned: Option<Ipv4Addr>,
    /// CHILD_SAs as (inbound, outbound) SPIs.
    pub(crate) children: Vec<(u32, u32)>,
    /// The authenticated identity (EAP user, else IDi), for INITIAL_CONTACT.
    pub(crate) peer_id: Option<String>,
    /// The establishing message carried INITIAL_CONTACT (handled once, then cleared).
    pub(crate) initial_contact: bool,
    /// Last sign of life: an authenticated message or ESP reported by the driver.
    pub(crate) last_seen: Instant,
    /// Message ID of our next request (§2.2).
    pub(crate) our_mid: u32,
    /// A request of ours waiting for its response.
    pub(crate) pending: Option<info::Pending>,
    /// Set when the SA must go after the current message is answered.
    pub(crate) close: Option<CloseReason>,
    /// How the responder's indexes count this SA (kept in step by `Responder::refresh`).
    pub(crate) tally: Tally,
    /// The wake-up time of this SA's live entry in the responder's timer heap.
    pub(crate) timer_at: Option<Instant>,
    /// Its key in `Responder::by_initiator` (SPIi and the address of the first request).
    pub(crate) init_key: Option<(u64, SocketAddr)>,
}

/// What an SA counts as in the responder's indexes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Tally {
    /// Neither half-open nor established (mid-EAP, failed).
    #[default]
    Other,
    /// IKE_SA_INIT done, no IKE_AUTH yet, counted against the address in `init_key`.
    HalfOpen,
    /// Established, indexed by `peer_id`.
    Established,
}

impl Tally {
    fn of(phase: &Phase) -> Self {
        match phase {
            Phase::Init => Tally::HalfOpen,
            Phase::Established => Tally::Established,
            _ => Tally::Other,
        }
    }
}

/// At most one debug line a second for a flood reaction; the lines held back are counted into
/// the next one, so a flood cannot flood the log too.
#[derive(Default)]
pub(crate) struct Throttle {
    last: Option<Instant>,
    held: u64,
}

impl Throttle {
    /// `Some(lines held back since the last one)` when a line may be written now.
    pub(crate) fn admit(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_none_or(|l| now.saturating_duration_since(l) >= Duration::from_secs(1)) {
            self.last = Some(now);
            Some(std::mem::take(&mut self.held))
        } else {
            self.held += 1;
            None
        }
    }
}

/// What handling one message of an existing SA left for the responder to do.
#[derive(Default)]
pub(crate) struct Aftermath {
    /// A new IKE SA (IKE rekey) to add.
    pub(crate) spawned: Option<Box<IkeSa>>,
}

impl IkeSa {
    pub(crate) fn prf(&self) -> Prf {
        self.keys.prf
    }
}

/// Everything but the SA table, so SA handlers can borrow both.
pub(crate) struct Ctx<R, V, P> {
    pub(crate) config: Arc<Config>,
    pub(crate) rng: R,
    pub(crate) verifier: V,
    pub(crate) pool: P,
    pub(crate) transmits: VecDeque<Transmit>,
    pub(crate) events: VecDeque<Event>,
    pub(crate) stats: Stats,
    pub(crate) cookie_secret: Zeroizing<[u8; 32]>,
    pub(crate) anchor: (Instant, u64),
    pub(crate) spis: Option<Box<dyn SpiSource>>,
    pub(crate) client_check: Option<Box<dyn ClientCheck>>,
    pub(crate) dpd: Option<Dpd>,
    pub(crate) cookie_log: Throttle,
    pub(crate) blocked_log: Throttle,
}

impl<R, V, P> Ctx<R, V, P> {
    pub(crate) fn debug(&mut self, spi: Option<u64>, line: String) {
        self.events.push_back(Event::Debug { spi, line });
    }

    pub(crate) fn now_unix(&self, now: Instant) -> u64 {
        self.anchor.1 + now.saturating_duration_since(self.anchor.0).as_secs()
    }
}

impl<R: Entropy, V, P> Ctx<R, V, P> {
    pub(crate) fn random<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        self.rng.fill(&mut b);
        b
    }
}

/// The responder: every IKE SA of one gateway (phase1) configuration.
///
/// Nothing per datagram or per timer tick scans all SAs: the half-open counts, the established
/// SAs by identity and the timers are indexes kept in step with each SA's phase, so a gateway
/// holding 100 000 tunnels sets up new ones as fast as one holding a thousand.
pub struct Responder<R, V, P> {
    ctx: Ctx<R, V, P>,
    sas: HashMap<u64, IkeSa>,
    /// (SPIi, remote) of IKE SAs, to recognise retransmitted IKE_SA_INIT requests.
    by_initiator: HashMap<(u64, SocketAddr), u64>,
    /// Established SAs by authenticated identity, for INITIAL_CONTACT.
    by_peer: HashMap<String, Vec<u64>>,
    /// Half-open SAs per peer address, for [`Config::per_address_half_open`].
    half_open_by_ip: HashMap<IpAddr, usize>,
    half_open: usize,
    established: usize,
    /// Wake-up times, earliest first. An entry is live only while it equals its SA's
    /// `timer_at`; others are skipped when they surface (cheaper than removing them).
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
}

impl<R: Entropy, V: UserVerifier, P: AddressPool> Responder<R, V, P> {
    /// A responder; `now` and `unix_now` anchor virtual to wall-clock time for the verifier.
    pub fn new(config: Arc<Config>, mut rng: R, verifier: V, pool: P, now: Instant, unix_now: u64) -> Self {
        let mut secret = Zeroizing::new([0u8; 32]);
        rng.fill(&mut secret[..]);
        Self {
            ctx: Ctx {
                config,
                rng,
                verifier,
                pool,
                transmits: VecDeque::new(),
                events: VecDeque::new(),
                stats: Stats::default(),
                cookie_secret: secret,
                anchor: (now, unix_now),
                spis: None,
                client_check: None,
                dpd: None,
                cookie_log: Throttle::default(),
                blocked_log: Throttle::default(),
            },
            sas: HashMap::new(),
            by_initiator: HashMap::new(),
            by_peer: HashMap::new(),
            half_open_by_ip: HashMap::new(),
            half_open: 0,
            established: 0,
            timers: BinaryHeap::new(),
        }
    }

    /// Adds a new IKE SA (from IKE_SA_INIT or an IKE rekey) to the table and the indexes.
    fn admit(&mut self, mut sa: IkeSa) {
        let spi = sa.spi_r;
        if self.sas.contains_key(&spi) {
            return;
        }
        let key = (sa.spi_i, sa.path.remote);
        sa.init_key = Some(key);
        self.by_initiator.insert(key, spi);
        self.sas.insert(spi, sa);
        self.refresh(spi);
    }

    /// Brings the indexes and the timer of SA `spi` in step with its phase and deadlines; call
    /// after anything that may have changed them.
    fn refresh(&mut self, spi: u64) {
        let Some(sa) = self.sas.get_mut(&spi) else { return };
        let tally = Tally::of(&sa.phase);
        if tally != sa.tally {
            let old = std::mem::replace(&mut sa.tally, tally);
            let ip = sa.init_key.map(|k| k.1.ip());
            let peer = sa.peer_id.clone();
            self.count(spi, old, ip, peer.as_deref(), false);
            self.count(spi, tally, ip, peer.as_deref(), true);
        }
        let Some(sa) = self.sas.get_mut(&spi) else { return };
        if let Some(w) = wake(sa, self.ctx.dpd) {
            if sa.timer_at.is_none_or(|t| w < t) {
                sa.timer_at = Some(w);
                self.timers.push(Reverse((w, spi)));
            }
        }
    }

    /// Adds (`add`) or takes away SA `spi`, counted as `tally`, from the indexes.
    fn count(&mut self, spi: u64, tally: Tally, ip: Option<IpAddr>, peer: Option<&str>, add: bool) {
        match tally {
            Tally::Other => {}
            Tally::HalfOpen => {
                if add {
                    self.half_open += 1;
                    if let Some(ip) = ip {
                        *self.half_open_by_ip.entry(ip).or_default() += 1;
                    }
                } else {
                    self.half_open = self.half_open.saturating_sub(1);
                    if let Some(ip) = ip {
                        if let Some(n) = self.half_open_by_ip.get_mut(&ip) {
                            *n = n.saturating_sub(1);
                            if *n == 0 {
                                self.half_open_by_ip.remove(&ip);
                            }
                        }
                    }
                }
            }
            Tally::Established => {
                if add {
                    self.established += 1;
                    if let Some(p) = peer {
                        self.by_peer.entry(p.to_string()).or_default().push(spi);
                    }
                } else {
                    self.established = self.established.saturating_sub(1);
                    if let Some(p) = peer {
                        if let Some(v) = self.by_peer.get_mut(p) {
                            v.retain(|s| *s != spi);
                            if v.is_empty() {
                                self.by_peer.remove(p);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Drops timer entries that no longer say anything at the top of the heap, so
    /// [`Responder::poll_timeout`] is exact: gone SAs, superseded entries, and SAs whose wake-up
    /// moved later (DPD after a sign of life) are re-queued at their real time.
    fn settle(&mut self) {
        while let Some(&Reverse((t, spi))) = self.timers.peek() {
            match self.sas.get_mut(&spi) {
                Some(sa) if sa.timer_at == Some(t) => {
                    let w = wake(sa, self.ctx.dpd);
                    if w == Some(t) {
                        return;
                    }
                    self.timers.pop();
                    sa.timer_at = w;
                    if let Some(w) = w {
                        self.timers.push(Reverse((w, spi)));
                    }
                }
                _ => {
                    self.timers.pop();
                }
            }
        }
    }

    /// Processes one received IKE datagram (non-ESP marker already removed).
    pub fn handle_datagram(&mut self, now: Instant, path: Path, bytes: &[u8]) {
        let Ok(header) = peek_header(bytes) else {
            self.ctx.stats.malformed += 1;
            return;
        };
        if header.major() != 2 {
            // An INVALID_MAJOR_VERSION answer is optional (RFC 7296 §2.5).
            self.ctx.stats.unexpected += 1;
            return;
        }
        if header.is_response() {
            // Only the answers to our own INFORMATIONAL requests are expected.
            let ok = match self.sas.get_mut(&header.spi_r) {
                Some(sa) if sa.spi_i == header.spi_i && matches!(sa.phase, Phase::Established) => {
                    match sa.inbound.open(bytes) {
                        Ok(crate::sk::Opened::Complete(h, _)) if info::response(sa, h.message_id) => {
                            sa.last_seen = now;
                            sa.path = path;
                            true
                        }
                        Err(crate::error::Error::IntegrityFailed) => {
                            self.ctx.stats.integrity_failed += 1;
                            return;
                        }
                        _ => false,
                    }
                }
                _ => false,
            };
            if !ok {
                self.ctx.stats.unexpected += 1;
            }
            return;
        }
        if header.exchange == ExchangeType::IKE_SA_INIT && header.spi_r == 0 {
            let from_ip = self.half_open_by_ip.get(&path.remote.ip()).copied().unwrap_or(0);
            let half_open = init::HalfOpen { total: self.half_open, from_ip };
            if let Some(sa) =
                init::handle(&mut self.ctx, &self.sas, &self.by_initiator, half_open, now, path, bytes, &header)
            {
                self.admit(sa);
                self.settle();
            }
            return;
        }
        let (close, contact, after) = match self.sas.get_mut(&header.spi_r) {
            Some(sa) if sa.spi_i == header.spi_i => {
                let after = auth::handle(&mut self.ctx, sa, now, path, bytes, &header);
                let contact = std::mem::take(&mut sa.initial_contact).then(|| sa.peer_id.clone()).flatten();
                (sa.close, contact, after)
            }
            _ => {
                self.ctx.stats.unexpected += 1;
                return;
            }
        };
        self.refresh(header.spi_r);
        if let Some(new) = after.spawned {
            if let Some(c) = self.ctx.client_check.as_mut() {
                c.rekeyed(header.spi_r, new.spi_r);
            }
            self.admit(*new);
        }
        if let Some(reason) = close {
            self.remove_sa(header.spi_r, reason);
        }
        if let Some(id) = contact {
            // RFC 7296 §2.4: the peer has no other SA with us; older ones for this identity go.
            let old: Vec<u64> = self
                .by_peer
                .get(&id)
                .map(|v| v.iter().copied().filter(|s| *s != header.spi_r).collect())
                .unwrap_or_default();
            for spi in old {
                self.ctx.debug(Some(spi), format!("INITIAL_CONTACT from {id}: deleting this older IKE SA"));
                self.remove_sa(spi, CloseReason::Replaced);
            }
        }
        self.settle();
    }

    /// Takes SA `spi` out of the table and every index (its timer entries go stale).
    fn take_sa(&mut self, spi: u64) -> Option<IkeSa> {
        let sa = self.sas.remove(&spi)?;
        if let Some(key) = sa.init_key {
            if self.by_initiator.get(&key) == Some(&spi) {
                self.by_initiator.remove(&key);
            }
        }
        self.count(spi, sa.tally, sa.init_key.map(|k| k.1.ip()), sa.peer_id.as_deref(), false);
        Some(sa)
    }

    /// Removes an IKE SA: its address goes back to the pool, the driver hears `IkeSaClosed`.
    fn remove_sa(&mut self, spi: u64, reason: CloseReason) {
        if let Some(sa) = self.take_sa(spi) {
            if let Some(a) = sa.assigned {
                self.ctx.pool.release(a);
            }
            if let Some(c) = self.ctx.client_check.as_mut() {
                c.closed(spi);
            }
            self.ctx.events.push_back(Event::IkeSaClosed { spi, reason });
        }
    }

    /// Sets dead-peer detection (`None`: off).
    pub fn set_dpd(&mut self, dpd: Option<Dpd>) {
        self.ctx.dpd = dpd;
        // Every SA's wake-up may have changed: rebuild the heap (rare, O(n)).
        self.timers.clear();
        let spis: Vec<u64> = self.sas.keys().copied().collect();
        for spi in spis {
            if let Some(sa) = self.sas.get_mut(&spi) {
                sa.timer_at = None;
            }
            self.refresh(spi);
        }
    }

    /// The driver saw valid ESP for IKE SA `spi` at `now`: the peer is alive, no probe needed.
    pub fn peer_alive(&mut self, spi: u64, now: Instant) {
        if let Some(sa) = self.sas.get_mut(&spi) {
            if now > sa.last_seen {
                sa.last_seen = now;
            }
        }
        self.settle();
    }

    /// Deletes an established IKE SA (administrator, posture loss): the peer gets an
    /// INFORMATIONAL DELETE, the address returns to the pool. Returns whether it existed.
    pub fn delete_ike_sa(&mut self, spi: u64, _now: Instant) -> bool {
        let Some(sa) = self.sas.get_mut(&spi) else { return false };
        if matches!(sa.phase, Phase::Established) {
            info::send_delete(&mut self.ctx, sa);
        }
        self.ctx.debug(Some(spi), "deleting IKE SA".to_string());
        self.remove_sa(spi, CloseReason::Deleted);
        self.settle();
        true
    }

    /// Approves the pending token push of `user` (the FortiToken Mobile "approve" tap): every
    /// negotiation of that user waiting in the EAP-GTC round gets its EAP Success and goes on to
    /// the final AUTH. Returns how many negotiations were approved (those past their
    /// `negotiate-timeout` are not).
    pub fn approve_token(&mut self, user: &str, now: Instant) -> usize {
        let mut approved = Vec::new();
        for sa in self.sas.values_mut() {
            // A negotiation past its deadline is not revived (handle_timeout removes it).
            let waiting = matches!(&sa.phase, Phase::PushPending { user: u, .. } if u.eq_ignore_ascii_case(user))
                && sa.deadline.is_none_or(|d| d > now);
            if waiting && auth::push_approved(&mut self.ctx, sa) {
                sa.last_seen = now;
                approved.push(sa.spi_r);
            }
        }
        for spi in &approved {
            self.refresh(*spi);
        }
        self.settle();
        approved.len()
    }

    /// Our SPIs of the established IKE SAs.
    pub fn established_spis(&self) -> Vec<u64> {
        self.by_peer.values().flatten().copied().collect()
    }

    /// Removes negotiations whose `negotiate-timeout` has passed, and runs dead-peer detection.
    /// Only the SAs whose wake-up time has come are looked at.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due = Vec::new();
        while let Some(&Reverse((t, spi))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            if let Some(sa) = self.sas.get_mut(&spi) {
                if sa.timer_at == Some(t) {
                    sa.timer_at = None;
                    due.push(spi);
                }
            }
        }
        for spi in due {
            if let (Some(dpd), Some(sa)) = (self.ctx.dpd, self.sas.get_mut(&spi)) {
                if matches!(sa.phase, Phase::Established)
                    && info::next_timer(sa, dpd) <= now
                    && info::on_timer(&mut self.ctx, sa, now, dpd)
                {
                    self.remove_sa(spi, CloseReason::DeadPeer);
                    continue;
                }
            }
            if self.sas.get(&spi).is_some_and(|s| s.deadline.is_some_and(|d| d <= now)) {
                self.expire(spi);
            } else {
                self.refresh(spi);
            }
        }
        self.settle();
    }

    /// Removes SA `spi` whose `negotiate-timeout` passed (or whose failure was answered).
    fn expire(&mut self, spi: u64) {
        let Some(sa) = self.take_sa(spi) else { return };
        if let Some(a) = sa.assigned {
            self.ctx.pool.release(a);
        }
        if let Phase::PushPending { user, .. } = &sa.phase {
            self.ctx.debug(Some(spi), format!("Token push for user \"{user}\" was not approved in time"));
            self.ctx.events.push_back(Event::AuthFailed {
                spi,
                user: user.clone(),
                reason: "token push was not approved before negotiate-timeout".to_string(),
            });
        }
        let reason =
            if matches!(sa.phase, Phase::Dead) { CloseReason::AuthFailed } else { CloseReason::NegotiationTimeout };
        if reason == CloseReason::NegotiationTimeout {
            self.ctx.debug(Some(spi), "negotiation timeout, deleting".to_string());
        }
        self.ctx.events.push_back(Event::IkeSaClosed { spi, reason });
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.ctx.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.ctx.events.pop_front()
    }

    /// When [`Responder::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    /// Drop and retransmission counters.
    pub fn stats(&self) -> Stats {
        self.ctx.stats
    }

    /// Number of IKE SAs (any state).
    pub fn ike_sa_count(&self) -> usize {
        self.sas.len()
    }

    /// Number of established IKE SAs.
    pub fn established_count(&self) -> usize {
        self.established
    }

    /// Number of half-open IKE SAs (IKE_SA_INIT answered, no IKE_AUTH yet).
    pub fn half_open_count(&self) -> usize {
        self.half_open
    }

    /// The user verifier (e.g. to reload users).
    pub fn verifier_mut(&mut self) -> &mut V {
        &mut self.ctx.verifier
    }

    /// The address pool.
    pub fn pool_mut(&mut self) -> &mut P {
        &mut self.ctx.pool
    }

    /// Lets `spis` choose inbound CHILD_SA SPIs from now on (the data plane's allocator).
    pub fn set_spi_source(&mut self, spis: Box<dyn SpiSource>) {
        self.ctx.spis = Some(spis);
    }

    /// Runs `check` on every client between user authentication and the CHILD_SA.
    pub fn set_client_check(&mut self, check: Box<dyn ClientCheck>) {
        self.ctx.client_check = Some(check);
    }
}

/// When SA `sa` needs [`Responder::handle_timeout`]: its negotiation deadline, or its next DPD
/// step once established.
fn wake(sa: &IkeSa, dpd: Option<Dpd>) -> Option<Instant> {
    let dpd = dpd.filter(|_| matches!(sa.phase, Phase::Established)).map(|d| info::next_timer(sa, d));
    match (sa.deadline, dpd) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The response header for a request.
pub(crate) fn response_header(req: &Header, spi_r: u64) -> Header {
    Header {
        spi_i: req.spi_i,
        spi_r,
        next_payload: crate::message::PayloadType::NONE,
        version: 0x20,
        exchange: req.exchange,
        flags: FLAG_RESPONSE,
        message_id: req.message_id,
        length: 0,
    }
}

/// NAT detection hash: SHA-1(SPIi | SPIr | IP | Port) (RFC 7296 §2.23).
pub(crate) fn nat_hash(spi_i: u64, spi_r: u64, addr: SocketAddr) -> Vec<u8> {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(&spi_i.to_be_bytes());
    ctx.update(&spi_r.to_be_bytes());
    match addr.ip() {
        IpAddr::V4(a) => ctx.update(&a.octets()),
        IpAddr::V6(a) => ctx.update(&a.octets()),
    }
    ctx.update(&addr.port().to_be_bytes());
    ctx.finish().as_ref().to_vec()
}

/// A notify payload without SPI.
pub(crate) fn notify(ty: NotifyType, data: Vec<u8>) -> Payload {
    Payload::Notify(Notify::new(ty, data))
}
