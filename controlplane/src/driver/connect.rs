//! `dialgate connect` over a UDP socket: drives [`dialgate_ike::initiator::Initiator`] to one
//! gateway, with retransmission and an overall timeout. Also the building block of the load
//! generator (one call per simulated client).
//!
//! How to use it: fill [`ConnectOptions`] and `await` [`connect`]. With `natt` (the gateway's
//! port 4500) IKE carries the non-ESP marker (RFC 3948 §2.2); the client stays on the port it
//! started on.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use dialgate_ike::crypto::SystemEntropy;
use dialgate_ike::initiator::{
    EapPeer, Established, Initiator, InitiatorConfig, InitiatorError, MsChapAnswer, Progress,
};
use dialgate_ike::message::{IdType, Identification, Notify, NotifyType};
use dialgate_ike::proposal::{EspOffer, IkeOffer};
use dialgate_ike::responder::Path;
use tokio::net::UdpSocket;
use zeroize::Zeroizing;

use crate::auth::mschapv2;
use crate::posture::client::{ClientData, FORTICLIENT_CONNECT, ZTNA_TAG_TOKEN};

/// IKE proposals the client offers by default (the seeds' phase1 list), groups 20, 21, 19, 14, 31.
pub const DEFAULT_IKE: &str =
    "aes128-sha256 aes256-sha256 aes128gcm-prfsha256 aes256gcm-prfsha384 chacha20poly1305-prfsha256";
/// ESP proposals the client offers by default.
pub const DEFAULT_ESP: &str =
    "aes128gcm aes256gcm chacha20poly1305 aes128-sha256 aes256-sha256 aes128-sha1 aes256-sha1";

/// MSCHAPv2 for the client: the password (followed by the token code) never leaves this type.
pub struct MsChapPeer(pub Zeroizing<String>);

impl EapPeer for MsChapPeer {
    fn mschapv2(&mut self, auth_challenge: &[u8; 16], peer_challenge: &[u8; 16], user: &str) -> MsChapAnswer {
        let nt = mschapv2::generate_nt_response(auth_challenge, peer_challenge, user, &self.0);
        let hash = mschapv2::nt_password_hash(&self.0);
        MsChapAnswer {
            nt_response: nt,
            expected_success: mschapv2::authenticator_response(&hash, &nt, peer_challenge, auth_challenge, user),
            msk: mschapv2::msk(&hash, &nt),
        }
    }
}

/// What to connect with.
#[derive(Clone)]
pub struct ConnectOptions {
    /// The gateway.
    pub server: SocketAddr,
    /// Local address to bind (port 0 for any).
    pub local: SocketAddr,
    /// EAP user.
    pub user: String,
    /// Password, with the token code appended when the user has one.
    pub password: Zeroizing<String>,
    /// The gateway's pre-shared key.
    pub psk: Zeroizing<Vec<u8>>,
    /// FORTICLIENT_CONNECT data to send.
    pub fct: Option<ClientData>,
    /// A tag token to send.
    pub token: Option<Vec<u8>>,
    /// Give up after this long.
    pub timeout: Duration,
    /// Resend the request in flight after this long without an answer.
    pub retransmit: Duration,
    /// Send IKE with the non-ESP marker (the gateway's NAT-T port; default: port 4500).
    pub natt: bool,
}

/// Why `connect` failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Socket trouble.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// No answer in time.
    #[error("no answer from the gateway within {0:?}")]
    Timeout(Duration),
    /// The exchange failed.
    #[error("{0}")]
    Ike(#[from] InitiatorError),
}

/// Connects once; the handle holds the established SA's parameters and can send token updates.
pub async fn connect(o: &ConnectOptions) -> Result<Connected, ConnectError> {
    let sock = UdpSocket::bind(o.local).await?;
    sock.connect(o.server).await?;
    let local = sock.local_addr()?;
    let marker = o.natt;
    let mut notifies = Vec::new();
    if let Some(f) = &o.fct {
        notifies.push(Notify::new(NotifyType(FORTICLIENT_CONNECT), f.encode()));
    }
    if let Some(t) = &o.token {
        notifies.push(Notify::new(NotifyType(ZTNA_TAG_TOKEN), t.clone()));
    }
    let idi = match local.ip() {
        IpAddr::V4(a) => Identification { ty: IdType::ID_IPV4_ADDR, data: a.octets().to_vec() },
        IpAddr::V6(a) => Identification { ty: IdType::ID_IPV6_ADDR, data: a.octets().to_vec() },
    };
    let cfg = InitiatorConfig {
        ike: IkeOffer::parse(DEFAULT_IKE, &[20, 21, 19, 14, 31], false).map_err(|e| InitiatorError::Protocol(e.0))?,
        esp: EspOffer::parse(DEFAULT_ESP, &[], false).map_err(|e| InitiatorError::Protocol(e.0))?,
        idi,
        user: o.user.clone(),
        psk: o.psk.clone(),
        auth_notifies: notifies,
        fragment_len: Some(1280),
    };
    let mut spi = [0u8; 4];
    dialgate_ike::crypto::Entropy::fill(&mut SystemEntropy::default(), &mut spi);
    // SPIs below 256 are reserved (RFC 4303 §2.1).
    let esp_spi = u32::from_be_bytes(spi) | 0x0100_0000;
    let path = Path { local, remote: o.server };
    let mut ini = Initiator::new(cfg, SystemEntropy::default(), MsChapPeer(o.password.clone()), path, esp_spi)?;
    let first = ini.start()?;
    let mut link = Link { sock, ini, marker, retransmit: o.retransmit, buf: vec![0u8; 65536] };
    match link.exchange(first, o.timeout).await? {
        Progress::Established(established) => Ok(Connected { link, established }),
        _ => Err(ConnectError::Ike(InitiatorError::Protocol("no IKE SA".into()))),
    }
}

/// An established client: its socket and IKE SA, for token updates while it stays up.
pub struct Connected {
    link: Link,
    established: Box<Established>,
}

impl Connected {
    /// What was negotiated.
    pub fn established(&self) -> &Established {
        &self.established
    }

    /// Sends `notifies` (e.g. a fresh tag token) in an INFORMATIONAL request and waits for the
    /// answer.
    pub async fn send_notifies(&mut self, notifies: Vec<Notify>, timeout: Duration) -> Result<(), ConnectError> {
        let req = self.link.ini.informational(notifies)?;
        match self.link.exchange(req, timeout).await? {
            Progress::Answered(_) => Ok(()),
            _ => Err(ConnectError::Ike(InitiatorError::Protocol("unexpected answer".into()))),
        }
    }
}

/// The socket and the initiator.
struct Link {
    sock: UdpSocket,
    ini: Initiator<SystemEntropy, MsChapPeer>,
    marker: bool,
    retransmit: Duration,
    buf: Vec<u8>,
}

impl Link {
    /// Sends `first`, then whatever the initiator asks for, resending on silence, until the
    /// initiator reports a result (established, or an INFORMATIONAL answer).
    async fn exchange(&mut self, first: Vec<Vec<u8>>, timeout: Duration) -> Result<Progress, ConnectError> {
        let wrap = |marker: bool, d: Vec<Vec<u8>>| -> Vec<Vec<u8>> {
            if marker {
                d.into_iter().map(|m| [&[0u8; 4][..], &m].concat()).collect()
            } else {
                d
            }
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pending = wrap(self.marker, first);
        loop {
            for d in &pending {
                self.sock.send(d).await?;
            }
            let resend = tokio::time::Instant::now() + self.retransmit;
            loop {
                let wait = resend.min(deadline);
                let n = match tokio::time::timeout_at(wait, self.sock.recv(&mut self.buf)).await {
                    Ok(r) => r?,
                    Err(_) if wait == deadline => return Err(ConnectError::Timeout(timeout)),
                    // Silence: resend the request in flight.
                    Err(_) => break,
                };
                let mut d = &self.buf[..n];
                if self.marker {
                    match d.strip_prefix(&[0u8; 4]) {
                        Some(rest) => d = rest,
                        None => continue,
                    }
                }
                match self.ini.handle_datagram(d)? {
                    Progress::Send(next) => {
                        pending = wrap(self.marker, next);
                        break;
                    }
                    Progress::Pending => {}
                    done => return Ok(done),
                }
            }
        }
    }
}
