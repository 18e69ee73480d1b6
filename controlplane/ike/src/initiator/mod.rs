//! dialgate's own IKEv2 initiator (remote-access client), sans-IO like the responder.
//!
//! How to drive it (the caller owns the socket, the clock and retransmission):
//! 1. [`Initiator::new`] with an [`InitiatorConfig`], randomness and an [`EapPeer`] that answers
//!    MSCHAPv2 challenges (the controlplane computes NT-Responses; this crate has no MD4/DES).
//! 2. Send the datagrams of [`Initiator::start`] (IKE_SA_INIT) to the gateway.
//! 3. Feed every received datagram (non-ESP marker removed) to [`Initiator::handle_datagram`]:
//!    [`Progress::Send`] gives the next request's datagrams, [`Progress::Established`] the
//!    result (assigned address, CHILD_SA SPIs and keys), [`Progress::Pending`] means a fragment
//!    or a stray datagram was absorbed. A refusal is an [`InitiatorError`] carrying the error
//!    notify and the private notifies the gateway sent with it.
//! 4. On timeout resend [`Initiator::last_request`].
//! 5. Once established, [`Initiator::informational`] sends notifies (tag token updates); the
//!    answer is [`Progress::Answered`].
//!
//! Exchanges (RFC 7296 §1.2, §2.16, EAP only for the client, PSK for the gateway):
//! ```text
//! HDR, SAi1, KEi, Ni, N(NAT_D)*, N(FRAG_SUP)         -->
//!                         <-- HDR, SAr1, KEr, Nr  |  N(INVALID_KE_PAYLOAD) → retry  |  N(COOKIE) → retry
//! HDR, SK {IDi, N(INITIAL_CONTACT), CP(REQ), SAi2, TSi, TSr, N(private)*}  -->
//!                         <-- HDR, SK {IDr, AUTH(psk), EAP(Identity | MSCHAPv2 Challenge)}
//! EAP(Identity) / EAP(MSCHAPv2 Response) / EAP(Success response)  <-->  ...  <-- EAP(Success)
//! HDR, SK {AUTH(msk)}  -->  <-- HDR, SK {AUTH(msk), CP(REPLY), SAr2, TSi, TSr, N(private)*}
//! ```

use std::net::Ipv4Addr;

use zeroize::Zeroizing;

use crate::codec::Codec;
use crate::crypto::dh::{DhGroup, DhPrivate};
use crate::crypto::Entropy;
use crate::eap::{self, EapPacket, MsChapV2};
use crate::keymat::{child_keymat, skeyseed, ChildKeys, IkeKeys};
use crate::message::{
    AuthMethod, AuthPayload, CfgType, CpAttrType, CpAttribute, CpPayload, DhId, ExchangeType, Header, Identification,
    KePayload, Message, Notify, NotifyType, Payload, PayloadType, TrafficSelector, TsPayload, FLAG_INITIATOR,
};
use crate::proposal::{esp_key_lengths, EspOffer, EspSuite, IkeOffer};
use crate::responder::{nat_hash, Path};
use crate::sk::{Opened, Reassembly, SkCipher};

/// What the client offers and who it is.
#[derive(Clone)]
pub struct InitiatorConfig {
    /// IKE proposals; the first group is tried first.
    pub ike: IkeOffer,
    /// ESP proposals.
    pub esp: EspOffer,
    /// IDi.
    pub idi: Identification,
    /// EAP user name.
    pub user: String,
    /// The gateway's pre-shared key (it authenticates with it).
    pub psk: Zeroizing<Vec<u8>>,
    /// Extra notifies for the first IKE_AUTH (FORTICLIENT_CONNECT, the tag token).
    pub auth_notifies: Vec<Notify>,
    /// Offer IKE fragmentation and fragment our requests above this size.
    pub fragment_len: Option<usize>,
}

impl std::fmt::Debug for InitiatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitiatorConfig").field("ike", &self.ike).field("esp", &self.esp).finish_non_exhaustive()
    }
}

/// An MSCHAPv2 answer computed by the [`EapPeer`].
pub struct MsChapAnswer {
    /// NT-Response (RFC 2759 §8.1).
    pub nt_response: [u8; 24],
    /// The authenticator response the server must send ("S=" and 40 hex digits).
    pub expected_success: String,
    /// The MSK (RFC 3079, 64 bytes as for IKEv2).
    pub msk: Zeroizing<[u8; 64]>,
}

/// Answers MSCHAPv2 challenges for the user (holds the password, never this crate).
pub trait EapPeer {
    /// The answer to `auth_challenge` with our `peer_challenge` for `user`.
    fn mschapv2(&mut self, auth_challenge: &[u8; 16], peer_challenge: &[u8; 16], user: &str) -> MsChapAnswer;
}

/// The keys of an established CHILD_SA, from the client's side.
pub struct ChildSaKeys {
    /// Our SPI (the gateway sends to it).
    pub inbound_spi: u32,
    /// The gateway's SPI (we send to it).
    pub outbound_spi: u32,
    /// Algorithms.
    pub suite: EspSuite,
    /// Extended sequence numbers.
    pub esn: bool,
    /// KEYMAT: `encr_i`/`integ_i` protect our outbound traffic, `encr_r`/`integ_r` inbound.
    pub keys: ChildKeys,
}

impl std::fmt::Debug for ChildSaKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildSaKeys")
            .field("inbound_spi", &format_args!("{:08x}", self.inbound_spi))
            .field("outbound_spi", &format_args!("{:08x}", self.outbound_spi))
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

/// A connected client.
#[derive(Debug)]
pub struct Established {
    /// IKE SPIs (initiator, responder).
    pub ike_spis: (u64, u64),
    /// INTERNAL_IP4_ADDRESS.
    pub assigned: Option<Ipv4Addr>,
    /// INTERNAL_IP4_DNS.
    pub dns: Vec<Ipv4Addr>,
    /// TSr as narrowed by the gateway.
    pub tsr: Vec<TrafficSelector>,
    /// The CHILD_SA.
    pub child: ChildSaKeys,
    /// Private-use notifies (≥ 40960) of the last response.
    pub private_notifies: Vec<Notify>,
    /// True when NAT was detected (ESP must go in UDP).
    pub nat_detected: bool,
}

/// The result of one received datagram.
#[derive(Debug)]
pub enum Progress {
    /// Send these datagrams (the next request).
    Send(Vec<Vec<u8>>),
    /// Connected.
    Established(Box<Established>),
    /// Nothing to do (a fragment, or a datagram that is not for us).
    Pending,
    /// The gateway answered an INFORMATIONAL request of [`Initiator::informational`]; its
    /// payloads.
    Answered(Vec<Payload>),
}

/// Why the connection failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InitiatorError {
    /// The gateway answered with an error notify.
    #[error("refused by the gateway: {notify:?}")]
    Refused {
        /// The error notify.
        notify: NotifyType,
        /// Private notifies sent with it (e.g. a posture failure with its text).
        private: Vec<Notify>,
    },
    /// EAP-MSCHAPv2 failed (wrong password or code); the gateway's message.
    #[error("EAP authentication failed: {0}")]
    EapFailed(String),
    /// The gateway did not prove the pre-shared key (or its EAP AUTH).
    #[error("gateway authentication failed: {0}")]
    GatewayAuth(&'static str),
    /// The gateway broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
}

enum State {
    Init,
    AwaitAuth1,
    Eap { msk: Option<Zeroizing<[u8; 64]>>, expected_success: Option<String> },
    AwaitFinal { msk: Zeroizing<[u8; 64]> },
    Done,
}

/// One client connection attempt.
pub struct Initiator<R, E> {
    cfg: InitiatorConfig,
    rng: R,
    peer: E,
    path: Path,
    state: State,
    spi_i: u64,
    spi_r: u64,
    ni: Vec<u8>,
    nr: Vec<u8>,
    group: DhGroup,
    dh: Option<DhPrivate>,
    cookie: Option<Vec<u8>>,
    init_req: Vec<u8>,
    init_resp: Vec<u8>,
    keys: Option<IkeKeys>,
    out: Option<SkCipher>,
    inb: Option<SkCipher>,
    mid: u32,
    last: Vec<Vec<u8>>,
    reassembly: Reassembly,
    esp_spi: u32,
    nat_detected: bool,
    retries: u8,
    idr: Option<Identification>,
    established: bool,
}

fn proto(s: &str) -> InitiatorError {
    InitiatorError::Protocol(s.to_string())
}

fn find<'a, T: 'a>(p: &'a [Payload], f: impl Fn(&'a Payload) -> Option<T>) -> Option<T> {
    p.iter().find_map(f)
}

fn private_notifies(p: &[Payload]) -> Vec<Notify> {
    p.iter()
        .filter_map(|x| if let Payload::Notify(n) = x { (n.ty.0 >= 40960).then(|| n.clone()) } else { None })
        .collect()
}

fn error_notify(p: &[Payload]) -> Option<NotifyType> {
    find(p, |x| if let Payload::Notify(n) = x { n.ty.is_error().then_some(n.ty) } else { None })
}

impl<R: Entropy, E: EapPeer> Initiator<R, E> {
    /// A new attempt from `path.local` to the gateway at `path.remote`; `esp_spi` is our
    /// inbound CHILD_SA SPI.
    pub fn new(cfg: InitiatorConfig, mut rng: R, peer: E, path: Path, esp_spi: u32) -> Result<Self, InitiatorError> {
        let group = *cfg.ike.groups.first().ok_or_else(|| proto("no DH group offered"))?;
        let mut b = [0u8; 8];
        rng.fill(&mut b);
        let mut ni = vec![0u8; 32];
        rng.fill(&mut ni);
        Ok(Self {
            cfg,
            rng,
            peer,
            path,
            state: State::Init,
            spi_i: u64::from_be_bytes(b) | 1,
            spi_r: 0,
            ni,
            nr: Vec::new(),
            group,
            dh: None,
            cookie: None,
            init_req: Vec::new(),
            init_resp: Vec::new(),
            keys: None,
            out: None,
            inb: None,
            mid: 0,
            last: Vec::new(),
            reassembly: Reassembly::default(),
            esp_spi,
            nat_detected: false,
            retries: 0,
            idr: None,
            established: false,
        })
    }

    /// Our IKE SPI.
    pub fn spi_i(&self) -> u64 {
        self.spi_i
    }

    /// The datagrams of the request in flight (for retransmission).
    pub fn last_request(&self) -> &[Vec<u8>] {
        &self.last
    }

    /// The IKE_SA_INIT request.
    pub fn start(&mut self) -> Result<Vec<Vec<u8>>, InitiatorError> {
        let dh = DhPrivate::generate(self.group, &mut self.rng).map_err(|e| proto(&e.to_string()))?;
        let mut p = Vec::with_capacity(8);
        if let Some(c) = &self.cookie {
            // RFC 7296 §2.6: the COOKIE notify comes first.
            p.push(Payload::Notify(Notify::new(NotifyType::COOKIE, c.clone())));
        }
        p.push(Payload::Sa(self.cfg.ike.to_sa()));
        p.push(Payload::Ke(KePayload { group: self.group.id(), data: dh.public().to_vec() }));
        p.push(Payload::Nonce(self.ni.clone()));
        p.push(Payload::Notify(Notify::new(
            NotifyType::NAT_DETECTION_SOURCE_IP,
            nat_hash(self.spi_i, 0, self.path.local),
        )));
        p.push(Payload::Notify(Notify::new(
            NotifyType::NAT_DETECTION_DESTINATION_IP,
            nat_hash(self.spi_i, 0, self.path.remote),
        )));
        if self.cfg.fragment_len.is_some() {
            p.push(Payload::Notify(Notify::new(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED, vec![])));
        }
        self.dh = Some(dh);
        let m = Message { header: self.header(ExchangeType::IKE_SA_INIT, 0), payloads: p };
        self.init_req = m.encode();
        self.last = vec![self.init_req.clone()];
        self.state = State::Init;
        Ok(self.last.clone())
    }

    fn header(&self, exchange: ExchangeType, mid: u32) -> Header {
        Header {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            next_payload: PayloadType::NONE,
            version: 0x20,
            exchange,
            flags: FLAG_INITIATOR,
            message_id: mid,
            length: 0,
        }
    }

    /// Processes one datagram from the gateway.
    pub fn handle_datagram(&mut self, bytes: &[u8]) -> Result<Progress, InitiatorError> {
        let Ok(h) = crate::message::peek_header(bytes) else { return Ok(Progress::Pending) };
        if h.spi_i != self.spi_i || !h.is_response() {
            return Ok(Progress::Pending);
        }
        if matches!(self.state, State::Init) {
            if h.exchange != ExchangeType::IKE_SA_INIT || h.message_id != 0 {
                return Ok(Progress::Pending);
            }
            return self.init_response(bytes);
        }
        if self.established && self.last.is_empty() {
            // Nothing in flight: a late or replayed answer.
            return Ok(Progress::Pending);
        }
        let want = if self.established { ExchangeType::INFORMATIONAL } else { ExchangeType::IKE_AUTH };
        if h.spi_r != self.spi_r || h.message_id.wrapping_add(1) != self.mid || h.exchange != want {
            return Ok(Progress::Pending);
        }
        let Some(inb) = self.inb.as_ref() else { return Ok(Progress::Pending) };
        let payloads = match inb.open(bytes) {
            Ok(Opened::Complete(_, p)) => p,
            Ok(Opened::Fragment { header, first, number, total, plain }) => {
                match self.reassembly.add(header.message_id, first, number, total, plain) {
                    Ok(Some(p)) => p,
                    Ok(None) => return Ok(Progress::Pending),
                    Err(e) => return Err(proto(&e.to_string())),
                }
            }
            // RFC 7296 §2.21.1: a message that does not verify is dropped.
            Err(_) => return Ok(Progress::Pending),
        };
        if self.established {
            self.last.clear();
            return Ok(Progress::Answered(payloads));
        }
        self.auth_response(payloads)
    }

    fn init_response(&mut self, bytes: &[u8]) -> Result<Progress, InitiatorError> {
        let m = Message::parse(bytes).map_err(|e| proto(&e.to_string()))?;
        if let Some(n) = m.notify(NotifyType::COOKIE) {
            if self.retries >= 3 {
                return Err(proto("too many COOKIE rounds"));
            }
            self.retries += 1;
            self.cookie = Some(n.data.clone());
            return self.start().map(Progress::Send);
        }
        if let Some(n) = m.notify(NotifyType::INVALID_KE_PAYLOAD) {
            let want = n.data.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])).unwrap_or(0);
            let g = self.cfg.ike.groups.iter().copied().find(|g| g.id() == DhId(want));
            match g {
                Some(g) if self.retries < 3 && g != self.group => {
                    self.retries += 1;
                    self.group = g;
                    return self.start().map(Progress::Send);
                }
                _ => return Err(InitiatorError::Refused { notify: NotifyType::INVALID_KE_PAYLOAD, private: vec![] }),
            }
        }
        if let Some(ty) = error_notify(&m.payloads) {
            return Err(InitiatorError::Refused { notify: ty, private: private_notifies(&m.payloads) });
        }
        let sa =
            find(&m.payloads, |p| if let Payload::Sa(s) = p { Some(s) } else { None }).ok_or_else(|| proto("no SA"))?;
        let ke =
            find(&m.payloads, |p| if let Payload::Ke(k) = p { Some(k) } else { None }).ok_or_else(|| proto("no KE"))?;
        let nr = find(&m.payloads, |p| if let Payload::Nonce(n) = p { Some(n) } else { None })
            .ok_or_else(|| proto("no Nr"))?;
        // The gateway must pick one of our suites, with the group of our KE.
        let choice = self.cfg.ike.select(sa, ke.group).map_err(|_| proto("gateway chose a suite we did not offer"))?;
        if ke.group != self.group.id() {
            return Err(proto("KE group differs from ours"));
        }
        let dh = self.dh.as_ref().ok_or_else(|| proto("no DH state"))?;
        let gir = dh.agree(&ke.data).map_err(|e| proto(&e.to_string()))?;
        self.spi_r = m.header.spi_r;
        self.nr = nr.clone();
        let suite = choice.suite;
        let seed = skeyseed(suite.prf, &self.ni, &self.nr, &gir);
        let keys =
            IkeKeys::derive(suite.prf, suite.encr, suite.integ, &seed, &self.ni, &self.nr, self.spi_i, self.spi_r)
                .map_err(|e| proto(&e.to_string()))?;
        self.out = Some(SkCipher::outbound(&keys, false).map_err(|e| proto(&e.to_string()))?);
        self.inb = Some(SkCipher::inbound(&keys, false).map_err(|e| proto(&e.to_string()))?);
        self.keys = Some(keys);
        // NAT detection (RFC 7296 §2.23): the gateway hashed what it saw.
        let expected = nat_hash(self.spi_i, self.spi_r, self.path.local);
        self.nat_detected = m.notify(NotifyType::NAT_DETECTION_DESTINATION_IP).is_some_and(|n| n.data != expected);
        self.init_resp = bytes.to_vec();
        self.mid = 1;
        self.dh = None;
        self.state = State::AwaitAuth1;
        let mut p = vec![
            Payload::IdI(self.cfg.idi.clone()),
            Payload::Notify(Notify::new(NotifyType::INITIAL_CONTACT, vec![])),
            Payload::Cp(CpPayload {
                cfg_type: CfgType::CFG_REQUEST,
                attributes: vec![
                    CpAttribute { ty: CpAttrType::INTERNAL_IP4_ADDRESS, value: vec![] },
                    CpAttribute { ty: CpAttrType::INTERNAL_IP4_DNS, value: vec![] },
                ],
            }),
            Payload::Sa(self.cfg.esp.to_sa(self.esp_spi)),
            Payload::TsI(TsPayload { selectors: vec![TrafficSelector::ipv4_any()] }),
            Payload::TsR(TsPayload { selectors: vec![TrafficSelector::ipv4_any()] }),
            Payload::Notify(Notify::new(NotifyType::EAP_ONLY_AUTHENTICATION, vec![])),
        ];
        p.extend(self.cfg.auth_notifies.iter().cloned().map(Payload::Notify));
        self.request(p).map(Progress::Send)
    }

    fn request(&mut self, payloads: Vec<Payload>) -> Result<Vec<Vec<u8>>, InitiatorError> {
        self.request_of(ExchangeType::IKE_AUTH, payloads)
    }

    /// An INFORMATIONAL request on the established IKE SA carrying `notifies` (e.g. a fresh tag
    /// token); the answer comes back as [`Progress::Answered`].
    pub fn informational(&mut self, notifies: Vec<Notify>) -> Result<Vec<Vec<u8>>, InitiatorError> {
        if !self.established {
            return Err(proto("INFORMATIONAL before the IKE SA is established"));
        }
        self.request_of(ExchangeType::INFORMATIONAL, notifies.into_iter().map(Payload::Notify).collect())
    }

    fn request_of(&mut self, exchange: ExchangeType, payloads: Vec<Payload>) -> Result<Vec<Vec<u8>>, InitiatorError> {
        let h = self.header(exchange, self.mid);
        let out = self.out.as_ref().ok_or_else(|| proto("no keys"))?;
        let d = out.seal(&h, &payloads, self.cfg.fragment_len, &mut self.rng).map_err(|e| proto(&e.to_string()))?;
        self.mid += 1;
        self.reassembly = Reassembly::default();
        self.last = d.clone();
        Ok(d)
    }

    /// AUTH for a shared secret (RFC 7296 §2.15): ours over InitiatorSignedOctets when
    /// `ours`, else the gateway's over ResponderSignedOctets.
    fn auth_value(&self, secret: &[u8], id: &Identification, ours: bool) -> Option<Vec<u8>> {
        let k = self.keys.as_ref()?;
        let prf = k.prf;
        let (sk_p, msg, nonce) =
            if ours { (&k.sk_pi, &self.init_req, &self.nr) } else { (&k.sk_pr, &self.init_resp, &self.ni) };
        let maced = prf.prf(sk_p, &[&id.get_encoding()]);
        let kp = prf.prf(secret, &[b"Key Pad for IKEv2"]);
        Some(prf.prf(&kp, &[msg, nonce, &maced]).to_vec())
    }

    fn check_gateway_auth(&self, p: &[Payload], secret: &[u8]) -> Result<(), InitiatorError> {
        // The last response carries no IDr: the gateway's identity is the one it sent first.
        let idr = find(p, |x| if let Payload::IdR(i) = x { Some(i) } else { None }).or(self.idr.as_ref());
        let auth = find(p, |x| if let Payload::Auth(a) = x { Some(a) } else { None });
        let (Some(idr), Some(auth)) = (idr, auth) else { return Err(InitiatorError::GatewayAuth("no IDr/AUTH")) };
        let want = self.auth_value(secret, idr, false).ok_or(InitiatorError::GatewayAuth("no keys"))?;
        if auth.method != AuthMethod::SHARED_KEY_MIC
            || !bool::from(subtle::ConstantTimeEq::ct_eq(want.as_slice(), auth.data.as_slice()))
        {
            return Err(InitiatorError::GatewayAuth("AUTH does not verify"));
        }
        Ok(())
    }

    fn eap_response(&mut self, id: u8, method: (u8, Vec<u8>)) -> Result<Progress, InitiatorError> {
        let e = EapPacket { code: eap::CODE_RESPONSE, identifier: id, method: Some(method) }.get_encoding();
        self.request(vec![Payload::Eap(e)]).map(Progress::Send)
    }

    fn auth_response(&mut self, p: Vec<Payload>) -> Result<Progress, InitiatorError> {
        if let Some(ty) = error_notify(&p) {
            self.state = State::Done;
            return Err(InitiatorError::Refused { notify: ty, private: private_notifies(&p) });
        }
        match std::mem::replace(&mut self.state, State::Done) {
            State::AwaitAuth1 => {
                let psk = self.cfg.psk.clone();
                self.check_gateway_auth(&p, &psk)?;
                self.idr = find(&p, |x| if let Payload::IdR(i) = x { Some(i.clone()) } else { None });
                self.state = State::Eap { msk: None, expected_success: None };
                self.eap_step(&p)
            }
            st @ State::Eap { .. } => {
                self.state = st;
                self.eap_step(&p)
            }
            State::AwaitFinal { msk } => self.final_response(&p, &msk[..]),
            State::Init | State::Done => Err(proto("unexpected message")),
        }
    }

    fn eap_step(&mut self, p: &[Payload]) -> Result<Progress, InitiatorError> {
        let pkt = find(p, |x| if let Payload::Eap(b) = x { EapPacket::read_bytes(b).ok() } else { None })
            .ok_or_else(|| proto("no EAP payload"))?;
        match (pkt.code, pkt.method) {
            (eap::CODE_REQUEST, Some((eap::TYPE_IDENTITY, _))) => {
                let user = self.cfg.user.as_bytes().to_vec();
                self.eap_response(pkt.identifier, (eap::TYPE_IDENTITY, user))
            }
            (eap::CODE_REQUEST, Some((eap::TYPE_MSCHAPV2, d))) => match MsChapV2::parse(&d, true) {
                Ok(MsChapV2::Challenge { id, challenge, .. }) => {
                    let mut peer_challenge = [0u8; 16];
                    self.rng.fill(&mut peer_challenge);
                    let user = self.cfg.user.clone();
                    let a = self.peer.mschapv2(&challenge, &peer_challenge, &user);
                    self.state = State::Eap { msk: Some(a.msk), expected_success: Some(a.expected_success) };
                    let r = MsChapV2::Response {
                        id,
                        peer_challenge,
                        nt_response: a.nt_response,
                        flags: 0,
                        name: user.into_bytes(),
                    };
                    self.eap_response(pkt.identifier, (eap::TYPE_MSCHAPV2, r.encode()))
                }
                Ok(MsChapV2::SuccessRequest { message, .. }) => {
                    let State::Eap { expected_success: Some(want), .. } = &self.state else {
                        return Err(proto("MSCHAPv2 success before a challenge"));
                    };
                    // RFC 2759 §5: the peer checks the authenticator response before accepting.
                    if !message.starts_with(want.as_bytes()) {
                        return Err(InitiatorError::GatewayAuth("MSCHAPv2 authenticator response is wrong"));
                    }
                    self.eap_response(pkt.identifier, (eap::TYPE_MSCHAPV2, vec![eap::opcode::SUCCESS]))
                }
                Ok(MsChapV2::FailureRequest { message, .. }) => {
                    self.state = State::Done;
                    Err(InitiatorError::EapFailed(String::from_utf8_lossy(&message).into_owned()))
                }
                _ => Err(proto("unexpected MSCHAPv2 message")),
            },
            (eap::CODE_REQUEST, Some((t, _))) => {
                // Legacy Nak (RFC 3748 §5.3.1): we only do MSCHAPv2.
                self.eap_response(pkt.identifier, (eap::TYPE_NAK, vec![eap::TYPE_MSCHAPV2]))
                    .map_err(|_| proto(&format!("EAP method {t}")))
            }
            (eap::CODE_SUCCESS, _) => {
                let State::Eap { msk: Some(msk), .. } = std::mem::replace(&mut self.state, State::Done) else {
                    return Err(proto("EAP success without MSCHAPv2"));
                };
                let auth = self.auth_value(&msk[..], &self.cfg.idi, true).ok_or_else(|| proto("no keys"))?;
                self.state = State::AwaitFinal { msk };
                self.request(vec![Payload::Auth(AuthPayload { method: AuthMethod::SHARED_KEY_MIC, data: auth })])
                    .map(Progress::Send)
            }
            (eap::CODE_FAILURE, _) => {
                self.state = State::Done;
                Err(InitiatorError::EapFailed("EAP failure".into()))
            }
            _ => Err(proto("unexpected EAP packet")),
        }
    }

    fn final_response(&mut self, p: &[Payload], msk: &[u8]) -> Result<Progress, InitiatorError> {
        self.check_gateway_auth(p, msk)?;
        let sa = find(p, |x| if let Payload::Sa(s) = x { Some(s) } else { None }).ok_or_else(|| proto("no SAr2"))?;
        let choice = self
            .cfg
            .esp
            .select(sa, None, self.esp_spi)
            .map_err(|_| proto("gateway chose an ESP suite we did not offer"))?;
        let (e, i) = esp_key_lengths(&choice.suite);
        let k = self.keys.as_ref().ok_or_else(|| proto("no keys"))?;
        let keys = child_keymat(k.prf, &k.sk_d, None, &self.ni, &self.nr, e, i).map_err(|e| proto(&e.to_string()))?;
        let mut assigned = None;
        let mut dns = Vec::new();
        if let Some(cp) = find(p, |x| if let Payload::Cp(c) = x { Some(c) } else { None }) {
            for a in &cp.attributes {
                if let Ok(b) = <[u8; 4]>::try_from(a.value.get(..4).unwrap_or(&[])) {
                    match a.ty {
                        CpAttrType::INTERNAL_IP4_ADDRESS => assigned = Some(Ipv4Addr::from(b)),
                        CpAttrType::INTERNAL_IP4_DNS => dns.push(Ipv4Addr::from(b)),
                        _ => {}
                    }
                }
            }
        }
        let tsr =
            find(p, |x| if let Payload::TsR(t) = x { Some(t.selectors.clone()) } else { None }).unwrap_or_default();
        self.state = State::Done;
        self.established = true;
        self.last.clear();
        Ok(Progress::Established(Box::new(Established {
            ike_spis: (self.spi_i, self.spi_r),
            assigned,
            dns,
            tsr,
            child: ChildSaKeys {
                inbound_spi: self.esp_spi,
                outbound_spi: choice.peer_spi,
                suite: choice.suite,
                esn: choice.esn,
                keys,
            },
            private_notifies: private_notifies(p),
            nat_detected: self.nat_detected,
        })))
    }
}
