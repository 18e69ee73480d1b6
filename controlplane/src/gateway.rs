//! Glue between the FortiOS-style configuration and the sans-IO IKE responder.
//!
//! How to drive it: [`Gateway::from_config`] picks a dial-up phase1 (the first with `type
//! dynamic`, or the named one) and its phase2 entries and builds everything
//! [`dialgate_ike::responder::Responder::new`] needs: the responder [`IkeConfig`] (proposals and
//! groups, PSK, EAP identity request, negotiate timeout, DNS, split include), a [`UserVerifier`]
//! over [`UserDb`] that also enforces the phase1 `authusrgrp`, and a [`RangePool`] over the
//! phase1 address pool. Nothing here does I/O; the driver owns sockets and the clock.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use dialgate_ike::crypto::dh::DhGroup;
use dialgate_ike::message::{DhId, IdType, Identification};
use dialgate_ike::proposal::{EspOffer, IkeOffer};
use dialgate_ike::responder::{AuthReject, Config as IkeConfig, Dpd, GatewayCert, MsChapOk, UserVerifier};
use zeroize::Zeroizing;

use crate::auth::UserDb;
use crate::config::objects::{AssignIpFrom, AuthMethod, DnsMode, DpdMode, EapIdentity, Phase1Type};
use crate::config::{Config, Phase1};
use crate::pool::RangePool;

/// Why a configuration cannot drive a gateway.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GatewayError {
    /// No phase1 with that name, or no dial-up phase1 at all.
    #[error("no dial-up phase1-interface {0}")]
    NoTunnel(String),
    /// The phase1 is not IKEv2.
    #[error("phase1-interface {0:?}: only ike-version 2 is supported")]
    NotIkev2(String),
    /// `authmethod psk` without `psksecret`.
    #[error("phase1-interface {0:?}: set psksecret (or `authmethod signature` with `certificate`)")]
    NoPsk(String),
    /// `authmethod signature`: the certificate cannot be loaded.
    #[error("phase1-interface {0:?}: {1}")]
    Certificate(String, String),
    /// The phase1 has no phase2.
    #[error("phase1-interface {0:?}: no phase2-interface refers to it")]
    NoPhase2(String),
    /// A proposal or group the IKE core does not implement.
    #[error("{0}: {1}")]
    Proposal(String, String),
    /// The address pool cannot be resolved.
    #[error("phase1-interface {0:?}: {1}")]
    Pool(String, String),
}

/// Everything the responder of one dial-up phase1 needs.
#[derive(Debug)]
pub struct Gateway {
    /// The phase1 name (the tunnel name in logs).
    pub name: String,
    /// Responder configuration.
    pub ike: Arc<IkeConfig>,
    /// User checks.
    pub verifier: DbVerifier,
    /// Address pool.
    pub pool: RangePool,
    /// The address of the phase1 `interface`, if configured.
    pub interface_ip: Option<Ipv4Addr>,
    /// Dead-peer detection (`dpd`, `dpd-retryinterval`, `dpd-retrycount`); `None` when disabled.
    pub dpd: Option<Dpd>,
}

/// Groups the IKE core implements, in configuration order; unknown ones are skipped (FortiOS's
/// default `dhgrp 14 5` names group 5, which is not implemented).
fn supported_groups(groups: &[u16]) -> Vec<u16> {
    groups.iter().copied().filter(|g| DhGroup::from_id(DhId(*g), false).is_some()).collect()
}

/// The CIDR blocks covering the inclusive range `[start, end]`.
pub fn range_to_prefixes(start: Ipv4Addr, end: Ipv4Addr) -> Vec<(Ipv4Addr, u8)> {
    let (mut s, e) = (u64::from(u32::from(start)), u64::from(u32::from(end)));
    let mut out = Vec::new();
    while s <= e {
        // Largest block aligned at `s` that does not pass `e`.
        let mut size: u64 = if s == 0 { 1 << 32 } else { 1 << s.trailing_zeros().min(32) };
        while s + size - 1 > e {
            size >>= 1;
        }
        let prefix = 32 - size.trailing_zeros() as u8;
        out.push((Ipv4Addr::from(s as u32), prefix));
        s += size;
    }
    out
}

impl Gateway {
    /// Builds the gateway of phase1 `tunnel`, or of the first `type dynamic` phase1.
    pub fn from_config(cfg: &Config, tunnel: Option<&str>) -> Result<Self, GatewayError> {
        let p1: &Phase1 = match tunnel {
            Some(n) => cfg.phase1(n).ok_or_else(|| GatewayError::NoTunnel(format!("{n:?}")))?,
            None => cfg
                .phase1
                .iter()
                .find(|p| p.kind == Phase1Type::Dynamic)
                .ok_or_else(|| GatewayError::NoTunnel("in the configuration".into()))?,
        };
        let name = p1.name.clone();
        if p1.ike_version != 2 {
            return Err(GatewayError::NotIkev2(name));
        }
        let certificate = match p1.authmethod {
            AuthMethod::Signature => Some(Arc::new(load_certificate(cfg, p1)?)),
            AuthMethod::Psk => None,
        };
        // With a certificate the PSK is optional: it only checks clients that send a PSK AUTH
        // (an empty one refuses them).
        let psk = match (&p1.psksecret, &certificate) {
            (Some(p), _) => Zeroizing::new(p.expose().as_bytes().to_vec()),
            (None, Some(_)) => Zeroizing::new(Vec::new()),
            (None, None) => return Err(GatewayError::NoPsk(name.clone())),
        };
        let p2 = cfg.phase2_of(&p1.name).next().ok_or_else(|| GatewayError::NoPhase2(name.clone()))?;

        let words = |v: Vec<String>| v.join(" ");
        let ike_groups = supported_groups(&p1.dhgrp);
        let ike = IkeOffer::parse(&words(p1.proposal.iter().map(ToString::to_string).collect()), &ike_groups, false)
            .map_err(|e| GatewayError::Proposal(format!("phase1-interface {name:?}"), e.to_string()))?;
        let esp = EspOffer::parse(
            &words(p2.proposal.iter().map(ToString::to_string).collect()),
            &supported_groups(&p2.dhgrp),
            false,
        )
        .map_err(|e| GatewayError::Proposal(format!("phase2-interface {:?}", p2.name), e.to_string()))?;

        let interface_ip = cfg.interface(&p1.interface).map(|i| i.ip.addr).filter(|a| !a.is_unspecified());
        let local_id = match interface_ip {
            Some(a) => Identification { ty: IdType::ID_IPV4_ADDR, data: a.octets().to_vec() },
            None => Identification { ty: IdType::ID_FQDN, data: b"dialgate".to_vec() },
        };
        let dns = match p1.dns_mode {
            DnsMode::Manual => {
                [p1.ipv4_dns_server1, p1.ipv4_dns_server2].into_iter().filter(|a| !a.is_unspecified()).collect()
            }
            // `auto`: the gateway's own DNS; the control plane has no resolver of its own yet.
            DnsMode::Auto => Vec::new(),
        };
        let mut split_include = Vec::new();
        if !p1.ipv4_split_include.is_empty() {
            let ranges = cfg.resolve_address(&p1.ipv4_split_include).ok_or_else(|| {
                GatewayError::Pool(name.clone(), format!("unknown ipv4-split-include {:?}", p1.ipv4_split_include))
            })?;
            for (s, e) in ranges {
                split_include.extend(range_to_prefixes(s, e));
            }
        }
        let pool_ranges: Vec<(Ipv4Addr, Ipv4Addr)> = if !(p1.mode_cfg.0 && p1.assign_ip.0) {
            Vec::new()
        } else {
            match p1.assign_ip_from {
                AssignIpFrom::Range => vec![(p1.ipv4_start_ip, p1.ipv4_end_ip)],
                AssignIpFrom::Name => cfg
                    .resolve_address(&p1.ipv4_name)
                    .ok_or_else(|| GatewayError::Pool(name.clone(), format!("unknown ipv4-name {:?}", p1.ipv4_name)))?,
                other => {
                    return Err(GatewayError::Pool(
                        name.clone(),
                        format!("assign-ip-from {} is not implemented", other.keyword()),
                    ))
                }
            }
        };
        let ike = IkeConfig {
            ike,
            esp,
            local_id,
            psk,
            certificate,
            eap_identity_request: p1.eap_identity == EapIdentity::SendRequest,
            cookie_threshold: 64,
            // strongSwan blocks at 5; a few more leave room for clients behind one NAT address.
            per_address_half_open: 10,
            fragment_len: 1280,
            negotiate_timeout: Duration::from_secs(u64::from(p1.negotiate_timeout)),
            dns,
            split_include,
            server_name: "dialgate".to_string(),
        };
        Ok(Gateway {
            name: name.clone(),
            ike: Arc::new(ike),
            verifier: DbVerifier { db: UserDb::from_config(cfg), group: p1.authusrgrp.clone(), tunnel: name },
            pool: RangePool::new(&pool_ranges),
            interface_ip,
            // on-demand probes only idle peers too: the data plane reports inbound ESP as
            // liveness, so a peer that sends traffic is never probed.
            dpd: (p1.dpd != DpdMode::Disable).then(|| Dpd {
                interval: Duration::from_secs(u64::from(p1.dpd_retryinterval)),
                retries: p1.dpd_retrycount,
            }),
        })
    }
}

/// The first phase1 `certificate` (a `vpn certificate local` entry) with its key, from the PEM
/// files its `dialgate-cert-file` / `dialgate-key-file` name.
fn load_certificate(cfg: &Config, p1: &Phase1) -> Result<GatewayCert, GatewayError> {
    let err = |m: String| GatewayError::Certificate(p1.name.clone(), m);
    let cname = p1.certificate.first().ok_or_else(|| err("`authmethod signature` needs `certificate`".into()))?;
    let c = cfg
        .cert_locals
        .iter()
        .find(|c| &c.name == cname)
        .ok_or_else(|| err(format!("no `vpn certificate local` entry {cname:?}")))?;
    let read = |path: &str| std::fs::read(path).map_err(|e| err(format!("certificate {cname:?}: {path:?}: {e}")));
    let cert = read(&c.cert_file)?;
    let key = Zeroizing::new(read(&c.key_file)?);
    GatewayCert::from_pem(&cert, &key).map_err(|e| err(format!("certificate {cname:?}: {e}")))
}

/// [`UserVerifier`] over the configured users: MSCHAPv2 with password ‖ token code (or the bare
/// password with [`MsChapOk::token_needed`], for a second round with the code alone), then the
/// phase1 `authusrgrp` membership.
#[derive(Debug)]
pub struct DbVerifier {
    /// The user database (failure counters, used codes).
    pub db: UserDb,
    /// `authusrgrp`; empty means any configured user.
    pub group: String,
    tunnel: String,
}

impl UserVerifier for DbVerifier {
    fn verify_mschapv2(
        &mut self,
        user: &str,
        auth_challenge: &[u8; 16],
        peer_challenge: &[u8; 16],
        nt_response: &[u8; 24],
        now_unix: u64,
    ) -> Result<MsChapOk, AuthReject> {
        let ok = self
            .db
            .verify_mschapv2_first_factor(user, auth_challenge, peer_challenge, nt_response, now_unix)
            .map_err(|f| AuthReject { reason: f.reason.to_string() })?;
        if !self.group.is_empty() && !self.db.group_member(&self.group, &ok.user) {
            return Err(AuthReject {
                reason: format!("user is not in group {:?} of tunnel {:?}", self.group, self.tunnel),
            });
        }
        Ok(MsChapOk { authenticator_response: ok.authenticator_response, msk: ok.msk, token_needed: ok.token_needed })
    }

    fn verify_token(&mut self, user: &str, code: &str, now_unix: u64) -> Result<(), AuthReject> {
        self.db.verify_token_code(user, code, now_unix).map_err(|f| AuthReject { reason: f.reason.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn prefixes_of_ranges() {
        assert_eq!(range_to_prefixes(ip("10.50.0.0"), ip("10.50.0.255")), vec![(ip("10.50.0.0"), 24)]);
        assert_eq!(
            range_to_prefixes(ip("10.0.0.1"), ip("10.0.0.6")),
            vec![(ip("10.0.0.1"), 32), (ip("10.0.0.2"), 31), (ip("10.0.0.4"), 31), (ip("10.0.0.6"), 32)]
        );
        assert_eq!(range_to_prefixes(ip("0.0.0.0"), ip("255.255.255.255")), vec![(ip("0.0.0.0"), 0)]);
        assert_eq!(range_to_prefixes(ip("255.255.255.255"), ip("255.255.255.255")), vec![(ip("255.255.255.255"), 32)]);
    }

    const EXAMPLE: &str = include_str!("../../examples/dialgate.conf");

    fn example() -> Config {
        crate::config::load_str(EXAMPLE, "dialgate.conf").unwrap()
    }

    #[test]
    fn example_gateway() {
        let mut g = Gateway::from_config(&example(), None).unwrap();
        assert_eq!(g.name, "Test-Dialup");
        assert_eq!(g.ike.split_include, vec![(ip("10.50.0.0"), 24)]);
        assert_eq!(g.ike.negotiate_timeout, Duration::from_secs(50));
        assert!(g.ike.eap_identity_request);
        assert_eq!(&g.ike.psk[..], b"Pr3-Shared-K3y");
        assert_eq!(g.ike.local_id.data, vec![172, 16, 200, 4]);
        assert_eq!(g.ike.ike.suites.len(), 5);
        assert_eq!(g.ike.esp.suites.len(), 7);
        assert_eq!(g.pool.capacity(), 19);
        use dialgate_ike::responder::AddressPool;
        assert_eq!(g.pool.allocate("Test"), Some(ip("10.40.40.2")));
        assert_eq!(
            Gateway::from_config(&example(), Some("nope")).unwrap_err(),
            GatewayError::NoTunnel("\"nope\"".into())
        );
    }

    fn code_now(cfg: &Config, now: u64) -> String {
        let t = &cfg.fortitokens[0];
        let seed = crate::config::value::base32_decode(t.seed.as_ref().unwrap().expose()).unwrap();
        let c = crate::auth::totp::totp(t.algorithm, &seed, now, u64::from(t.period), t.digits);
        crate::auth::totp::format_code(c, t.digits)
    }

    fn respond(v: &mut DbVerifier, user: &str, password: &str, now: u64) -> Result<MsChapOk, AuthReject> {
        let (ac, pc) = ([7u8; 16], [9u8; 16]);
        let nt = crate::auth::mschapv2::generate_nt_response(&ac, &pc, user, password);
        v.verify_mschapv2(user, &ac, &pc, &nt, now)
    }

    #[test]
    fn verifier_checks_password_code_and_group() {
        let now = 1_700_000_000;
        let cfg = example();
        let code = code_now(&cfg, now);
        let mut g = Gateway::from_config(&cfg, None).unwrap();
        let bad = respond(&mut g.verifier, "Test", "wrong", now).err().unwrap();
        assert!(bad.reason.contains("wrong password"), "{}", bad.reason);
        let ok = respond(&mut g.verifier, "Test", &format!("p@ssw0rd{code}"), now).unwrap();
        assert!(ok.authenticator_response.starts_with("S="));
        let reused = respond(&mut g.verifier, "Test", &format!("p@ssw0rd{code}"), now).err().unwrap();
        assert!(reused.reason.contains("already been used"), "{}", reused.reason);

        // The same user outside the tunnel's group is refused after a correct password.
        let text = EXAMPLE.replace("set authusrgrp \"VPN_Users\"", "set authusrgrp \"Admins\"").replace(
            "config vpn ipsec phase1-interface",
            "config user group\n    edit \"Admins\"\n    next\nend\nconfig vpn ipsec phase1-interface",
        );
        let cfg2 = crate::config::load_str(&text, "x.conf").unwrap();
        let mut g2 = Gateway::from_config(&cfg2, None).unwrap();
        let r = respond(&mut g2.verifier, "Test", &format!("p@ssw0rd{code}"), now).err().unwrap();
        assert!(r.reason.contains("not in group"), "{}", r.reason);
    }
}
