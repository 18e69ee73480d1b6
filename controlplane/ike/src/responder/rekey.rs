//! CREATE_CHILD_SA (RFC 7296 §1.3): a new or rekeyed CHILD_SA, with or without PFS, and the
//! rekeying of the IKE SA itself (§1.3.2, §2.18).
//!
//! ```text
//! HDR, SK {[N(REKEY_SA)], SA, Ni, [KEi], TSi, TSr}  -->  <-- HDR, SK {SA, Nr, [KEr], TSi, TSr}
//! HDR, SK {SA(IKE), Ni, KEi}                          -->  <-- HDR, SK {SA(IKE), Nr, KEr}
//! ```
//! A rekeyed CHILD_SA is installed next to the old one (`ChildSa::rekeys` names it); the peer
//! deletes the old one with an INFORMATIONAL exchange when it has switched (§2.8). A rekeyed
//! IKE SA takes over the children, the address and the identity of the old one, which the peer
//! then deletes; the driver hears `IkeSaRekeyed` so it can move its own records.

use std::time::Instant;

use super::auth::{alloc_inbound_spi, install_child, narrow, range_of};
use super::{notify, Ctx, Event, IkeSa, Phase};
use crate::crypto::dh::DhPrivate;
use crate::crypto::Entropy;
use crate::error::Error;
use crate::keymat::{child_keymat, rekey_skeyseed, IkeKeys};
use crate::message::{find_notify, DhId, KePayload, NotifyType, Payload, ProtocolId, TsPayload};
use crate::proposal::esp_key_lengths;
use crate::sk::{Reassembly, SkCipher};

/// What a CREATE_CHILD_SA request asked for.
pub(super) enum Outcome {
    /// Answer with these payloads.
    Reply(Vec<Payload>),
    /// Answer with these payloads, then add this new IKE SA (IKE rekey).
    NewIkeSa(Vec<Payload>, Box<IkeSa>),
}

fn error(ty: NotifyType, data: Vec<u8>) -> Outcome {
    Outcome::Reply(vec![notify(ty, data)])
}

/// Handles a CREATE_CHILD_SA request on an established IKE SA.
pub(super) fn handle<R: Entropy, V, P>(
    ctx: &mut Ctx<R, V, P>,
    sa: &mut IkeSa,
    now: Instant,
    payloads: Vec<Payload>,
) -> Outcome {
    if !matches!(sa.phase, Phase::Established) {
        // §1.3: CREATE_CHILD_SA only after IKE_AUTH completed.
        return error(NotifyType::INVALID_SYNTAX, vec![]);
    }
    let (mut sa_p, mut ni, mut ke, mut tsi, mut tsr) = (None, None, None, None, None);
    let rekey = find_notify(&payloads, NotifyType::REKEY_SA).cloned();
    for p in payloads {
        match p {
            Payload::Sa(s) => sa_p = Some(s),
            Payload::Nonce(n) => ni = Some(n),
            Payload::Ke(k) => ke = Some(k),
            Payload::TsI(t) => tsi = Some(t),
            Payload::TsR(t) => tsr = Some(t),
            _ => {}
        }
    }
    let (Some(sa_p), Some(ni)) = (sa_p, ni) else { return error(NotifyType::INVALID_SYNTAX, vec![]) };
    if !(16..=256).contains(&ni.len()) {
        return error(NotifyType::INVALID_SYNTAX, vec![]);
    }
    if sa_p.proposals.iter().any(|p| p.protocol == ProtocolId::IKE) {
        let Some(ke) = ke else { return error(NotifyType::INVALID_SYNTAX, vec![]) };
        return rekey_ike(ctx, sa, now, &sa_p, &ni, &ke);
    }
    let (Some(tsi), Some(tsr)) = (tsi, tsr) else { return error(NotifyType::INVALID_SYNTAX, vec![]) };
    // REKEY_SA names the SA by the SPI the initiator receives on: our outbound SPI (§1.3.3).
    let rekeys = match &rekey {
        Some(n) => {
            let Ok(spi) = <[u8; 4]>::try_from(n.spi.as_slice()) else {
                return error(NotifyType::INVALID_SYNTAX, vec![]);
            };
            let spi = u32::from_be_bytes(spi);
            match sa.children.iter().find(|c| c.1 == spi) {
                Some(c) => Some(c.0),
                None => {
                    ctx.debug(Some(sa.spi_r), format!("CREATE_CHILD_SA: no CHILD_SA with SPI {spi:08x} to rekey"));
                    return error(NotifyType::CHILD_SA_NOT_FOUND, vec![]);
                }
            }
        }
        None => None,
    };
    // The same narrowing as in IKE_AUTH: the client's address, the split-include subnets.
    let new_tsi = match sa.assigned {
        Some(a) => narrow(&tsi, &[(u32::from(a), u32::from(a))]),
        None => tsi.selectors.clone(),
    };
    let splits: Vec<(u32, u32)> = if ctx.config.split_include.is_empty() {
        vec![(0, u32::MAX)]
    } else {
        ctx.config.split_include.iter().map(|(n, p)| range_of(*n, *p)).collect()
    };
    let new_tsr = narrow(&tsr, &splits);
    if new_tsi.is_empty() || new_tsr.is_empty() {
        return error(NotifyType::TS_UNACCEPTABLE, vec![]);
    }
    let Some(inbound_spi) = alloc_inbound_spi(ctx) else { return error(NotifyType::TEMPORARY_FAILURE, vec![]) };
    let choice = match ctx.config.esp.select(&sa_p, ke.as_ref().map(|k| k.group), inbound_spi) {
        Ok(c) => c,
        Err(Error::InvalidKe(g)) => return error(NotifyType::INVALID_KE_PAYLOAD, g.to_be_bytes().to_vec()),
        Err(_) => return error(NotifyType::NO_PROPOSAL_CHOSEN, vec![]),
    };
    let mut kr = None;
    let gir = match (choice.group, &ke) {
        (Some(g), Some(k)) => {
            let Ok(dh) = DhPrivate::generate(g, &mut ctx.rng) else {
                return error(NotifyType::NO_PROPOSAL_CHOSEN, vec![]);
            };
            let Ok(shared) = dh.agree(&k.data) else { return error(NotifyType::INVALID_SYNTAX, vec![]) };
            kr = Some(KePayload { group: g.id(), data: dh.public().to_vec() });
            Some(shared)
        }
        _ => None,
    };
    let nr = ctx.random::<32>().to_vec();
    let (el, il) = esp_key_lengths(&choice.suite);
    let Ok(k) = child_keymat(sa.prf(), &sa.keys.sk_d, gir.as_ref().map(|g| g.as_slice()), &ni, &nr, el, il) else {
        return error(NotifyType::NO_PROPOSAL_CHOSEN, vec![]);
    };
    let pfs = if kr.is_some() { " with PFS" } else { "" };
    let what = match rekeys {
        Some(old) => format!("rekeying CHILD_SA {old:08x}{pfs}: new SPIs {inbound_spi:08x}/{:08x}", choice.peer_spi),
        None => format!("new CHILD_SA{pfs}: SPIs {inbound_spi:08x}/{:08x}", choice.peer_spi),
    };
    ctx.debug(Some(sa.spi_r), what);
    let mut resp = vec![Payload::Sa(choice.sa.clone()), Payload::Nonce(nr)];
    if let Some(kr) = kr {
        resp.push(Payload::Ke(kr));
    }
    resp.push(Payload::TsI(TsPayload { selectors: new_tsi.clone() }));
    resp.push(Payload::TsR(TsPayload { selectors: new_tsr.clone() }));
    install_child(ctx, sa, inbound_spi, &choice, k, (new_tsi, new_tsr), rekeys);
    Outcome::Reply(resp)
}

/// §2.18: a new IKE SA keyed from the old SK_d and a fresh DH; it inherits everything.
fn rekey_ike<R: Entropy, V, P>(
    ctx: &mut Ctx<R, V, P>,
    sa: &mut IkeSa,
    now: Instant,
    sa_p: &crate::message::SaPayload,
    ni: &[u8],
    ke: &KePayload,
) -> Outcome {
    let choice = match ctx.config.ike.select(sa_p, ke.group) {
        Ok(c) => c,
        Err(Error::InvalidKe(g)) => return error(NotifyType::INVALID_KE_PAYLOAD, g.to_be_bytes().to_vec()),
        Err(_) => return error(NotifyType::NO_PROPOSAL_CHOSEN, vec![]),
    };
    let Some(p) = sa_p.proposals.iter().find(|p| p.number == choice.sa.proposals[0].number) else {
        return error(NotifyType::NO_PROPOSAL_CHOSEN, vec![]);
    };
    let Ok(spi_i) = <[u8; 8]>::try_from(p.spi.as_slice()).map(u64::from_be_bytes) else {
        return error(NotifyType::INVALID_SYNTAX, vec![]);
    };
    let Ok(dh) = DhPrivate::generate(choice.group, &mut ctx.rng) else {
        return error(NotifyType::NO_PROPOSAL_CHOSEN, vec![]);
    };
    let Ok(gir) = dh.agree(&ke.data) else { return error(NotifyType::INVALID_SYNTAX, vec![]) };
    let mut spi_r = 0u64;
    // A collision with another SA's SPI is checked (and refused) when the new SA is added.
    while spi_r == 0 || spi_r == sa.spi_r {
        spi_r = u64::from_be_bytes(ctx.random::<8>());
    }
    let nr = ctx.random::<32>().to_vec();
    let suite = choice.suite;
    let seed = rekey_skeyseed(sa.keys.prf, &sa.keys.sk_d, &gir, ni, &nr);
    let Ok(keys) = IkeKeys::derive(suite.prf, suite.encr, suite.integ, &seed, ni, &nr, spi_i, spi_r) else {
        return error(NotifyType::NO_PROPOSAL_CHOSEN, vec![]);
    };
    let (Ok(inbound), Ok(outbound)) = (SkCipher::inbound(&keys, true), SkCipher::outbound(&keys, true)) else {
        return error(NotifyType::NO_PROPOSAL_CHOSEN, vec![]);
    };
    let mut sa_reply = choice.sa;
    if let Some(p) = sa_reply.proposals.first_mut() {
        p.spi = spi_r.to_be_bytes().to_vec();
    }
    ctx.debug(Some(sa.spi_r), format!("rekeying IKE SA: new SPIs {spi_i:016x}/{spi_r:016x}"));
    let new = IkeSa {
        spi_i,
        spi_r,
        path: sa.path,
        deadline: None,
        keys,
        inbound,
        outbound,
        ni: ni.to_vec(),
        nr: nr.clone(),
        init_req: Vec::new(),
        init_resp: Vec::new(),
        frag: sa.frag,
        nat_detected: sa.nat_detected,
        expected_mid: 0,
        last_req: None,
        last_resp: Vec::new(),
        reassembly: Reassembly::default(),
        phase: Phase::Established,
        eap_id: 0,
        // The new SA owns the address and the children now: the old one's DELETE must not
        // return or remove them.
        assigned: sa.assigned.take(),
        children: std::mem::take(&mut sa.children),
        peer_id: sa.peer_id.clone(),
        initial_contact: false,
        last_seen: now,
        our_mid: 0,
        pending: None,
        close: None,
        tally: super::Tally::Other,
        timer_at: None,
        init_key: None,
    };
    ctx.events.push_back(Event::IkeSaRekeyed { old_spi: sa.spi_r, new_spi: spi_r });
    let reply = vec![
        Payload::Sa(sa_reply),
        Payload::Nonce(nr),
        Payload::Ke(KePayload { group: DhId(choice.group.id().0), data: dh.public().to_vec() }),
    ];
    Outcome::NewIkeSa(reply, Box::new(new))
}
