//! Errors a person can act on: position, nearest names, allowed values, broken references,
//! incompatible settings; and the loader's semantics (edit twice, unset, delete, edit 0, reload).

use dialgate_controlplane::config::{self, load_str, parse_str, Config, ConfigError, ConfigStore, Pos};

fn errs(text: &str) -> Vec<ConfigError> {
    load_str(text, "t.conf").expect_err("must fail")
}

fn one_err(text: &str) -> ConfigError {
    let e = errs(text);
    assert_eq!(e.len(), 1, "{e:#?}");
    e.into_iter().next().unwrap()
}

fn frag_err(text: &str) -> ConfigError {
    let e = parse_str(text, "t.conf").expect_err("must fail");
    assert_eq!(e.len(), 1, "{e:#?}");
    e.into_iter().next().unwrap()
}

const BASE: &str = r#"
config system interface
    edit "wan1"
        set ip 192.0.2.1 255.255.255.0
    next
    edit "Internal"
        set ip 10.50.0.1 255.255.255.0
    next
end
config firewall address
    edit "VPN-v2_split"
        set subnet 10.50.0.0 255.255.255.0
    next
end
config user local
    edit "Test"
        set passwd "p@ssw0rd"
    next
end
config user group
    edit "VPN_Users"
        set member "Test"
    next
end
config vpn ipsec phase1-interface
    edit "Test-Dialup"
        set type dynamic
        set interface "wan1"
        set ike-version 2
        set mode-cfg enable
        set eap enable
        set authusrgrp "VPN_Users"
        set ipv4-start-ip 10.40.40.2
        set ipv4-end-ip 10.40.40.20
        set ipv4-split-include "VPN-v2_split"
        set psksecret "k3y"
    next
end
config vpn ipsec phase2-interface
    edit "Test-Dialup"
        set phase1name "Test-Dialup"
    next
end
config firewall policy
    edit 1
        set srcintf "Test-Dialup"
        set dstintf "Internal"
        set srcaddr "all"
        set dstaddr "VPN-v2_split"
        set action accept
        set schedule "always"
        set service "ALL"
    next
end
"#;

fn base() -> Config {
    load_str(BASE, "base.conf").unwrap_or_else(|e| panic!("{e:#?}"))
}

/// Position of the first occurrence of `needle` in `text`.
fn pos_of(text: &str, needle: &str) -> Pos {
    let off = text.find(needle).unwrap();
    let line = text[..off].matches('\n').count() as u32 + 1;
    let col = text[..off].rsplit('\n').next().unwrap().chars().count() as u32 + 1;
    Pos { line, col }
}

#[test]
fn base_is_valid() {
    let c = base();
    assert_eq!(c.phase1[0].negotiate_timeout, 30);
    assert!(c.validate().is_ok());
}

#[test]
fn unknown_table_and_key_suggest_nearest() {
    let e = frag_err("config vpn ipsec phase1-interfce\nedit \"x\"\nnext\nend\n");
    assert_eq!(
        e.to_string(),
        "t.conf:1:8: unknown object `config vpn ipsec phase1-interfce`; did you mean `vpn ipsec phase1-interface`?"
    );
    let t = "config vpn ipsec phase1-interface\n    edit \"x\"\n        set negotiate-timout 50\n    next\nend\n";
    let e = frag_err(t);
    assert_eq!(e.pos, Some(Pos { line: 3, col: 13 }));
    assert!(e.message.contains("did you mean `negotiate-timeout`?"), "{e}");
    let e = frag_err("config user locl\nend\n");
    assert!(e.message.contains("`user local`"), "{e}");
}

#[test]
fn bad_values_say_what_is_allowed() {
    let t = "config vpn ipsec phase1-interface\n edit \"x\"\n  set negotiate-timeout 301\n next\nend\n";
    let e = frag_err(t);
    assert_eq!(e.pos, Some(pos_of(t, "301")));
    assert!(e.message.contains("enter an integer from 1 to 300"), "{e}");
    let e = frag_err("config vpn ipsec phase1-interface\n edit \"x\"\n  set remote-gw-match anywhere\n next\nend\n");
    assert!(e.message.contains("choose one of: any ipmask iprange geography ztna"), "{e}");
    let e =
        frag_err("config vpn ipsec phase1-interface\n edit \"x\"\n  set proposal aes128-sha256 des-md5\n next\nend\n");
    assert_eq!(e.pos.unwrap().col, 30, "points at the second proposal: {e}");
    let e = frag_err("config vpn ipsec phase2-interface\n edit \"x\"\n  set dhgrp 14 99\n next\nend\n");
    assert!(e.message.contains("invalid DH group \"99\""), "{e}");
    let e = frag_err("config user fortitoken\n edit \"F\"\n  set seed \"JBSWY3DP\"\n next\nend\n");
    assert!(e.message.contains("at least 128"), "{e}");
    let e = frag_err("config user fortitoken\n edit \"F\"\n  set digits 7\n next\nend\n");
    assert!(e.message.contains("choose one of: 6 8"), "{e}");
    let e = frag_err("config system interface\n edit \"p\"\n  set dpdk-device \"eth0\"\n next\nend\n");
    assert!(e.message.contains("PCI address"), "{e}");
    let e = frag_err("config system interface\n edit \"p\"\n  set ip 10.0.0.1 255.0.255.0\n next\nend\n");
    assert!(e.message.contains("not contiguous"), "{e}");
    let e = frag_err("config user local\n edit \"u\"\n  set passwd ENC ********\n next\nend\n");
    assert!(e.message.contains("give the secret in clear"), "{e}");
    let e = frag_err("config vpn ipsec phase1-interface\n edit \"sixteen-chars-xx\"\n next\nend\n");
    assert!(e.message.contains("at most 15 characters"), "{e}");
    let e = frag_err("config firewall policy\n edit abc\n next\nend\n");
    assert!(e.message.contains("entries are numbered"), "{e}");
}

#[test]
fn syntax_errors_have_positions() {
    let e = frag_err("config user local\n edit \"u\"\n  set passwd \"x\"\n next\n");
    assert!(e.message.contains("missing `end`"), "{e}");
    let e = frag_err("config user local\n next\nend\n");
    assert_eq!(e.to_string(), "t.conf:2:2: `next` without `edit`");
    let e = frag_err("config user local\n edit \"u\"\n  set passwd\n next\nend\n");
    assert!(e.message.contains("needs a value"), "{e}");
    let e = frag_err("set passwd x\n");
    assert!(e.message.contains("expected `config`"), "{e}");
    let e = frag_err("config user local\n edit \"u\"\n  set passwd \"abc\n next\nend\n");
    assert!(e.message.contains("unterminated"), "{e}");
    let e = frag_err("config user local\n  set passwd x\nend\n");
    assert!(e.message.contains("write `edit NAME` before `set`"), "{e}");
}

#[test]
fn references_are_checked_with_suggestions() {
    let e = one_err(&BASE.replace("set authusrgrp \"VPN_Users\"", "set authusrgrp \"VPN_User\""));
    assert!(e.message.contains("unknown user group \"VPN_User\"; did you mean `VPN_Users`?"), "{e}");
    assert_eq!(e.pos, Some(pos_of(BASE, "\"VPN_Users\"\n        set ipv4-start")));
    let e = one_err(&BASE.replace("set phase1name \"Test-Dialup\"", "set phase1name \"Test-Dialpu\""));
    assert!(e.message.contains("unknown phase1-interface \"Test-Dialpu\"; did you mean `Test-Dialup`?"), "{e}");
    let e =
        one_err(&BASE.replace("set ipv4-split-include \"VPN-v2_split\"", "set ipv4-split-include \"VPN-v2-split\""));
    assert!(e.message.contains("`ipv4-split-include` refers to unknown address"), "{e}");
    let e = one_err(&BASE.replace("set member \"Test\"", "set member \"Tset\""));
    assert!(e.message.contains("unknown user \"Tset\"; did you mean `Test`?"), "{e}");
    let e = one_err(&BASE.replace("set dstintf \"Internal\"", "set dstintf \"internal\""));
    assert!(e.message.contains("did you mean `Internal`?"), "{e}");
    let e = one_err(&BASE.replace("set dstaddr \"VPN-v2_split\"", "set dstaddr \"VPN_split\""));
    assert!(e.message.contains("unknown address \"VPN_split\""), "{e}");
    let e = one_err(&BASE.replace("set schedule \"always\"", "set schedule \"alway\""));
    assert!(e.message.contains("did you mean `always`?"), "{e}");
    let e = one_err(&BASE.replace("set interface \"wan1\"", "set interface \"wan2\""));
    assert!(e.message.contains("did you mean `wan1`?"), "{e}");
    let tok = BASE.replace(
        "set passwd \"p@ssw0rd\"",
        "set passwd \"p@ssw0rd\"\n        set two-factor fortitoken\n        set fortitoken \"FTK1\"",
    );
    let e = one_err(&tok);
    assert!(e.message.contains("unknown user fortitoken \"FTK1\""), "{e}");
    let e = one_err(&BASE.replace("set ipv4-split-include \"VPN-v2_split\"", "set assign-ip-from name"));
    assert!(e.message.contains("`assign-ip-from name` needs `ipv4-name`"), "{e}");
    let e = one_err(&BASE.replace("set ipv4-end-ip 10.40.40.20", "set ipv4-end-ip 10.40.40.1"));
    assert!(e.message.contains("ipv4-end-ip 10.40.40.1 is below ipv4-start-ip 10.40.40.2"), "{e}");
}

#[test]
fn incompatible_settings_are_named() {
    let tags = BASE
        .replace("set psksecret \"k3y\"", "set psksecret \"k3y\"\n        set remote-gw-ztna-tags \"EMS1_ZTNA_all\"");
    let e = errs(&tags);
    assert!(
        e.iter().any(|e| e.message.contains("`remote-gw-ztna-tags` needs `set remote-gw-match ztna` (it is `any`)")),
        "{e:#?}"
    );

    let v1 = BASE
        .replace("set ike-version 2", "set ike-version 1")
        .replace("set eap enable", "set remote-gw-match ztna\n        set remote-gw-ztna-tags \"EMS1_ZTNA_all\"");
    let e = errs(&v1);
    assert!(e.iter().any(|e| e.message.contains("`remote-gw-match ztna` requires `ike-version 2`")), "{e:#?}");
    assert!(e.iter().any(|e| e.message.contains("IKEv2 only")), "{e:#?}");

    // Seed: the user group goes in phase1 *or* in the policy, not both.
    let both = BASE.replace("set service \"ALL\"", "set service \"ALL\"\n        set groups \"VPN_Users\"");
    let e = one_err(&both);
    assert!(e.message.contains("name the user group in one place only"), "{e}");
    assert!(e.to_string().starts_with("t.conf:"), "{e}");
    // In the policy only: fine.
    let policy_only = both.replace("        set authusrgrp \"VPN_Users\"\n", "");
    assert!(load_str(&policy_only, "t.conf").is_ok());

    let e = one_err(&BASE.replace("set psksecret \"k3y\"", ""));
    assert!(e.message.contains("`authmethod psk` needs `psksecret`"), "{e}");
    let dup = BASE
        .replace(
            "set ip 10.50.0.1 255.255.255.0",
            "set ip 10.50.0.1 255.255.255.0\n        set dpdk-device \"0000:00:04.0\"",
        )
        .replace(
            "set ip 192.0.2.1 255.255.255.0",
            "set ip 192.0.2.1 255.255.255.0\n        set dpdk-device \"0000:00:04.0\"",
        );
    let e = one_err(&dup);
    assert!(e.message.contains("already bound to interface \"wan1\""), "{e}");
}

#[test]
fn edit_twice_unset_delete_and_edit_zero() {
    let extra = format!(
        "{BASE}
config vpn ipsec phase1-interface
    edit \"Test-Dialup\"
        set negotiate-timeout 50
        set dpd on-idle
        unset dpd
    next
end
config firewall policy
    edit 0
        set srcintf \"Internal\"
        set dstintf \"Test-Dialup\"
        set srcaddr \"VPN-v2_split\"
        set dstaddr \"all\"
        set schedule \"always\"
    next
end
config firewall address
    edit \"tmp\"
    next
    delete \"tmp\"
end
"
    );
    let c = load_str(&extra, "t.conf").unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(c.phase1.len(), 1);
    assert_eq!(c.phase1[0].negotiate_timeout, 50);
    assert_eq!(c.phase1[0].authusrgrp, "VPN_Users", "the first edit's settings stay");
    assert_eq!(c.phase1[0].dpd, config::DpdMode::OnDemand, "unset restores the default");
    assert_eq!(c.policies.iter().map(|p| p.id).collect::<Vec<_>>(), [1, 2], "edit 0 takes the next id");
    assert_eq!(c.addresses.len(), 1);
    let e = frag_err("config firewall address\n delete \"nope\"\nend\n");
    assert!(e.message.contains("no such entry"), "{e}");
}

#[test]
fn failed_reload_keeps_running_config() {
    let mut store = ConfigStore::new(base());
    let before = store.current();
    let bad = BASE.replace("set negotiate-timeout", "x").replace("set ike-version 2", "set ike-version 3");
    let e = store.reload_str(&bad, "new.conf").unwrap_err();
    assert!(e[0].message.contains("choose one of: 1 2"), "{e:#?}");
    assert_eq!(*store.current(), *before);
    let good = BASE.replace("set psksecret \"k3y\"", "set psksecret \"k3y\"\n        set negotiate-timeout 90");
    store.reload_str(&good, "new.conf").unwrap();
    assert_eq!(store.current().phase1[0].negotiate_timeout, 90);
    assert!(store.reload_file("/nonexistent/dialgate.conf").is_err());
    assert_eq!(store.current().phase1[0].negotiate_timeout, 90);
}

#[test]
fn show_masks_secrets_and_selects_paths() {
    let c = base();
    let all = c.show(&[], false).unwrap();
    assert!(all.contains("set psksecret ENC ********"), "{all}");
    assert!(!all.contains("k3y") && !all.contains("p@ssw0rd"), "{all}");
    assert!(!format!("{c:?}").contains("p@ssw0rd"), "Debug masks secrets");
    let p1 = c.show(&["vpn", "ipsec", "phase1-interface", "Test-Dialup"], false).unwrap();
    assert!(
        p1.starts_with("config vpn ipsec phase1-interface\n    edit \"Test-Dialup\"\n        set type dynamic\n"),
        "{p1}"
    );
    assert!(!p1.contains("config user"), "{p1}");
    let users = c.show(&["user"], false).unwrap();
    assert!(users.contains("config user local") && users.contains("config user group"), "{users}");
    let e = c.show(&["vpn", "ipsec", "phase1-interface", "Test-Dialpu"], false).unwrap_err();
    assert!(e.contains("did you mean `Test-Dialup`?"), "{e}");
    let e = c.show(&["vpn", "ipsec", "phase1"], false).unwrap_err();
    assert!(e.contains("unknown path"), "{e}");
    // The masked form cannot be loaded by mistake.
    assert!(load_str(&all, "masked.conf").is_err());
    // The revealed form loads back to the same configuration.
    assert_eq!(load_str(&c.show(&[], true).unwrap(), "shown.conf").unwrap(), c);
}
