//! Property tests: `show` output loads back to an equal model, and no input makes the reader
//! panic.

use dialgate_controlplane::config::value::base32_encode;
use dialgate_controlplane::config::{load_str, parse_str, quote, Config};
use proptest::prelude::*;

/// A name or free text: quotes, backslashes, `#`, `<…>`, spaces, newlines and non-ASCII included.
fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[a-zA-Z0-9_\\-. \"\\\\#<>\néß€]{{1,{max}}}")).unwrap()
}

fn q(max: usize) -> BoxedStrategy<String> {
    text(max).prop_map(|s| quote(&s)).boxed()
}

fn names(max: usize) -> BoxedStrategy<String> {
    prop::collection::vec(text(max), 1..4)
        .prop_map(|mut v| {
            v.sort();
            v.dedup();
            v.iter().map(|s| quote(s)).collect::<Vec<_>>().join(" ")
        })
        .boxed()
}

fn kw(choices: &'static [&'static str]) -> BoxedStrategy<String> {
    prop::sample::select(choices).prop_map(str::to_string).boxed()
}

fn int(lo: u32, hi: u32) -> BoxedStrategy<String> {
    (lo..=hi).prop_map(|v| v.to_string()).boxed()
}

fn ip() -> BoxedStrategy<String> {
    any::<[u8; 4]>().prop_map(|a| format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])).boxed()
}

fn ipmask() -> BoxedStrategy<String> {
    (ip(), 0u32..=32, any::<bool>())
        .prop_map(|(a, len, slash)| {
            if slash {
                format!("{a}/{len}")
            } else {
                let m = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                format!("{a} {}", std::net::Ipv4Addr::from(m))
            }
        })
        .boxed()
}

fn netmask() -> BoxedStrategy<String> {
    (0u32..=32)
        .prop_map(|len| std::net::Ipv4Addr::from(if len == 0 { 0 } else { u32::MAX << (32 - len) }).to_string())
        .boxed()
}

fn subset(all: &'static [&'static str]) -> BoxedStrategy<String> {
    prop::sample::subsequence(all, 1..=all.len()).prop_map(|v| v.join(" ")).boxed()
}

const P1: &[&str] = &[
    "aes128-sha256",
    "aes256-sha256",
    "aes128-sha1",
    "aes192-sha384",
    "aes128gcm-prfsha256",
    "aes256gcm-prfsha384",
    "chacha20poly1305-prfsha256",
];
const P2: &[&str] = &["aes128-sha1", "aes256-sha512", "null-sha256", "aes128gcm", "aes256gcm", "chacha20poly1305"];
const DH: &[&str] = &["14", "19", "20", "21", "31", "5"];

fn seed() -> BoxedStrategy<String> {
    prop::collection::vec(any::<u8>(), 16..40).prop_map(|b| quote(&base32_encode(&b))).boxed()
}

fn dpdk() -> BoxedStrategy<String> {
    prop_oneof![
        (0u8..32, 0u8..32, 0u8..8).prop_map(|(b, d, f)| quote(&format!("0000:{b:02x}:{d:02x}.{f}"))),
        (0u8..4, "[a-z0-9-]{1,8}").prop_map(|(n, i)| quote(&format!("net_af_packet{n},iface={i}"))),
    ]
    .boxed()
}

type Keys = Vec<(&'static str, BoxedStrategy<String>)>;

/// (table, numeric ids?, max name length, keys with value generators).
fn tables() -> Vec<(&'static str, bool, usize, Keys)> {
    vec![
        (
            "system interface",
            false,
            15,
            vec![
                ("ip", ipmask()),
                ("role", kw(&["lan", "wan", "dmz", "undefined"])),
                ("mtu", int(576, 9216)),
                ("dpdk-device", dpdk()),
                ("alias", q(25)),
                ("allowaccess", names(10)),
                ("status", kw(&["up", "down"])),
            ],
        ),
        (
            "firewall address",
            false,
            79,
            vec![
                ("type", kw(&["ipmask", "iprange"])),
                ("subnet", ipmask()),
                ("start-ip", ip()),
                ("end-ip", ip()),
                ("comment", q(40)),
            ],
        ),
        ("firewall addrgrp", false, 79, vec![("member", names(20)), ("comment", q(20))]),
        (
            "user fortitoken",
            false,
            16,
            vec![
                ("status", kw(&["new", "active", "lock"])),
                ("seed", seed()),
                ("digits", kw(&["6", "8"])),
                ("period", kw(&["30", "60"])),
                ("algorithm", kw(&["sha1", "sha256", "sha512"])),
            ],
        ),
        (
            "user local",
            false,
            64,
            vec![
                ("passwd", q(30)),
                ("two-factor", kw(&["disable", "fortitoken"])),
                ("fortitoken", q(16)),
                ("email-to", q(30)),
                ("status", kw(&["enable", "disable"])),
            ],
        ),
        ("user group", false, 35, vec![("member", names(20))]),
        (
            "vpn ipsec phase1-interface",
            false,
            15,
            vec![
                ("type", kw(&["static", "dynamic"])),
                ("interface", q(15)),
                ("ike-version", kw(&["1", "2"])),
                ("proposal", subset(P1)),
                ("dhgrp", subset(DH)),
                ("negotiate-timeout", int(1, 300)),
                ("remote-gw-match", kw(&["any", "ipmask", "iprange", "geography", "ztna"])),
                ("remote-gw-ztna-tags", names(30)),
                ("psksecret", q(30)),
                ("ipv4-start-ip", ip()),
                ("dns-mode", kw(&["manual", "auto"])),
                ("authusrgrp", q(35)),
                ("ipv4-netmask", netmask()),
                ("dpd", kw(&["disable", "on-idle", "on-demand"])),
                ("eap", kw(&["enable", "disable"])),
                ("keylife", int(120, 172800)),
                ("remote-gw-subnet", ipmask()),
            ],
        ),
        (
            "vpn ipsec phase2-interface",
            false,
            35,
            vec![
                ("phase1name", q(15)),
                ("proposal", subset(P2)),
                ("keylifeseconds", int(120, 172800)),
                ("replay-window", kw(&["64", "1024", "4096"])),
                ("src-subnet", ipmask()),
                ("pfs", kw(&["enable", "disable"])),
            ],
        ),
        (
            "firewall policy",
            true,
            0,
            vec![
                ("name", q(35)),
                ("srcintf", names(15)),
                ("dstintf", names(15)),
                ("srcaddr", names(30)),
                ("action", kw(&["accept", "deny"])),
                ("nat", kw(&["enable", "disable"])),
                ("schedule", q(10)),
                ("service", names(10)),
                ("groups", names(20)),
                ("logtraffic", kw(&["all", "utm", "disable"])),
            ],
        ),
        (
            "endpoint-control fctems",
            false,
            35,
            vec![("server", q(40)), ("https-port", int(1, 65535)), ("tenant-id", q(32)), ("source-ip", ip())],
        ),
    ]
}

/// One `config` block: entries, each with some `set`s (and perhaps an `unset`).
fn block() -> BoxedStrategy<String> {
    let tables = tables();
    prop::sample::select((0..tables.len()).collect::<Vec<_>>())
        .prop_flat_map(move |ti| {
            let (table, numeric, max, keys) = &tables[ti];
            let (table, numeric) = (*table, *numeric);
            let name: BoxedStrategy<String> =
                if numeric { (0u32..20).prop_map(|n| n.to_string()).boxed() } else { q(*max) };
            let sets: Vec<BoxedStrategy<String>> = keys
                .iter()
                .map(|(k, v)| {
                    let k = *k;
                    prop_oneof![
                        4 => v.clone().prop_map(move |v| format!("set {k} {v}")),
                        1 => Just(format!("unset {k}")),
                    ]
                    .boxed()
                })
                .collect();
            let entry = (name, prop::sample::subsequence(sets.clone(), 0..=sets.len()))
                .prop_flat_map(|(name, chosen)| (Just(name), chosen))
                .prop_map(|(name, stmts)| format!("edit {name}\n{}\nnext", stmts.join("\n")));
            prop::collection::vec(entry, 1..4).prop_map(move |es| format!("config {table}\n{}\nend\n", es.join("\n")))
        })
        .boxed()
}

fn settings_block() -> BoxedStrategy<String> {
    (1u32..=10, 1u32..=86400)
        .prop_map(|(t, d)| {
            format!("config user setting\nset auth-lockout-threshold {t}\nset auth-lockout-duration {d}\nend\n")
        })
        .boxed()
}

fn config_text() -> BoxedStrategy<String> {
    (prop::collection::vec(block(), 1..6), prop::option::of(settings_block()))
        .prop_map(|(bs, s)| bs.concat() + &s.unwrap_or_default())
        .boxed()
}

fn reparse(c: &Config) -> Config {
    let shown = c.show(&[], true).expect("show");
    parse_str(&shown, "shown.conf").unwrap_or_else(|e| panic!("show output does not load: {e:#?}\n{shown}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// parse(show(x)) == x for generated configurations, and show is a fixed point.
    #[test]
    fn show_round_trips(text in config_text()) {
        let c = parse_str(&text, "gen.conf").unwrap_or_else(|e| panic!("generated text must load: {e:#?}\n{text}"));
        let again = reparse(&c);
        prop_assert_eq!(&again, &c);
        prop_assert_eq!(again.show(&[], true).unwrap(), c.show(&[], true).unwrap());
        // The flattened form of the same text loads alike.
        let flat = c.show(&[], true).unwrap().replace('\n', " ");
        prop_assert_eq!(parse_str(&flat, "flat.conf").unwrap(), c);
    }

    /// No input makes the reader panic.
    #[test]
    fn no_panic_on_any_text(s in ".{0,400}") {
        let _ = parse_str(&s, "any.conf");
        let _ = load_str(&s, "any.conf");
    }

    /// Nor on token soup close to real configurations; whatever loads also round-trips.
    #[test]
    fn no_panic_on_token_soup(words in prop::collection::vec(prop::sample::select(vec![
        "config", "edit", "set", "unset", "next", "end", "delete", "vpn", "ipsec", "phase1-interface",
        "phase2-interface", "user", "local", "group", "fortitoken", "setting", "firewall", "policy", "address",
        "system", "interface", "member", "passwd", "proposal", "negotiate-timeout", "\"", "\"\"", "\"x\"", "\"a\\\"",
        "<index>", "#", "0", "1", "50", "4294967295", "10.0.0.1", "255.255.255.0", "\\", "aes128gcm", "seed",
        "\"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\"", "enable", "ENC", "\n", "é",
    ]), 0..60), seps in prop::collection::vec(prop::sample::select(vec![" ", "\n", "\t", ""]), 60)) {
        let mut s = String::new();
        for (i, w) in words.iter().enumerate() {
            s.push_str(w);
            s.push_str(seps[i % seps.len()]);
        }
        if let Ok(c) = parse_str(&s, "soup.conf") {
            prop_assert_eq!(reparse(&c), c);
        }
        let _ = load_str(&s, "soup.conf");
    }
}
