//! Properties of the `dialgate run` process itself.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DIALGATE: &str = env!("CARGO_BIN_EXE_dialgate");
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/dialgate.conf");

/// The gateway holds the PSK, passwords, token seeds and session keys: it is not dumpable, so
/// another process of the same user can neither attach to it nor read `/proc/PID/mem` or
/// `environ`, and a crash leaves no core file with them.
#[test]
fn gateway_process_is_not_dumpable() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if !status.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")) {
        eprintln!("skipping: needs root to run the gateway as another user");
        return;
    }
    let dir = std::env::temp_dir().join(format!("dg-dump-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("gw.conf");
    std::fs::copy(EXAMPLE, &conf).unwrap();
    Command::new("chmod").args(["-R", "a+rX"]).arg(&dir).status().unwrap();
    let port = 20000 + (std::process::id() % 20000) as u16;
    let ports = format!("{port},{}", port + 1);
    // As `nobody`: the same unprivileged user then tries to read the gateway's environment.
    let mut gw = Command::new("runuser")
        .args(["-u", "nobody", "--", DIALGATE, "run", "--listen", "127.0.0.1", "--ports", &ports, "--config"])
        .arg(&conf)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = gw.id();
    let end = Instant::now() + Duration::from_secs(5);
    let mut read = None;
    while Instant::now() < end {
        // runuser forks: the gateway is its child.
        let child = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        if let Some(c) = child.split_whitespace().next() {
            let out =
                Command::new("runuser").args(["-u", "nobody", "--", "cat", &format!("/proc/{c}/environ")]).output();
            let comm = std::fs::read_to_string(format!("/proc/{c}/comm")).unwrap_or_default();
            if comm.trim() == "dialgate" {
                read = Some(out.expect("runuser cat"));
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = gw.kill();
    let _ = Command::new("pkill").args(["-u", "nobody", "-f", &ports]).status();
    let _ = gw.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let out = read.expect("the gateway did not start as nobody");
    assert!(!out.status.success(), "same-user read of /proc/PID/environ succeeded: the process is dumpable");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"), "{out:?}");
}
