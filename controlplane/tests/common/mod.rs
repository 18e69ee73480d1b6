//! Helpers shared by the tests that run `dialgate` against strongSwan in network namespaces.
// Each test binary uses a different subset.
#![allow(dead_code)]

use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dialgate_controlplane::auth::totp;
use dialgate_controlplane::config::{self, value::base32_decode};

/// The namespace and strongSwan helper script (`scripts/lib/netns.sh`).
pub(crate) const NETNS_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/lib/netns.sh");

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
