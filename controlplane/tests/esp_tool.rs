//! `dialgate esp seal|open` against scapy (an independent ESP implementation) and on bad input.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn dialgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dialgate"))
}

#[test]
fn scapy_cross_check_every_transform() {
    let py = root().join(".venv/bin/python3");
    assert!(py.exists(), "{} missing: run scripts/setup (it creates the venv with scapy)", py.display());
    let out = Command::new(py)
        .arg(root().join("scripts/esp_crosscheck.py"))
        .args(["--dialgate", env!("CARGO_BIN_EXE_dialgate"), "--count", "8"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "cross-check failed");
    assert!(text.contains("56 passed, 0 failed"), "unexpected summary: {text}");
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dialgate-esp-tool-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// A raw-IP pcap with `n` small IPv4 UDP packets.
fn clear_pcap(n: usize) -> PathBuf {
    use dialgate_dataplane::pcap::{LinkType, Writer};
    use dialgate_dataplane::wire::ipv4;
    let mut w = Writer::new(Vec::new(), LinkType::Raw).unwrap();
    for i in 0..n {
        let mut p = vec![0u8; 20 + 8 + i];
        ipv4::Repr {
            src_addr: "10.40.40.2".parse().unwrap(),
            dst_addr: "10.50.0.1".parse().unwrap(),
            next_header: 17,
            payload_len: 8 + i,
            hop_limit: 64,
            tos: 0,
        }
        .emit(&mut ipv4::Packet::new_unchecked(&mut p[..]));
        p[20..22].copy_from_slice(&1000u16.to_be_bytes());
        p[24..26].copy_from_slice(&((8 + i) as u16).to_be_bytes());
        w.write(0, i as u32, &p).unwrap();
    }
    let path = tmp(&format!("clear-{n}.pcap"));
    std::fs::write(&path, w.finish().unwrap()).unwrap();
    path
}

const KEY: &str = "000102030405060708090a0b0c0d0e0f10111213";

#[test]
fn seal_then_open_round_trips_and_reports_counts() {
    let clear = clear_pcap(5);
    let sealed = tmp("sealed.pcap");
    let opened = tmp("opened.pcap");
    let s = dialgate()
        .args(["esp", "seal", "--spi", "0x1001", "--transform", "aes128gcm", "--key", KEY])
        .args(["--tunnel-src", "192.0.2.1", "--tunnel-dst", "198.51.100.7", "--udp-encap"])
        .arg(&clear)
        .arg(&sealed)
        .output()
        .unwrap();
    assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
    assert_eq!(String::from_utf8_lossy(&s.stderr).trim(), "sealed 5 of 5 packets");
    let o = dialgate()
        .args(["esp", "open", "--spi", "4097", "--transform", "aes128gcm", "--key", KEY])
        .arg(&sealed)
        .arg(&opened)
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stderr).trim(), "opened 5 of 5 packets");
    let a = std::fs::read(&clear).unwrap();
    let b = std::fs::read(&opened).unwrap();
    assert_eq!(a, b, "opened capture equals the original byte for byte");

    // Opening the cleartext itself: every packet counted as not ESP, no output, success.
    let o = dialgate()
        .args(["esp", "open", "--spi", "4097", "--transform", "aes128gcm", "--key", KEY])
        .arg(&clear)
        .arg(tmp("none.pcap"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stderr).trim(), "opened 0 of 5 packets not_esp=5");
}

#[test]
fn wrong_key_is_one_clear_line_and_non_zero() {
    let clear = clear_pcap(3);
    let sealed = tmp("sealed-wk.pcap");
    let s = dialgate()
        .args([
            "esp",
            "seal",
            "--spi",
            "7",
            "--transform",
            "aes128-sha256",
            "--key",
            "00112233445566778899aabbccddeeff",
        ])
        .args(["--auth-key", &"ab".repeat(32), "--tunnel-src", "192.0.2.1", "--tunnel-dst", "198.51.100.7"])
        .arg(&clear)
        .arg(&sealed)
        .output()
        .unwrap();
    assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
    let o = dialgate()
        .args([
            "esp",
            "open",
            "--spi",
            "7",
            "--transform",
            "aes128-sha256",
            "--key",
            "00112233445566778899aabbccddeeff",
        ])
        .args(["--auth-key", &"cd".repeat(32)])
        .arg(&sealed)
        .arg(tmp("wk-out.pcap"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad_icv=3"), "{err}");
    assert!(err.contains("wrong key or transform?"), "{err}");
}

#[test]
fn bad_arguments_and_files_are_explained() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["esp", "open", "--spi", "1", "--transform", "aes128gcm", "--key", "0011", "a", "b"],
            "needs 20 bytes (key followed by the 4-byte salt), got 2",
        ),
        (&["esp", "open", "--spi", "1", "--transform", "des", "--key", "00", "a", "b"], "--transform: unknown \"des\""),
        (
            &["esp", "open", "--spi", "1", "--transform", "aes128gcm", "--key", "zz", "a", "b"],
            "--key: not a hex string",
        ),
        (
            &["esp", "seal", "--spi", "1", "--transform", "aes128gcm", "--key", KEY, "a", "b"],
            "seal needs --tunnel-src and --tunnel-dst",
        ),
        (&["esp", "open", "--transform", "aes128gcm", "--key", KEY, "a", "b"], "--spi is required"),
        (
            &["esp", "open", "--spi", "1", "--transform", "aes128gcm", "--key", KEY, "/nonexistent/x.pcap", "b"],
            "/nonexistent/x.pcap: cannot read",
        ),
    ];
    for (args, expect) in cases {
        let o = dialgate().args(*args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?}");
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    let junk = tmp("junk.pcap");
    std::fs::write(&junk, b"this is not a capture file at all").unwrap();
    let o = dialgate()
        .args(["esp", "open", "--spi", "1", "--transform", "aes128gcm", "--key", KEY])
        .arg(&junk)
        .arg(tmp("j.pcap"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("not a pcap file"), "{err}");
}
