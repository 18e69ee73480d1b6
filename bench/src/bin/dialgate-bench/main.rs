//! `dialgate-bench`: the load tool.
//!
//! - `dialgate-bench all [--out DIR] [--quick]`: `dataplane` and `ike`, JSON + SVG plots +
//!   Markdown tables in DIR (default `bench/results`).
//! - `dialgate-bench dataplane [--workers 1,2] [--tunnels 1,100,1000,10000,100000]
//!   [--packets N] [--quick] [--out DIR]`: 1…N workers × 1…100 000 tunnels, 64/128/512/1420/IMIX,
//!   seal/open/mixed, latency at 10/50/90 % of the measured maximum, raw AEAD and io-forward
//!   limits in the same run.
//! - `dialgate-bench ike [--tunnels 1000,10000,100000]`: in-process IKE+EAP setup rate.
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
        "plot" => run::replot(argv),
        "-h" | "--help" | "help" => {
            println!("dialgate-bench all|dataplane|ike|pcap|worker [options]  (see the crate docs / bench/README.md)");
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
