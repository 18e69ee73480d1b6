//! The `all`, `dataplane`, `ike` and `pcap` commands.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use dialgate_bench::dp::{self, Case, LatencyResult, Mode, Rig, ThroughputResult};
use dialgate_bench::plot::{line_chart, Series};
use dialgate_bench::report::{self, DataplaneReport, Machine, Report, Scaling, TunnelScaling};
use dialgate_bench::{ike, pcap, Options, SizeMix};
use dialgate_dataplane::esp::{Algorithm, Backend};

struct Args {
    out: PathBuf,
    quick: bool,
    workers: Vec<usize>,
    tunnels: Vec<usize>,
    ike_tunnels: Vec<u64>,
    packets: usize,
    sizes: Vec<SizeMix>,
    pcap_tunnels: usize,
    packets_set: bool,
}

fn list<T: std::str::FromStr>(v: &str, what: &str) -> Result<Vec<T>> {
    v.split(',').map(|x| x.trim().parse::<T>().ok().with_context(|| format!("{what}: bad value {x}"))).collect()
}

fn parse(argv: Vec<String>) -> Result<Args> {
    let mut a = Args {
        out: PathBuf::from("bench/results"),
        quick: false,
        workers: vec![1, 2],
        tunnels: vec![1, 100, 1000, 10_000, 100_000],
        ike_tunnels: vec![1000, 10_000, 100_000],
        packets: 300_000,
        sizes: vec![
            SizeMix::fixed(64),
            SizeMix::fixed(128),
            SizeMix::fixed(512),
            SizeMix::fixed(1420),
            SizeMix::imix(),
        ],
        pcap_tunnels: 4,
        packets_set: false,
    };
    let mut it = argv.into_iter();
    while let Some(k) = it.next() {
        let mut val = || it.next().with_context(|| format!("{k} needs a value"));
        match k.as_str() {
            "--out" => a.out = PathBuf::from(val()?),
            "--quick" => a.quick = true,
            "--workers" => a.workers = list(&val()?, "--workers")?,
            "--tunnels" => {
                let v = val()?;
                a.tunnels = list(&v, "--tunnels")?;
                a.pcap_tunnels = a.tunnels.first().copied().unwrap_or(4);
            }
            "--ike-tunnels" => a.ike_tunnels = list(&val()?, "--ike-tunnels")?,
            "--packets" => {
                a.packets = val()?.parse().context("--packets")?;
                a.packets_set = true;
            }
            "--sizes" => {
                a.sizes = val()?
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
                    .collect::<Result<_>>()?
            }
            _ => bail!("unknown argument {k}"),
        }
    }
    if a.quick {
        a.packets = a.packets.min(50_000);
        a.tunnels.retain(|&t| t <= 10_000);
        a.ike_tunnels.retain(|&t| t <= 10_000);
    }
    Ok(a)
}

/// Entry point of the subcommands.
pub(crate) fn main(sub: &str, argv: Vec<String>) -> Result<()> {
    let command = format!("dialgate-bench {sub} {}", argv.join(" ")).trim().to_string();
    let a = parse(argv)?;
    let o = Options { algorithm: Algorithm::Aes128Gcm, backend: Backend::AwsLc, packets: a.packets };
    if sub == "pcap" {
        std::fs::create_dir_all(&a.out)?;
        let sizes: Vec<usize> = a.sizes.iter().flat_map(|m| m.cycle()).collect();
        let count = if a.packets_set { a.packets } else { 1000.max(a.pcap_tunnels) };
        let files = pcap::write(&a.out, &o, a.pcap_tunnels, &sizes, count)?;
        for f in files {
            eprintln!("wrote {}", f.display());
        }
        return Ok(());
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("create {}", a.out.display()))?;
    let t0 = Instant::now();
    // IKE first: its RSS-per-SA figure needs a heap the data-plane runs have not grown.
    let ike = (sub == "all" || sub == "ike").then(|| {
        eprintln!("== ike: setups to {:?} IKE SAs", a.ike_tunnels);
        ike::run(&a.ike_tunnels, true)
    });
    let dataplane = (sub == "all" || sub == "dataplane").then(|| dataplane(&a, &o));
    let report = Report {
        machine: Machine::detect(),
        command,
        parameters: serde_json::json!({
            "algorithm": "aes128gcm",
            "backend": "aws-lc-rs",
            "io": "in-memory ports (port::mem), one thread per worker",
            "packets_per_case_per_worker": a.packets,
            "workers": a.workers,
            "tunnels": a.tunnels,
            "ike_tunnels": a.ike_tunnels,
            "sizes": a.sizes.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
            "elapsed_s": t0.elapsed().as_secs_f64(),
        }),
        dataplane,
        ike,
    };
    write_outputs(&a.out, &report)?;
    eprintln!("done in {:.0} s; results in {}", t0.elapsed().as_secs_f64(), a.out.display());
    Ok(())
}

fn show(r: &ThroughputResult) {
    eprintln!(
        "{:>5} {:>5} w{} t{:<6}: {:6.2} Mpps {:6.2} Gbit/s  x{:.2} raw AEAD ({:.2} Gbit/s)  x{:.3} io-fwd ({:.1} Mpps)  drops {}",
        r.mode.name(),
        r.size,
        r.workers,
        r.tunnels,
        r.mpps,
        r.gbps,
        r.ratio_to_raw_aead,
        r.raw_aead_gbps,
        r.ratio_to_io_forward,
        r.io_forward_mpps,
        r.drops
    );
}

fn dataplane(a: &Args, o: &Options) -> DataplaneReport {
    let mut rep = DataplaneReport::default();
    eprintln!("== limits: raw AEAD and io-forward per size");
    let limits: Vec<(f64, f64)> = a
        .sizes
        .iter()
        .map(|m| {
            let l = dp::limits(o, m);
            eprintln!("  {:>5}: raw AEAD {:6.2} Gbit/s, io-forward {:6.2} Mpps", m.name, l.0, l.1);
            l
        })
        .collect();
    let base_tunnels = if a.tunnels.contains(&1000) { 1000 } else { a.tunnels.first().copied().unwrap_or(1) };
    eprintln!("== sizes: 1 worker, {base_tunnels} tunnels");
    let mut rig1 = Rig::new(o, 1, base_tunnels);
    let mut max: Vec<(Mode, String, f64)> = Vec::new();
    for mode in [Mode::Seal, Mode::Open, Mode::Mixed] {
        for (m, l) in a.sizes.iter().zip(&limits) {
            let r = dp::throughput(&mut rig1, &Case { mode, mix: m.clone(), packets: a.packets }, *l);
            show(&r);
            max.push((mode, m.name.clone(), r.mpps));
            rep.throughput.push(r);
        }
    }
    eprintln!("== latency: 1 worker, paced at 10/50/90 % of the measured maximum (generator on the worker thread)");
    for mode in [Mode::Seal, Mode::Open] {
        for m in &a.sizes {
            if !["64", "1420", "imix"].contains(&m.name.as_str()) {
                continue;
            }
            let Some(&(_, _, worker_max)) = max.iter().find(|x| x.0 == mode && x.1 == m.name) else { continue };
            // The generator shares the worker's thread, so the maximum of this rig is lower
            // than the worker's alone: measure it (unpaced) and load against it.
            let sat = dp::latency(&mut rig1, mode, m, worker_max, 100.0, if a.quick { 50_000 } else { 150_000 });
            let mx = sat.achieved_mpps;
            eprintln!(
                "  {:>4} {:>5} maximum with the generator on the worker's thread: {:.2} Mpps (worker alone {:.2})",
                mode.name(),
                m.name,
                mx,
                worker_max
            );
            for load in [0.1, 0.5, 0.9] {
                let n = ((load * mx * 1e6 * 0.25) as usize).clamp(20_000, if a.quick { 50_000 } else { 150_000 });
                let r = dp::latency(&mut rig1, mode, m, mx, load, n);
                eprintln!(
                    "  {:>4} {:>5} {:3.0} %: offered {:5.2} reached {:5.2} Mpps  p50 {:6.1} p99 {:6.1} p99.9 {:7.1} µs  drops {}",
                    mode.name(),
                    m.name,
                    load * 100.0,
                    r.offered_mpps,
                    r.achieved_mpps,
                    r.latency.p50_us,
                    r.latency.p99_us,
                    r.latency.p999_us,
                    r.drops
                );
                rep.latency.push(r);
            }
        }
    }
    let nmax = a.workers.iter().copied().max().unwrap_or(1);
    if nmax > 1 {
        eprintln!("== workers: 1 vs {nmax}, back to back, best of 3, {base_tunnels} tunnels");
        let mut rign = Rig::new(o, nmax, base_tunnels);
        for mode in [Mode::Seal, Mode::Open] {
            for (m, l) in a.sizes.iter().zip(&limits) {
                if !["64", "1420", "imix"].contains(&m.name.as_str()) {
                    continue;
                }
                let c = Case { mode, mix: m.clone(), packets: a.packets };
                let (one, n) = best_of(3, || (dp::throughput(&mut rig1, &c, *l), dp::throughput(&mut rign, &c, *l)));
                show(&one);
                show(&n);
                let s = Scaling {
                    mode: mode.name().into(),
                    size: m.name.clone(),
                    workers: nmax,
                    one_mpps: one.mpps,
                    n_mpps: n.mpps,
                    linearity: n.mpps / (nmax as f64 * one.mpps),
                };
                eprintln!("  linearity {} {}: x{:.2}", s.mode, s.size, s.linearity);
                rep.scaling.push(s);
                rep.throughput.push(one);
                rep.throughput.push(n);
            }
        }
    }
    drop(rig1);
    eprintln!("== tunnels: 1 worker, 64 B and 1420 B, back to back with 1 tunnel, best of 3");
    let mut rig_one = Rig::new(o, 1, 1);
    for &t in &a.tunnels {
        if t == 1 {
            continue;
        }
        let t0 = Instant::now();
        let mut rig = Rig::new(o, 1, t);
        eprintln!(
            "  {t} tunnels installed in {:.1} s, {:.0} B RSS per tunnel in the data plane",
            t0.elapsed().as_secs_f64(),
            rig.install_bytes_per_tunnel
        );
        for mode in [Mode::Seal, Mode::Open] {
            for (m, l) in a.sizes.iter().zip(&limits) {
                if !["64", "1420"].contains(&m.name.as_str()) {
                    continue;
                }
                let c = Case { mode, mix: m.clone(), packets: a.packets };
                let (one, r) = best_of(3, || (dp::throughput(&mut rig_one, &c, *l), dp::throughput(&mut rig, &c, *l)));
                show(&one);
                show(&r);
                eprintln!("  {t} tunnels / 1 tunnel, {} {}: x{:.2}", mode.name(), m.name, r.mpps / one.mpps);
                rep.tunnels.push(TunnelScaling {
                    mode: mode.name().into(),
                    size: m.name.clone(),
                    tunnels: t,
                    one_tunnel_mpps: one.mpps,
                    mpps: r.mpps,
                    ratio: r.mpps / one.mpps,
                    install_bytes_per_tunnel: rig.install_bytes_per_tunnel,
                });
                rep.throughput.push(one);
                rep.throughput.push(r);
            }
        }
    }
    rep
}

/// Runs the (baseline, candidate) pair `n` times back to back and keeps the fastest of each:
/// on a shared machine the slow runs are other processes, not the code.
fn best_of(
    n: usize,
    mut f: impl FnMut() -> (ThroughputResult, ThroughputResult),
) -> (ThroughputResult, ThroughputResult) {
    let (mut a, mut b) = f();
    for _ in 1..n {
        let (x, y) = f();
        if x.mpps > a.mpps {
            a = x;
        }
        if y.mpps > b.mpps {
            b = y;
        }
    }
    (a, b)
}

fn size_x(name: &str) -> f64 {
    name.parse().unwrap_or_else(|_| SizeMix::imix().mean())
}

fn write_outputs(out: &Path, r: &Report) -> Result<()> {
    std::fs::write(out.join("results.json"), serde_json::to_string_pretty(r)?)?;
    let mut md = format!(
        "Command: `{}`\n\nMachine: {} ({} cores), kernel {}, {}, commit {}\n\n",
        r.command, r.machine.cpu, r.machine.cores, r.machine.kernel, r.machine.rustc, r.machine.commit
    );
    if let Some(d) = &r.dataplane {
        md += "### Data plane throughput (AES-128-GCM, aws-lc-rs)\n\n";
        md += &report::throughput_table(&d.throughput);
        md += "\n### Latency (enqueue → worker tx, 1 worker)\n\n";
        md += &report::latency_table(&d.latency);
        if !d.scaling.is_empty() {
            md += "\n### Worker scaling (measured back to back)\n\n| mode | size | 1 worker Mpps | N workers Mpps | N | linearity |\n|---|---|---:|---:|---:|---:|\n";
            for s in &d.scaling {
                md += &format!(
                    "| {} | {} | {:.2} | {:.2} | {} | {:.2} |\n",
                    s.mode, s.size, s.one_mpps, s.n_mpps, s.workers, s.linearity
                );
            }
        }
        if !d.tunnels.is_empty() {
            md += "\n### Tunnel scaling (1 worker, back to back with a 1-tunnel rig)\n\n| mode | size | tunnels | 1 tunnel Mpps | Mpps | ratio | RSS B/tunnel |\n|---|---|---:|---:|---:|---:|---:|\n";
            for s in &d.tunnels {
                md += &format!(
                    "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.0} |\n",
                    s.mode, s.size, s.tunnels, s.one_tunnel_mpps, s.mpps, s.ratio, s.install_bytes_per_tunnel
                );
            }
        }
        plots(out, d)?;
    }
    if let Some(i) = &r.ike {
        md += "\n### IKE + EAP setups (one core, in process)\n\n";
        md += &report::ike_table(i);
        ike_plot(out, i)?;
    }
    std::fs::write(out.join("results.md"), &md)?;
    println!("{md}");
    Ok(())
}

fn plots(out: &Path, d: &DataplaneReport) -> Result<()> {
    let base: Vec<&ThroughputResult> = {
        let t = d.throughput.first().map_or(0, |r| r.tunnels);
        let mut seen = std::collections::HashSet::new();
        d.throughput
            .iter()
            .filter(|r| r.workers == 1 && r.tunnels == t && seen.insert((r.mode.name(), r.size.clone())))
            .collect()
    };
    let by_mode = |f: &dyn Fn(&ThroughputResult) -> f64| -> Vec<Series> {
        [Mode::Seal, Mode::Open, Mode::Mixed]
            .iter()
            .map(|m| {
                let mut pts: Vec<(f64, f64)> =
                    base.iter().filter(|r| r.mode == *m).map(|r| (size_x(&r.size), f(r))).collect();
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                Series { name: m.name().into(), points: pts }
            })
            .collect()
    };
    line_chart(
        &out.join("mpps_vs_size.svg"),
        "Mpps vs packet size (1 worker)",
        "inner packet bytes (IMIX at its mean)",
        "Mpps",
        &by_mode(&|r| r.mpps),
    )?;
    let mut ws = Vec::new();
    for s in &d.scaling {
        ws.push(Series {
            name: format!("{} {}", s.mode, s.size),
            points: vec![(1.0, gbps_of(d, s, 1)), (s.workers as f64, gbps_of(d, s, s.workers))],
        });
    }
    if !ws.is_empty() {
        line_chart(&out.join("gbps_vs_workers.svg"), "Gbit/s vs workers", "workers", "Gbit/s", &ws)?;
    }
    let mut ls = Vec::new();
    let mut keys: Vec<(Mode, String)> = Vec::new();
    for l in &d.latency {
        if !keys.contains(&(l.mode, l.size.clone())) {
            keys.push((l.mode, l.size.clone()));
        }
    }
    for (m, s) in keys {
        let pts = |f: &dyn Fn(&LatencyResult) -> f64| -> Vec<(f64, f64)> {
            d.latency.iter().filter(|l| l.mode == m && l.size == s).map(|l| (l.load * 100.0, f(l))).collect()
        };
        ls.push(Series { name: format!("{} {} p50", m.name(), s), points: pts(&|l| l.latency.p50_us) });
        ls.push(Series { name: format!("{} {} p99", m.name(), s), points: pts(&|l| l.latency.p99_us) });
    }
    if !ls.is_empty() {
        line_chart(&out.join("latency_vs_load.svg"), "Latency vs load (1 worker)", "load, % of max", "µs", &ls)?;
    }
    Ok(())
}

/// Gbit/s of a scaling pair: the last N-worker row of the mode and size, and the 1-worker row
/// measured right before it.
fn gbps_of(d: &DataplaneReport, s: &Scaling, workers: usize) -> f64 {
    let Some(i) =
        d.throughput.iter().rposition(|r| r.workers == s.workers && r.mode.name() == s.mode && r.size == s.size)
    else {
        return 0.0;
    };
    if workers == s.workers {
        d.throughput[i].gbps
    } else {
        i.checked_sub(1).map_or(0.0, |j| d.throughput[j].gbps)
    }
}

/// `dialgate-bench plot --from results.json --out DIR`: redraws the SVGs of a saved run.
pub(crate) fn replot(argv: Vec<String>) -> Result<()> {
    let (mut from, mut out) = (PathBuf::from("bench/results/results.json"), PathBuf::from("bench/results"));
    let mut it = argv.into_iter();
    while let Some(k) = it.next() {
        match k.as_str() {
            "--from" => from = PathBuf::from(it.next().context("--from needs a value")?),
            "--out" => out = PathBuf::from(it.next().context("--out needs a value")?),
            _ => bail!("unknown argument {k}"),
        }
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&from)?)?;
    if let Some(d) = v.get("dataplane").filter(|d| !d.is_null()) {
        plots(&out, &serde_json::from_value(d.clone())?)?;
    }
    if let Some(i) = v.get("ike").filter(|d| !d.is_null()) {
        ike_plot(&out, &serde_json::from_value(i.clone())?)?;
    }
    Ok(())
}

fn ike_plot(out: &Path, i: &dialgate_bench::ike::IkeReport) -> Result<()> {
    line_chart(
        &out.join("setups_vs_tunnels.svg"),
        "IKE+EAP setups/s vs IKE SAs held (one core)",
        "log10(IKE SAs held)",
        "setups/s",
        &[
            Series {
                name: "both sides, one core".into(),
                points: i.points.iter().map(|p| ((p.tunnels as f64).log10(), p.setups_per_sec)).collect(),
            },
            Series {
                name: "responder alone".into(),
                points: i.points.iter().map(|p| ((p.tunnels as f64).log10(), p.responder_setups_per_sec)).collect(),
            },
        ],
    )
}
