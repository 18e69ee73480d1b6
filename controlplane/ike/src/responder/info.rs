//! INFORMATIONAL exchanges (RFC 7296 §1.4, §2.4): the peer's DELETEs and liveness checks, and
//! the requests the responder sends itself — dead-peer detection probes and the DELETE of an IKE
//! SA the control plane removes.
//!
//! A request of ours carries our own message ID (§2.2: each side numbers its requests), is
//! retransmitted with exponential back-off and, when the peer never answers, ends the IKE SA
//! (`DeadPeer`). Any authenticated message from the peer, or ESP the driver reports through
//! `Responder::peer_alive`, counts as a sign of life and postpones the next probe.

use std::time::{Duration, Instant};

use super::{response_header, CloseReason, Ctx, Event, IkeSa, Transmit};
use crate::crypto::Entropy;
use crate::message::{DeletePayload, ExchangeType, Header, Notify, Payload, PayloadType, ProtocolId, FLAG_RESPONSE};

/// First private-use Notify status type (RFC 7296 §3.10.1).
const PRIVATE_NOTIFY: u16 = 40960;

/// Dead-peer detection settings (phase1 `dpd`, `dpd-retryinterval`, `dpd-retrycount`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dpd {
    /// Idle time before a probe, and the first retransmission interval.
    pub interval: Duration,
    /// Retransmissions of an unanswered probe before the peer is declared dead.
    pub retries: u32,
}

/// A DPD probe of ours waiting for its response (the DELETE we send is not retransmitted:
/// the SA is already gone on our side).
pub(crate) struct Pending {
    pub(crate) message_id: u32,
    pub(crate) datagrams: Vec<Vec<u8>>,
    pub(crate) next: Instant,
    pub(crate) sent: u32,
}

/// The peer's INFORMATIONAL request: the response payloads. Sets `sa.close` when the peer
/// deletes the IKE SA.
pub(super) fn request<R, V, P>(ctx: &mut Ctx<R, V, P>, sa: &mut IkeSa, payloads: Vec<Payload>) -> Vec<Payload> {
    let mut resp = Vec::new();
    let mut ours = Vec::new();
    let private: Vec<Notify> = payloads
        .iter()
        .filter_map(|p| match p {
            Payload::Notify(n) if n.ty.0 >= PRIVATE_NOTIFY => Some(n.clone()),
            _ => None,
        })
        .collect();
    if !private.is_empty() {
        if let Some(c) = ctx.client_check.as_mut() {
            c.update(sa.spi_r, &private);
        }
        ctx.debug(Some(sa.spi_r), format!("received {} client notify(s) in INFORMATIONAL", private.len()));
    }
    for p in payloads {
        let Payload::Delete(d) = p else { continue };
        if d.protocol == ProtocolId::IKE {
            // §1.4.1: the response to an IKE SA DELETE is empty; the SA and its children go.
            ctx.debug(Some(sa.spi_r), "received delete for the IKE SA".to_string());
            sa.close = Some(CloseReason::Deleted);
            return Vec::new();
        }
        if d.protocol != ProtocolId::ESP {
            continue;
        }
        for spi in d.spis.iter().filter_map(|s| <[u8; 4]>::try_from(s.as_slice()).ok()) {
            // The peer names its inbound SPI, which is our outbound one; we answer with ours.
            let outbound = u32::from_be_bytes(spi);
            if let Some(i) = sa.children.iter().position(|c| c.1 == outbound) {
                let (inbound, outbound) = sa.children.remove(i);
                ctx.debug(Some(sa.spi_r), format!("received delete for CHILD_SA {inbound:08x}/{outbound:08x}"));
                ctx.events.push_back(Event::ChildSaDeleted {
                    ike_spi: sa.spi_r,
                    inbound_spi: inbound,
                    outbound_spi: outbound,
                });
                ours.push(inbound.to_be_bytes().to_vec());
            }
        }
    }
    if !ours.is_empty() {
        resp.push(Payload::Delete(DeletePayload { protocol: ProtocolId::ESP, spi_size: 4, spis: ours }));
    }
    resp
}

/// Seals and sends an INFORMATIONAL request of ours; `None` when sealing failed.
fn send<R: Entropy, V, P>(ctx: &mut Ctx<R, V, P>, sa: &mut IkeSa, payloads: &[Payload]) -> Option<(u32, Vec<Vec<u8>>)> {
    let mut header = response_header(
        &Header {
            spi_i: sa.spi_i,
            spi_r: sa.spi_r,
            next_payload: PayloadType::NONE,
            version: 0x20,
            exchange: ExchangeType::INFORMATIONAL,
            flags: 0,
            message_id: sa.our_mid,
            length: 0,
        },
        sa.spi_r,
    );
    // A request from the original responder: neither the I nor the R flag (§3.1).
    header.flags &= !FLAG_RESPONSE;
    let frag = sa.frag.then_some(ctx.config.fragment_len);
    let dgrams = sa.outbound.seal(&header, payloads, frag, &mut ctx.rng).ok()?;
    for d in &dgrams {
        ctx.transmits.push_back(Transmit { path: sa.path, payload: d.clone() });
    }
    let mid = sa.our_mid;
    sa.our_mid = sa.our_mid.wrapping_add(1);
    Some((mid, dgrams))
}

/// Starts a DPD probe.
pub(super) fn probe<R: Entropy, V, P>(ctx: &mut Ctx<R, V, P>, sa: &mut IkeSa, now: Instant, dpd: Dpd) {
    if let Some((message_id, datagrams)) = send(ctx, sa, &[]) {
        ctx.debug(Some(sa.spi_r), "sending DPD probe".to_string());
        sa.pending = Some(Pending { message_id, datagrams, next: now + dpd.interval, sent: 1 });
    }
}

/// Sends the DELETE of the IKE SA (fire and forget: the SA is gone on our side already).
pub(super) fn send_delete<R: Entropy, V, P>(ctx: &mut Ctx<R, V, P>, sa: &mut IkeSa) {
    let d = Payload::Delete(DeletePayload { protocol: ProtocolId::IKE, spi_size: 0, spis: Vec::new() });
    let _ = send(ctx, sa, &[d]);
}

/// A timer of an established SA fired: retransmit, give up, or probe an idle peer. Returns
/// `true` when the peer is dead.
pub(super) fn on_timer<R: Entropy, V, P>(ctx: &mut Ctx<R, V, P>, sa: &mut IkeSa, now: Instant, dpd: Dpd) -> bool {
    if let Some(p) = sa.pending.as_mut() {
        if now < p.next {
            return false;
        }
        if p.sent > dpd.retries {
            ctx.debug(Some(sa.spi_r), format!("DPD: no answer after {} probes, peer is dead", p.sent));
            return true;
        }
        for d in &p.datagrams {
            ctx.transmits.push_back(Transmit { path: sa.path, payload: d.clone() });
        }
        p.sent += 1;
        // §2.4: back off, but never wait longer than a few intervals.
        p.next = now + dpd.interval.saturating_mul(p.sent.min(4));
        return false;
    }
    if now.saturating_duration_since(sa.last_seen) >= dpd.interval {
        probe(ctx, sa, now, dpd);
    }
    false
}

/// When the SA's DPD timer fires next.
pub(super) fn next_timer(sa: &IkeSa, dpd: Dpd) -> Instant {
    match &sa.pending {
        Some(p) => p.next,
        None => sa.last_seen + dpd.interval,
    }
}

/// The peer's response to a request of ours (already authenticated and decrypted).
pub(super) fn response(sa: &mut IkeSa, message_id: u32) -> bool {
    match &sa.pending {
        Some(p) if p.message_id == message_id => {
            sa.pending = None;
            true
        }
        _ => false,
    }
}
