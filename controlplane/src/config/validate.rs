//! Whole-configuration checks: references between objects and settings that cannot go together.
//!
//! Run after every statement has loaded. Each problem names the entry and key at fault (with its
//! position when the configuration came from text) and, for a dangling reference, the nearest
//! existing names. FortiOS built-ins are known: address `all`, schedules `always`/`none`, the
//! predefined services, and the policy interface `any`.

use std::collections::{HashMap, HashSet};

use super::build::{suggest, SourceMap};
use super::objects::{
    AddrGrp, Address, AddressType, AssignIpFrom, AuthMethod, CertLocal, Fctems, FortiToken, IdKind, Interface,
    LocalUser, Object, Phase1, Phase1Type, Phase2, Policy, PolicyAction, RemoteGwMatch, ServiceCustom, ServiceProtocol,
    StaticRoute, TokenStatus, TwoFactor, UserGroup,
};
use super::{Config, Pos};

/// Address names every configuration has.
pub const BUILTIN_ADDRESSES: &[&str] = &["all", "none"];
/// Schedule names every configuration has.
pub const BUILTIN_SCHEDULES: &[&str] = &["always", "none"];
/// Predefined service names.
pub const BUILTIN_SERVICES: &[&str] = &[
    "ALL", "ALL_TCP", "ALL_UDP", "ALL_ICMP", "PING", "HTTP", "HTTPS", "SSH", "DNS", "NTP", "SNMP", "SMTP", "IMAP",
    "POP3", "RDP", "SAMBA", "TELNET", "FTP",
];

struct V<'a> {
    src: Option<&'a SourceMap>,
    out: Vec<(Option<Pos>, String)>,
}

impl V<'_> {
    fn err(&mut self, table: &'static str, entry: &str, key: &str, msg: String) {
        let pos = self.src.and_then(|s| s.get(table, entry, key));
        self.out.push((pos, msg));
    }
}

/// Reports `name` if it is not in `known`.
fn reference(v: &mut V<'_>, table: &'static str, entry: &str, key: &str, name: &str, what: &str, known: &[&str]) {
    if !known.contains(&name) {
        let hint = suggest(name, known.iter().copied());
        v.err(table, entry, key, format!("{table} {entry:?}: `{key}` refers to unknown {what} {name:?}{hint}"));
    }
}

fn entry_label<T: Object>(e: &T) -> String {
    match T::ID {
        IdKind::Numeric => format!("{} {}", T::TABLE, e.key()),
        _ => format!("{} {:?}", T::TABLE, e.key()),
    }
}

/// Runs every check; positions come from `src` when given.
pub(crate) fn validate(cfg: &Config, src: Option<&SourceMap>) -> Vec<(Option<Pos>, String)> {
    let mut v = V { src, out: Vec::new() };
    duplicates(cfg, &mut v);
    let addr_names: Vec<&str> = cfg
        .addresses
        .iter()
        .map(|a| a.name.as_str())
        .chain(cfg.addrgrps.iter().map(|g| g.name.as_str()))
        .chain(BUILTIN_ADDRESSES.iter().copied())
        .collect();
    let intf_names: Vec<&str> = cfg.interfaces.iter().map(|i| i.name.as_str()).collect();
    let tunnel_names: Vec<&str> = cfg.phase1.iter().map(|p| p.name.as_str()).collect();
    let group_names: Vec<&str> = cfg.groups.iter().map(|g| g.name.as_str()).collect();
    let user_names: Vec<&str> = cfg.users.iter().map(|u| u.name.as_str()).collect();
    let token_names: Vec<&str> = cfg.fortitokens.iter().map(|t| t.serial.as_str()).collect();

    for i in &cfg.interfaces {
        if !i.parent.is_empty() {
            reference(&mut v, Interface::TABLE, &i.name, "interface", &i.parent, "interface", &intf_names);
        }
    }
    let mut devices: HashMap<&str, &str> = HashMap::new();
    for i in &cfg.interfaces {
        if let Some(d) = &i.dpdk_device {
            if let Some(other) = devices.insert(d.as_str(), &i.name) {
                v.err(
                    Interface::TABLE,
                    &i.name,
                    "dpdk-device",
                    format!(
                        "system interface {:?}: DPDK device {:?} is already bound to interface {other:?}",
                        i.name,
                        d.as_str()
                    ),
                );
            }
        }
    }
    for r in &cfg.static_routes {
        if !r.device.is_empty() {
            let known: Vec<&str> = intf_names.iter().chain(&tunnel_names).copied().collect();
            reference(&mut v, StaticRoute::TABLE, &r.key(), "device", &r.device, "interface", &known);
        }
    }
    for a in &cfg.addresses {
        if a.kind == AddressType::Iprange && u32::from(a.start_ip) > u32::from(a.end_ip) {
            v.err(
                Address::TABLE,
                &a.name,
                "end-ip",
                format!("firewall address {:?}: end-ip {} is below start-ip {}", a.name, a.end_ip, a.start_ip),
            );
        }
    }
    for g in &cfg.addrgrps {
        if g.member.is_empty() {
            v.err(AddrGrp::TABLE, &g.name, "member", format!("firewall addrgrp {:?} has no members", g.name));
        }
        for m in &g.member {
            reference(&mut v, AddrGrp::TABLE, &g.name, "member", m, "address", &addr_names);
        }
    }
    addrgrp_cycles(cfg, &mut v);

    // Tokens and users.
    let mut token_owner: HashMap<&str, &str> = HashMap::new();
    for u in &cfg.users {
        if u.passwd.is_none() {
            v.err(LocalUser::TABLE, &u.name, "passwd", format!("user local {:?} has no passwd", u.name));
        }
        match u.two_factor {
            TwoFactor::Fortitoken if u.fortitoken.is_empty() => v.err(
                LocalUser::TABLE,
                &u.name,
                "two-factor",
                format!("user local {:?}: `two-factor fortitoken` needs `set fortitoken SERIAL`", u.name),
            ),
            TwoFactor::Fortitoken => {
                reference(
                    &mut v,
                    LocalUser::TABLE,
                    &u.name,
                    "fortitoken",
                    &u.fortitoken,
                    "user fortitoken",
                    &token_names,
                );
                if let Some(other) = token_owner.insert(&u.fortitoken, &u.name) {
                    v.err(
                        LocalUser::TABLE,
                        &u.name,
                        "fortitoken",
                        format!(
                            "user local {:?}: token {:?} is already assigned to user {other:?}",
                            u.name, u.fortitoken
                        ),
                    );
                }
            }
            TwoFactor::Disable => {}
        }
    }
    for t in &cfg.fortitokens {
        if t.status == TokenStatus::Active && t.seed.is_none() {
            v.err(
                FortiToken::TABLE,
                &t.serial,
                "status",
                format!("user fortitoken {:?} is active but has no seed", t.serial),
            );
        }
    }
    for g in &cfg.groups {
        for m in &g.member {
            reference(&mut v, UserGroup::TABLE, &g.name, "member", m, "user", &user_names);
        }
    }

    certificates(cfg, &mut v);
    let ems_names: Vec<&str> = cfg.fctems.iter().map(|e| e.name.as_str()).collect();
    for e in &cfg.fctems {
        if e.status.0 && e.server.is_empty() {
            v.err(Fctems::TABLE, &e.name, "server", format!("endpoint-control fctems {:?} needs a server", e.name));
        }
    }
    for p in &cfg.phase1 {
        phase1(p, &mut v, &intf_names, &group_names, &addr_names, &ems_names);
    }
    for p in &cfg.phase2 {
        reference(&mut v, Phase2::TABLE, &p.name, "phase1name", &p.phase1name, "phase1-interface", &tunnel_names);
        if p.phase1name.is_empty() {
            v.err(
                Phase2::TABLE,
                &p.name,
                "phase1name",
                format!("vpn ipsec phase2-interface {:?} needs a phase1name", p.name),
            );
        }
        if p.proposal.is_empty() {
            v.err(
                Phase2::TABLE,
                &p.name,
                "proposal",
                format!("vpn ipsec phase2-interface {:?} has no proposal", p.name),
            );
        }
    }

    let service_names: Vec<&str> =
        cfg.services.iter().map(|s| s.name.as_str()).chain(BUILTIN_SERVICES.iter().copied()).collect();
    for svc in &cfg.services {
        let no_ports = svc.tcp_portrange.is_empty() && svc.udp_portrange.is_empty() && svc.sctp_portrange.is_empty();
        if svc.protocol == ServiceProtocol::TcpUdpSctp && no_ports {
            v.err(
                ServiceCustom::TABLE,
                &svc.name,
                "protocol",
                format!(
                    "firewall service custom {:?}: protocol TCP/UDP/SCTP needs `tcp-portrange` or `udp-portrange`",
                    svc.name
                ),
            );
        }
        if svc.protocol != ServiceProtocol::TcpUdpSctp && !no_ports {
            v.err(
                ServiceCustom::TABLE,
                &svc.name,
                if svc.tcp_portrange.is_empty() { "udp-portrange" } else { "tcp-portrange" },
                format!(
                    "firewall service custom {:?}: port ranges need `protocol TCP/UDP/SCTP` (it is {})",
                    svc.name, svc.protocol
                ),
            );
        }
    }
    let policy_intf: Vec<&str> = intf_names.iter().chain(&tunnel_names).copied().chain(["any"]).collect();
    for pol in &cfg.policies {
        let id = pol.key();
        for (key, list) in [("srcintf", &pol.srcintf), ("dstintf", &pol.dstintf)] {
            if list.is_empty() {
                v.err(Policy::TABLE, &id, key, format!("firewall policy {id}: `{key}` is required"));
            }
            for n in list {
                reference(&mut v, Policy::TABLE, &id, key, n, "interface or tunnel", &policy_intf);
            }
        }
        for (key, list) in [("srcaddr", &pol.srcaddr), ("dstaddr", &pol.dstaddr)] {
            if list.is_empty() {
                v.err(Policy::TABLE, &id, key, format!("firewall policy {id}: `{key}` is required"));
            }
            for n in list {
                reference(&mut v, Policy::TABLE, &id, key, n, "address", &addr_names);
            }
        }
        if pol.schedule.is_empty() {
            v.err(
                Policy::TABLE,
                &id,
                "schedule",
                format!("firewall policy {id}: `schedule` is required (e.g. \"always\")"),
            );
        } else {
            reference(&mut v, Policy::TABLE, &id, "schedule", &pol.schedule, "schedule", BUILTIN_SCHEDULES);
        }
        if pol.service.is_empty() && pol.action == PolicyAction::Accept {
            v.err(Policy::TABLE, &id, "service", format!("firewall policy {id}: `service` is required (e.g. \"ALL\")"));
        }
        for s in &pol.service {
            reference(&mut v, Policy::TABLE, &id, "service", s, "service", &service_names);
        }
        for g in &pol.groups {
            reference(&mut v, Policy::TABLE, &id, "groups", g, "user group", &group_names);
        }
        if !pol.groups.is_empty() {
            // Seed: "If the user group is referenced in the firewall policy, 'set authusrgrp'
            // should not be configured in phase1-interface settings to avoid conflicts."
            for p in cfg.phase1.iter().filter(|p| !p.authusrgrp.is_empty() && pol.srcintf.contains(&p.name)) {
                v.err(
                    Policy::TABLE,
                    &id,
                    "groups",
                    format!(
                        "firewall policy {id} sets `groups` for tunnel {:?}, whose phase1-interface also sets \
                     `authusrgrp {:?}`: name the user group in one place only",
                        p.name, p.authusrgrp
                    ),
                );
            }
        }
    }
    v.out
}

fn phase1(p: &Phase1, v: &mut V<'_>, intf: &[&str], groups: &[&str], addrs: &[&str], ems: &[&str]) {
    let t = Phase1::TABLE;
    let n = p.name.as_str();
    let label = entry_label(p);
    if p.interface.is_empty() {
        v.err(t, n, "interface", format!("{label}: `interface` is required"));
    } else {
        reference(v, t, n, "interface", &p.interface, "interface", intf);
    }
    if p.ike_version == 1 {
        v.err(t, n, "ike-version", format!("{label}: dialgate implements IKEv2 only; `set ike-version 2`"));
    }
    if p.kind == Phase1Type::Static && p.remote_gw.is_unspecified() {
        v.err(t, n, "type", format!("{label}: `type static` needs `remote-gw`; dial-up gateways use `type dynamic`"));
    }
    if p.proposal.is_empty() {
        v.err(t, n, "proposal", format!("{label}: no proposal"));
    }
    match p.authmethod {
        AuthMethod::Psk if p.psksecret.is_none() => {
            v.err(t, n, "authmethod", format!("{label}: `authmethod psk` needs `psksecret`"))
        }
        AuthMethod::Signature if p.certificate.is_empty() => {
            v.err(t, n, "authmethod", format!("{label}: `authmethod signature` needs `certificate`"))
        }
        _ => {}
    }
    if p.eap.0 && p.ike_version != 2 {
        v.err(t, n, "eap", format!("{label}: `eap enable` needs `ike-version 2`"));
    }
    if !p.authusrgrp.is_empty() {
        reference(v, t, n, "authusrgrp", &p.authusrgrp, "user group", groups);
    }
    if !p.ipv4_split_include.is_empty() {
        reference(v, t, n, "ipv4-split-include", &p.ipv4_split_include, "address", addrs);
    }
    if p.mode_cfg.0 && p.assign_ip.0 {
        match p.assign_ip_from {
            AssignIpFrom::Range => {
                let (s, e) = (p.ipv4_start_ip, p.ipv4_end_ip);
                if s.is_unspecified() || e.is_unspecified() {
                    v.err(
                        t,
                        n,
                        "ipv4-start-ip",
                        format!(
                        "{label}: `mode-cfg enable` with `assign-ip-from range` needs ipv4-start-ip and ipv4-end-ip"
                    ),
                    );
                } else if u32::from(s) > u32::from(e) {
                    v.err(t, n, "ipv4-end-ip", format!("{label}: ipv4-end-ip {e} is below ipv4-start-ip {s}"));
                }
            }
            AssignIpFrom::Name if p.ipv4_name.is_empty() => {
                v.err(t, n, "assign-ip-from", format!("{label}: `assign-ip-from name` needs `ipv4-name`"));
            }
            AssignIpFrom::Name => reference(v, t, n, "ipv4-name", &p.ipv4_name, "address", addrs),
            AssignIpFrom::Usrgrp | AssignIpFrom::Dhcp => v.err(
                t,
                n,
                "assign-ip-from",
                format!("{label}: dialgate assigns addresses from a range or an address object only (range, name)"),
            ),
        }
    }
    // Seed 002: "When set remote-gw-match ztna is enabled, remote-gw-ztna-tags can be configured."
    if !p.remote_gw_ztna_tags.is_empty() && p.remote_gw_match != RemoteGwMatch::Ztna {
        v.err(
            t,
            n,
            "remote-gw-ztna-tags",
            format!("{label}: `remote-gw-ztna-tags` needs `set remote-gw-match ztna` (it is `{}`)", p.remote_gw_match),
        );
    }
    match p.remote_gw_match {
        RemoteGwMatch::Ztna => {
            if p.ike_version != 2 {
                v.err(t, n, "remote-gw-match", format!("{label}: `remote-gw-match ztna` requires `ike-version 2`"));
            }
            if p.remote_gw_ztna_tags.is_empty() {
                v.err(t, n, "remote-gw-match", format!("{label}: `remote-gw-match ztna` needs `remote-gw-ztna-tags`"));
            }
            for tag in &p.remote_gw_ztna_tags {
                match tag.split_once("_ZTNA_") {
                    Some((conn, rest)) if !rest.is_empty() => {
                        if !ems.contains(&conn) {
                            let hint = suggest(conn, ems.iter().copied());
                            v.err(
                                t,
                                n,
                                "remote-gw-ztna-tags",
                                format!(
                                    "{label}: tag {tag:?} belongs to posture server {conn:?}, which is not \
                                 configured in `config endpoint-control fctems`{hint}"
                                ),
                            );
                        }
                    }
                    _ => v.err(
                        t,
                        n,
                        "remote-gw-ztna-tags",
                        format!("{label}: tag {tag:?} is not a posture tag (expected EMSNAME_ZTNA_TAG)"),
                    ),
                }
            }
        }
        RemoteGwMatch::Ipmask if p.remote_gw_subnet.prefix_len == 0 => {
            v.err(t, n, "remote-gw-match", format!("{label}: `remote-gw-match ipmask` needs `remote-gw-subnet`"));
        }
        RemoteGwMatch::Iprange
            if u32::from(p.remote_gw_start_ip) > u32::from(p.remote_gw_end_ip)
                || p.remote_gw_start_ip.is_unspecified() =>
        {
            v.err(
                t,
                n,
                "remote-gw-match",
                format!("{label}: `remote-gw-match iprange` needs remote-gw-start-ip <= remote-gw-end-ip"),
            );
        }
        RemoteGwMatch::Geography if p.remote_gw_country.len() != 2 => {
            v.err(
                t,
                n,
                "remote-gw-match",
                format!("{label}: `remote-gw-match geography` needs a two-letter `remote-gw-country`"),
            );
        }
        _ => {}
    }
    if p.ems_sn_check.0 && ems.is_empty() {
        v.err(
            t,
            n,
            "ems-sn-check",
            format!("{label}: `ems-sn-check enable` needs a `config endpoint-control fctems` entry"),
        );
    }
}

fn duplicates(cfg: &Config, v: &mut V<'_>) {
    // Interfaces and tunnels share one namespace (a tunnel is an interface).
    let intf: HashSet<&str> = cfg.interfaces.iter().map(|i| i.name.as_str()).collect();
    for p in &cfg.phase1 {
        if intf.contains(p.name.as_str()) {
            v.err(
                Phase1::TABLE,
                &p.name,
                "",
                format!("vpn ipsec phase1-interface {:?}: an interface of that name already exists", p.name),
            );
        }
    }
    let addrs: HashSet<&str> = cfg.addresses.iter().map(|a| a.name.as_str()).collect();
    for g in &cfg.addrgrps {
        if addrs.contains(g.name.as_str()) {
            v.err(
                AddrGrp::TABLE,
                &g.name,
                "",
                format!("firewall addrgrp {:?}: an address of that name already exists", g.name),
            );
        }
    }
}

fn addrgrp_cycles(cfg: &Config, v: &mut V<'_>) {
    let groups: HashMap<&str, &AddrGrp> = cfg.addrgrps.iter().map(|g| (g.name.as_str(), g)).collect();
    for g in &cfg.addrgrps {
        // Depth-first walk from g; reaching g again is a cycle.
        let mut stack: Vec<&str> = g.member.iter().map(String::as_str).collect();
        let mut seen: HashSet<&str> = HashSet::new();
        while let Some(m) = stack.pop() {
            if m == g.name {
                v.err(AddrGrp::TABLE, &g.name, "member", format!("firewall addrgrp {:?} contains itself", g.name));
                break;
            }
            if seen.insert(m) {
                if let Some(sub) = groups.get(m) {
                    stack.extend(sub.member.iter().map(String::as_str));
                }
            }
        }
    }
}

/// `vpn certificate local` entries: both files given, readable, and a usable certificate and
/// key; phase1 `certificate` names exist.
fn certificates(cfg: &Config, v: &mut V<'_>) {
    let t = CertLocal::TABLE;
    for c in &cfg.cert_locals {
        let n = c.name.as_str();
        let mut read = |key: &str, path: &str| -> Option<Vec<u8>> {
            if path.is_empty() {
                v.err(t, n, "", format!("{t} {n:?}: `{key}` is needed"));
                return None;
            }
            std::fs::read(path).map_err(|e| v.err(t, n, key, format!("{t} {n:?}: `{key}` {path:?}: {e}"))).ok()
        };
        let cert = read("dialgate-cert-file", &c.cert_file);
        let key = read("dialgate-key-file", &c.key_file).map(zeroize::Zeroizing::new);
        if let (Some(cert), Some(key)) = (cert, key) {
            if let Err(e) = dialgate_ike::responder::GatewayCert::from_pem(&cert, &key) {
                v.err(t, n, "dialgate-key-file", format!("{t} {n:?}: {e}"));
            }
        }
    }
    let names: Vec<&str> = cfg.cert_locals.iter().map(|c| c.name.as_str()).collect();
    for p in &cfg.phase1 {
        for c in &p.certificate {
            reference(v, Phase1::TABLE, &p.name, "certificate", c, "vpn certificate local", &names);
        }
    }
}
