//! Encrypted exchanges after IKE_SA_INIT: IKE_AUTH with the gateway's PSK AUTH, EAP-Identity,
//! EAP-MSCHAPv2, the final AUTH from the MSK (RFC 7296 §2.15-§2.16), CP address assignment
//! (§2.19), traffic selector narrowing (§2.9) and the first CHILD_SA (§2.17).
//!
//! Message IDs (§2.2): a request with the expected ID is processed and its response cached; the
//! previous request arriving again gets the cached response; anything else is dropped. Messages
//! failing the integrity check are dropped silently (§2.21.1).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{notify, response_header, ChildSa, Ctx, DirectionKeys, Event, IkeSa, Path, Phase, Transmit};
use super::{AddressPool, CheckVerdict, ClientInfo, UserVerifier};
use crate::codec::Codec;
use crate::crypto::Entropy;
use crate::eap::{self, EapPacket, MsChapV2};
use crate::error::Error;
use crate::keymat::{child_keymat, ChildKeys};
use crate::message::{
    find_notify, AuthMethod, AuthPayload, CertPayload, CfgType, CpAttrType, CpAttribute, CpPayload, ExchangeType,
    Header, Identification, Notify, NotifyType, Payload, SaPayload, TrafficSelector, TsPayload,
};
use crate::proposal::{esp_key_lengths, EspChoice};
use crate::sk::Opened;

/// The CHILD_SA request carried by the first IKE_AUTH, kept until authentication completes.
pub(crate) struct PendingChild {
    idi: Identification,
    sa: SaPayload,
    tsi: TsPayload,
    tsr: TsPayload,
    cp: Option<CpPayload>,
    initial_contact: bool,
    /// The client announced MULTIPLE_AUTH_SUPPORTED (RFC 4739 §3).
    multi_auth: bool,
    /// Private-use notifies (FortiClient endpoint data, tag tokens) for the client check.
    client_notifies: Vec<Notify>,
}

/// First private-use Notify status type (RFC 7296 §3.10.1).
const PRIVATE_NOTIFY: u16 = 40960;

const KEY_PAD: &[u8] = b"Key Pad for IKEv2";

/// AUTH for a shared secret (PSK or MSK), RFC 7296 §2.15:
/// prf( prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets> ), where SignedOctets =
/// RealMessage | Nonce of the other side | prf(SK_p, ID').
pub(crate) fn shared_key_auth(sa: &IkeSa, secret: &[u8], responder: bool, id: &Identification) -> Zeroizing<Vec<u8>> {
    let prf = sa.prf();
    let (msg, nonce, skp) =
        if responder { (&sa.init_resp, &sa.ni, &sa.keys.sk_pr) } else { (&sa.init_req, &sa.nr, &sa.keys.sk_pi) };
    let maced_id = prf.prf(skp, &[&id.get_encoding()]);
    let k = prf.prf(secret, &[KEY_PAD]);
    prf.prf(&k, &[msg, nonce, &maced_id])
}

/// X.509 Certificate - Signature (RFC 7296 §3.6).
const CERT_X509: u8 = 4;

/// The responder's signed octets (RFC 7296 §2.15): our IKE_SA_INIT response | Ni | prf(SK_pr, IDr').
fn signed_octets(sa: &IkeSa, id: &Identification) -> Vec<u8> {
    let maced_id = sa.prf().prf(&sa.keys.sk_pr, &[&id.get_encoding()]);
    let mut out = Vec::with_capacity(sa.init_resp.len() + sa.ni.len() + maced_id.len());
    out.extend_from_slice(&sa.init_resp);
    out.extend_from_slice(&sa.ni);
    out.extend_from_slice(&maced_id);
    out
}

fn push_response<R: Entropy, V, P>(ctx: &mut Ctx<R, V, P>, sa: &mut IkeSa, req: &Header, payloads: Vec<Payload>) {
    let header = response_header(req, sa.spi_r);
    let frag = sa.frag.then_some(ctx.config.fragment_len);
    match sa.outbound.seal(&header, &payloads, frag, &mut ctx.rng) {
        Ok(dgrams) => {
            for d in &dgrams {
                ctx.transmits.push_back(Transmit { path: sa.path, payload: d.clone() });
            }
            sa.last_resp = dgrams;
        }
        Err(_) => sa.last_resp.clear(),
    }
}

/// Handles a datagram for an existing IKE SA.
pub(super) fn handle<R: Entropy, V: UserVerifier, P: AddressPool>(
    ctx: &mut Ctx<R, V, P>,
    sa: &mut IkeSa,
    now: Instant,
    path: Path,
    bytes: &[u8],
    header: &Header,
) -> super::Aftermath {
    let mut after = super::Aftermath::default();
    if header.message_id.wrapping_add(1) == sa.expected_mid && sa.last_req.as_deref() == Some(bytes) {
        // RFC 7296 §2.1 / RFC 7383 §2.6.1: answer a retransmission from the cache.
        ctx.stats.retransmits += 1;
        for d in sa.last_resp.clone() {
            ctx.transmits.push_back(Transmit { path: sa.path, payload: d });
        }
        return after;
    }
    if header.message_id != sa.expected_mid {
        ctx.stats.unexpected += 1;
        return after;
    }
    let (hdr, payloads) = match sa.inbound.open(bytes) {
        Ok(Opened::Complete(h, p)) => {
            sa.last_req = Some(bytes.to_vec());
            (h, p)
        }
        Ok(Opened::Fragment { header: h, first, number, total, plain }) => {
            if number == 1 {
                sa.last_req = Some(bytes.to_vec());
            }
            match sa.reassembly.add(h.message_id, first, number, total, plain) {
                Ok(Some(p)) => (h, p),
                Ok(None) => return after,
                Err(_) => {
                    ctx.stats.malformed += 1;
                    return after;
                }
            }
        }
        Err(Error::IntegrityFailed) => {
            ctx.stats.integrity_failed += 1;
            return after;
        }
        Err(Error::UnsupportedCriticalInside(t)) => {
            // RFC 7296 §2.5: the request is authentic, so it is answered (and takes its message
            // ID) with UNSUPPORTED_CRITICAL_PAYLOAD naming the type. A negotiation cannot go on
            // without the rejected request; an established SA keeps going.
            ctx.stats.unsupported_critical += 1;
            sa.last_req = Some(bytes.to_vec());
            sa.path = path;
            sa.expected_mid = sa.expected_mid.wrapping_add(1);
            sa.last_seen = now;
            ctx.debug(Some(sa.spi_r), format!("unsupported critical payload type {t} in request, rejecting it"));
            push_response(ctx, sa, header, vec![notify(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD, vec![t])]);
            if !matches!(sa.phase, Phase::Established) {
                sa.phase = Phase::Dead;
            }
            return after;
        }
        Err(_) => {
            ctx.stats.malformed += 1;
            return after;
        }
    };
    // RFC 7296 §2.23: after NAT detection, reply to where the last authenticated request came from.
    sa.path = path;
    sa.expected_mid = sa.expected_mid.wrapping_add(1);
    sa.last_seen = now;
    if hdr.exchange == ExchangeType::INFORMATIONAL {
        let resp = super::info::request(ctx, sa, payloads);
        push_response(ctx, sa, &hdr, resp);
        return after;
    }
    if hdr.exchange == ExchangeType::CREATE_CHILD_SA {
        let resp = match super::rekey::handle(ctx, sa, now, payloads) {
            super::rekey::Outcome::Reply(r) => r,
            super::rekey::Outcome::NewIkeSa(r, new) => {
                after.spawned = Some(new);
                r
            }
        };
        push_response(ctx, sa, &hdr, resp);
        return after;
    }
    if hdr.exchange != ExchangeType::IKE_AUTH {
        push_response(ctx, sa, &hdr, vec![notify(NotifyType::INVALID_SYNTAX, vec![])]);
        return after;
    }
    let phase = std::mem::replace(&mut sa.phase, Phase::Dead);
    let (next, resp) = step(ctx, sa, now, &hdr, payloads, phase);
    sa.phase = next;
    if matches!(sa.phase, Phase::PushPending { .. }) {
        // No answer until the push is approved; retransmissions of this request get nothing.
        sa.last_resp.clear();
        return after;
    }
    if matches!(sa.phase, Phase::Established) {
        sa.deadline = None;
    }
    push_response(ctx, sa, &hdr, resp);
    after
}

fn eap_payload(code: u8, id: u8, method: Option<(u8, Vec<u8>)>) -> Payload {
    Payload::Eap(EapPacket { code, identifier: id, method }.get_encoding())
}

fn fail<R, V, P>(ctx: &mut Ctx<R, V, P>, sa: &IkeSa, user: &str, reason: &str) -> (Phase, Vec<Payload>) {
    ctx.events.push_back(Event::AuthFailed { spi: sa.spi_r, user: user.to_string(), reason: reason.to_string() });
    ctx.debug(Some(sa.spi_r), format!("authentication failed for user \"{user}\": {reason}"));
    (Phase::Dead, vec![notify(NotifyType::AUTHENTICATION_FAILED, vec![])])
}

fn find_eap(payloads: &[Payload]) -> Option<EapPacket> {
    payloads.iter().find_map(|p| match p {
        Payload::Eap(b) => EapPacket::read_bytes(b).ok(),
        _ => None,
    })
}

fn step<R: Entropy, V: UserVerifier, P: AddressPool>(
    ctx: &mut Ctx<R, V, P>,
    sa: &mut IkeSa,
    now: Instant,
    hdr: &Header,
    payloads: Vec<Payload>,
    phase: Phase,
) -> (Phase, Vec<Payload>) {
    match phase {
        Phase::Init => first_auth(ctx, sa, now, payloads),
        Phase::EapIdentity { child } => {
            let Some(pkt) = find_eap(&payloads) else { return fail(ctx, sa, "", "no EAP payload") };
            match pkt.method {
                Some((eap::TYPE_IDENTITY, id)) if pkt.code == eap::CODE_RESPONSE && pkt.identifier == sa.eap_id => {
                    let user = String::from_utf8_lossy(&id).into_owned();
                    ctx.debug(Some(sa.spi_r), format!("received EAP identity \"{user}\""));
                    challenge(ctx, sa, child, user)
                }
                _ => fail(ctx, sa, "", "unexpected EAP message"),
            }
        }
        Phase::EapChallenge { child, user, challenge } => {
            let Some(pkt) = find_eap(&payloads) else { return fail(ctx, sa, &user, "no EAP payload") };
            let resp = match (&pkt.method, pkt.code == eap::CODE_RESPONSE && pkt.identifier == sa.eap_id) {
                (Some((eap::TYPE_MSCHAPV2, d)), true) => MsChapV2::parse(d, false).ok(),
                _ => None,
            };
            let Some(MsChapV2::Response { peer_challenge, nt_response, name, .. }) = resp else {
                // A Nak or another method: only MSCHAPv2 is offered.
                return fail(ctx, sa, &user, "peer refused EAP-MSCHAPv2");
            };
            let name = String::from_utf8_lossy(&name).into_owned();
            let now_unix = ctx.now_unix(now);
            let mut verdict = ctx.verifier.verify_mschapv2(&name, &challenge, &peer_challenge, &nt_response, now_unix);
            if matches!(&verdict, Ok(ok) if ok.token_needed) {
                ctx.debug(Some(sa.spi_r), format!("EAP requires token for user \"{name}\""));
                ctx.debug(Some(sa.spi_r), "Two-factor token is needed".to_string());
                if child.multi_auth {
                    ctx.debug(
                        Some(sa.spi_r),
                        "Token push is skipped, waiting for a second authentication round instead".to_string(),
                    );
                } else {
                    ctx.debug(Some(sa.spi_r), "peer does not support multiple authentication rounds".to_string());
                    verdict = Err(super::AuthReject { reason: "two-factor token is needed".to_string() });
                }
            }
            match verdict {
                Ok(ok) => {
                    sa.eap_id = sa.eap_id.wrapping_add(1);
                    let msg = format!("{} M=Welcome", ok.authenticator_response);
                    let m = MsChapV2::SuccessRequest { id: sa.eap_id, message: msg.into_bytes() };
                    let p = eap_payload(eap::CODE_REQUEST, sa.eap_id, Some((eap::TYPE_MSCHAPV2, m.encode())));
                    let token_needed = ok.token_needed;
                    (Phase::EapSuccessPending { child, user: name, msk: ok.msk, token_needed }, vec![p])
                }
                Err(rej) => {
                    ctx.events.push_back(Event::AuthFailed {
                        spi: sa.spi_r,
                        user: name.clone(),
                        reason: rej.reason.clone(),
                    });
                    ctx.debug(Some(sa.spi_r), format!("EAP-MSCHAPv2 failed for user \"{name}\""));
                    sa.eap_id = sa.eap_id.wrapping_add(1);
                    // RFC 2759 §6 failure packet; error 691 = ERROR_AUTHENTICATION_FAILURE, no retry.
                    let c: [u8; 16] = ctx.random();
                    let hexc: String = c.iter().map(|b| format!("{b:02X}")).collect();
                    let msg = format!("E=691 R=0 C={hexc} V=3 M=Authentication failed");
                    let m = MsChapV2::FailureRequest { id: sa.eap_id, message: msg.into_bytes() };
                    let p = eap_payload(eap::CODE_REQUEST, sa.eap_id, Some((eap::TYPE_MSCHAPV2, m.encode())));
                    (Phase::EapFailing, vec![p])
                }
            }
        }
        Phase::EapSuccessPending { child, user, msk, token_needed } => {
            let ok = find_eap(&payloads).is_some_and(|pkt| {
                pkt.code == eap::CODE_RESPONSE
                    && pkt.identifier == sa.eap_id
                    && matches!(&pkt.method, Some((eap::TYPE_MSCHAPV2, d)) if MsChapV2::parse(d, false) == Ok(MsChapV2::SuccessResponse))
            });
            if !ok {
                return fail(ctx, sa, &user, "no MSCHAPv2 success response");
            }
            let p = eap_payload(eap::CODE_SUCCESS, sa.eap_id, None);
            (Phase::AwaitAuth { child, user, msk, token_needed }, vec![p])
        }
        Phase::AwaitAuth { child, user, msk, token_needed } => {
            let auth = payloads.iter().find_map(|p| match p {
                Payload::Auth(a) => Some(a),
                _ => None,
            });
            let want = shared_key_auth(sa, &msk[..], false, &child.idi);
            match auth {
                Some(a) if a.method == AuthMethod::SHARED_KEY_MIC && bool::from(a.data.ct_eq(&want)) => {
                    let mine = shared_key_auth(sa, &msk[..], true, &ctx.config.local_id);
                    let mut resp =
                        vec![Payload::Auth(AuthPayload { method: AuthMethod::SHARED_KEY_MIC, data: mine.to_vec() })];
                    let another = find_notify(&payloads, NotifyType::ANOTHER_AUTH_FOLLOWS).is_some();
                    if token_needed && !another {
                        ctx.debug(Some(sa.spi_r), "Two-factor token is needed".to_string());
                        return fail(ctx, sa, &user, "two-factor token is needed");
                    }
                    if another {
                        // RFC 4739 §3: our AUTH now, the CHILD_SA after the second round.
                        ctx.debug(Some(sa.spi_r), "first authentication round succeeded, another follows".to_string());
                        return (Phase::SecondRound { child, user }, resp);
                    }
                    ctx.debug(Some(sa.spi_r), "authentication succeeded".to_string());
                    let phase = establish(ctx, sa, now, child, Some(user), &mut resp);
                    (phase, resp)
                }
                _ => fail(ctx, sa, &user, "AUTH from MSK mismatch"),
            }
        }
        Phase::SecondRound { child, user } => {
            let (mut idi, mut auth) = (None, false);
            for p in payloads {
                match p {
                    Payload::IdI(i) => idi = Some(i),
                    Payload::Auth(_) => auth = true,
                    _ => {}
                }
            }
            let Some(idi) = idi else { return fail(ctx, sa, &user, "second authentication round without IDi") };
            if auth {
                return fail(ctx, sa, &user, "second authentication round must use EAP");
            }
            ctx.debug(Some(sa.spi_r), format!("second authentication round, peer identifier {idi}"));
            if ctx.config.eap_identity_request {
                sa.eap_id = sa.eap_id.wrapping_add(1);
                let p = eap_payload(eap::CODE_REQUEST, sa.eap_id, Some((eap::TYPE_IDENTITY, vec![])));
                ctx.debug(Some(sa.spi_r), "responder preparing EAP identity request".to_string());
                (Phase::GtcIdentity { child, user, idi }, vec![p])
            } else {
                gtc_request(ctx, sa, child, user, idi)
            }
        }
        Phase::GtcIdentity { child, user, idi } => match find_eap(&payloads) {
            Some(EapPacket { code: eap::CODE_RESPONSE, identifier, method: Some((eap::TYPE_IDENTITY, id)) })
                if identifier == sa.eap_id =>
            {
                let id = String::from_utf8_lossy(&id).into_owned();
                ctx.debug(Some(sa.spi_r), format!("received EAP identity \"{id}\" for the token of \"{user}\""));
                gtc_request(ctx, sa, child, user, idi)
            }
            _ => fail(ctx, sa, &user, "unexpected EAP message"),
        },
        Phase::Gtc { child, user, idi } => {
            let code = match find_eap(&payloads) {
                Some(EapPacket { code: eap::CODE_RESPONSE, identifier, method: Some((eap::TYPE_GTC, d)) })
                    if identifier == sa.eap_id =>
                {
                    Zeroizing::new(d)
                }
                _ => return fail(ctx, sa, &user, "peer refused EAP-GTC"),
            };
            let code = Zeroizing::new(String::from_utf8_lossy(&code).trim().to_string());
            if code.is_empty() || code.eq_ignore_ascii_case("push") {
                ctx.debug(Some(sa.spi_r), format!("Token push is sent, waiting for approval of user \"{user}\""));
                ctx.events.push_back(Event::TokenPushPending { spi: sa.spi_r, user: user.clone() });
                return (Phase::PushPending { child, user, idi, req: hdr.clone() }, vec![]);
            }
            let now_unix = ctx.now_unix(now);
            match ctx.verifier.verify_token(&user, &code, now_unix) {
                Ok(()) => {
                    ctx.debug(Some(sa.spi_r), format!("2fa code verified for user \"{user}\""));
                    let p = eap_payload(eap::CODE_SUCCESS, sa.eap_id, None);
                    (Phase::AwaitAuth2 { child, user, idi }, vec![p])
                }
                Err(rej) => {
                    let (phase, mut resp) = fail(ctx, sa, &user, &rej.reason);
                    resp.insert(0, eap_payload(eap::CODE_FAILURE, sa.eap_id, None));
                    (phase, resp)
                }
            }
        }
        Phase::PushPending { user, .. } => {
            fail(ctx, sa, &user, "unexpected request while waiting for token push approval")
        }
        Phase::AwaitAuth2 { child, user, idi } => {
            let auth = payloads.iter().find_map(|p| match p {
                Payload::Auth(a) => Some(a),
                _ => None,
            });
            // RFC 7296 §2.16: EAP-GTC derives no MSK, so the AUTH payloads use SK_pi / SK_pr.
            let want = shared_key_auth(sa, &sa.keys.sk_pi, false, &idi);
            match auth {
                Some(a) if a.method == AuthMethod::SHARED_KEY_MIC && bool::from(a.data.ct_eq(&want)) => {
                    let mine = shared_key_auth(sa, &sa.keys.sk_pr, true, &ctx.config.local_id);
                    let mut resp =
                        vec![Payload::Auth(AuthPayload { method: AuthMethod::SHARED_KEY_MIC, data: mine.to_vec() })];
                    ctx.debug(Some(sa.spi_r), "authentication succeeded".to_string());
                    let phase = establish(ctx, sa, now, child, Some(user), &mut resp);
                    (phase, resp)
                }
                _ => fail(ctx, sa, &user, "AUTH of the second round mismatch"),
            }
        }
        Phase::EapFailing => {
            // The peer acknowledged the MSCHAPv2 failure: end EAP (RFC 3748 §4.2) and the SA.
            let p = eap_payload(eap::CODE_FAILURE, sa.eap_id, None);
            (Phase::Dead, vec![p, notify(NotifyType::AUTHENTICATION_FAILED, vec![])])
        }
        Phase::Established | Phase::Dead => (phase, vec![notify(NotifyType::INVALID_SYNTAX, vec![])]),
    }
}

fn challenge<R: Entropy, V, P>(
    ctx: &mut Ctx<R, V, P>,
    sa: &mut IkeSa,
    child: PendingChild,
    user: String,
) -> (Phase, Vec<Payload>) {
    sa.eap_id = sa.eap_id.wrapping_add(1);
    let challenge: [u8; 16] = ctx.random();
    let m = MsChapV2::Challenge { id: sa.eap_id, challenge, name: ctx.config.server_name.as_bytes().to_vec() };
    let p = eap_payload(eap::CODE_REQUEST, sa.eap_id, Some((eap::TYPE_MSCHAPV2, m.encode())));
    ctx.debug(Some(sa.spi_r), "responder preparing EAP pass through message".to_string());
    (Phase::EapChallenge { child, user, challenge }, vec![p])
}

/// The EAP-GTC request for the token code (RFC 3748 §5.6).
fn gtc_request<R, V, P>(
    ctx: &mut Ctx<R, V, P>,
    sa: &mut IkeSa,
    child: PendingChild,
    user: String,
    idi: Identification,
) -> (Phase, Vec<Payload>) {
    sa.eap_id = sa.eap_id.wrapping_add(1);
    let text = b"Two-factor token is needed. Enter the token code".to_vec();
    let p = eap_payload(eap::CODE_REQUEST, sa.eap_id, Some((eap::TYPE_GTC, text)));
    ctx.debug(Some(sa.spi_r), "responder preparing EAP-GTC token request".to_string());
    (Phase::Gtc { child, user, idi }, vec![p])
}

/// The token push for the pending SA was approved: answer the held request with EAP Success.
pub(super) fn push_approved<R: Entropy, V, P>(ctx: &mut Ctx<R, V, P>, sa: &mut IkeSa) -> bool {
    match std::mem::replace(&mut sa.phase, Phase::Dead) {
        Phase::PushPending { child, user, idi, req } => {
            ctx.debug(Some(sa.spi_r), format!("Token push is approved for user \"{user}\""));
            let p = eap_payload(eap::CODE_SUCCESS, sa.eap_id, None);
            sa.phase = Phase::AwaitAuth2 { child, user, idi };
            push_response(ctx, sa, &req, vec![p]);
            true
        }
        other => {
            sa.phase = other;
            false
        }
    }
}

fn first_auth<R: Entropy, V, P: AddressPool>(
    ctx: &mut Ctx<R, V, P>,
    sa: &mut IkeSa,
    now: Instant,
    payloads: Vec<Payload>,
) -> (Phase, Vec<Payload>) {
    ctx.debug(Some(sa.spi_r), "responder received AUTH msg".to_string());
    let initial_contact = find_notify(&payloads, NotifyType::INITIAL_CONTACT).is_some();
    let multi_auth = find_notify(&payloads, NotifyType::MULTIPLE_AUTH_SUPPORTED).is_some();
    if initial_contact {
        ctx.debug(Some(sa.spi_r), "processing notify type INITIAL_CONTACT".to_string());
    }
    let (mut idi, mut sa_p, mut tsi, mut tsr, mut cp, mut auth) = (None, None, None, None, None, None);
    let mut client_notifies = Vec::new();
    for p in payloads {
        match p {
            Payload::Notify(n) if n.ty.0 >= PRIVATE_NOTIFY => client_notifies.push(n),
            Payload::IdI(i) => idi = Some(i),
            Payload::Sa(s) => sa_p = Some(s),
            Payload::TsI(t) => tsi = Some(t),
            Payload::TsR(t) => tsr = Some(t),
            Payload::Cp(c) if c.cfg_type == CfgType::CFG_REQUEST => cp = Some(c),
            Payload::Auth(a) => auth = Some(a),
            _ => {}
        }
    }
    let (Some(idi), Some(sa_p), Some(tsi), Some(tsr)) = (idi, sa_p, tsi, tsr) else {
        return (Phase::Dead, vec![notify(NotifyType::INVALID_SYNTAX, vec![])]);
    };
    ctx.debug(Some(sa.spi_r), format!("peer identifier {idi}"));
    let child = PendingChild { idi, sa: sa_p, tsi, tsr, cp, initial_contact, multi_auth, client_notifies };
    let local_id = ctx.config.local_id.clone();
    let mut resp = match ctx.config.certificate.clone() {
        Some(cert) => {
            // RFC 7427: CERT (X.509) payloads, then AUTH method 14 over the §2.15 octets.
            let Some(data) = cert.auth_data(&signed_octets(sa, &local_id)) else {
                ctx.debug(Some(sa.spi_r), "signing the AUTH payload failed".to_string());
                return (Phase::Dead, vec![notify(NotifyType::AUTHENTICATION_FAILED, vec![])]);
            };
            let mut r = vec![Payload::IdR(local_id)];
            r.extend(cert.chain().iter().map(|c| Payload::Cert(CertPayload { encoding: CERT_X509, data: c.clone() })));
            r.push(Payload::Auth(AuthPayload { method: AuthMethod::DIGITAL_SIGNATURE, data }));
            ctx.debug(Some(sa.spi_r), "responder authenticating with certificate (digital signature)".to_string());
            r
        }
        None => {
            let my_auth = shared_key_auth(sa, &ctx.config.psk, true, &local_id);
            vec![
                Payload::IdR(local_id),
                Payload::Auth(AuthPayload { method: AuthMethod::SHARED_KEY_MIC, data: my_auth.to_vec() }),
            ]
        }
    };
    if let Some(a) = auth {
        // The peer authenticates with the pre-shared key too.
        let want = shared_key_auth(sa, &ctx.config.psk, false, &child.idi);
        // An empty PSK (certificate gateway without psksecret) must never authenticate anyone.
        if ctx.config.psk.is_empty() || a.method != AuthMethod::SHARED_KEY_MIC || !bool::from(a.data.ct_eq(&want)) {
            let id = child.idi.to_string();
            return fail(ctx, sa, &id, "PSK AUTH mismatch");
        }
        ctx.debug(Some(sa.spi_r), "authentication succeeded".to_string());
        let phase = establish(ctx, sa, now, child, None, &mut resp);
        return (phase, resp);
    }
    ctx.debug(Some(sa.spi_r), "eap-peer=yes".to_string());
    if ctx.config.eap_identity_request {
        sa.eap_id = sa.eap_id.wrapping_add(1);
        resp.push(eap_payload(eap::CODE_REQUEST, sa.eap_id, Some((eap::TYPE_IDENTITY, vec![]))));
        ctx.debug(Some(sa.spi_r), "responder preparing EAP identity request".to_string());
        (Phase::EapIdentity { child }, resp)
    } else {
        let user = String::from_utf8_lossy(&child.idi.data).into_owned();
        let (phase, mut p) = challenge(ctx, sa, child, user);
        resp.append(&mut p);
        (phase, resp)
    }
}

pub(super) fn range_of(net: Ipv4Addr, prefix: u8) -> (u32, u32) {
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix.min(32))) };
    let start = u32::from(net) & mask;
    (start, start | !mask)
}

fn v4_range(ts: &TrafficSelector) -> Option<(u32, u32)> {
    match (ts.start_addr, ts.end_addr) {
        (IpAddr::V4(s), IpAddr::V4(e)) => Some((u32::from(s), u32::from(e))),
        _ => None,
    }
}

/// Narrows the peer's selectors to `ours` (RFC 7296 §2.9): the intersections, keeping the
/// peer's protocol and ports.
pub(super) fn narrow(theirs: &TsPayload, ours: &[(u32, u32)]) -> Vec<TrafficSelector> {
    let mut out = Vec::new();
    for t in &theirs.selectors {
        let Some((s, e)) = v4_range(t) else { continue };
        for (os, oe) in ours {
            let (a, b) = (s.max(*os), e.min(*oe));
            if a <= b {
                out.push(TrafficSelector {
                    ip_protocol: t.ip_protocol,
                    start_port: t.start_port,
                    end_port: t.end_port,
                    start_addr: IpAddr::V4(Ipv4Addr::from(a)),
                    end_addr: IpAddr::V4(Ipv4Addr::from(b)),
                });
            }
        }
    }
    out
}

fn establish<R: Entropy, V, P: AddressPool>(
    ctx: &mut Ctx<R, V, P>,
    sa: &mut IkeSa,
    now: Instant,
    child: PendingChild,
    user: Option<String>,
    resp: &mut Vec<Payload>,
) -> Phase {
    let peer_id = user.clone().unwrap_or_else(|| child.idi.to_string());
    sa.peer_id = Some(peer_id.clone());
    let now_unix = ctx.now_unix(now);
    if let Some(check) = ctx.client_check.as_mut() {
        let info = ClientInfo {
            spi: sa.spi_r,
            user: user.as_deref(),
            peer_id: &peer_id,
            remote: sa.path.remote,
            notifies: &child.client_notifies,
            now_unix,
        };
        match check.check(&info) {
            CheckVerdict::Accept { debug, notifies } => {
                for line in debug {
                    ctx.debug(Some(sa.spi_r), line);
                }
                resp.extend(notifies.into_iter().map(Payload::Notify));
            }
            CheckVerdict::Refuse { reason, debug, notify: n } => {
                for line in debug {
                    ctx.debug(Some(sa.spi_r), line);
                }
                let who = user.as_deref().unwrap_or(&peer_id).to_string();
                let (phase, mut fail_resp) = fail(ctx, sa, &who, &reason);
                resp.clear();
                resp.extend(n.map(Payload::Notify));
                resp.append(&mut fail_resp);
                return phase;
            }
        }
    }
    if child.initial_contact {
        ctx.events.push_back(Event::InitialContact { spi: sa.spi_r, peer_id: peer_id.clone() });
        sa.initial_contact = true;
    }
    // CP (RFC 7296 §2.19): assign an address when asked.
    let mut assigned = None;
    if let Some(cp) = &child.cp {
        if cp.has(CpAttrType::INTERNAL_IP4_ADDRESS) {
            match ctx.pool.allocate(&peer_id) {
                Some(a) => assigned = Some(a),
                None => {
                    ctx.debug(Some(sa.spi_r), "no address left in the pool".to_string());
                    resp.push(notify(NotifyType::INTERNAL_ADDRESS_FAILURE, vec![]));
                }
            }
        }
    }
    sa.assigned = assigned;
    ctx.events.push_back(Event::IkeSaEstablished { spi: sa.spi_r, path: sa.path, user, peer_id, assigned });
    let splits: Vec<(u32, u32)> = if ctx.config.split_include.is_empty() {
        vec![(0, u32::MAX)]
    } else {
        ctx.config.split_include.iter().map(|(n, p)| range_of(*n, *p)).collect()
    };
    if let (Some(cp), Some(a)) = (&child.cp, assigned) {
        let mut attributes = vec![CpAttribute { ty: CpAttrType::INTERNAL_IP4_ADDRESS, value: a.octets().to_vec() }];
        if cp.has(CpAttrType::INTERNAL_IP4_DNS) {
            for d in &ctx.config.dns {
                attributes.push(CpAttribute { ty: CpAttrType::INTERNAL_IP4_DNS, value: d.octets().to_vec() });
            }
        }
        for (n, p) in &ctx.config.split_include {
            let (s, _) = range_of(*n, *p);
            let mask = range_of(Ipv4Addr::UNSPECIFIED, *p).1;
            let mut v = s.to_be_bytes().to_vec();
            v.extend_from_slice(&(!mask).to_be_bytes());
            attributes.push(CpAttribute { ty: CpAttrType::INTERNAL_IP4_SUBNET, value: v });
        }
        resp.push(Payload::Cp(CpPayload { cfg_type: CfgType::CFG_REPLY, attributes }));
    }
    if child.cp.is_some() && assigned.is_none() {
        return Phase::Established;
    }
    // TSi narrowed to the assigned /32, TSr to the split-include subnets.
    let tsi = match assigned {
        Some(a) => narrow(&child.tsi, &[(u32::from(a), u32::from(a))]),
        None => child.tsi.selectors.clone(),
    };
    let tsr = narrow(&child.tsr, &splits);
    if tsi.is_empty() || tsr.is_empty() {
        ctx.debug(Some(sa.spi_r), "traffic selectors unacceptable".to_string());
        resp.push(notify(NotifyType::TS_UNACCEPTABLE, vec![]));
        return Phase::Established;
    }
    let Some(inbound_spi) = alloc_inbound_spi(ctx) else {
        ctx.debug(Some(sa.spi_r), "no inbound SA slot left in the data plane".to_string());
        resp.push(notify(NotifyType::TEMPORARY_FAILURE, vec![]));
        return Phase::Established;
    };
    let choice = match ctx.config.esp.select(&child.sa, None, inbound_spi) {
        Ok(c) => c,
        Err(_) => {
            ctx.debug(Some(sa.spi_r), "no proposal chosen for CHILD_SA".to_string());
            resp.push(notify(NotifyType::NO_PROPOSAL_CHOSEN, vec![]));
            return Phase::Established;
        }
    };
    let (el, il) = esp_key_lengths(&choice.suite);
    let Ok(k) = child_keymat(sa.prf(), &sa.keys.sk_d, None, &sa.ni, &sa.nr, el, il) else {
        resp.push(notify(NotifyType::NO_PROPOSAL_CHOSEN, vec![]));
        return Phase::Established;
    };
    resp.push(Payload::Sa(choice.sa.clone()));
    resp.push(Payload::TsI(TsPayload { selectors: tsi.clone() }));
    resp.push(Payload::TsR(TsPayload { selectors: tsr.clone() }));
    install_child(ctx, sa, inbound_spi, &choice, k, (tsi, tsr), None);
    Phase::Established
}

/// An inbound CHILD_SA SPI: from the data plane's allocator when one is attached, else random
/// (at least 256: SPIs 1-255 are reserved by IANA, RFC 4303 §2.1). `None` when no slot is free.
pub(super) fn alloc_inbound_spi<R: Entropy, V, P>(ctx: &mut Ctx<R, V, P>) -> Option<u32> {
    match ctx.spis.as_mut() {
        Some(spis) => spis.allocate(),
        None => loop {
            let spi = u32::from_be_bytes(ctx.random::<4>());
            if spi >= 256 {
                return Some(spi);
            }
        },
    }
}

/// Records a negotiated CHILD_SA on its IKE SA and hands it to the driver for the data plane.
pub(super) fn install_child<R, V, P>(
    ctx: &mut Ctx<R, V, P>,
    sa: &mut IkeSa,
    inbound_spi: u32,
    choice: &EspChoice,
    k: ChildKeys,
    (tsi, tsr): (Vec<TrafficSelector>, Vec<TrafficSelector>),
    rekeys: Option<u32>,
) {
    sa.children.push((inbound_spi, choice.peer_spi));
    ctx.events.push_back(Event::InstallChildSa(ChildSa {
        ike_spi: sa.spi_r,
        inbound_spi,
        outbound_spi: choice.peer_spi,
        suite: choice.suite,
        esn: choice.esn,
        inbound: DirectionKeys { encr: k.encr_i, integ: k.integ_i },
        outbound: DirectionKeys { encr: k.encr_r, integ: k.integ_r },
        tsi,
        tsr,
        path: sa.path,
        udp_encap: sa.nat_detected || sa.path.local.port() == 4500,
        assigned: sa.assigned,
        rekeys,
    }));
}
