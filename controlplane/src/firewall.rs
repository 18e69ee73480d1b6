//! The firewall configuration compiled for the data plane, and its `diagnose` listing.
//!
//! How to drive it:
//! - [`InterfaceMap::from_config`] numbers the ports (`system interface`, in configuration
//!   order) and then the tunnels (`vpn ipsec phase1-interface`: a tunnel's interface name is its
//!   phase-1 name; every dial-up instance of it shares the index). The worker must number
//!   interfaces the same way — build the map once and hand it to both.
//! - [`GroupMap::from_config`] numbers user groups (`user group`, in order, at most 64); an
//!   authenticated tunnel carries the [`GroupMask`] of its user's groups.
//! - [`compile`] turns `firewall address`/`addrgrp`/`service custom`/`policy` and the
//!   predefined services into a
//!   [`PolicySet`] (counters carried over from `previous`), or lists every reason it cannot.
//!   Disabled policies and policies on schedule `none` are left out; `srcaddr`/`dstaddr` groups
//!   are expanded through nested `addrgrp`s (such as a split-include group).
//! - [`tunnel_tag`] gives the tag an inbound SA carries (tunnel interface, user's groups), so
//!   workers match `srcintf` and `set groups` for tunnels without `authusrgrp`.
//! - [`policy_list`] prints `diagnose firewall policy list`: each policy with its counters,
//!   then the implicit deny.

use std::fmt::Write as _;

use dialgate_dataplane::policy::{
    predefined_service, Action, AddrSet, GroupMask, IfIndex, IfMatch, PolicyError, PolicySet, PolicySpec, PortRange,
    ServiceEntry,
};

use dialgate_dataplane::sa::table::TunnelTag;

use crate::config::{Config, PolicyAction, ServiceCustom, ServiceProtocol};

/// Interface names (ports, then tunnels) and their data-plane indexes.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct InterfaceMap {
    names: Vec<String>,
}

impl InterfaceMap {
    /// Ports in configuration order, then tunnels (phase-1 names) in configuration order.
    pub fn from_config(cfg: &Config) -> InterfaceMap {
        let names = cfg.interfaces.iter().map(|i| i.name.clone()).chain(cfg.phase1.iter().map(|p| p.name.clone()));
        InterfaceMap { names: names.collect() }
    }

    /// A map from an explicit list of names (index = position).
    pub fn from_names(names: impl IntoIterator<Item = String>) -> InterfaceMap {
        InterfaceMap { names: names.into_iter().collect() }
    }

    /// The index of an interface or tunnel.
    pub fn index(&self, name: &str) -> Option<IfIndex> {
        self.names.iter().position(|n| n == name).and_then(|i| IfIndex::try_from(i).ok())
    }

    /// The name of an index.
    pub fn name(&self, index: IfIndex) -> Option<&str> {
        self.names.get(usize::from(index)).map(String::as_str)
    }

    /// Number of interfaces.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// User group names and their bit in a [`GroupMask`].
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct GroupMap {
    names: Vec<String>,
}

impl GroupMap {
    /// Groups in configuration order.
    pub fn from_config(cfg: &Config) -> GroupMap {
        GroupMap { names: cfg.groups.iter().map(|g| g.name.clone()).collect() }
    }

    /// The bit of one group, if it has one (the first 64 groups do).
    pub fn mask(&self, name: &str) -> Option<GroupMask> {
        self.names.iter().position(|n| n == name).filter(|&i| i < 64).map(|i| GroupMask(1 << i))
    }

    /// The mask of every group in `names` that has a bit (for an authenticated user's groups).
    pub fn mask_of<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> GroupMask {
        GroupMask(names.into_iter().filter_map(|n| self.mask(n)).fold(0, |m, g| m | g.0))
    }

    /// The groups `user` is a member of, as a mask.
    pub fn of_user(&self, cfg: &Config, user: &str) -> GroupMask {
        self.mask_of(cfg.groups.iter().filter(|g| g.member.iter().any(|m| m == user)).map(|g| g.name.as_str()))
    }
}

/// The data plane's firewall tag for an inbound SA of phase-1 `tunnel` whose user
/// authenticated as `user` (`None` without user authentication): the tunnel's interface index
/// and the user's groups, set on the SA at install (`InboundEntry::with_tunnel`). With
/// `set authusrgrp` the responder has already refused non-members; without it, these groups
/// are what policies naming `set groups` match. `conn_id` should be stable for the client
/// (its virtual address's pool offset) so NAT entries survive a CHILD_SA rekey.
pub fn tunnel_tag(
    cfg: &Config,
    ifs: &InterfaceMap,
    groups: &GroupMap,
    tunnel: &str,
    user: Option<&str>,
    conn_id: Option<u32>,
) -> TunnelTag {
    TunnelTag {
        if_index: ifs.index(tunnel).unwrap_or(IfIndex::MAX),
        groups: user.map_or(GroupMask::NONE, |u| groups.of_user(cfg, u)),
        conn_id,
    }
}

/// Why a policy does not compile.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FirewallError {
    /// `srcintf`/`dstintf` names no port or tunnel.
    #[error("firewall policy {policy}: `{key}` names unknown interface or tunnel {name:?}")]
    UnknownInterface {
        /// Policy id.
        policy: u32,
        /// `srcintf` or `dstintf`.
        key: &'static str,
        /// The name.
        name: String,
    },
    /// `srcaddr`/`dstaddr` names no address or group.
    #[error("firewall policy {policy}: `{key}` names unknown address {name:?}")]
    UnknownAddress {
        /// Policy id.
        policy: u32,
        /// `srcaddr` or `dstaddr`.
        key: &'static str,
        /// The name.
        name: String,
    },
    /// `service` names no service dialgate knows.
    #[error("firewall policy {policy}: unknown service {name:?} (neither predefined nor a `firewall service custom`)")]
    UnknownService {
        /// Policy id.
        policy: u32,
        /// The name.
        name: String,
    },
    /// `groups` names an unknown group, or one past the 64th.
    #[error("firewall policy {policy}: user group {name:?} is unknown or beyond the first 64 groups")]
    UnknownGroup {
        /// Policy id.
        policy: u32,
        /// The name.
        name: String,
    },
    /// The schedule is neither `always` nor `none`.
    #[error("firewall policy {policy}: schedule {name:?} is not supported (use \"always\")")]
    Schedule {
        /// Policy id.
        policy: u32,
        /// The name.
        name: String,
    },
    /// The compiled set is refused by the data plane.
    #[error("firewall policy set: {0}")]
    Set(#[from] PolicyError),
}

fn interfaces(
    policy: u32,
    key: &'static str,
    names: &[String],
    ifs: &InterfaceMap,
    errs: &mut Vec<FirewallError>,
) -> IfMatch {
    if names.iter().any(|n| n == "any") {
        return IfMatch::Any;
    }
    let mut out = Vec::new();
    for n in names {
        match ifs.index(n) {
            Some(i) => out.push(i),
            None => errs.push(FirewallError::UnknownInterface { policy, key, name: n.clone() }),
        }
    }
    IfMatch::List(out)
}

fn addresses(cfg: &Config, policy: u32, key: &'static str, names: &[String], errs: &mut Vec<FirewallError>) -> AddrSet {
    let mut ranges = Vec::new();
    for n in names {
        match cfg.resolve_address(n) {
            Some(r) => ranges.extend(r),
            None => errs.push(FirewallError::UnknownAddress { policy, key, name: n.clone() }),
        }
    }
    AddrSet::from_ranges(ranges)
}

/// What a `firewall service custom` entry matches. SCTP ranges and the ICMP code are not
/// matched by the data plane (it sees TCP, UDP, ICMP type and protocol numbers).
pub fn custom_service(c: &ServiceCustom) -> Vec<ServiceEntry> {
    let range = |(lo, hi): (u16, u16)| PortRange::new(lo, hi);
    match c.protocol {
        ServiceProtocol::TcpUdpSctp => c
            .tcp_portrange
            .iter()
            .map(|p| ServiceEntry::Tcp { dst: range(p.dst), src: range(p.src) })
            .chain(c.udp_portrange.iter().map(|p| ServiceEntry::Udp { dst: range(p.dst), src: range(p.src) }))
            .collect(),
        ServiceProtocol::Icmp => {
            vec![ServiceEntry::Icmp { icmp_type: c.icmptype.and_then(|t| u8::try_from(t).ok()) }]
        }
        ServiceProtocol::Ip => match u8::try_from(c.protocol_number) {
            Ok(0) | Err(_) => vec![ServiceEntry::Any],
            Ok(n) => vec![ServiceEntry::Proto(n)],
        },
    }
}

/// The policy specs of `cfg` in evaluation order (disabled and `schedule none` policies left
/// out), or every problem found.
pub fn specs(cfg: &Config, ifs: &InterfaceMap, groups: &GroupMap) -> Result<Vec<PolicySpec>, Vec<FirewallError>> {
    let mut errs = Vec::new();
    let mut out = Vec::new();
    for p in &cfg.policies {
        let id = p.id;
        match p.schedule.as_str() {
            "always" | "" => {}
            "none" => continue,
            s => errs.push(FirewallError::Schedule { policy: id, name: s.to_string() }),
        }
        if !p.status.0 {
            continue;
        }
        let src_if = interfaces(id, "srcintf", &p.srcintf, ifs, &mut errs);
        let dst_if = interfaces(id, "dstintf", &p.dstintf, ifs, &mut errs);
        let src = addresses(cfg, id, "srcaddr", &p.srcaddr, &mut errs);
        let dst = addresses(cfg, id, "dstaddr", &p.dstaddr, &mut errs);
        let mut services = Vec::new();
        for s in &p.service {
            // A custom entry of a predefined name replaces it, as in FortiOS (the predefined
            // services are themselves `firewall service custom` entries there).
            if let Some(c) = cfg.services.iter().find(|c| &c.name == s) {
                services.extend(custom_service(c));
                continue;
            }
            match predefined_service(s) {
                Some(e) => services.extend_from_slice(e),
                None => errs.push(FirewallError::UnknownService { policy: id, name: s.clone() }),
            }
        }
        if p.service.is_empty() && p.action == PolicyAction::Deny {
            // FortiOS lets a deny policy leave `service` unset: it then denies every service.
            services.extend_from_slice(predefined_service("ALL").unwrap_or_default());
        }
        let mut mask = GroupMask::NONE;
        for g in &p.groups {
            match groups.mask(g) {
                Some(m) => mask.0 |= m.0,
                None => errs.push(FirewallError::UnknownGroup { policy: id, name: g.clone() }),
            }
        }
        let action = match p.action {
            PolicyAction::Accept => Action::Accept,
            PolicyAction::Deny => Action::Deny,
        };
        out.push(PolicySpec { id, src_if, dst_if, src, dst, services, action, nat: p.nat.0, groups: mask });
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(errs)
    }
}

/// Compiles the firewall of `cfg` for the data plane; counters of policies kept from
/// `previous` continue.
pub fn compile(
    cfg: &Config,
    ifs: &InterfaceMap,
    groups: &GroupMap,
    previous: Option<&PolicySet>,
) -> Result<PolicySet, Vec<FirewallError>> {
    let specs = specs(cfg, ifs, groups)?;
    PolicySet::compile(&specs, ifs.len(), previous).map_err(|e| vec![FirewallError::Set(e)])
}

fn list(v: &[String]) -> String {
    v.iter().map(|s| crate::config::quote(s)).collect::<Vec<_>>().join(" ")
}

/// `diagnose firewall policy list`: every compiled policy in evaluation order with its
/// configuration and counters, then the implicit deny (policy 0).
pub fn policy_list(cfg: &Config, set: &PolicySet) -> String {
    let mut out = String::new();
    for info in set.policies() {
        let c = info.counters;
        let action = match info.action {
            Action::Accept => "accept",
            Action::Deny => "deny",
        };
        if info.id == 0 {
            let _ = writeln!(out, "policy 0 name=\"implicit deny\" action=deny");
        } else {
            let p = cfg.policies.iter().find(|p| p.id == info.id);
            let name = p.map_or(String::new(), |p| p.name.clone());
            let _ = writeln!(
                out,
                "policy {} name={} action={action} nat={}",
                info.id,
                crate::config::quote(&name),
                if info.nat { "enable" } else { "disable" }
            );
            if let Some(p) = p {
                let _ = writeln!(out, "\tsrcintf={} dstintf={}", list(&p.srcintf), list(&p.dstintf));
                let _ = writeln!(out, "\tsrcaddr={} dstaddr={}", list(&p.srcaddr), list(&p.dstaddr));
                let _ = write!(out, "\tservice={}", list(&p.service));
                if !p.groups.is_empty() {
                    let _ = write!(out, " groups={}", list(&p.groups));
                }
                out.push('\n');
            }
        }
        let _ = writeln!(out, "\thit_count={} packets={} bytes={}", c.hits, c.packets, c.bytes);
    }
    out
}
