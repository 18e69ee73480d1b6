//! `dialgate run`: the gateway's IKE responder on plain UDP sockets.
//!
//! Loads and validates the configuration (errors as `file:line:col: message`, exit 1), builds the
//! responder of the first (or `--tunnel`) dial-up phase1, binds UDP 500 and 4500 on `--listen`
//! (default 0.0.0.0) and drives it until SIGINT or SIGTERM. Debug lines go to stderr, summaries
//! of established SAs and installed CHILD_SAs to stdout. CHILD_SAs go to a log-only sink until
//! the DPDK data plane is attached.

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use dialgate_controlplane::config;
use dialgate_controlplane::driver::udp::{self, Sockets};
use dialgate_controlplane::driver::{EventLog, LogOnlySink};
use dialgate_controlplane::gateway::Gateway;
use dialgate_controlplane::posture;
use dialgate_ike::crypto::SystemEntropy;
use dialgate_ike::responder::Responder;

const USAGE: &str = "usage: dialgate run --config FILE [--listen ADDR] [--tunnel NAME] [--ports IKE,NATT]";

struct Args {
    config: String,
    listen: IpAddr,
    tunnel: Option<String>,
    ports: (u16, u16),
}

fn parse(args: &[String]) -> anyhow::Result<Option<Args>> {
    let mut config = None;
    let mut listen: IpAddr = [0, 0, 0, 0].into();
    let mut tunnel = None;
    let mut ports = (500, 4500);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().with_context(|| format!("{a} needs a value\n{USAGE}"));
        match a.as_str() {
            "--config" => config = Some(val()?.clone()),
            "--listen" => listen = val()?.parse().with_context(|| format!("--listen: not an address\n{USAGE}"))?,
            "--tunnel" => tunnel = Some(val()?.clone()),
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
    Ok(Some(Args { config, listen, tunnel, ports }))
}

pub(crate) async fn shutdown_signal() {
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

pub(crate) fn main(args: &[String]) -> anyhow::Result<ExitCode> {
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
        // Posture (remote-gw-match ztna): the refresher fills the cache the check reads.
        if let Some(p) = posture::build(&cfg, &gw.name).map_err(|e| anyhow::anyhow!("{}: {e}", args.config))? {
            tokio::spawn(p.refresher.run(|line| eprintln!("{line}")));
            responder.set_client_check(Box::new(p.check));
        }
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
