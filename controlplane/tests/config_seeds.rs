//! Every configuration block of the two seed documents loads, as the flattened text found in the
//! seed files and as one statement a line; the stray quote is reported where it is.
//!
//! Placeholders: the seeds write `<password>`, `<secret>` and `<index>` where a value goes. The
//! reader refuses them with their position ("replace it with …"); the tests substitute values.
//! The `<----- Enter an integer …` arrows of the negotiate-timeout block are annotations of the
//! web page, not configuration: they are reported as errors too, and blanked for the loading test.
//! The seed's "CLI syntax" block (`edit <name>`, `set remote-gw-match {any | …}`) is a syntax
//! summary, not a configuration, and is not among the blocks.

use std::path::PathBuf;

use dialgate_controlplane::config::{self, parse_str, Config, ConfigError, Pos};

const SEED_TOKEN: &str = "000_02ea7b25408773c4.txt";
const SEED_ZTNA: &str = "002_126eee2442879abf.txt";

/// The seeds live beside the repository (`../shared/seeds`); a clone elsewhere names them with
/// `DIALGATE_SEEDS`.
fn seed(name: &str) -> String {
    let dir = std::env::var_os("DIALGATE_SEEDS")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/seeds"), PathBuf::from);
    let p = dir.join(name);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("seed {} is needed (set DIALGATE_SEEDS to the seeds folder): {e}", p.display()))
}

fn example(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Byte range of the `config …` block that starts at the `nth` occurrence of `start`, up to its
/// matching `end` (nested `config` counted).
fn block_range(text: &str, start: &str, nth: usize) -> (usize, usize) {
    let from = text.match_indices(start).nth(nth).unwrap_or_else(|| panic!("{start:?} #{nth} not in seed")).0;
    let mut depth = 0;
    let mut i = from;
    for w in text[from..].split_inclusive(char::is_whitespace) {
        let word = w.trim_end();
        i += w.len();
        if word == "config" {
            depth += 1;
        } else if word == "end" {
            depth -= 1;
            if depth == 0 {
                return (from, i);
            }
        }
    }
    panic!("no end for {start:?}")
}

/// The seed text with everything outside `range` blanked (newlines kept): positions reported
/// for the block are positions in the seed file.
fn only(text: &str, (a, b): (usize, usize)) -> String {
    text.char_indices().map(|(i, c)| if (a..b).contains(&i) || c == '\n' { c } else { ' ' }).collect()
}

/// The block's tokens, one statement a line.
fn one_per_line(flat: &str) -> String {
    let mut out = String::new();
    for w in flat.split_whitespace() {
        if ["config", "edit", "set", "unset", "next", "end"].contains(&w) && !out.is_empty() {
            out.push('\n');
        } else if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(w);
    }
    out.push('\n');
    out
}

/// (seed file, block start, occurrence, example file) for every configuration block.
const BLOCKS: &[(&str, &str, usize, &str)] = &[
    (SEED_TOKEN, "config user local", 0, "seed-fortitoken-1-user-local.conf"),
    (SEED_TOKEN, "config user group", 0, "seed-fortitoken-2-user-group.conf"),
    (SEED_TOKEN, "config vpn ipsec phase1-interface", 0, "seed-fortitoken-3-phase1.conf"),
    (SEED_TOKEN, "config vpn ipsec phase2-interface", 0, "seed-fortitoken-4-phase2.conf"),
    (SEED_TOKEN, "config firewall policy", 0, "seed-fortitoken-5-policy.conf"),
    (SEED_TOKEN, "config vpn ipsec phase1-interface", 1, "seed-fortitoken-6-negotiate-timeout.conf"),
    (SEED_ZTNA, "config firewall address", 0, "seed-ztna-1-address.conf"),
    // Occurrence 0 of phase1-interface in seed 002 is the CLI syntax summary.
    (SEED_ZTNA, "config vpn ipsec phase1-interface", 1, "seed-ztna-2-phase1.conf"),
    (SEED_ZTNA, "config vpn ipsec phase2-interface", 0, "seed-ztna-3-phase2.conf"),
    (SEED_ZTNA, "config vpn ipsec phase1-interface", 2, "seed-ztna-4-ems-phase1.conf"),
    (SEED_ZTNA, "config vpn ipsec phase2-interface", 1, "seed-ztna-5-ems-phase2.conf"),
    (SEED_ZTNA, "config firewall policy", 0, "seed-ztna-6-ems-policy.conf"),
];

const ANNOTATION: &str = "<----- Enter an integer value from <1> to <300> <----- Default = <30>.";

/// Replaces documentation placeholders by the example files' values, fixes the stray quote and
/// drops the annotation (not position-preserving).
fn substituted(block: &str) -> String {
    let psk = "\"Pr3-Shared-K3y\"";
    block
        .replace("set passwd <password>", "set passwd \"p@ssw0rd\"")
        .replace("set psksecret <password>", &format!("set psksecret {psk}"))
        .replace("<secret>", psk)
        .replace("edit <index>", "edit 1")
        .replace("\"\"VPN-v2_split\"", "\"VPN-v2_split\"")
        .replace(ANNOTATION, "")
}

fn errors(r: Result<Config, Vec<ConfigError>>) -> Vec<ConfigError> {
    r.expect_err("expected errors")
}

#[test]
fn every_block_loads_flat_and_one_per_line_and_matches_its_example() {
    for (file, start, nth, ex) in BLOCKS {
        let text = seed(file);
        let (a, b) = block_range(&text, start, *nth);
        let flat = substituted(&text[a..b]);
        let from_flat = parse_str(&flat, file).unwrap_or_else(|e| panic!("{ex}: {e:?}"));
        let lines = one_per_line(&flat);
        assert!(lines.lines().count() > 3, "{ex}: split into statements");
        let from_lines = parse_str(&lines, file).unwrap_or_else(|e| panic!("{ex} one per line: {e:?}"));
        assert_eq!(from_flat, from_lines, "{ex}: flattened and one-statement-a-line differ");
        let from_example = parse_str(&example(ex), ex).unwrap_or_else(|e| panic!("{ex}: {e:?}"));
        assert_eq!(from_flat, from_example, "{ex}: example file differs from the seed block");
        assert_ne!(from_flat, Config::default(), "{ex}: something was loaded");
    }
}

#[test]
fn seed_values_are_typed() {
    let text = seed(SEED_TOKEN);
    let (a, b) = block_range(&text, "config vpn ipsec phase1-interface", 0);
    let cfg = parse_str(&substituted(&text[a..b]), SEED_TOKEN).unwrap();
    let p = cfg.phase1("Test-Dialup").unwrap();
    assert_eq!(p.kind, config::Phase1Type::Dynamic);
    assert_eq!(p.ike_version, 2);
    assert_eq!(p.proposal.len(), 5);
    assert_eq!(p.proposal[2].to_string(), "aes128gcm-prfsha256");
    assert_eq!(p.pool_range(), Some(("10.40.40.2".parse().unwrap(), "10.40.40.20".parse().unwrap())));
    assert_eq!(p.negotiate_timeout, 30, "FortiOS default");
    assert_eq!(p.psksecret.as_ref().unwrap().expose(), "Pr3-Shared-K3y");

    // Both negotiate-timeout edits of the seed apply to the same gateway.
    let (c, d) = block_range(&text, "config vpn ipsec phase1-interface", 1);
    let both = format!("{}\n{}", substituted(&text[a..b]), substituted(&text[c..d]));
    let cfg = parse_str(&both, SEED_TOKEN).unwrap();
    assert_eq!(cfg.phase1.len(), 1);
    assert_eq!(cfg.phase1[0].negotiate_timeout, 50);
    assert_eq!(cfg.phase1[0].authusrgrp, "VPN_Users");

    let text = seed(SEED_ZTNA);
    let (a, b) = block_range(&text, "config vpn ipsec phase1-interface", 2);
    let cfg = parse_str(&substituted(&text[a..b]), SEED_ZTNA).unwrap();
    let p = &cfg.phase1[0];
    assert_eq!(p.remote_gw_match, config::RemoteGwMatch::Ztna);
    assert_eq!(p.remote_gw_ztna_tags, ["EMS3_ZTNA_a"]);
    assert_eq!(p.dhgrp, [20, 21]);
    assert_eq!(p.dpd, config::DpdMode::OnIdle);
    assert_eq!(p.dpd_retryinterval, 60);
}

#[test]
fn stray_quote_and_placeholders_reported_in_the_seed_file() {
    let text = seed(SEED_TOKEN);
    let range = block_range(&text, "config firewall policy", 0);
    let errs = errors(parse_str(&only(&text, range), SEED_TOKEN));
    let at: Vec<(u32, u32)> = errs.iter().map(|e| e.pos.map(|p| (p.line, p.col)).unwrap()).collect();
    // Line 10 of the seed: `edit <index>` at column 67, `""VPN-v2_split"` at column 185.
    assert_eq!(at, [(10, 67), (10, 185)], "{errs:?}");
    assert!(errs[0].message.contains("placeholder `<index>`"), "{}", errs[0]);
    assert!(errs[1].message.contains("stray `\"`"), "{}", errs[1]);
    assert!(errs[1].to_string().starts_with("000_02ea7b25408773c4.txt:10:185: stray"), "{}", errs[1]);

    // With the placeholder given a value of the same width, the quote is the only error, and
    // a mistake after it on the same line is still found.
    let fixed = only(&text, range).replacen("edit <index>", "edit 7      ", 1);
    let errs = errors(parse_str(&fixed, SEED_TOKEN));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].pos, Some(Pos { line: 10, col: 185 }));
    let worse = fixed.replacen("set nat enable", "set nat enabel", 1);
    let errs = errors(parse_str(&worse, SEED_TOKEN));
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs[1].message.contains("choose one of: enable disable"), "{}", errs[1]);
}

#[test]
fn placeholders_and_annotations_are_refused_with_position() {
    let text = seed(SEED_TOKEN);
    for (start, nth, placeholder) in
        [("config user local", 0, "<password>"), ("config vpn ipsec phase1-interface", 0, "<secret>")]
    {
        let range = block_range(&text, start, nth);
        let errs = errors(parse_str(&only(&text, range), SEED_TOKEN));
        assert_eq!(errs.len(), 1, "{errs:?}");
        let off = text[range.0..].find(placeholder).unwrap() + range.0;
        let line = text[..off].matches('\n').count() as u32 + 1;
        let col = text[..off].rsplit('\n').next().unwrap().chars().count() as u32 + 1;
        assert_eq!(errs[0].pos, Some(Pos { line, col }), "{}", errs[0]);
        assert!(errs[0].message.contains(placeholder));
    }
    let range = block_range(&text, "config vpn ipsec phase1-interface", 1);
    let errs = errors(parse_str(&only(&text, range), SEED_TOKEN));
    assert!(errs.iter().any(|e| e.message.contains("placeholder `<1>`")), "{errs:?}");
    // Blanking the annotation (same width) leaves a clean block.
    let blanked = only(&text, range).replacen(ANNOTATION, &" ".repeat(ANNOTATION.len()), 1);
    assert_eq!(parse_str(&blanked, SEED_TOKEN).unwrap().phase1[0].negotiate_timeout, 50);

    // Seed 002's CLI syntax summary is not a configuration.
    let ztna = seed(SEED_ZTNA);
    let range = block_range(&ztna, "config vpn ipsec phase1-interface", 0);
    let errs = errors(parse_str(&only(&ztna, range), SEED_ZTNA));
    assert!(errs[0].message.contains("placeholder `<name>`"), "{errs:?}");
}

/// What a seed leaves to the rest of the configuration: ports, the split address, the token.
const GLUE: &str = r#"
config system interface
    edit "wan1"
        set ip 172.16.200.4 255.255.255.0
        set dpdk-device "net_af_packet0,iface=veth-gw-wan"
    next
    edit "Internal"
        set ip 10.50.0.1/24
        set dpdk-device "0000:00:04.0"
    next
end
config firewall address
    edit "VPN-v2_split"
        set subnet 10.50.0.0 255.255.255.0
    next
end
config user fortitoken
    edit "FTKMxxxx"
        set seed "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        set status active
    next
end
"#;

#[test]
fn whole_token_seed_loads_with_what_it_refers_to() {
    let text = seed(SEED_TOKEN);
    let mut all = String::new();
    for (_, start, nth, _) in BLOCKS.iter().filter(|b| b.0 == SEED_TOKEN) {
        let (a, b) = block_range(&text, start, *nth);
        all.push_str(&substituted(&text[a..b]));
        all.push('\n');
    }
    // Alone, the references are dangling, and each is named.
    let errs = errors(config::load_str(&all, "seed.conf"));
    let msgs: Vec<String> = errs.iter().map(ToString::to_string).collect();
    for needle in [
        "unknown interface \"wan1\"",
        "unknown address \"VPN-v2_split\"",
        "unknown user fortitoken \"FTKMxxxx\"",
        "unknown interface or tunnel \"Internal\"",
    ] {
        assert!(msgs.iter().any(|m| m.contains(needle)), "{needle} not in {msgs:#?}");
    }
    assert!(errs.iter().all(|e| e.pos.is_some()), "every reference error has a position: {msgs:#?}");
    let cfg = config::load_str(&format!("{GLUE}{all}"), "seed.conf").unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(cfg.policies[0].dstaddr, ["VPN-v2_split"]);
    assert_eq!(cfg.phase1[0].negotiate_timeout, 50);
    // And the full demo configuration.
    let demo = config::load_str(&example("dialgate.conf"), "dialgate.conf").unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(
        demo.interface("wan1").unwrap().dpdk_device.as_ref().unwrap().as_str(),
        "net_af_packet0,iface=veth-gw-wan"
    );
    assert_eq!(
        demo.resolve_address("VPN-v2_split").unwrap(),
        [("10.50.0.0".parse().unwrap(), "10.50.0.255".parse().unwrap())]
    );
}

#[test]
fn whole_ztna_seed_loads_with_what_it_refers_to() {
    let text = seed(SEED_ZTNA);
    let mut all = String::from(
        r#"config system interface
    edit "port1"
    next
    edit "vlan160"
    next
    edit "mgmt1"
    next
end
config endpoint-control fctems
    edit "EMS1"
        set server "ems1.example.com"
        set serial-number "FCTEMS0000000001"
    next
    edit "EMS3"
        set server "10.160.1.50"
        set jwt-public-key "/etc/dialgate/ems3-jwt.pem"
    next
end
config user local
    edit "u1"
        set passwd "p@ssw0rd"
    next
end
config user group
    edit "local-group"
        set member "u1"
    next
    edit "local_group"
        set member "u1"
    next
end
config firewall address
    edit "dialup_split"
        set subnet 10.1.100.0/24
    next
end
"#,
    );
    for (_, start, nth, _) in BLOCKS.iter().filter(|b| b.0 == SEED_ZTNA) {
        let (a, b) = block_range(&text, start, *nth);
        all.push_str(&substituted(&text[a..b]));
        all.push('\n');
    }
    let cfg = config::load_str(&all, "ztna.conf").unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(cfg.phase1.len(), 2);
    assert_eq!(cfg.phase2_of("dialup").next().unwrap().name, "DY");
    // Without the posture-server connector the tag prefix is reported.
    let no_ems = all.replace("edit \"EMS3\"", "edit \"EMS4\"");
    let errs = errors(config::load_str(&no_ems, "ztna.conf"));
    assert!(
        errs.iter().any(|e| e.message.contains("posture server \"EMS3\"")
            && e.message.contains("did you mean")
            && e.message.contains("`EMS4`")),
        "{errs:#?}"
    );
}
