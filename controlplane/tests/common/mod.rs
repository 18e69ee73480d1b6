//! Helpers shared by the tests that run `dialgate` against strongSwan in network namespaces.
// Each test binary uses a different subset.
#![allow(dead_code)]

use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dialgate_controlplane::auth::totp;
use dialgate_controlplane::config::{self, value::base32_decode};

/// The namespace and strongSwan helper script (`scripts/lib/netns.sh`).
pub(crate) const NETNS_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/lib/netns.sh");

/// What a run of one of the project's scripts printed ([`run_script`]).
pub(crate) struct ScriptRun {
    pub(crate) ok: bool,
    pub(crate) stdout: String,
    /// Exit code, stdout and stderr, for assertion messages.
    pub(crate) why: String,
    /// Where the script wrote its files (`DG_OUT`).
    pub(crate) out_dir: std::path::PathBuf,
}

/// Runs `scripts/<script>` with `args` against this build's `dialgate`, setup skipped, in
/// namespaces named after `tag` and the test's pid, killed after `limit_s` seconds.
pub(crate) fn run_script(script: &str, args: &[&str], tag: &str, limit_s: u32) -> ScriptRun {
    let pid = std::process::id();
    let out_dir = std::env::temp_dir().join(format!("dg-{script}-{pid}"));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/").to_string() + script;
    let out = Command::new("timeout")
        .arg(limit_s.to_string())
        .args(["bash", &path])
        .args(args)
        .env("DG_BIN", env!("CARGO_BIN_EXE_dialgate"))
        .env("DG_SKIP_SETUP", "1")
        .env("DG_NS_PREFIX", format!("dg{tag}{pid}-"))
        .env("DG_OUT", &out_dir)
        .output()
        .unwrap_or_else(|e| panic!("run scripts/{script}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let why = format!("{script} exit {:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}", out.status.code());
    ScriptRun { ok: out.status.success(), stdout, why, out_dir }
}

/// Runs one `dg_*` function of netns.sh; returns whether it succeeded and its output.
pub(crate) fn sh(args: &[&str]) -> (bool, String) {
    let out = Command::new("bash").arg(NETNS_SH).args(args).output().expect("run netns.sh");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Waits for `child` at most `limit`; kills it and returns `None` when it is still running.
pub(crate) fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + limit;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The current code of user Test's token, from the seed in the configuration text.
pub(crate) fn current_code(cfg_text: &str) -> String {
    let cfg = config::load_str(cfg_text, "gw.conf").expect("test config loads");
    let user = cfg.user("Test").expect("user Test");
    let tok = cfg.fortitokens.iter().find(|t| t.serial == user.fortitoken).expect("Test's token");
    let seed = base32_decode(tok.seed.as_ref().expect("seed").expose()).expect("base32 seed");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
    totp::format_code(totp::totp(tok.algorithm, &seed, now, u64::from(tok.period), tok.digits), tok.digits)
}

/// The flooder: stdlib Python, one UDP socket per source address, a template IKE_SA_INIT whose
/// first 8 bytes (SPIi) are replaced by random bytes per packet; counts what comes back by its
/// first payload (SA = a half-open SA was created, N(COOKIE) = challenged) and prints JSON.
pub(crate) const FLOOD_PY: &str = r#"
import json, os, socket, struct, sys, time
tmpl = bytes.fromhex(open(sys.argv[1]).read().strip())
gw, srcs = sys.argv[2], sys.argv[3].split(",")
total, secs, pps = int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
socks = []
for ip in srcs:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.bind((ip, 0))
    s.setblocking(False)
    socks.append(s)
st = {"sent": 0, "send_errors": 0, "cookie": 0, "sa": 0, "other": 0}
def drain():
    for s in socks:
        while True:
            try:
                d = s.recv(4096)
            except (BlockingIOError, InterruptedError):
                break
            if len(d) >= 36 and d[16] == 41 and struct.unpack(">H", d[34:36])[0] == 16390:
                st["cookie"] += 1
            elif len(d) >= 28 and d[16] == 33:
                st["sa"] += 1
            else:
                st["other"] += 1
t0 = time.monotonic()
i = 0
while i < total and time.monotonic() - t0 < secs:
    wait = t0 + i / pps - time.monotonic()
    if wait > 0:
        drain()
        time.sleep(min(wait, 0.002))
        continue
    try:
        socks[i % len(socks)].sendto(os.urandom(8) + tmpl[8:], (gw, 500))
        st["sent"] += 1
    except OSError:
        st["send_errors"] += 1
    i += 1
    if i % 32 == 0:
        drain()
st["elapsed"] = time.monotonic() - t0
end = time.monotonic() + 1.5
while time.monotonic() < end:
    drain()
    time.sleep(0.01)
print(json.dumps(st), flush=True)
"#;

/// A number field of the flooder's one-line JSON report.
pub(crate) fn field(json: &str, key: &str) -> f64 {
    let at = json.find(&format!("\"{key}\": ")).unwrap_or_else(|| panic!("{key} missing in {json}"));
    let rest = &json[at + key.len() + 4..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse().unwrap_or_else(|_| panic!("{key} in {json}"))
}

/// Why a test that needs root, DPDK and strongSwan cannot run here (`None`: it can).
pub(crate) fn dpdk_interop_skip_reason() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(1));
    if uid != Some("0") {
        return Some("not running as root".into());
    }
    if !dialgate_ffi::AVAILABLE {
        return Some("built without DPDK".into());
    }
    for tool in ["/usr/sbin/charon-systemd", "/usr/sbin/swanctl"] {
        if !std::path::Path::new(tool).exists() {
            return Some(format!("{tool} is missing (run scripts/setup)"));
        }
    }
    None
}
