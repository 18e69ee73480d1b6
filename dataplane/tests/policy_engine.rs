//! Compiled policy set: first match wins, default deny, counters, services, groups, reload.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use dialgate_dataplane::policy::{
    predefined_service, Action, AddrSet, FlowKey, GroupMask, IfMatch, PolicySet, PolicySpec, PortRange, ServiceEntry,
    SharedPolicy,
};
use proptest::prelude::*;

const TUN: u16 = 0;
const LAN: u16 = 1;
const WAN: u16 = 2;
const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;

fn a(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn key(proto: u8, src: &str, dst: &str, dport: u16) -> FlowKey {
    FlowKey {
        in_if: TUN,
        out_if: LAN,
        proto,
        src: a(src),
        dst: a(dst),
        sport: 50000,
        dport,
        icmp_type: if proto == ICMP { 8 } else { 0 },
        groups: GroupMask::NONE,
    }
}

fn spec(id: u32, src: AddrSet, dst: AddrSet, svc: &str, action: Action) -> PolicySpec {
    PolicySpec {
        id,
        src_if: IfMatch::List(vec![TUN]),
        dst_if: IfMatch::List(vec![LAN]),
        src,
        dst,
        services: predefined_service(svc).unwrap().to_vec(),
        action,
        nat: action == Action::Accept,
        groups: GroupMask::NONE,
    }
}

fn pool() -> AddrSet {
    AddrSet::from_ranges([(a("10.212.134.200"), a("10.212.134.210"))])
}

fn lan() -> AddrSet {
    AddrSet::prefix(a("192.168.10.0"), 24)
}

#[test]
fn allowed_flow_passes_denied_flow_is_dropped_and_counted() {
    let set = PolicySet::compile(&[spec(1, pool(), lan(), "HTTPS", Action::Accept)], 3, None).unwrap();
    let ok = set.lookup(&key(TCP, "10.212.134.200", "192.168.10.5", 443));
    assert_eq!((ok.policy_id, ok.action, ok.nat), (1, Action::Accept, true));
    set.count(&ok, 60, true);
    set.count(&ok, 1500, false);
    // Wrong port, address outside the pool, other direction: implicit deny (policy 0).
    for k in [
        key(TCP, "10.212.134.200", "192.168.10.5", 80),
        key(TCP, "10.212.134.211", "192.168.10.5", 443),
        key(TCP, "10.212.134.200", "192.168.11.5", 443),
        FlowKey { in_if: LAN, out_if: TUN, ..key(TCP, "10.212.134.200", "192.168.10.5", 443) },
        FlowKey { out_if: WAN, ..key(TCP, "10.212.134.200", "192.168.10.5", 443) },
    ] {
        let v = set.lookup(&k);
        assert_eq!((v.policy_id, v.action), (0, Action::Deny), "{k:?}");
        assert!(!v.accepts());
        set.count(&v, 100, false);
    }
    let c1 = set.counters(1).unwrap();
    assert_eq!((c1.packets, c1.bytes, c1.hits), (2, 1560, 1));
    let c0 = set.counters(0).unwrap();
    assert_eq!((c0.packets, c0.bytes), (5, 500));
}

#[test]
fn first_match_wins() {
    let specs = [
        spec(7, AddrSet::from_ranges([(a("10.212.134.205"), a("10.212.134.205"))]), lan(), "ALL", Action::Deny),
        spec(3, pool(), lan(), "ALL", Action::Accept),
        spec(9, pool(), lan(), "HTTPS", Action::Deny),
    ];
    let set = PolicySet::compile(&specs, 3, None).unwrap();
    assert_eq!(set.lookup(&key(TCP, "10.212.134.205", "192.168.10.5", 443)).policy_id, 7);
    assert_eq!(set.lookup(&key(TCP, "10.212.134.204", "192.168.10.5", 443)).policy_id, 3, "3 is above 9");
    let ids: Vec<u32> = set.policies().map(|p| p.id).collect();
    assert_eq!(ids, [7, 3, 9, 0], "order kept, implicit deny last");
}

#[test]
fn empty_set_denies_everything() {
    let set = PolicySet::deny_all();
    let v = set.lookup(&key(UDP, "1.2.3.4", "5.6.7.8", 53));
    assert_eq!((v.policy_id, v.action, v.nat), (0, Action::Deny, false));
    assert!(set.is_empty());
}

#[test]
fn predefined_services_and_custom_port_ranges() {
    let mut custom = spec(2, AddrSet::all(), AddrSet::all(), "ALL", Action::Accept);
    custom.services = vec![
        ServiceEntry::Tcp { dst: PortRange::new(8000, 8099), src: PortRange::ANY },
        ServiceEntry::Udp { dst: PortRange::new(5000, 5001), src: PortRange::new(1024, 65535) },
    ];
    let specs = [
        spec(1, AddrSet::all(), AddrSet::all(), "DNS", Action::Accept),
        custom,
        spec(3, AddrSet::all(), AddrSet::all(), "PING", Action::Accept),
        spec(4, AddrSet::all(), AddrSet::all(), "ALL_ICMP", Action::Deny),
    ];
    let set = PolicySet::compile(&specs, 3, None).unwrap();
    let id = |k: FlowKey| set.lookup(&k).policy_id;
    assert_eq!(id(key(UDP, "10.0.0.1", "10.0.0.2", 53)), 1);
    assert_eq!(id(key(TCP, "10.0.0.1", "10.0.0.2", 53)), 1, "DNS is TCP and UDP");
    assert_eq!(id(key(TCP, "10.0.0.1", "10.0.0.2", 7999)), 0);
    assert_eq!(id(key(TCP, "10.0.0.1", "10.0.0.2", 8000)), 2);
    assert_eq!(id(key(TCP, "10.0.0.1", "10.0.0.2", 8099)), 2);
    assert_eq!(id(key(TCP, "10.0.0.1", "10.0.0.2", 8100)), 0);
    assert_eq!(id(key(UDP, "10.0.0.1", "10.0.0.2", 8000)), 0, "the TCP range does not match UDP");
    assert_eq!(id(key(UDP, "10.0.0.1", "10.0.0.2", 5001)), 2);
    assert_eq!(id(FlowKey { sport: 53, ..key(UDP, "10.0.0.1", "10.0.0.2", 5001) }), 0, "source port range");
    assert_eq!(id(key(ICMP, "10.0.0.1", "10.0.0.2", 0)), 3, "echo request is PING");
    assert_eq!(id(FlowKey { icmp_type: 13, ..key(ICMP, "10.0.0.1", "10.0.0.2", 0) }), 4);
    assert_eq!(id(key(47, "10.0.0.1", "10.0.0.2", 0)), 0, "GRE is in no service here");
    assert!(predefined_service("NOPE").is_none());
}

#[test]
fn all_service_matches_any_protocol_and_interface_any() {
    let mut s = spec(5, AddrSet::all(), AddrSet::all(), "ALL", Action::Accept);
    s.src_if = IfMatch::Any;
    let set = PolicySet::compile(&[s], 3, None).unwrap();
    for (proto, in_if) in [(47u8, WAN), (TCP, TUN), (132, LAN), (ICMP, 40_000)] {
        let k = FlowKey { in_if, ..key(proto, "1.1.1.1", "2.2.2.2", 9) };
        assert_eq!(set.lookup(&k).policy_id, 5, "proto {proto} in {in_if}");
    }
    let k = FlowKey { out_if: WAN, ..key(TCP, "1.1.1.1", "2.2.2.2", 9) };
    assert_eq!(set.lookup(&k).policy_id, 0, "dstintf is not any");
}

#[test]
fn user_group_condition() {
    let mut s = spec(1, AddrSet::all(), lan(), "ALL", Action::Accept);
    s.groups = GroupMask(0b10);
    let set = PolicySet::compile(&[s], 3, None).unwrap();
    let k = key(TCP, "10.212.134.200", "192.168.10.5", 22);
    assert_eq!(set.lookup(&k).policy_id, 0, "no group");
    assert_eq!(set.lookup(&FlowKey { groups: GroupMask(0b01), ..k }).policy_id, 0, "another group");
    assert_eq!(set.lookup(&FlowKey { groups: GroupMask(0b11), ..k }).policy_id, 1);
}

#[test]
fn compile_errors() {
    let s = spec(1, pool(), lan(), "ALL", Action::Accept);
    assert!(PolicySet::compile(&[s.clone(), s.clone()], 3, None).is_err(), "duplicate id");
    assert!(PolicySet::compile(std::slice::from_ref(&s), 1, None).is_err(), "LAN index 1 with one interface");
    let zero = PolicySpec { id: 0, ..s };
    assert!(PolicySet::compile(&[zero], 3, None).is_err());
}

#[test]
fn counters_carry_over_a_reload_by_policy_id() {
    let old = PolicySet::compile(&[spec(1, pool(), lan(), "ALL", Action::Accept)], 3, None).unwrap();
    let v = old.lookup(&key(UDP, "10.212.134.201", "192.168.10.9", 53));
    old.count(&v, 100, true);
    let specs = [spec(2, pool(), lan(), "SSH", Action::Deny), spec(1, pool(), lan(), "ALL", Action::Accept)];
    let new = PolicySet::compile(&specs, 3, Some(&old)).unwrap();
    assert_eq!(new.generation(), old.generation() + 1);
    assert_eq!(new.counters(1).unwrap().packets, 1);
    assert_eq!(new.counters(2).unwrap().packets, 0);
    // A worker still counting on the old set adds to the same counters.
    old.count(&v, 100, false);
    assert_eq!(new.counters(1).unwrap().bytes, 200);
}

/// 100 policies, each for its own /24 of the pool and its own server port.
fn hundred(tag: u32) -> Vec<PolicySpec> {
    (0..100u32)
        .map(|i| {
            let mut s = spec(
                tag + i + 1,
                AddrSet::prefix(Ipv4Addr::new(10, 100, i as u8, 0), 24),
                lan(),
                "ALL",
                Action::Accept,
            );
            s.services = vec![ServiceEntry::Tcp { dst: PortRange::one(1000 + i as u16), src: PortRange::ANY }];
            s
        })
        .collect()
}

#[test]
fn reload_swaps_atomically_while_a_reader_looks_up() {
    let shared = Arc::new(SharedPolicy::new(PolicySet::compile(&hundred(0), 3, None).unwrap()));
    let stop = Arc::new(AtomicBool::new(false));
    let lookups = Arc::new(AtomicU64::new(0));
    let reader = {
        let (shared, stop, lookups) = (Arc::clone(&shared), Arc::clone(&stop), Arc::clone(&lookups));
        std::thread::spawn(move || {
            let mut r = shared.reader();
            let mut seen = [false; 2];
            while !stop.load(Ordering::Relaxed) {
                let set = r.current();
                // Two flows matched by policies 1 and 100 of one generation: both ids must come
                // from the same set (ids 1..=100 or 1001..=1100), never one of each.
                let v1 = set.lookup(&key(TCP, "10.100.0.7", "192.168.10.5", 1000));
                let v2 = set.lookup(&key(TCP, "10.100.99.7", "192.168.10.5", 1099));
                let gen = usize::from(v1.policy_id > 1000);
                assert_eq!(v1.policy_id, gen as u32 * 1000 + 1);
                assert_eq!(v2.policy_id, gen as u32 * 1000 + 100);
                seen[gen] = true;
                lookups.fetch_add(1, Ordering::Relaxed);
            }
            seen
        })
    };
    for i in 0..200u32 {
        let prev = shared.load();
        let tag = if i % 2 == 0 { 1000 } else { 0 };
        shared.store(PolicySet::compile(&hundred(tag), 3, Some(&prev)).unwrap());
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    stop.store(true, Ordering::Relaxed);
    let seen = reader.join().unwrap();
    assert!(lookups.load(Ordering::Relaxed) > 100);
    assert!(seen[0] && seen[1], "the reader saw both generations: {seen:?}");
    // With the reader gone, every retired set can be freed.
    assert_eq!(shared.reclaim(), 0);
}

fn arb_spec(id: u32) -> impl Strategy<Value = PolicySpec> {
    let addr = prop::collection::vec((0u32..64, 0u32..64), 1..3).prop_map(|v| {
        AddrSet::from_ranges(
            v.into_iter().map(|(x, y)| (Ipv4Addr::from(0x0a00_0000 + x), Ipv4Addr::from(0x0a00_0000 + y))),
        )
    });
    let svc = prop_oneof![
        Just(ServiceEntry::Any),
        (0u16..40, 0u16..40)
            .prop_map(|(x, y)| ServiceEntry::Tcp { dst: PortRange::new(x.min(y), x.max(y)), src: PortRange::ANY }),
        (0u16..40, 0u16..5)
            .prop_map(|(x, s)| ServiceEntry::Udp { dst: PortRange::new(x, x + 3), src: PortRange::new(s, s + 1) }),
        prop::option::of(0u8..4).prop_map(|t| ServiceEntry::Icmp { icmp_type: t }),
        Just(ServiceEntry::Proto(47)),
    ];
    let ifs = prop_oneof![Just(IfMatch::Any), prop::collection::vec(0u16..3, 1..3).prop_map(IfMatch::List)];
    (ifs.clone(), ifs, addr.clone(), addr, prop::collection::vec(svc, 1..3), any::<bool>(), 0u64..4).prop_map(
        move |(src_if, dst_if, src, dst, services, accept, groups)| PolicySpec {
            id,
            src_if,
            dst_if,
            src,
            dst,
            services,
            action: if accept { Action::Accept } else { Action::Deny },
            nat: accept,
            groups: GroupMask(groups),
        },
    )
}

proptest! {
    /// The bitmap lookup agrees with a plain first-match scan, across word boundaries (up to 150
    /// policies = 3 bitmap words).
    #[test]
    fn lookup_agrees_with_linear_scan(
        specs in (1usize..150).prop_flat_map(|n| (0..n as u32).map(|i| arb_spec(i + 1)).collect::<Vec<_>>()),
        keys in prop::collection::vec(
            (0u16..4, 0u16..4, prop::sample::select(vec![TCP, UDP, ICMP, 47]), 0u32..70, 0u32..70, 0u16..8, 0u16..45, 0u8..5, 0u64..4),
            50,
        ),
    ) {
        let set = PolicySet::compile(&specs, 3, None).unwrap();
        for (i, o, proto, s, d, sport, dport, t, g) in keys {
            let k = FlowKey {
                in_if: i, out_if: o, proto,
                src: Ipv4Addr::from(0x0a00_0000 + s), dst: Ipv4Addr::from(0x0a00_0000 + d),
                sport, dport, icmp_type: t, groups: GroupMask(g),
            };
            prop_assert_eq!(set.lookup(&k).policy_id, set.lookup_linear(&k, &specs), "{:?}", k);
        }
    }
}
