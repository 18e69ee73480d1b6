//! `dialgate-bench`: the load tool.
//!
//! - `dialgate-bench all [--out DIR] [--quick]`: `dataplane` and `ike`, JSON + SVG plots +
//!   Markdown tables in DIR (default `bench/results`).
//! - `dialgate-bench dataplane [--workers 1,2] [--tunnels 1,100,1000,10000,100000]
//!   [--packets N] [--quick] [--out DIR]`: 1…N workers × 1…100 000 tunnels, 64/128/512/1420/IMIX,
//!   seal/open/mixed, latency at 10/50/90 % of the measured maximum, raw AEAD and io-forward
//!   limits in the same run.
//! - `dialgate-bench ike [--tunnels 1000,10000,100000]`: in-process IKE+EAP setup rate.
//! - `dialgate-bench ike-net --target IP[:PORT] --user U --password P --psk K [--tunnels N]
//!   [--rate R] [--window W] [--threads T] [--code-seed B32] [--json FILE]`: IKE+EAP setup rate
//!   against a gateway over UDP (dialgate or strongSwan).
//! - `dialgate-bench pcap --out DIR [--tunnels N] [--sizes 64,1420]`: ESP/cleartext pcaps.
//! - `dialgate-bench plot [--from results.json] [--out DIR]`: redraws the SVGs of a saved run.
//! - `dialgate-bench worker [...]`: the single-worker throughput harness (see `--help`).
//!
//! Build with `--release` (the workspace's release profile uses LTO).

mod run;

use anyhow::{bail, Context, Result};
use dialgate_bench::{run_case, Direction, Options, SizeMix};
use dialgate_dataplane::esp::{Algorithm, Backend};

fn main() -> Result<()> {
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.is_empty() {
        argv.push("--help".into());
    }
    let sub = argv.remove(0);
    match sub.as_str() {
        "all" | "dataplane" | "ike" | "pcap" => run::main(&sub, argv),
        "worker" => worker_cmd(argv),
        "ike-net" => ike_net_cmd(argv),
        "plot" => run::replot(argv),
        "-h" | "--help" | "help" => {
            println!("dialgate-bench all|dataplane|ike|ike-net|pcap|worker [options]  (see the crate docs / bench/README.md)");
            Ok(())
        }
        other => bail!("unknown command {other} (try --help)"),
    }
}

fn worker_cmd(argv: Vec<String>) -> Result<()> {
    let mut o = Options { algorithm: Algorithm::Aes128Gcm, backend: Backend::AwsLc, packets: 500_000 };
    let mut sizes = vec![SizeMix::fixed(64), SizeMix::fixed(512), SizeMix::fixed(1420), SizeMix::imix()];
    let mut dirs = vec![Direction::Seal, Direction::Open];
    let mut args = argv.into_iter();
    while let Some(a) = args.next() {
        let mut val = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--alg" => {
                let v = val()?;
                o.algorithm = Algorithm::from_name(&v).with_context(|| format!("unknown algorithm {v}"))?;
            }
            "--backend" => {
                o.backend = match val()?.as_str() {
                    "awslc" => Backend::AwsLc,
                    "rustcrypto" => Backend::RustCrypto,
                    v => bail!("unknown backend {v}"),
                }
            }
            "--packets" => o.packets = val()?.parse().context("--packets")?,
            "--sizes" => {
                sizes = val()?
                    .split(',')
                    .map(|s| match s {
                        "imix" => Ok(SizeMix::imix()),
                        n => n
                            .parse::<usize>()
                            .ok()
                            .filter(|n| (28..=1500).contains(n))
                            .map(SizeMix::fixed)
                            .with_context(|| format!("size {n}: 28..=1500 or imix")),
                    })
                    .collect::<Result<_>>()?;
            }
            "--dir" => {
                dirs = val()?
                    .split(',')
                    .map(|d| match d {
                        "seal" => Ok(Direction::Seal),
                        "open" => Ok(Direction::Open),
                        d => bail!("direction {d}: seal or open"),
                    })
                    .collect::<Result<_>>()?;
            }
            "-h" | "--help" => {
                println!("dialgate-bench [--alg NAME] [--backend awslc|rustcrypto] [--packets N] [--sizes 64,512,1420,imix] [--dir seal,open]");
                return Ok(());
            }
            _ => bail!("unknown argument {a} (try --help)"),
        }
    }
    let mut results = Vec::new();
    for d in &dirs {
        for s in &sizes {
            let r = run_case(&o, *d, s);
            eprintln!(
                "{:>4} {:>5}: {:6.2} Mpps {:6.2} Gbit/s  raw AEAD {:6.2} Gbit/s (x{:.2})  io-fwd {:6.2} Mpps (x{:.2})  drops {}",
                format!("{:?}", r.direction).to_lowercase(),
                r.size,
                r.mpps,
                r.gbps,
                r.raw_aead_gbps,
                r.ratio_to_raw_aead,
                r.io_forward_mpps,
                r.ratio_to_io_forward,
                r.drops
            );
            results.push(r);
        }
    }
    let report = serde_json::json!({
        "tool": "dialgate-bench",
        "io": "in-memory ports (port::mem), one worker, this thread",
        "backend": format!("{:?}", o.backend),
        "cases": results,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

const IKE_NET_USAGE: &str = "usage: dialgate-bench ike-net --target IP[:PORT] --user U --password P --psk K \
[--tunnels N] [--rate SETUPS_PER_S (0: unpaced)] [--window IN_FLIGHT] [--threads T] [--code-seed BASE32 | --no-code] \
[--dh 31,19] [--retransmit S] [--timeout S] [--local IP] [--json FILE]";

fn ike_net_cmd(argv: Vec<String>) -> Result<()> {
    use dialgate_bench::ikenet::{run, NetOptions};
    use std::net::{IpAddr, SocketAddr};
    use std::time::Duration;
    use zeroize::Zeroizing;
    let (mut target, mut user, mut password, mut psk) = (None, None, None, None);
    let (mut tunnels, mut rate, mut window, mut threads) = (100u64, 0.0f64, 64usize, 1usize);
    let (mut code_seed, mut dh, mut json, mut local) = (None, vec![31u16], None, None);
    let (mut retransmit, mut timeout) = (Duration::from_secs(2), Duration::from_secs(10));
    let secs = |v: &str, what: &str| -> Result<Duration> {
        Duration::try_from_secs_f64(v.parse().with_context(|| format!("{what}: seconds"))?)
            .with_context(|| format!("{what}: seconds"))
    };
    let mut args = argv.into_iter();
    while let Some(a) = args.next() {
        let mut val = || args.next().with_context(|| format!("{a} needs a value\n{IKE_NET_USAGE}"));
        match a.as_str() {
            "--target" => {
                let v = val()?;
                target = Some(
                    v.parse::<SocketAddr>()
                        .or_else(|_| v.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 500)))
                        .with_context(|| format!("--target {v:?}: IP[:PORT]"))?,
                );
            }
            "--local" => local = Some(val()?.parse::<IpAddr>().context("--local: an address")?),
            "--user" => user = Some(val()?),
            "--password" => password = Some(val()?),
            "--psk" => psk = Some(val()?),
            "--tunnels" => tunnels = val()?.parse().context("--tunnels")?,
            "--rate" => rate = val()?.parse().context("--rate")?,
            "--window" => window = val()?.parse::<usize>().context("--window")?.max(1),
            "--threads" => threads = val()?.parse::<usize>().context("--threads")?.max(1),
            "--code-seed" => {
                let v = val()?;
                code_seed = Some(Zeroizing::new(
                    dialgate_controlplane::config::value::base32_decode(&v).context("--code-seed: base32")?,
                ));
            }
            "--no-code" => code_seed = None,
            "--dh" => dh = val()?.split(',').map(|g| g.parse::<u16>().context("--dh")).collect::<Result<_>>()?,
            "--retransmit" => retransmit = secs(&val()?, "--retransmit")?,
            "--timeout" => timeout = secs(&val()?, "--timeout")?,
            "--json" => json = Some(val()?),
            "-h" | "--help" => {
                println!("{IKE_NET_USAGE}");
                return Ok(());
            }
            _ => bail!("unknown argument {a}\n{IKE_NET_USAGE}"),
        }
    }
    let target = target.with_context(|| format!("--target is required\n{IKE_NET_USAGE}"))?;
    let password = password.or_else(|| std::env::var("DIALGATE_PASSWORD").ok()).context("--password is required")?;
    let psk = psk.or_else(|| std::env::var("DIALGATE_PSK").ok()).context("--psk is required")?;
    let mut o = NetOptions::new(target, &user.context("--user is required")?, &password, psk.as_bytes());
    if let Some(ip) = local {
        o.local = SocketAddr::new(ip, 0);
    }
    (o.tunnels, o.rate, o.window, o.threads, o.code_seed, o.dh_groups) =
        (tunnels, rate, window, threads, code_seed, dh);
    (o.retransmit, o.timeout) = (retransmit, timeout);
    let r = run(&o)?;
    println!(
        "ike-net {}: {} setups ({} threads, window {}, rate {}): {} established, {} failed, {} retransmits in {:.2} s \
= {:.0} setups/s; setup time p50 {:.1} ms p99 {:.1} ms",
        r.target,
        r.tunnels,
        r.threads,
        r.window,
        if r.rate > 0.0 { format!("{}/s", r.rate) } else { "unpaced".into() },
        r.established,
        r.failures,
        r.retransmits,
        r.elapsed_s,
        r.setups_per_sec,
        r.setup_time.p50_us / 1000.0,
        r.setup_time.p99_us / 1000.0
    );
    for (why, n) in &r.failure_reasons {
        println!("  failed: {n} × {why}");
    }
    if let Some(f) = json {
        std::fs::write(&f, serde_json::to_string_pretty(&r)?).with_context(|| format!("write {f}"))?;
    }
    Ok(())
}
