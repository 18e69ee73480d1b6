//! `dialgate config check|show` as a user runs it.

use std::path::PathBuf;
use std::process::Command;

fn dialgate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dialgate")).args(args).output().expect("run dialgate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn tmp(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dialgate-config-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn check_demo_config() {
    let demo = examples().join("dialgate.conf");
    let (code, out, err) = dialgate(&["config", "check", demo.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(": OK (2 interfaces, 1 users, 1 groups, 1 tokens, 1 phase1, 1 phase2, 1 policies)"), "{out}");
}

#[test]
fn check_reports_file_line_col_and_fails() {
    let p = tmp(
        "bad.conf",
        "config vpn ipsec phase1-interface\n    edit \"x\"\n        set negotiate-timeout 500\n    next\nend\n",
    );
    let (code, _, err) = dialgate(&["config", "check", p.to_str().unwrap()]);
    assert_eq!(code, 1);
    let first = err.lines().next().unwrap();
    assert_eq!(
        first,
        format!("{}:3:31: `set negotiate-timeout`: invalid value \"500\"; enter an integer from 1 to 300", p.display())
    );
    assert!(err.ends_with("1 error\n"), "{err}");
    let (code, _, _) = dialgate(&["config", "check"]);
    assert_eq!(code, 2);
    let (code, _, err) = dialgate(&["config", "check", "/nonexistent.conf"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot read"), "{err}");
}

#[test]
fn fragments_check_alone() {
    for f in std::fs::read_dir(examples()).unwrap() {
        let p = f.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("seed-") {
            let (code, _, err) = dialgate(&["config", "check", "--fragment", p.to_str().unwrap()]);
            assert_eq!(code, 0, "{name}: {err}");
            if name == "seed-fortitoken-3-phase1.conf" {
                // Whole-configuration checks need what a single block refers to.
                let (code, _, err) = dialgate(&["config", "check", p.to_str().unwrap()]);
                assert_eq!(code, 1);
                assert!(err.contains("refers to unknown interface \"wan1\""), "{err}");
            }
        }
    }
}

#[test]
fn show_path_masked_and_revealed() {
    let demo = examples().join("dialgate.conf");
    let d = demo.to_str().unwrap();
    let (code, out, err) = dialgate(&["config", "show", d, "vpn", "ipsec", "phase1-interface", "Test-Dialup"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("config vpn ipsec phase1-interface\n    edit \"Test-Dialup\"\n"), "{out}");
    assert!(out.contains("        set psksecret ENC ********\n"), "{out}");
    assert!(out.contains("        set negotiate-timeout 50\n"), "{out}");
    let (_, all, _) = dialgate(&["config", "show", d]);
    assert!(!all.contains("p@ssw0rd") && !all.contains("JBSWY3DP"), "secrets masked: {all}");
    let (code, revealed, _) = dialgate(&["config", "show", "--reveal-secrets", d]);
    assert_eq!(code, 0);
    assert!(revealed.contains("set passwd \"p@ssw0rd\""));
    // The revealed text checks clean.
    let p = tmp("shown.conf", &revealed);
    assert_eq!(dialgate(&["config", "check", p.to_str().unwrap()]).0, 0);
    let (code, _, err) = dialgate(&["config", "show", d, "user", "local", "Tset"]);
    assert_eq!(code, 1);
    assert!(err.contains("did you mean `Test`?"), "{err}");
}
