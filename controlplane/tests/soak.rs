//! The soak, small: `scripts/soak --tunnels 100 --seconds 20` with this build's `dialgate`, in
//! namespaces of its own. 100 tunnels from `dialgate connect --count` held with keepalives
//! beside a strongSwan client pinging through the DPDK worker; the script checks that every
//! tunnel connected, every keepalive and every echo was answered, and the gateway's memory
//! stayed flat while the tunnels were held. (The full run, 1 000 tunnels for 10 minutes, is
//! `./scripts/soak`.)
//!
//! Needs root, DPDK, `ip netns` and strongSwan (`scripts/setup`); otherwise it says why it
//! skips.

mod common;

#[test]
fn a_hundred_tunnels_held_with_traffic_through_the_worker() {
    if let Some(why) = common::dpdk_interop_skip_reason() {
        eprintln!("skipping: {why}");
        return;
    }
    let run = common::run_script("soak", &["--tunnels", "100", "--seconds", "20"], "k", 180);
    let (stdout, why) = (&run.stdout, &run.why);
    assert!(run.ok, "{why}");
    assert!(stdout.contains("connected 100/100"), "{why}");
    assert!(stdout.contains("keepalives answered ") && stdout.contains(", failed 0"), "{why}");
    assert!(!stdout.contains("FAIL:"), "{why}");
    // The summary is machine-readable and says the same.
    let summary = std::fs::read_to_string(run.out_dir.join("summary.json")).expect("summary.json");
    let v: serde_json::Value = serde_json::from_str(&summary).unwrap_or_else(|e| panic!("{e}: {summary}"));
    assert_eq!(v["ok"], true, "{summary}");
    assert_eq!(v["tunnels"], 100);
    assert!(v["echoes_received"].as_u64().unwrap_or(0) >= 150, "{summary}");
    assert_eq!(v["echoes_received"], v["echoes_sent"], "{summary}");
    let _ = std::fs::remove_dir_all(&run.out_dir);
}
