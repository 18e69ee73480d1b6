//! `firewall address`/`addrgrp`/`policy` compiled into the data plane's policy set.

use std::net::Ipv4Addr;

use dialgate_controlplane::config::{load_str, parse_str};
use dialgate_controlplane::firewall::{compile, policy_list, FirewallError, GroupMap, InterfaceMap};
use dialgate_dataplane::policy::{Action, FlowKey, GroupMask, PolicySet};

const CONF: &str = r#"
config system interface
    edit "wan1"
        set ip 198.51.100.1 255.255.255.0
        set role wan
    next
    edit "Internal"
        set ip 10.50.0.1 255.255.255.0
        set role lan
    next
    edit "dmz"
        set ip 10.60.0.1 255.255.255.0
    next
end
config firewall address
    edit "lan-servers"
        set subnet 10.50.0.0 255.255.255.0
    next
    edit "dmz-web"
        set type iprange
        set start-ip 10.60.0.10
        set end-ip 10.60.0.20
    next
    edit "blocked-host"
        set subnet 10.50.0.66 255.255.255.255
    next
end
config firewall addrgrp
    edit "inner"
        set member "dmz-web"
    next
    edit "VPN-v2_split"
        set member "lan-servers" "inner"
    next
end
config user local
    edit "alice"
        set type password
        set passwd "a-password"
    next
    edit "bob"
        set type password
        set passwd "b-password"
    next
end
config user group
    edit "VPN_Users"
        set member "alice" "bob"
    next
    edit "Admins"
        set member "alice"
    next
end
config vpn ipsec phase1-interface
    edit "Test-Dialup"
        set type dynamic
        set interface "wan1"
        set ike-version 2
        set mode-cfg enable
        set eap enable
        set ipv4-start-ip 10.40.40.2
        set ipv4-end-ip 10.40.40.20
        set ipv4-split-include "VPN-v2_split"
        set psksecret "a-pre-shared-key"
    next
end
config firewall policy
    edit 5
        set name "no-blocked"
        set srcintf "Test-Dialup"
        set dstintf "Internal"
        set srcaddr "all"
        set dstaddr "blocked-host"
        set action deny
        set schedule "always"
        set service "ALL"
    next
    edit 1
        set name "vpn_VPN-v2_remote_0"
        set srcintf "Test-Dialup"
        set dstintf "Internal" "dmz"
        set srcaddr "all"
        set dstaddr "VPN-v2_split"
        set action accept
        set schedule "always"
        set service "HTTPS" "DNS" "PING"
        set nat enable
        set groups "VPN_Users"
    next
    edit 2
        set name "admins-ssh"
        set srcintf "Test-Dialup"
        set dstintf "any"
        set srcaddr "all"
        set dstaddr "all"
        set action accept
        set schedule "always"
        set service "SSH"
        set groups "Admins"
    next
    edit 3
        set name "off"
        set srcintf "Test-Dialup"
        set dstintf "Internal"
        set srcaddr "all"
        set dstaddr "all"
        set action accept
        set schedule "always"
        set service "ALL"
        set status disable
    next
end
"#;

fn key(dst: [u8; 4], proto: u8, dport: u16, out_if: &str, groups: GroupMask, ifs: &InterfaceMap) -> FlowKey {
    FlowKey {
        in_if: ifs.index("Test-Dialup").unwrap(),
        out_if: ifs.index(out_if).unwrap(),
        proto,
        src: Ipv4Addr::new(10, 40, 40, 3),
        dst: Ipv4Addr::from(dst),
        sport: 40000,
        dport,
        icmp_type: if proto == 1 { 8 } else { 0 },
        groups,
    }
}

#[test]
fn config_compiles_with_nested_groups_user_groups_and_order() {
    let cfg = load_str(CONF, "fw.conf").unwrap();
    let ifs = InterfaceMap::from_config(&cfg);
    assert_eq!(
        (ifs.index("wan1"), ifs.index("Internal"), ifs.index("dmz"), ifs.index("Test-Dialup")),
        (Some(0), Some(1), Some(2), Some(3)),
        "ports first, then tunnels"
    );
    let groups = GroupMap::from_config(&cfg);
    let bob = groups.of_user(&cfg, "bob");
    let alice = groups.of_user(&cfg, "alice");
    assert_eq!((bob, alice), (GroupMask(0b01), GroupMask(0b11)));
    let set = compile(&cfg, &ifs, &groups, None).unwrap();
    assert_eq!(set.len(), 3, "the disabled policy is left out");
    let id = |k: FlowKey| set.lookup(&k).policy_id;

    // Split-include group: the LAN subnet and, through the nested group, the DMZ range.
    assert_eq!(id(key([10, 50, 0, 9], 6, 443, "Internal", bob, &ifs)), 1);
    assert_eq!(id(key([10, 60, 0, 15], 17, 53, "dmz", bob, &ifs)), 1);
    assert_eq!(id(key([10, 50, 0, 9], 1, 0, "Internal", bob, &ifs)), 1, "PING");
    assert_eq!(id(key([10, 60, 0, 21], 6, 443, "dmz", bob, &ifs)), 0, "outside the range");
    assert!(set.lookup(&key([10, 50, 0, 9], 6, 443, "Internal", bob, &ifs)).nat);
    // Policy 5 comes first in the table although its id is higher.
    let v = set.lookup(&key([10, 50, 0, 66], 6, 443, "Internal", bob, &ifs));
    assert_eq!((v.policy_id, v.action), (5, Action::Deny));
    // No user group: policy 1 does not apply.
    assert_eq!(id(key([10, 50, 0, 9], 6, 443, "Internal", GroupMask::NONE, &ifs)), 0);
    // SSH only for Admins, to any interface.
    assert_eq!(id(key([10, 60, 0, 15], 6, 22, "dmz", bob, &ifs)), 0);
    assert_eq!(id(key([10, 60, 0, 15], 6, 22, "wan1", alice, &ifs)), 2);
    // Port 80 is in no service.
    assert_eq!(id(key([10, 50, 0, 9], 6, 80, "Internal", alice, &ifs)), 0);
}

#[test]
fn policy_list_shows_counters_in_order() {
    let cfg = load_str(CONF, "fw.conf").unwrap();
    let ifs = InterfaceMap::from_config(&cfg);
    let groups = GroupMap::from_config(&cfg);
    let set = compile(&cfg, &ifs, &groups, None).unwrap();
    let bob = groups.of_user(&cfg, "bob");
    let ok = set.lookup(&key([10, 50, 0, 9], 6, 443, "Internal", bob, &ifs));
    set.count(&ok, 60, true);
    set.count(&ok, 1400, false);
    let denied = set.lookup(&key([10, 50, 0, 9], 6, 80, "Internal", bob, &ifs));
    set.count(&denied, 52, false);
    let text = policy_list(&cfg, &set);
    let expected = "\
policy 5 name=\"no-blocked\" action=deny nat=disable
\tsrcintf=\"Test-Dialup\" dstintf=\"Internal\"
\tsrcaddr=\"all\" dstaddr=\"blocked-host\"
\tservice=\"ALL\"
\thit_count=0 packets=0 bytes=0
policy 1 name=\"vpn_VPN-v2_remote_0\" action=accept nat=enable
\tsrcintf=\"Test-Dialup\" dstintf=\"Internal\" \"dmz\"
\tsrcaddr=\"all\" dstaddr=\"VPN-v2_split\"
\tservice=\"HTTPS\" \"DNS\" \"PING\" groups=\"VPN_Users\"
\thit_count=1 packets=2 bytes=1460
policy 2 name=\"admins-ssh\" action=accept nat=disable
\tsrcintf=\"Test-Dialup\" dstintf=\"any\"
\tsrcaddr=\"all\" dstaddr=\"all\"
\tservice=\"SSH\" groups=\"Admins\"
\thit_count=0 packets=0 bytes=0
policy 0 name=\"implicit deny\" action=deny
\thit_count=0 packets=1 bytes=52
";
    assert_eq!(text, expected);

    // A reload keeps counters of policies that stay.
    let text2 = CONF.replace("set service \"SSH\"", "set service \"SSH\" \"RDP\"");
    let cfg2 = load_str(&text2, "fw.conf").unwrap();
    let set2 = compile(&cfg2, &ifs, &groups, Some(&set)).unwrap();
    assert_eq!(set2.counters(1).unwrap().bytes, 1460);
    assert_eq!(set2.counters(0).unwrap().packets, 1);
}

#[test]
fn the_demo_configuration_compiles() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/dialgate.conf")).unwrap();
    let cfg = load_str(&text, "dialgate.conf").unwrap();
    let ifs = InterfaceMap::from_config(&cfg);
    let set = compile(&cfg, &ifs, &GroupMap::from_config(&cfg), None).unwrap();
    assert_eq!(set.len(), cfg.policies.len());
    assert!(!set.is_empty());
}

#[test]
fn what_cannot_compile_is_listed() {
    // `parse_str` skips the whole-configuration checks, so the compiler sees the dangling names.
    let text = r#"
config system interface
    edit "Internal"
    next
end
config firewall policy
    edit 1
        set srcintf "nope-tunnel"
        set dstintf "Internal"
        set srcaddr "all"
        set dstaddr "missing-addr"
        set action accept
        set schedule "weekdays"
        set service "GOPHER"
        set groups "ghosts"
    next
end
"#;
    let cfg = parse_str(text, "bad.conf").unwrap();
    let errs = compile(&cfg, &InterfaceMap::from_config(&cfg), &GroupMap::from_config(&cfg), None).unwrap_err();
    let msgs: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert!(matches!(&errs[0], FirewallError::Schedule { policy: 1, name } if name == "weekdays"), "{msgs:?}");
    assert!(errs
        .iter()
        .any(|e| matches!(e, FirewallError::UnknownInterface { key: "srcintf", name, .. } if name == "nope-tunnel")));
    assert!(errs
        .iter()
        .any(|e| matches!(e, FirewallError::UnknownAddress { key: "dstaddr", name, .. } if name == "missing-addr")));
    assert!(errs.iter().any(|e| matches!(e, FirewallError::UnknownService { name, .. } if name == "GOPHER")));
    assert!(errs.iter().any(|e| matches!(e, FirewallError::UnknownGroup { name, .. } if name == "ghosts")));
    assert_eq!(errs.len(), 5, "{msgs:?}");
    assert!(msgs
        .iter()
        .any(|m| m.contains("firewall policy 1: `srcintf` names unknown interface or tunnel \"nope-tunnel\"")));
    // An empty set still denies by default.
    assert_eq!(PolicySet::deny_all().len(), 0);
}

const CUSTOM: &str = r#"
config system interface
    edit "wan1"
        set ip 198.51.100.1 255.255.255.0
    next
    edit "Internal"
        set ip 10.50.0.1 255.255.255.0
    next
end
config firewall service custom
    edit "app-ports"
        set tcp-portrange 8000-8080 9443:1024-65535
        set udp-portrange 5060
    next
    edit "echo-only"
        set protocol ICMP
        set icmptype 8
    next
    edit "gre"
        set protocol IP
        set protocol-number 47
    next
    edit "HTTPS"
        set tcp-portrange 8443
    next
end
config vpn ipsec phase1-interface
    edit "Test-Dialup"
        set type dynamic
        set interface "wan1"
        set ike-version 2
        set psksecret "a-pre-shared-key"
    next
end
config firewall policy
    edit 1
        set srcintf "Test-Dialup"
        set dstintf "Internal"
        set srcaddr "all"
        set dstaddr "all"
        set action accept
        set schedule "always"
        set service "app-ports" "echo-only" "gre" "HTTPS"
        set nat enable
    next
end
"#;

#[test]
fn custom_services_compile_with_port_ranges_icmp_types_and_protocols() {
    let cfg = load_str(CUSTOM, "svc.conf").unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(cfg.services.len(), 4);
    let ifs = InterfaceMap::from_config(&cfg);
    let set = compile(&cfg, &ifs, &GroupMap::from_config(&cfg), None).unwrap();
    let k = |proto: u8, sport: u16, dport: u16, icmp_type: u8| FlowKey {
        in_if: ifs.index("Test-Dialup").unwrap(),
        out_if: ifs.index("Internal").unwrap(),
        proto,
        src: Ipv4Addr::new(10, 40, 40, 3),
        dst: Ipv4Addr::new(10, 50, 0, 9),
        sport,
        dport,
        icmp_type,
        groups: GroupMask::NONE,
    };
    let id = |key: FlowKey| set.lookup(&key).policy_id;
    assert_eq!(id(k(6, 40000, 8000, 0)), 1);
    assert_eq!(id(k(6, 40000, 8080, 0)), 1);
    assert_eq!(id(k(6, 40000, 8081, 0)), 0, "past the range");
    assert_eq!(id(k(6, 40000, 9443, 0)), 1, "source port in 1024-65535");
    assert_eq!(id(k(6, 1000, 9443, 0)), 0, "source port below the range");
    assert_eq!(id(k(17, 40000, 5060, 0)), 1);
    assert_eq!(id(k(17, 40000, 8000, 0)), 0, "TCP ranges do not open UDP");
    assert_eq!(id(k(1, 0, 0, 8)), 1, "echo request");
    assert_eq!(id(k(1, 0, 0, 13)), 0, "other ICMP types");
    assert_eq!(id(k(47, 0, 0, 0)), 1, "GRE by protocol number");
    assert_eq!(id(k(6, 40000, 8443, 0)), 1, "a custom entry replaces the predefined HTTPS");
    assert_eq!(id(k(6, 40000, 443, 0)), 0);
    // `show` prints the ranges back in the form they were given, and that loads again.
    let shown = cfg.show(&["firewall", "service", "custom"], false).unwrap();
    assert!(shown.contains("set tcp-portrange 8000-8080 9443:1024-65535"), "{shown}");
    assert!(shown.contains("set protocol ICMP") && shown.contains("set icmptype 8"), "{shown}");
    let again = parse_str(&shown, "shown.conf").unwrap();
    assert_eq!(again.services, cfg.services);
}

#[test]
fn bad_custom_services_are_reported_with_positions() {
    let with = |body: &str| CUSTOM.replace("        set udp-portrange 5060\n", body);
    let e = load_str(&with("        set udp-portrange 70000\n"), "svc.conf").unwrap_err();
    assert_eq!(e.len(), 1, "{e:#?}");
    let s = e[0].to_string();
    assert!(s.starts_with("svc.conf:13:27: ") && s.contains("invalid port range \"70000\""), "{s}");
    let e = load_str(&with("        set udp-portrange 90-80\n"), "svc.conf").unwrap_err();
    assert!(e[0].to_string().contains("80 is above") || e[0].to_string().contains("90 is above"), "{e:#?}");
    let e = load_str(&CUSTOM.replace("set service \"app-ports\"", "set service \"app-port\""), "svc.conf").unwrap_err();
    let s = e[0].to_string();
    assert!(s.contains("unknown service \"app-port\"") && s.contains("app-ports"), "names the nearest: {s}");
    let e =
        load_str(&CUSTOM.replace("        set protocol IP\n", "        set protocol XTP\n"), "svc.conf").unwrap_err();
    assert!(e[0].to_string().contains("TCP/UDP/SCTP ICMP IP"), "{e:#?}");
    let no_ports = CUSTOM.replace("        set tcp-portrange 8443\n", "");
    let e = load_str(&no_ports, "svc.conf").unwrap_err();
    assert!(e[0].to_string().contains("\"HTTPS\": protocol TCP/UDP/SCTP needs"), "{e:#?}");
    assert!(e[0].pos.is_some(), "positioned at the entry");
}

#[test]
fn tunnel_tags_carry_the_tunnel_interface_and_the_users_groups() {
    use dialgate_controlplane::firewall::tunnel_tag;
    let cfg = load_str(CONF, "fw.conf").unwrap();
    let ifs = InterfaceMap::from_config(&cfg);
    let groups = GroupMap::from_config(&cfg);
    let set = compile(&cfg, &ifs, &groups, None).unwrap();
    let tag = tunnel_tag(&cfg, &ifs, &groups, "Test-Dialup", Some("bob"), Some(7));
    assert_eq!((tag.if_index, tag.groups, tag.conn_id), (3, GroupMask(0b01), Some(7)));
    // Test-Dialup has no authusrgrp: policy 1 (`groups VPN_Users`) admits bob through the tag.
    let mut k = key([10, 50, 0, 9], 6, 443, "Internal", tag.groups, &ifs);
    k.in_if = tag.if_index;
    assert_eq!(set.lookup(&k).policy_id, 1);
    let anon = tunnel_tag(&cfg, &ifs, &groups, "Test-Dialup", None, None);
    k.groups = anon.groups;
    assert_eq!(set.lookup(&k).policy_id, 0, "no user, no group policy");
    assert_eq!(tunnel_tag(&cfg, &ifs, &groups, "nope", None, None).if_index, u16::MAX);
}
