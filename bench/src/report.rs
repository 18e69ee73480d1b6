//! The JSON report (machine, versions, parameters, results) and its Markdown tables.

use serde::{Deserialize, Serialize};

use crate::dp::{LatencyResult, ThroughputResult};
use crate::ike::IkeReport;

/// Where the numbers were measured.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// `model name` from /proc/cpuinfo.
    pub cpu: String,
    /// Online CPUs.
    pub cores: usize,
    /// `uname -r` (from /proc/sys/kernel/osrelease).
    pub kernel: String,
    /// `rustc --version` at run time, if rustc is on PATH.
    pub rustc: String,
    /// `git rev-parse --short HEAD` of the working directory, if any.
    pub commit: String,
    /// dialgate-bench's version.
    pub version: &'static str,
    /// UTC time of the run (seconds since the epoch).
    pub unix_time: u64,
}

fn cmd(c: &str, args: &[&str]) -> String {
    std::process::Command::new(c)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

impl Machine {
    /// Describes this machine.
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Machine {
            cpu: cpu_model(&cpuinfo).unwrap_or_default(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string(),
            rustc: cmd("rustc", &["--version"]),
            commit: cmd("git", &["rev-parse", "--short", "HEAD"]),
            version: env!("CARGO_PKG_VERSION"),
            unix_time: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        }
    }
}

/// The first `model name` of a /proc/cpuinfo text.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

/// Data-plane results of one run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DataplaneReport {
    /// Throughput cases.
    pub throughput: Vec<ThroughputResult>,
    /// Latency points.
    pub latency: Vec<LatencyResult>,
    /// 2-worker aggregate / (2 × 1-worker), per (mode, size) measured back to back.
    pub scaling: Vec<Scaling>,
    /// N-tunnel / 1-tunnel throughput, per (mode, size) measured back to back.
    pub tunnels: Vec<TunnelScaling>,
}

/// Throughput with many tunnels against one tunnel.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TunnelScaling {
    /// Mode name.
    pub mode: String,
    /// Size name.
    pub size: String,
    /// Tunnels of the larger rig.
    pub tunnels: usize,
    /// 1-tunnel Mpps.
    pub one_tunnel_mpps: f64,
    /// N-tunnel Mpps.
    pub mpps: f64,
    /// `mpps / one_tunnel_mpps`.
    pub ratio: f64,
    /// RSS added per tunnel when installing.
    pub install_bytes_per_tunnel: f64,
}

/// Linearity from 1 to N workers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scaling {
    /// Mode name.
    pub mode: String,
    /// Size name.
    pub size: String,
    /// Workers of the larger run.
    pub workers: usize,
    /// 1-worker Mpps.
    pub one_mpps: f64,
    /// N-worker aggregate Mpps.
    pub n_mpps: f64,
    /// `n_mpps / (workers × one_mpps)`.
    pub linearity: f64,
}

/// Everything `dialgate-bench all` measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Where.
    pub machine: Machine,
    /// The command line.
    pub command: String,
    /// Parameters (algorithm, backend, packets, tunnels …).
    pub parameters: serde_json::Value,
    /// Data plane.
    pub dataplane: Option<DataplaneReport>,
    /// IKE.
    pub ike: Option<IkeReport>,
}

/// Markdown table of throughput results.
pub fn throughput_table(rows: &[ThroughputResult]) -> String {
    let mut s = String::from(
        "| mode | size | workers | tunnels | Mpps | Gbit/s | × raw AEAD | × io-fwd | drops |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        s += &format!(
            "| {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.3} | {} |\n",
            r.mode.name(),
            r.size,
            r.workers,
            r.tunnels,
            r.mpps,
            r.gbps,
            r.ratio_to_raw_aead,
            r.ratio_to_io_forward,
            r.drops
        );
    }
    s
}

/// Markdown table of latency points.
pub fn latency_table(rows: &[LatencyResult]) -> String {
    let mut s = String::from(
        "| mode | size | load | offered Mpps | reached Mpps | p50 µs | p99 µs | p99.9 µs | drops |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        s += &format!(
            "| {} | {} | {:.0} % | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} | {} |\n",
            r.mode.name(),
            r.size,
            r.load * 100.0,
            r.offered_mpps,
            r.achieved_mpps,
            r.latency.p50_us,
            r.latency.p99_us,
            r.latency.p999_us,
            r.drops
        );
    }
    s
}

/// Markdown table of IKE checkpoints.
pub fn ike_table(r: &IkeReport) -> String {
    let mut s = String::from(
        "| IKE SAs held | setups/s (both sides, one core) | responder alone setups/s | × 10 000 target | p50 µs | p99 µs | failures | RSS B/SA |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for p in &r.points {
        s += &format!(
            "| {} | {:.0} | {:.0} | {:.2} | {:.0} | {:.0} | {} | {:.0} |\n",
            p.tunnels,
            p.setups_per_sec,
            p.responder_setups_per_sec,
            p.responder_setups_per_sec / 10_000.0,
            p.setup_time.p50_us,
            p.setup_time.p99_us,
            p.failures,
            p.rss_bytes_per_sa
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dp::Mode;
    use crate::hist::Percentiles;

    fn row() -> ThroughputResult {
        ThroughputResult {
            mode: Mode::Seal,
            size: "64".into(),
            workers: 1,
            tunnels: 1000,
            packets: 1024,
            mpps: 4.5,
            gbps: 2.304,
            mpps_per_worker: vec![4.5],
            drops: 0,
            raw_aead_gbps: 3.2,
            ratio_to_raw_aead: 0.72,
            io_forward_mpps: 30.0,
            ratio_to_io_forward: 0.15,
            install_bytes_per_tunnel: 700.0,
        }
    }

    #[test]
    fn throughput_row_and_json() {
        let t = throughput_table(&[row()]);
        assert!(t.lines().nth(2).unwrap() == "| seal | 64 | 1 | 1000 | 4.50 | 2.30 | 0.72 | 0.150 | 0 |", "{t}");
        let j = serde_json::to_value(row()).unwrap();
        assert_eq!(j["mode"], "seal");
        assert_eq!(j["mpps"], 4.5);
        assert_eq!(j["mpps_per_worker"][0], 4.5);
    }

    #[test]
    fn latency_row() {
        let r = LatencyResult {
            mode: Mode::Open,
            size: "1420".into(),
            tunnels: 1000,
            load: 0.5,
            offered_mpps: 1.0,
            achieved_mpps: 0.999,
            latency: Percentiles { count: 10, p50_us: 1.25, p99_us: 7.0, p999_us: 12.34, max_us: 20.0 },
            drops: 0,
        };
        let t = latency_table(std::slice::from_ref(&r));
        assert_eq!(t.lines().nth(2).unwrap(), "| open | 1420 | 50 % | 1.00 | 1.00 | 1.2 | 7.0 | 12.3 | 0 |");
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["latency"]["p99_us"], 7.0);
    }

    #[test]
    fn cpu_model_parsing() {
        let c = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags : aes\n";
        assert_eq!(cpu_model(c).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(cpu_model("nothing"), None);
    }
}
