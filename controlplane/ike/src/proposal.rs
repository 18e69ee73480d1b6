//! Algorithm offers from the FortiOS configuration, and the responder's choice among the
//! initiator's proposals (RFC 7296 §2.7, §3.3.6).
//!
//! How to drive it: [`IkeOffer::parse`] the phase1 `set proposal …` words and `set dhgrp …`
//! numbers, [`EspOffer::parse`] the phase2 ones (once, at config load). For each IKE_SA_INIT,
//! [`IkeOffer::select`] the initiator's SA payload against the KE group it sent: the result is
//! the chosen suite and group plus the single-proposal SA payload to answer with, or
//! NO_PROPOSAL_CHOSEN, or INVALID_KE_PAYLOAD naming the group we want. [`EspOffer::select`] does
//! the same for CHILD_SAs.
//!
//! RFC 7296 §2.7: "The responder MUST choose a single suite, which may be any subset of the SA
//! proposal". We take the first proposal (in the initiator's order) that contains a suite we
//! offer, and within it the initiator's first transform of each type that fits.

use crate::crypto::dh::DhGroup;
use crate::crypto::{Encr, Integ, Prf};
use crate::error::Error;
use crate::message::{DhId, EncrId, IntegId, Proposal, ProtocolId, SaPayload, Transform, TransformType};

/// A phase1 or phase2 proposal name that is not understood.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unsupported proposal {0:?}")]
pub struct ProposalError(pub String);

/// One IKE SA suite: encryption, integrity (None for AEADs) and PRF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IkeSuite {
    /// Encryption.
    pub encr: Encr,
    /// Integrity, absent for AEAD ciphers.
    pub integ: Option<Integ>,
    /// PRF.
    pub prf: Prf,
}

/// One ESP suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EspSuite {
    /// Encryption.
    pub encr: Encr,
    /// Integrity, absent for AEAD ciphers.
    pub integ: Option<Integ>,
}

fn parse_cipher(word: &str) -> Option<(Encr, &str)> {
    let table: [(&str, Encr); 7] = [
        ("chacha20poly1305", Encr::ChaCha20Poly1305),
        ("aes128gcm", Encr::AesGcm16 { key_len: 16 }),
        ("aes256gcm", Encr::AesGcm16 { key_len: 32 }),
        ("aes128", Encr::AesCbc { key_len: 16 }),
        ("aes192", Encr::AesCbc { key_len: 24 }),
        ("aes256", Encr::AesCbc { key_len: 32 }),
        ("aes", Encr::AesCbc { key_len: 16 }),
    ];
    table.iter().find_map(|(name, e)| word.strip_prefix(name).map(|rest| (*e, rest)))
}

fn parse_hash(h: &str) -> Option<(Integ, Prf)> {
    Some(match h {
        "sha1" => (Integ::HmacSha1_96, Prf::HmacSha1),
        "sha256" => (Integ::HmacSha256_128, Prf::HmacSha256),
        "sha384" => (Integ::HmacSha384_192, Prf::HmacSha384),
        "sha512" => (Integ::HmacSha512_256, Prf::HmacSha512),
        _ => return None,
    })
}

impl IkeSuite {
    /// A FortiOS phase1 proposal name: `aes128-sha256` (CBC, HMAC integrity and PRF of the same
    /// hash) or `aes128gcm-prfsha256` / `chacha20poly1305-prfsha256` (AEAD with a PRF).
    pub fn parse(word: &str) -> Result<Self, ProposalError> {
        let err = || ProposalError(word.to_string());
        let (encr, rest) = parse_cipher(word).ok_or_else(err)?;
        let rest = rest.strip_prefix('-').ok_or_else(err)?;
        if encr.is_aead() {
            let h = rest.strip_prefix("prf").ok_or_else(err)?;
            let (_, prf) = parse_hash(h).ok_or_else(err)?;
            Ok(Self { encr, integ: None, prf })
        } else {
            let (integ, prf) = parse_hash(rest).ok_or_else(err)?;
            Ok(Self { encr, integ: Some(integ), prf })
        }
    }
}

impl EspSuite {
    /// A FortiOS phase2 proposal name: `aes128-sha1`, `aes256-sha256`, `aes128gcm`,
    /// `aes256gcm`, `chacha20poly1305`.
    pub fn parse(word: &str) -> Result<Self, ProposalError> {
        let err = || ProposalError(word.to_string());
        let (encr, rest) = parse_cipher(word).ok_or_else(err)?;
        if encr.is_aead() {
            if !rest.is_empty() {
                return Err(err());
            }
            Ok(Self { encr, integ: None })
        } else {
            let (integ, _) = parse_hash(rest.strip_prefix('-').ok_or_else(err)?).ok_or_else(err)?;
            Ok(Self { encr, integ: Some(integ) })
        }
    }
}

fn parse_groups(dhgrp: &[u16], allow_weak: bool) -> Result<Vec<DhGroup>, ProposalError> {
    dhgrp
        .iter()
        .map(|g| DhGroup::from_id(DhId(*g), allow_weak).ok_or_else(|| ProposalError(format!("dhgrp {g}"))))
        .collect()
}

/// Phase1 groups used when the configuration has no `set dhgrp` (FortiOS defaults to
/// `14 5`; group 5 is not implemented, so only 14 remains).
pub const DEFAULT_DHGRP: &[u16] = &[14];

/// What we accept for IKE SAs, in our order of preference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IkeOffer {
    /// Suites.
    pub suites: Vec<IkeSuite>,
    /// Key exchange groups.
    pub groups: Vec<DhGroup>,
}

/// The responder's IKE choice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IkeChoice {
    /// The suite.
    pub suite: IkeSuite,
    /// The group (equal to the initiator's KE group).
    pub group: DhGroup,
    /// The SA payload to send back.
    pub sa: SaPayload,
}

/// Transform match: returns the position in the initiator's list of the first transform of
/// `ty` satisfying `ok`.
fn position(p: &Proposal, ty: TransformType, ok: impl Fn(&Transform) -> bool) -> Option<usize> {
    p.transforms.iter().filter(|t| t.ty == ty).position(ok)
}

fn encr_matches(t: &Transform, e: Encr) -> bool {
    Encr::from_id(EncrId(t.id), t.key_length()) == Some(e)
}

fn integ_matches(p: &Proposal, integ: Option<Integ>) -> Option<usize> {
    match integ {
        Some(i) => position(p, TransformType::INTEG, |t| t.id == i.id().0),
        // AEAD: no INTEG transform, or only NONE (RFC 5282 §8).
        None => {
            let mut it = p.of_type(TransformType::INTEG);
            match it.all(|t| t.id == IntegId::NONE.0) {
                true => Some(0),
                false => None,
            }
        }
    }
}

fn encr_transform(e: Encr) -> Transform {
    match e.id() {
        (id, Some(bits)) => Transform::with_key_length(TransformType::ENCR, id.0, bits),
        (id, None) => Transform::new(TransformType::ENCR, id.0),
    }
}

impl IkeOffer {
    /// From the phase1 `proposal` words and `dhgrp` numbers (empty means [`DEFAULT_DHGRP`]).
    pub fn parse(proposal: &str, dhgrp: &[u16], allow_weak: bool) -> Result<Self, ProposalError> {
        let suites = proposal.split_whitespace().map(IkeSuite::parse).collect::<Result<Vec<_>, _>>()?;
        if suites.is_empty() {
            return Err(ProposalError(proposal.to_string()));
        }
        let groups = parse_groups(if dhgrp.is_empty() { DEFAULT_DHGRP } else { dhgrp }, allow_weak)?;
        Ok(Self { suites, groups })
    }

    /// Chooses among the initiator's proposals given the group of its KE payload.
    pub fn select(&self, sa: &SaPayload, ke_group: DhId) -> Result<IkeChoice, Error> {
        let mut wanted_group: Option<DhGroup> = None;
        for p in &sa.proposals {
            if p.protocol != ProtocolId::IKE || !p.spi.is_empty() && p.spi.len() != 8 {
                continue;
            }
            // Best suite by the initiator's transform order: (encr, integ, prf) positions.
            let mut best: Option<((usize, usize, usize), IkeSuite)> = None;
            for s in &self.suites {
                let (Some(e), Some(i), Some(f)) = (
                    position(p, TransformType::ENCR, |t| encr_matches(t, s.encr)),
                    integ_matches(p, s.integ),
                    position(p, TransformType::PRF, |t| t.id == s.prf.id().0),
                ) else {
                    continue;
                };
                if best.as_ref().is_none_or(|(k, _)| (e, i, f) < *k) {
                    best = Some(((e, i, f), *s));
                }
            }
            let Some((_, suite)) = best else { continue };
            let theirs: Vec<DhId> = p.of_type(TransformType::DH).map(|t| DhId(t.id)).collect();
            let Some(group) = self.groups.iter().copied().find(|g| g.id() == ke_group && theirs.contains(&g.id()))
            else {
                // Acceptable suite but not with this KE: remember our preferred common group.
                if wanted_group.is_none() {
                    wanted_group = self.groups.iter().copied().find(|g| theirs.contains(&g.id()));
                }
                continue;
            };
            let mut transforms = vec![encr_transform(suite.encr)];
            transforms.push(Transform::new(TransformType::PRF, suite.prf.id().0));
            if let Some(i) = suite.integ {
                transforms.push(Transform::new(TransformType::INTEG, i.id().0));
            }
            transforms.push(Transform::new(TransformType::DH, group.id().0));
            let sa = SaPayload {
                proposals: vec![Proposal { number: p.number, protocol: ProtocolId::IKE, spi: Vec::new(), transforms }],
            };
            return Ok(IkeChoice { suite, group, sa });
        }
        match wanted_group {
            // RFC 7296 §1.2: the responder names the group it wants in INVALID_KE_PAYLOAD.
            Some(g) => Err(Error::InvalidKe(g.id().0)),
            None => Err(Error::NoProposalChosen),
        }
    }

    /// The offer as an initiator's SA payload (one proposal with every transform), for tests and
    /// an initiator.
    pub fn to_sa(&self) -> SaPayload {
        let mut aead = Vec::new();
        let mut cbc = Vec::new();
        for s in &self.suites {
            let t = if s.encr.is_aead() { &mut aead } else { &mut cbc };
            t.push(*s);
        }
        let mut proposals = Vec::new();
        for group in [cbc, aead] {
            if group.is_empty() {
                continue;
            }
            let mut ts: Vec<Transform> = Vec::new();
            let mut push = |t: Transform| {
                if !ts.contains(&t) {
                    ts.push(t);
                }
            };
            for s in &group {
                push(encr_transform(s.encr));
            }
            for s in &group {
                push(Transform::new(TransformType::PRF, s.prf.id().0));
            }
            for s in &group {
                if let Some(i) = s.integ {
                    push(Transform::new(TransformType::INTEG, i.id().0));
                }
            }
            for g in &self.groups {
                push(Transform::new(TransformType::DH, g.id().0));
            }
            proposals.push(Proposal {
                number: proposals.len() as u8 + 1,
                protocol: ProtocolId::IKE,
                spi: Vec::new(),
                transforms: ts,
            });
        }
        SaPayload { proposals }
    }
}

/// What we accept for CHILD_SAs (ESP), in our order of preference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EspOffer {
    /// Suites.
    pub suites: Vec<EspSuite>,
    /// PFS groups (phase2 `dhgrp`), used in CREATE_CHILD_SA with a KE payload.
    pub pfs_groups: Vec<DhGroup>,
}

/// The responder's ESP choice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EspChoice {
    /// The suite.
    pub suite: EspSuite,
    /// Extended sequence numbers.
    pub esn: bool,
    /// The initiator's SPI (its inbound SA).
    pub peer_spi: u32,
    /// PFS group, when a KE was exchanged.
    pub group: Option<DhGroup>,
    /// The SA payload to send back (with our SPI).
    pub sa: SaPayload,
}

impl EspOffer {
    /// From the phase2 `proposal` words and optional `dhgrp` (PFS) numbers.
    pub fn parse(proposal: &str, dhgrp: &[u16], allow_weak: bool) -> Result<Self, ProposalError> {
        let suites = proposal.split_whitespace().map(EspSuite::parse).collect::<Result<Vec<_>, _>>()?;
        if suites.is_empty() {
            return Err(ProposalError(proposal.to_string()));
        }
        Ok(Self { suites, pfs_groups: parse_groups(dhgrp, allow_weak)? })
    }

    /// Chooses an ESP proposal. `ke_group` is the KE payload's group in CREATE_CHILD_SA with
    /// PFS; `None` in IKE_AUTH, where DH transforms are ignored (RFC 7296 §1.2).
    pub fn select(&self, sa: &SaPayload, ke_group: Option<DhId>, our_spi: u32) -> Result<EspChoice, Error> {
        let mut wanted_group = None;
        for p in &sa.proposals {
            if p.protocol != ProtocolId::ESP || p.spi.len() != 4 {
                continue;
            }
            let mut best: Option<((usize, usize), EspSuite)> = None;
            for s in &self.suites {
                let (Some(e), Some(i)) =
                    (position(p, TransformType::ENCR, |t| encr_matches(t, s.encr)), integ_matches(p, s.integ))
                else {
                    continue;
                };
                if best.as_ref().is_none_or(|(k, _)| (e, i) < *k) {
                    best = Some(((e, i), *s));
                }
            }
            let Some((_, suite)) = best else { continue };
            let esn = match p.of_type(TransformType::ESN).next() {
                Some(t) if t.id == 1 => true,
                Some(t) if t.id == 0 => false,
                None => false,
                Some(_) => continue,
            };
            let group = match ke_group {
                None => None,
                Some(ke) => {
                    let theirs: Vec<DhId> = p.of_type(TransformType::DH).map(|t| DhId(t.id)).collect();
                    match self.pfs_groups.iter().copied().find(|g| g.id() == ke && theirs.contains(&ke)) {
                        Some(g) => Some(g),
                        None => {
                            if wanted_group.is_none() {
                                wanted_group = self.pfs_groups.iter().copied().find(|g| theirs.contains(&g.id()));
                            }
                            continue;
                        }
                    }
                }
            };
            let mut transforms = vec![encr_transform(suite.encr)];
            if let Some(i) = suite.integ {
                transforms.push(Transform::new(TransformType::INTEG, i.id().0));
            }
            if let Some(g) = group {
                transforms.push(Transform::new(TransformType::DH, g.id().0));
            }
            transforms.push(Transform::new(TransformType::ESN, u16::from(esn)));
            let peer_spi = u32::from_be_bytes([p.spi[0], p.spi[1], p.spi[2], p.spi[3]]);
            let sa = SaPayload {
                proposals: vec![Proposal {
                    number: p.number,
                    protocol: ProtocolId::ESP,
                    spi: our_spi.to_be_bytes().to_vec(),
                    transforms,
                }],
            };
            return Ok(EspChoice { suite, esn, peer_spi, group, sa });
        }
        match wanted_group {
            Some(g) => Err(Error::InvalidKe(g.id().0)),
            None => Err(Error::NoProposalChosen),
        }
    }

    /// The offer as an initiator's SA payload with SPI `spi` (for tests and an initiator).
    pub fn to_sa(&self, spi: u32) -> SaPayload {
        let proposals = self
            .suites
            .iter()
            .enumerate()
            .map(|(n, s)| {
                let mut transforms = vec![encr_transform(s.encr)];
                if let Some(i) = s.integ {
                    transforms.push(Transform::new(TransformType::INTEG, i.id().0));
                }
                // PFS groups for CREATE_CHILD_SA (IKE_AUTH ignores them, RFC 7296 §1.2).
                for g in &self.pfs_groups {
                    transforms.push(Transform::new(TransformType::DH, g.id().0));
                }
                transforms.push(Transform::new(TransformType::ESN, 0));
                Proposal { number: n as u8 + 1, protocol: ProtocolId::ESP, spi: spi.to_be_bytes().to_vec(), transforms }
            })
            .collect();
        SaPayload { proposals }
    }
}

/// The ESP transform's PRF-independent key lengths: (encryption keymat incl. salt, integrity key).
pub fn esp_key_lengths(s: &EspSuite) -> (usize, usize) {
    (s.encr.keymat_len(), s.integ.map_or(0, Integ::key_len))
}

#[cfg(test)]
mod tests;
