//! The plain UDP-socket driver: IKE on ports 500 and 4500 (RFC 7296 §2.23, RFC 3948) through
//! ordinary sockets, for tests and hosts without the DPDK data plane.
//!
//! How to drive it: [`Sockets::bind`] the two ports, then [`run`] the responder until the
//! shutdown future completes. On port 4500 a datagram is a NAT keepalive (the single byte 0xFF,
//! RFC 3948 §2.3), IKE (the 4-byte non-ESP marker, stripped here), or ESP (anything else: counted
//! and dropped, since ESP belongs to the data plane). Transmits whose local port is the NAT-T
//! port leave from that socket with the marker prepended.
//!
//! With a [`crate::diagnose::Diag`] in the [`EventLog`], each datagram's events are attributed to
//! its peer ([`EventLog::set_peer`]) and the counters are published for `diagnose vpn ike stats`;
//! there is no data plane, so per-SA traffic shows zeros.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use dialgate_ike::crypto::Entropy;
use dialgate_ike::responder::{AddressPool, Path, Responder, UserVerifier};
use tokio::net::UdpSocket;

use super::{EventLog, LoopGuard, SaSink};

/// The non-ESP marker before IKE messages on port 4500 (RFC 3948 §2.2).
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];

/// What a datagram received on the NAT-T port is.
#[derive(Debug, PartialEq, Eq)]
pub enum NattDatagram<'a> {
    /// A NAT keepalive.
    Keepalive,
    /// An IKE message (marker removed).
    Ike(&'a [u8]),
    /// An ESP packet (for the data plane).
    Esp(&'a [u8]),
    /// Too short to be anything.
    Runt,
}

/// Classifies a datagram received on port 4500 (RFC 3948 §2.2, §2.3).
pub fn classify_natt(d: &[u8]) -> NattDatagram<'_> {
    match d {
        [0xff] => NattDatagram::Keepalive,
        [0, 0, 0, 0, rest @ ..] => NattDatagram::Ike(rest),
        // ESP: SPI (non-zero) and sequence number at least.
        _ if d.len() >= 8 => NattDatagram::Esp(d),
        _ => NattDatagram::Runt,
    }
}

/// Driver counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// IKE datagrams handed to the responder.
    pub ike_rx: u64,
    /// IKE datagrams sent.
    pub ike_tx: u64,
    /// NAT keepalives received (dropped).
    pub keepalives: u64,
    /// ESP-in-UDP packets received on 4500 and dropped (no data plane attached).
    pub esp_dropped: u64,
    /// Datagrams too short to classify.
    pub runts: u64,
    /// Send failures.
    pub send_errors: u64,
}

impl Counters {
    /// The counters by name, for `diagnose vpn ike stats`.
    pub fn fields(&self) -> [(&'static str, u64); 6] {
        [
            ("ike_rx", self.ike_rx),
            ("ike_tx", self.ike_tx),
            ("keepalives", self.keepalives),
            ("esp_dropped", self.esp_dropped),
            ("runts", self.runts),
            ("send_errors", self.send_errors),
        ]
    }
}

/// The two IKE sockets.
#[derive(Debug)]
pub struct Sockets {
    ike: UdpSocket,
    natt: UdpSocket,
    /// The local address put in [`Path::local`]: the bound address, or `local_hint` when bound
    /// to the unspecified address (so NAT detection hashes name a real address).
    local_ip: IpAddr,
}

impl Sockets {
    /// Binds `ip:ike_port` and `ip:natt_port` (normally 500 and 4500; 0 picks a free port).
    pub async fn bind(ip: IpAddr, ike_port: u16, natt_port: u16, local_hint: Option<IpAddr>) -> io::Result<Self> {
        let ike = UdpSocket::bind(SocketAddr::new(ip, ike_port)).await?;
        let natt = UdpSocket::bind(SocketAddr::new(ip, natt_port)).await?;
        let local_ip = if ip.is_unspecified() { local_hint.unwrap_or(ip) } else { ip };
        Ok(Self { ike, natt, local_ip })
    }

    /// The bound IKE (500) and NAT-T (4500) addresses.
    pub fn local_addrs(&self) -> io::Result<(SocketAddr, SocketAddr)> {
        Ok((self.ike.local_addr()?, self.natt.local_addr()?))
    }
}

/// Drains the responder: its events, then its datagrams (see `super::drain`).
async fn flush<R: Entropy, V: UserVerifier, P: AddressPool>(
    responder: &mut Responder<R, V, P>,
    sockets: &Sockets,
    natt_port: u16,
    log: &mut EventLog,
    sink: &mut dyn SaSink,
    counters: &mut Counters,
) {
    // Installs first, then the datagrams (see `super::drain`); sending awaits, so they are
    // collected and sent after.
    let mut out = Vec::new();
    super::drain(responder, &mut out, |_, ev| log.handle(ev, sink), |out, t| out.push(t));
    for t in out {
        let r = if t.path.local.port() == natt_port {
            let mut d = Vec::with_capacity(t.payload.len() + 4);
            d.extend_from_slice(&NON_ESP_MARKER);
            d.extend_from_slice(&t.payload);
            sockets.natt.send_to(&d, t.path.remote).await
        } else {
            sockets.ike.send_to(&t.payload, t.path.remote).await
        };
        match r {
            Ok(_) => counters.ike_tx += 1,
            Err(_) => counters.send_errors += 1,
        }
    }
}

/// Runs the responder on `sockets` until `shutdown` completes; returns the counters.
pub async fn run<R: Entropy, V: UserVerifier, P: AddressPool>(
    responder: &mut Responder<R, V, P>,
    sockets: &Sockets,
    log: &mut EventLog,
    sink: &mut dyn SaSink,
    shutdown: impl Future<Output = ()>,
    mut deletes: Option<tokio::sync::mpsc::UnboundedReceiver<(u64, String)>>,
    mut approvals: Option<tokio::sync::mpsc::UnboundedReceiver<String>>,
) -> io::Result<Counters> {
    let (ike_addr, natt_addr) = sockets.local_addrs()?;
    let local_ike = SocketAddr::new(sockets.local_ip, ike_addr.port());
    let local_natt = SocketAddr::new(sockets.local_ip, natt_addr.port());
    let mut counters = Counters::default();
    let mut buf_ike = vec![0u8; 65536];
    let mut buf_natt = vec![0u8; 65536];
    tokio::pin!(shutdown);
    let mut guard = LoopGuard::new(log);
    if let Some(d) = log.diag() {
        d.set_driver_counters("udp", &counters.fields());
        d.set_responder_stats(responder.stats());
    }
    loop {
        let deadline = responder.poll_timeout();
        let timer = async move {
            match deadline {
                Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = &mut shutdown => break,
            r = sockets.ike.recv_from(&mut buf_ike) => {
                // Errors on UDP receive (e.g. ICMP port unreachable surfacing) are transient.
                if let Ok((n, from)) = r {
                    counters.ike_rx += 1;
                    let path = Path { remote: from, local: local_ike };
                    log.set_peer(Some(path));
                    guard.run(log, |_| responder.handle_datagram(Instant::now(), path, &buf_ike[..n]));
                }
            }
            r = sockets.natt.recv_from(&mut buf_natt) => {
                if let Ok((n, from)) = r {
                    match classify_natt(&buf_natt[..n]) {
                        NattDatagram::Ike(m) => {
                            counters.ike_rx += 1;
                            let path = Path { remote: from, local: local_natt };
                            log.set_peer(Some(path));
                            guard.run(log, |_| responder.handle_datagram(Instant::now(), path, m));
                        }
                        NattDatagram::Keepalive => counters.keepalives += 1,
                        NattDatagram::Esp(_) => counters.esp_dropped += 1,
                        NattDatagram::Runt => counters.runts += 1,
                    }
                }
            }
            () = timer => {
                log.set_peer(None);
                guard.run(log, |_| responder.handle_timeout(Instant::now()));
            }
            Some((spi, why)) = super::next_delete(&mut deletes) => {
                log.set_peer(None);
                log.line(None, &format!("deleting IKE SA {spi:016x}: {why}"));
                guard.run(log, |_| {
                    responder.delete_ike_sa(spi, Instant::now());
                });
            }
            Some(user) = super::next_approval(&mut approvals) => {
                log.set_peer(None);
                let mut n = 0;
                guard.run(log, |_| n = responder.approve_token(&user, Instant::now()));
                log.line(None, &format!("token push for user \"{user}\" approved by the administrator ({n} pending)"));
            }
        }
        flush(responder, sockets, natt_addr.port(), log, sink, &mut counters).await;
        log.set_peer(None);
        if let Some(d) = log.diag() {
            d.set_driver_counters("udp", &counters.fields());
            d.set_responder_stats(responder.stats());
        }
    }
    Ok(counters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natt_classification() {
        assert_eq!(classify_natt(&[0xff]), NattDatagram::Keepalive);
        assert_eq!(classify_natt(&[0, 0, 0, 0, 1, 2]), NattDatagram::Ike(&[1, 2]));
        let esp = [0, 0, 1, 0, 0, 0, 0, 1, 9];
        assert_eq!(classify_natt(&esp), NattDatagram::Esp(&esp));
        assert_eq!(classify_natt(&[0, 0, 1]), NattDatagram::Runt);
        assert_eq!(classify_natt(&[]), NattDatagram::Runt);
    }

    use crate::driver::{EventLog, LogOnlySink};
    use crate::gateway::Gateway;
    use dialgate_ike::crypto::dh::{DhGroup, DhPrivate};
    use dialgate_ike::crypto::SystemEntropy;
    use dialgate_ike::message::{
        ExchangeType, Header, KePayload, Message, Payload, PayloadType, FLAG_INITIATOR, FLAG_RESPONSE,
    };
    use std::time::Duration;

    /// An IKE_SA_INIT request (RFC 7296 §1.2) for the example gateway's offer, group 19.
    fn sa_init(gw: &Gateway, spi_i: u64) -> Vec<u8> {
        let dh = DhPrivate::generate(DhGroup::Ecp256, &mut SystemEntropy::default()).unwrap();
        let payloads = vec![
            Payload::Sa(gw.ike.ike.to_sa()),
            Payload::Ke(KePayload { group: DhGroup::Ecp256.id(), data: dh.public().to_vec() }),
            Payload::Nonce(vec![0x5a; 32]),
        ];
        let header = Header {
            spi_i,
            spi_r: 0,
            next_payload: PayloadType::NONE,
            version: 0x20,
            exchange: ExchangeType::IKE_SA_INIT,
            flags: FLAG_INITIATOR,
            message_id: 0,
            length: 0,
        };
        Message { header, payloads }.encode()
    }

    /// `drain` hands over every event (the SA sink's installs among them) before any datagram,
    /// so a CHILD_SA is in the data plane before the response that lets the peer use it leaves.
    #[test]
    fn events_are_handled_before_datagrams_are_sent() {
        let cfg = crate::config::load_str(include_str!("../../../examples/dialgate.conf"), "x").unwrap();
        let gw = Gateway::from_config(&cfg, None).unwrap();
        let init = sa_init(&gw, 0x1234_5678_9abc_def0);
        let mut r = Responder::new(gw.ike, SystemEntropy::default(), gw.verifier, gw.pool, Instant::now(), 0);
        let path = Path { remote: "127.0.0.1:500".parse().unwrap(), local: "127.0.0.1:500".parse().unwrap() };
        r.handle_datagram(Instant::now(), path, &init);
        let mut order = Vec::new();
        crate::driver::drain(&mut r, &mut order, |o, _| o.push('e'), |o, _| o.push('t'));
        assert!(order.contains(&'e') && order.contains(&'t'), "an SA_INIT gives both: {order:?}");
        assert!(!order.windows(2).any(|w| w == ['t', 'e']), "an event after a datagram: {order:?}");
    }

    /// Loopback: IKE_SA_INIT with the non-ESP marker on the NAT-T port is answered from that
    /// port with the marker (RFC 3948 §2.2); plain IKE on the IKE port is answered without it;
    /// keepalives and ESP are counted and dropped.
    #[test]
    fn loopback_ports_and_marker() {
        let cfg = crate::config::load_str(include_str!("../../../examples/dialgate.conf"), "x").unwrap();
        let gw = Gateway::from_config(&cfg, None).unwrap();
        let init_natt = sa_init(&gw, 0x1111_2222_3333_4444);
        let init_ike = sa_init(&gw, 0x5555_6666_7777_8888);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let lo: IpAddr = [127, 0, 0, 1].into();
            let sockets = Sockets::bind(lo, 0, 0, None).await.unwrap();
            let (ike_addr, natt_addr) = sockets.local_addrs().unwrap();
            let mut log = EventLog::new(&gw.name);
            let mut sink = LogOnlySink::default();
            let mut r = Responder::new(gw.ike, SystemEntropy::default(), gw.verifier, gw.pool, Instant::now(), 0);
            let client = async move {
                let c = UdpSocket::bind((lo, 0)).await.unwrap();
                let mut buf = vec![0u8; 4096];
                let mut d = NON_ESP_MARKER.to_vec();
                d.extend_from_slice(&init_natt);
                c.send_to(&d, natt_addr).await.unwrap();
                let (n, from) =
                    tokio::time::timeout(Duration::from_secs(2), c.recv_from(&mut buf)).await.unwrap().unwrap();
                assert_eq!(from, natt_addr);
                assert_eq!(&buf[..4], &NON_ESP_MARKER);
                let m = Message::parse(&buf[4..n]).unwrap();
                assert_eq!(m.header.spi_i, 0x1111_2222_3333_4444);
                assert_ne!(m.header.flags & FLAG_RESPONSE, 0);
                assert_ne!(m.header.spi_r, 0);

                c.send_to(&init_ike, ike_addr).await.unwrap();
                let (n, from) =
                    tokio::time::timeout(Duration::from_secs(2), c.recv_from(&mut buf)).await.unwrap().unwrap();
                assert_eq!(from, ike_addr);
                assert_eq!(Message::parse(&buf[..n]).unwrap().header.spi_i, 0x5555_6666_7777_8888);

                c.send_to(&[0xff], natt_addr).await.unwrap();
                c.send_to(&[0, 0, 0x10, 0, 0, 0, 0, 1, 0xaa, 0xbb], natt_addr).await.unwrap();
                c.send_to(&[1, 2], natt_addr).await.unwrap();
                // Nothing answers those; give the driver time to count them.
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            let counters = run(&mut r, &sockets, &mut log, &mut sink, client, None, None).await.unwrap();
            assert_eq!(counters.ike_rx, 2);
            assert_eq!(counters.ike_tx, 2);
            assert_eq!(counters.keepalives, 1);
            assert_eq!(counters.esp_dropped, 1);
            assert_eq!(counters.runts, 1);
            assert_eq!(r.ike_sa_count(), 2);
        });
    }
}
