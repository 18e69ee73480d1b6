//! `dialgate run`: the gateway.
//!
//! Loads and validates the configuration (errors as `file:line:col: message`, exit 1) and builds
//! the responder of the first (or `--tunnel`) dial-up phase1. With `--cores FILE` (a core map)
//! it runs on DPDK: workers on their cores poll the interfaces' `dpdk-device`s, IKE reaches the
//! responder through the workers' exception ring and CHILD_SAs are installed in the data plane.
//! Without it, the responder binds UDP 500 and 4500 on `--listen` (default 0.0.0.0) and
//! CHILD_SAs only get logged (a host without DPDK, and tests). Runs until SIGINT or SIGTERM.
//! Debug lines go to stderr, summaries of established SAs and installed CHILD_SAs to stdout.

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use dialgate_controlplane::config;
use dialgate_controlplane::driver::udp::{self, Sockets};
use dialgate_controlplane::driver::{EventLog, LogOnlySink};
use dialgate_controlplane::gateway::Gateway;
use dialgate_ike::crypto::SystemEntropy;
use dialgate_ike::responder::Responder;

const USAGE: &str =
    "usage: dialgate run --config FILE [--tunnel NAME] [--cores CORES.toml | --listen ADDR [--ports IKE,NATT]]";

struct Args {
    config: String,
    listen: IpAddr,
    tunnel: Option<String>,
    ports: (u16, u16),
    cores: Option<String>,
}

fn parse(args: &[String]) -> anyhow::Result<Option<Args>> {
    let mut config = None;
    let mut listen: IpAddr = [0, 0, 0, 0].into();
    let mut tunnel = None;
    let mut ports = (500, 4500);
    let mut cores = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().with_context(|| format!("{a} needs a value\n{USAGE}"));
        match a.as_str() {
            "--config" => config = Some(val()?.clone()),
            "--listen" => listen = val()?.parse().with_context(|| format!("--listen: not an address\n{USAGE}"))?,
            "--tunnel" => tunnel = Some(val()?.clone()),
            "--cores" => cores = Some(val()?.clone()),
            "--ports" => {
                let v = val()?;
                let parsed = v.split_once(',').and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));
                ports = parsed.with_context(|| format!("--ports: expected IKE,NATT\n{USAGE}"))?;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    let config = config.with_context(|| format!("--config is required\n{USAGE}"))?;
    Ok(Some(Args { config, listen, tunnel, ports, cores }))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Keeps the PSK, passwords, token seeds and session keys out of core dumps and away from
/// same-user `ptrace`/`/proc/PID/mem` readers: the process is made non-dumpable.
fn no_core_dumps() {
    // SAFETY: PR_SET_DUMPABLE takes one integer argument and touches no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if rc != 0 {
        eprintln!("dialgate: prctl(PR_SET_DUMPABLE, 0) failed: {}", std::io::Error::last_os_error());
    }
}

pub(crate) fn main(args: &[String]) -> anyhow::Result<ExitCode> {
    no_core_dumps();
    let args = match parse(args) {
        Ok(Some(a)) => a,
        Ok(None) => return Ok(ExitCode::SUCCESS),
        Err(e) => {
            // Usage errors exit 2, as every dialgate subcommand does.
            eprintln!("dialgate run: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let cfg = match config::load_file(&args.config) {
        Ok(c) => c,
        Err(errs) => {
            for e in &errs {
                eprintln!("{e}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let gw = Gateway::from_config(&cfg, args.tunnel.as_deref()).map_err(|e| anyhow::anyhow!("{}: {e}", args.config))?;
    if let Some(cores) = &args.cores {
        return dpdk_main(&cfg, &args.config, gw, cores);
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("tokio runtime")?;
    rt.block_on(async move {
        let hint = gw.interface_ip.map(IpAddr::V4);
        let sockets = Sockets::bind(args.listen, args.ports.0, args.ports.1, hint)
            .await
            .with_context(|| format!("cannot bind UDP {}:{} and {}", args.listen, args.ports.0, args.ports.1))?;
        let (a, b) = sockets.local_addrs()?;
        let unix_now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut log = EventLog::new(&gw.name);
        let mut responder = Responder::new(gw.ike, SystemEntropy::default(), gw.verifier, gw.pool, Instant::now(), unix_now);
        println!("dialgate: tunnel {} listening on {a} and {b}", gw.name);
        let mut sink = LogOnlySink::default();
        let c = udp::run(&mut responder, &sockets, &mut log, &mut sink, shutdown_signal()).await?;
        println!(
            "dialgate: stopped; ike rx {} tx {}, keepalives {}, esp dropped {}, runts {}, send errors {}, established {}",
            c.ike_rx,
            c.ike_tx,
            c.keepalives,
            c.esp_dropped,
            c.runts,
            c.send_errors,
            responder.established_count()
        );
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(not(dpdk))]
fn dpdk_main(_cfg: &config::Config, _cfg_path: &str, _gw: Gateway, _cores: &str) -> anyhow::Result<ExitCode> {
    bail!("this dialgate was built without DPDK (libdpdk-dev not found at build time); run without --cores")
}

#[cfg(dpdk)]
fn dpdk_main(cfg: &config::Config, cfg_path: &str, gw: Gateway, cores: &str) -> anyhow::Result<ExitCode> {
    use dialgate_controlplane::driver::dpdk::{self, DataPlane};
    use dialgate_controlplane::gateway::DbVerifier;
    use dialgate_dataplane::coremap::CoreMap;

    let text = std::fs::read_to_string(cores).with_context(|| format!("cannot read {cores}"))?;
    let plan = CoreMap::from_toml(&text).and_then(|m| m.plan()).map_err(|e| anyhow::anyhow!("{cores}: {e}"))?;
    let span = gw.pool.span();
    let mut dp = DataPlane::start(cfg, plan, span, &gw.name)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("tokio runtime")?;
    let unix_now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut log = EventLog::new(&gw.name);
    let mut responder =
        Responder::new(gw.ike, SystemEntropy::default(), gw.verifier, gw.pool, Instant::now(), unix_now);
    responder.set_spi_source(dp.spi_source());
    println!("dialgate: tunnel {} on DPDK ({dp:?})", gw.name);
    let path = cfg_path.to_string();
    let reload = move |r: &mut Responder<_, DbVerifier, _>, _: &mut DataPlane| match config::load_file(&path) {
        Ok(new) => {
            r.verifier_mut().db.update(&new);
            println!("dialgate: {path} reloaded (users, groups, tokens)");
        }
        Err(errs) => {
            for e in &errs {
                eprintln!("{e}");
            }
            println!("dialgate: {path} has {} error(s); the running configuration is unchanged", errs.len());
        }
    };
    let c = rt.block_on(dpdk::run(&mut responder, &mut dp, &mut log, shutdown_signal(), reload));
    for (_, s) in dp.all_installed() {
        println!("{}", dp.traffic_line(s, "active at stop"));
    }
    println!(
        "dialgate: stopped; ike rx {} tx {}, child SAs installed {} refused {} removed {}, established {}",
        c.ike_rx,
        c.ike_tx,
        c.sa_installed,
        c.sa_refused,
        c.sa_removed,
        responder.established_count()
    );
    Ok(ExitCode::SUCCESS)
}
