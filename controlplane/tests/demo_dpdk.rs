//! The demo as a test: `scripts/demo` with this build's `dialgate`, in namespaces of its own.
//!
//! A strongSwan client (swanctl, kernel-libipsec, ESP in UDP 4500) dials into `dialgate run
//! --cores` — the DPDK data plane on net_af_packet over veths — as user Test with password +
//! TOTP code, gets a pool address, and pings a LAN host through the tunnel: the echo requests
//! are opened by the worker and the replies sealed by it. The test checks the client's view
//! (CHILD_SA, virtual address, replies), the gateway's (installed CHILD_SA with our SPI layout,
//! IKE over the exception ring) and the diagnose output.
//!
//! Needs root, DPDK, `ip netns` and strongSwan (`scripts/setup`); otherwise it says why it
//! skips. The script removes its namespaces on every way out.

mod common;

use std::time::{Duration, Instant};

#[test]
fn strongswan_dials_in_and_pings_through_the_dpdk_data_plane() {
    if let Some(why) = common::dpdk_interop_skip_reason() {
        eprintln!("skipping: {why}");
        return;
    }
    let started = Instant::now();
    let run = common::run_script("demo", &[], "d", 120);
    let (stdout, why) = (&run.stdout, &run.why);
    assert!(run.ok, "{why}");
    assert!(started.elapsed() < Duration::from_secs(60), "the demo must stay under a minute: {why}");

    // The client: authenticated, a pool address, a CHILD_SA for the split-include subnet.
    assert!(stdout.contains("EAP method EAP_MSCHAPV2 succeeded"), "{why}");
    assert!(stdout.contains("client got virtual address 10.40.40."), "{why}");
    assert!(stdout.contains("=== 10.50.0.0/24"), "TSr narrowed to the split-include subnet: {why}");
    // Echo replies came back: the worker opened the requests and sealed the replies.
    let replies = stdout.matches("bytes from 10.50.0.10").count();
    assert_eq!(replies, 5, "echo replies (the LAN host was learned before): {why}");

    // The gateway: the CHILD_SA went into the data plane with an SPI it allocated (generation
    // in the top byte, worker 0), and IKE travelled over the rings.
    let install = stdout.lines().find(|l| l.contains("install child SA:")).unwrap_or_else(|| panic!("{why}"));
    let spi = install.split("in_spi=").nth(1).and_then(|s| s.get(..8)).unwrap_or_else(|| panic!("{why}"));
    let spi = u32::from_str_radix(spi, 16).unwrap_or_else(|e| panic!("{e}: {why}"));
    assert_eq!(spi >> 19 & 0x1f, 0, "worker 0 owns the SA: {why}");
    assert_ne!(spi >> 24, 0, "generation set: {why}");
    assert!(install.contains("encap=udp") && install.contains("assigned=10.40.40."), "{why}");
    let stop = stdout.lines().find(|l| l.starts_with("dialgate: stopped;")).unwrap_or_else(|| panic!("{why}"));
    assert!(stop.contains("child SAs installed 1 refused 0"), "{why}");
    // The workers' drops, by reason: none of the tunnel's own packets among them.
    let drops =
        stdout.lines().find(|l| l.starts_with("dialgate: data-plane drops: ")).unwrap_or_else(|| panic!("{why}"));
    for bad in ["unknown_spi", "bad_icv", "replayed", "spoofed", "policy_denied", "nat_refused", "no_route"] {
        assert!(!drops.contains(bad), "{bad} in {drops:?}: {why}");
    }
    assert!(!stdout.contains("ike rx 0 "), "{why}");
    // diagnose over the control socket: the seeds' fields, and the worker's per-SA counters.
    for want in [
        "name: Test-Dialup_0",
        "eap-user: Test",
        "2FA: yes",
        "assigned IPv4 address: 10.40.40.",
        "IPsec SA: created 1/1",
    ] {
        assert!(stdout.contains(want), "gateway list lacks {want:?}: {why}");
    }
    assert!(stdout.contains("name=Test-Dialup_0 ver=2"), "{why}");
    assert!(stdout.contains("  stat: rxp=5 txp=5 rxb=420 txb=420"), "tunnel list counters: {why}");
    assert!(stdout.contains("natt: mode=keepalive"), "{why}");

    // The firewall policy passed (and source-NATed) the echoes both ways: the LAN host has no
    // route back to the pool, so the replies prove the translation.
    assert!(stdout.contains("hit_count=1 packets=10 bytes=840"), "policy counters: {why}");

    // Per-SA counters from the data plane: the worker counted what it opened and sealed.
    let stat = stdout
        .lines()
        .find(|l| l.starts_with("child SA in_spi=") && l.contains("stat:"))
        .unwrap_or_else(|| panic!("{why}"));
    let field = |k: &str| -> u64 {
        stat.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {k} in {stat:?}"))
    };
    assert!(field("rxp=") >= 4 && field("txp=") >= 4, "{stat}");
    assert!(field("rxb=") >= 4 * 84 && field("txb=") >= 4 * 84, "inner bytes of 84-byte echoes: {stat}");
    let _ = std::fs::remove_dir_all(&run.out_dir);
}
