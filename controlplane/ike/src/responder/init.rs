//! IKE_SA_INIT (RFC 7296 §1.2): proposal choice, INVALID_KE_PAYLOAD, COOKIE (§2.6), NAT
//! detection (§2.23), fragmentation and signature hash support notifies, and the response cache
//! for retransmitted requests.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use subtle::ConstantTimeEq;

use super::{nat_hash, notify, response_header, Ctx, IkeSa, Path, Phase, Transmit};
use crate::crypto::dh::DhPrivate;
use crate::crypto::{Entropy, Prf};
use crate::error::{DecodeError, Error};
use crate::keymat::{skeyseed, IkeKeys};
use crate::message::{find_notify, Header, KePayload, Message, NotifyType, Payload};
use crate::sk::{Reassembly, SkCipher};

/// Cookie format version byte (lets the secret be rotated later).
const COOKIE_VERSION: u8 = 1;

/// Hash algorithms for SIGNATURE_HASH_ALGORITHMS (RFC 7427 §4): SHA2-256, SHA2-384, SHA2-512.
const SIGNATURE_HASHES: [u16; 3] = [2, 3, 4];

fn cookie<R, V, P>(ctx: &Ctx<R, V, P>, ni: &[u8], remote: SocketAddr, spi_i: u64) -> Vec<u8> {
    // RFC 7296 §2.6: Cookie = <VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>); a keyed
    // HMAC serves as the hash with the secret.
    let ip = match remote.ip() {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    let mut c = vec![COOKIE_VERSION];
    c.extend_from_slice(&Prf::HmacSha256.prf(&ctx.cookie_secret[..], &[ni, &ip, &spi_i.to_be_bytes()]));
    c
}

fn send<R, V, P>(ctx: &mut Ctx<R, V, P>, path: Path, payload: Vec<u8>) {
    ctx.transmits.push_back(Transmit { path, payload });
}

fn error_response<R, V, P>(ctx: &mut Ctx<R, V, P>, path: Path, req: &Header, ty: NotifyType, data: Vec<u8>) {
    let m = Message { header: response_header(req, 0), payloads: vec![notify(ty, data)] };
    send(ctx, path, m.encode());
}

/// Half-open IKE SAs now: in all, and from the requesting address.
#[derive(Clone, Copy, Debug)]
pub(super) struct HalfOpen {
    pub(super) total: usize,
    pub(super) from_ip: usize,
}

/// Handles an IKE_SA_INIT request; returns the new IKE SA when one was created.
#[allow(clippy::too_many_arguments)]
pub(super) fn handle<R: Entropy, V, P>(
    ctx: &mut Ctx<R, V, P>,
    sas: &HashMap<u64, IkeSa>,
    by_initiator: &HashMap<(u64, SocketAddr), u64>,
    half_open: HalfOpen,
    now: Instant,
    path: Path,
    bytes: &[u8],
    header: &Header,
) -> Option<IkeSa> {
    // RFC 7296 §2.1: a retransmitted request gets the cached response, not a new SA.
    if let Some(sa) = by_initiator.get(&(header.spi_i, path.remote)).and_then(|spi| sas.get(spi)) {
        if sa.init_req == bytes {
            ctx.stats.retransmits += 1;
            let resp = sa.init_resp.clone();
            send(ctx, path, resp);
        } else {
            ctx.stats.unexpected += 1;
        }
        return None;
    }
    // Before any parsing or crypto: an address already holding its share of half-open SAs
    // costs us nothing more (strongSwan's block_threshold does the same).
    let limit = ctx.config.per_address_half_open;
    if limit > 0 && half_open.from_ip >= limit {
        ctx.stats.blocked += 1;
        if let Some(held) = ctx.blocked_log.admit(now) {
            let ip = path.remote.ip();
            ctx.debug(
                None,
                format!(
                    "{ip} holds {} half-open IKE SAs (limit {limit}), dropping its SA_INIT ({held} more dropped since the last line)",
                    half_open.from_ip
                ),
            );
        }
        return None;
    }
    let msg = match Message::parse(bytes) {
        Ok(m) => m,
        Err(DecodeError::UnsupportedCritical(t)) => {
            // RFC 7296 §2.5: the notification data contains the one-octet payload type.
            error_response(ctx, path, header, NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD, vec![t]);
            return None;
        }
        Err(_) => {
            ctx.stats.malformed += 1;
            return None;
        }
    };
    if header.message_id != 0 || !header.is_initiator() {
        ctx.stats.unexpected += 1;
        return None;
    }
    let (mut sa_p, mut ke, mut ni) = (None, None, None);
    for p in &msg.payloads {
        match p {
            Payload::Sa(s) if sa_p.is_none() => sa_p = Some(s),
            Payload::Ke(k) if ke.is_none() => ke = Some(k),
            Payload::Nonce(n) if ni.is_none() => ni = Some(n),
            _ => {}
        }
    }
    let (Some(sa_p), Some(ke), Some(ni)) = (sa_p, ke, ni) else {
        error_response(ctx, path, header, NotifyType::INVALID_SYNTAX, vec![]);
        return None;
    };
    // RFC 7296 §2.10: nonces are at least 128 bits and at most 2048 bits.
    if !(16..=256).contains(&ni.len()) {
        error_response(ctx, path, header, NotifyType::INVALID_SYNTAX, vec![]);
        return None;
    }
    if half_open.total >= ctx.config.cookie_threshold {
        // RFC 7296 §2.6: the COOKIE notify must be the first payload of the retried request.
        let want = cookie(ctx, ni, path.remote, header.spi_i);
        let ok = matches!(msg.payloads.first(), Some(Payload::Notify(n))
            if n.ty == NotifyType::COOKIE && bool::from(n.data.ct_eq(&want)));
        if !ok {
            ctx.stats.cookies_sent += 1;
            // The address stays last: the driver takes the peer of the line from there.
            if let Some(held) = ctx.cookie_log.admit(now) {
                let total = half_open.total;
                ctx.debug(
                    None,
                    format!(
                        "half-open {total} ({held} more COOKIEs since the last line), sending COOKIE to {}",
                        path.remote
                    ),
                );
            }
            error_response(ctx, path, header, NotifyType::COOKIE, want);
            return None;
        }
    }
    ctx.debug(None, format!("responder received SA_INIT msg from {}", path.remote));
    let choice = match ctx.config.ike.select(sa_p, ke.group) {
        Ok(c) => c,
        Err(Error::InvalidKe(g)) => {
            ctx.debug(None, format!("KE group {} not preferred, INVALID_KE_PAYLOAD asking for {}", ke.group.0, g));
            error_response(ctx, path, header, NotifyType::INVALID_KE_PAYLOAD, g.to_be_bytes().to_vec());
            return None;
        }
        Err(_) => {
            ctx.debug(None, "no proposal chosen".to_string());
            error_response(ctx, path, header, NotifyType::NO_PROPOSAL_CHOSEN, vec![]);
            return None;
        }
    };
    let dh = match DhPrivate::generate(choice.group, &mut ctx.rng) {
        Ok(d) => d,
        Err(_) => return None,
    };
    let Ok(gir) = dh.agree(&ke.data) else {
        error_response(ctx, path, header, NotifyType::INVALID_SYNTAX, vec![]);
        return None;
    };
    let mut spi_r = 0u64;
    while spi_r == 0 || sas.contains_key(&spi_r) {
        spi_r = u64::from_be_bytes(ctx.random::<8>());
    }
    let nr = ctx.random::<32>().to_vec();
    let suite = choice.suite;
    let seed = skeyseed(suite.prf, ni, &nr, &gir);
    let keys = IkeKeys::derive(suite.prf, suite.encr, suite.integ, &seed, ni, &nr, header.spi_i, spi_r).ok()?;
    let inbound = SkCipher::inbound(&keys, true).ok()?;
    let outbound = SkCipher::outbound(&keys, true).ok()?;

    // RFC 7296 §2.23: compare the peer's hashes with the addresses we see.
    let mut nat_detected = path.local.port() == 4500;
    if let Some(n) = find_notify(&msg.payloads, NotifyType::NAT_DETECTION_DESTINATION_IP) {
        if n.data != nat_hash(header.spi_i, 0, path.local) {
            nat_detected = true;
            ctx.debug(None, "NAT detected: me".to_string());
        }
    }
    let src: Vec<&Vec<u8>> = msg
        .payloads
        .iter()
        .filter_map(|p| match p {
            Payload::Notify(n) if n.ty == NotifyType::NAT_DETECTION_SOURCE_IP => Some(&n.data),
            _ => None,
        })
        .collect();
    let remote_hash = nat_hash(header.spi_i, 0, path.remote);
    if !src.is_empty() && !src.iter().any(|d| **d == remote_hash) {
        nat_detected = true;
        ctx.debug(None, "NAT detected: peer".to_string());
    }
    let frag = find_notify(&msg.payloads, NotifyType::IKEV2_FRAGMENTATION_SUPPORTED).is_some();

    let mut payloads = vec![
        Payload::Sa(choice.sa),
        Payload::Ke(KePayload { group: choice.group.id(), data: dh.public().to_vec() }),
        Payload::Nonce(nr.clone()),
        notify(NotifyType::NAT_DETECTION_SOURCE_IP, nat_hash(header.spi_i, spi_r, path.local)),
        notify(NotifyType::NAT_DETECTION_DESTINATION_IP, nat_hash(header.spi_i, spi_r, path.remote)),
    ];
    if frag {
        payloads.push(notify(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED, vec![]));
    }
    if find_notify(&msg.payloads, NotifyType::SIGNATURE_HASH_ALGORITHMS).is_some() {
        let data = SIGNATURE_HASHES.iter().flat_map(|h| h.to_be_bytes()).collect();
        payloads.push(notify(NotifyType::SIGNATURE_HASH_ALGORITHMS, data));
    }
    // RFC 4739 §3: the responder announces multiple authentication in IKE_SA_INIT; the
    // initiator answers in its first IKE_AUTH (a second round carries the token code).
    payloads.push(notify(NotifyType::MULTIPLE_AUTH_SUPPORTED, vec![]));
    let resp = Message { header: response_header(header, spi_r), payloads }.encode();
    send(ctx, path, resp.clone());
    ctx.debug(Some(spi_r), format!("responder preparing SA_INIT msg, group {}", choice.group.id()));
    Some(IkeSa {
        spi_i: header.spi_i,
        spi_r,
        path,
        deadline: Some(now + ctx.config.negotiate_timeout),
        keys,
        inbound,
        outbound,
        ni: ni.clone(),
        nr,
        init_req: bytes.to_vec(),
        init_resp: resp,
        frag,
        nat_detected,
        expected_mid: 1,
        last_req: None,
        last_resp: Vec::new(),
        reassembly: Reassembly::default(),
        phase: Phase::Init,
        eap_id: 0,
        assigned: None,
        children: Vec::new(),
        peer_id: None,
        initial_contact: false,
        last_seen: now,
        our_mid: 0,
        pending: None,
        close: None,
        tally: super::Tally::Other,
        timer_at: None,
        init_key: None,
    })
}
