//! `dialgate run`: the gateway.
//!
//! Loads and validates the configuration (errors as `file:line:col: message`, exit 1) and builds
//! the responder of the first (or `--tunnel`) dial-up phase1. With `--cores FILE` (a core map)
//! it runs on DPDK: workers on their cores poll the interfaces' `dpdk-device`s, IKE reaches the
//! responder through the workers' exception ring and CHILD_SAs are installed in the data plane.
//! Without it, the responder binds UDP 500 and 4500 on `--listen` (default 0.0.0.0) and
//! CHILD_SAs only get logged (a host without DPDK, and tests). Runs until SIGINT or SIGTERM.
//! Debug lines go to stderr, summaries of established SAs and installed CHILD_SAs to stdout.
//!
//! `dialgate diagnose …` reaches the gateway over the control socket, `--control-socket PATH`
//! (default `/run/dialgate/dialgate.sock`), served next to the driver on the same runtime. When
//! the default path cannot be used (not root, another gateway already serves it) the gateway
//! runs without it and says so on stderr; an explicit `--control-socket` that cannot be bound is
//! an error.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use dialgate_controlplane::config;
use dialgate_controlplane::diagnose::server::{Server, DEFAULT_SOCKET};
use dialgate_controlplane::diagnose::{self, Diag, TunnelInfo};
use dialgate_controlplane::driver::udp::{self, Sockets};
use dialgate_controlplane::driver::{EventLog, LogOnlySink};
use dialgate_controlplane::gateway::Gateway;
use dialgate_controlplane::posture;
use dialgate_controlplane::supervise;
use dialgate_ike::crypto::{Entropy, SystemEntropy};
use dialgate_ike::responder::{AddressPool, Dpd, Responder, UserVerifier};
use tokio::sync::mpsc::UnboundedReceiver;

const USAGE: &str = "usage: dialgate run --config FILE [--tunnel NAME] [--control-socket PATH] [--half-open-per-address N] [--cores CORES.toml | --listen ADDR [--ports IKE,NATT]]";

struct Args {
    config: String,
    listen: IpAddr,
    tunnel: Option<String>,
    ports: (u16, u16),
    cores: Option<String>,
    control_socket: Option<PathBuf>,
    /// Overrides the per-address half-open limit (0: none), e.g. for a load generator.
    half_open_per_address: Option<usize>,
}

fn parse(args: &[String]) -> anyhow::Result<Option<Args>> {
    let mut config = None;
    let mut listen: IpAddr = [0, 0, 0, 0].into();
    let mut tunnel = None;
    let mut ports = (500, 4500);
    let mut cores = None;
    let mut control_socket = None;
    let mut half_open_per_address = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().with_context(|| format!("{a} needs a value\n{USAGE}"));
        match a.as_str() {
            "--config" => config = Some(val()?.clone()),
            "--listen" => listen = val()?.parse().with_context(|| format!("--listen: not an address\n{USAGE}"))?,
            "--tunnel" => tunnel = Some(val()?.clone()),
            "--cores" => cores = Some(val()?.clone()),
            "--control-socket" => control_socket = Some(PathBuf::from(val()?)),
            "--half-open-per-address" => {
                let v = val()?.parse().with_context(|| format!("--half-open-per-address: not a number\n{USAGE}"))?;
                half_open_per_address = Some(v);
            }
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
    Ok(Some(Args { config, listen, tunnel, ports, cores, control_socket, half_open_per_address }))
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

/// The receivers both drivers select on: posture losses to delete, token pushes approved.
type Channels = (Option<UnboundedReceiver<(u64, String)>>, Option<UnboundedReceiver<String>>);

/// What both drivers attach to the responder: DPD, the posture check of a `remote-gw-match
/// ztna` tunnel (its refresher is spawned, so call this inside the tokio runtime) and the
/// `diagnose user token approve` channel.
fn attach<R: Entropy, V: UserVerifier, P: AddressPool>(
    responder: &mut Responder<R, V, P>,
    cfg: &config::Config,
    cfg_path: &str,
    tunnel: &str,
    dpd: Option<Dpd>,
    diag: &Diag,
) -> anyhow::Result<Channels> {
    responder.set_dpd(dpd);
    let (approve_tx, approvals) = tokio::sync::mpsc::unbounded_channel();
    diag.set_approvals(approve_tx);
    let mut deletes = None;
    if let Some(p) = posture::build(cfg, tunnel).map_err(|e| anyhow::anyhow!("{cfg_path}: {e}"))? {
        deletes = Some(p.lost);
        // Supervised: a failing refresher is started again, so the cache keeps being refreshed.
        let refresher = p.refresher;
        let sup = supervise::spawn(
            "posture refresher",
            move || refresher.clone().run(|line| eprintln!("{line}")),
            |line| eprintln!("dialgate: {line}"),
        );
        diag.watch_restarts("posture refresher", sup.counter());
        posture_diag(diag, &p.check, &p1_interface(cfg, tunnel));
        responder.set_client_check(Box::new(p.check));
    }
    Ok((deletes, Some(approvals)))
}

/// The `interface` of phase1 `name` (printed in the posture listings).
fn p1_interface(cfg: &config::Config, name: &str) -> String {
    cfg.phase1(name).map(|p| p.interface.clone()).unwrap_or_default()
}

/// Lets `diagnose firewall dynamic list` and `endpoint ec-shm list` read the posture cache.
fn posture_diag(diag: &Diag, check: &posture::PostureCheck, interface: &str) {
    let (cache, interface) = (check.cache.clone(), interface.to_string());
    diag.set_posture(Arc::new(move |what| match what {
        diagnose::PostureList::DynamicList(tag) => posture::render_dynamic_list(&cache, tag),
        diagnose::PostureList::EcShmList => posture::render_ec_shm_list(&cache, &interface),
    }));
    let sessions = check.sessions.clone();
    diag.set_client_uid(Arc::new(move |spi| sessions.get(spi).map(|s| s.uid)));
}

/// The `diagnose` handle for `cfg`: its tunnels, its token users, its firewall listing.
fn diag_for(cfg: &config::Config) -> Diag {
    use dialgate_controlplane::firewall::{self, GroupMap, InterfaceMap};
    let diag = Diag::new();
    for t in TunnelInfo::from_config(cfg) {
        diag.add_tunnel(t);
    }
    diag.set_two_factor_users(diagnose::two_factor_users(cfg));
    let (ifs, groups) = (InterfaceMap::from_config(cfg), GroupMap::from_config(cfg));
    match firewall::compile(cfg, &ifs, &groups, None) {
        Ok(set) => {
            let (cfg, set) = (cfg.clone(), Arc::new(set));
            diag.set_firewall(Arc::new(move || firewall::policy_list(&cfg, &set)));
        }
        Err(errs) => {
            let text: String = errs.iter().map(|e| format!("firewall policy not compiled: {e}\n")).collect();
            diag.set_firewall(Arc::new(move || text.clone()));
        }
    }
    diag
}

/// Binds the control socket (inside the runtime). The default path is optional, a path given
/// with `--control-socket` is not.
fn bind_control(path: Option<&PathBuf>) -> anyhow::Result<Option<Server>> {
    match path {
        Some(p) => Ok(Some(Server::bind(p).with_context(|| format!("control socket {}", p.display()))?)),
        None => match Server::bind(DEFAULT_SOCKET.as_ref()) {
            Ok(s) => Ok(Some(s)),
            Err(e) => {
                eprintln!("dialgate: control socket {DEFAULT_SOCKET}: {e}; running without `diagnose`");
                Ok(None)
            }
        },
    }
}

/// Serves the control socket on the current runtime until the returned sender is used or
/// dropped; await the handle afterwards so the socket file is removed.
fn spawn_control(
    server: Option<Server>,
    diag: &Diag,
) -> (tokio::sync::oneshot::Sender<()>, Option<tokio::task::JoinHandle<()>>) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = server.map(|s| {
        println!("dialgate: diagnose on {}", s.path().display());
        tokio::spawn(s.serve(diag.clone(), async move {
            let _ = rx.await;
        }))
    });
    (tx, task)
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
    let mut gw =
        Gateway::from_config(&cfg, args.tunnel.as_deref()).map_err(|e| anyhow::anyhow!("{}: {e}", args.config))?;
    if let Some(n) = args.half_open_per_address {
        Arc::make_mut(&mut gw.ike).per_address_half_open = n;
    }
    if let Some(cores) = &args.cores {
        return dpdk_main(&cfg, &args.config, gw, cores, args.control_socket.as_ref());
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("tokio runtime")?;
    rt.block_on(async move {
        let hint = gw.interface_ip.map(IpAddr::V4);
        let sockets = Sockets::bind(args.listen, args.ports.0, args.ports.1, hint)
            .await
            .with_context(|| format!("cannot bind UDP {}:{} and {}", args.listen, args.ports.0, args.ports.1))?;
        let (a, b) = sockets.local_addrs()?;
        let diag = diag_for(&cfg);
        let (stop_control, control) = spawn_control(bind_control(args.control_socket.as_ref())?, &diag);
        let unix_now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let (name, dpd) = (gw.name.clone(), gw.dpd);
        let mut responder = Responder::new(gw.ike, SystemEntropy::default(), gw.verifier, gw.pool, Instant::now(), unix_now);
        let (deletes, approvals) = attach(&mut responder, &cfg, &args.config, &name, dpd, &diag)?;
        let mut log = EventLog::with_diag(&gw.name, diag);
        println!("dialgate: tunnel {} listening on {a} and {b}", gw.name);
        let mut sink = LogOnlySink::default();
        let c = udp::run(&mut responder, &sockets, &mut log, &mut sink, shutdown_signal(), deletes, approvals).await;
        let _ = stop_control.send(());
        if let Some(t) = control {
            let _ = t.await;
        }
        let c = c?;
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
fn dpdk_main(
    _cfg: &config::Config,
    _cfg_path: &str,
    _gw: Gateway,
    _cores: &str,
    _control: Option<&PathBuf>,
) -> anyhow::Result<ExitCode> {
    bail!("this dialgate was built without DPDK (libdpdk-dev not found at build time); run without --cores")
}

#[cfg(dpdk)]
fn dpdk_main(
    cfg: &config::Config,
    cfg_path: &str,
    gw: Gateway,
    cores: &str,
    control: Option<&PathBuf>,
) -> anyhow::Result<ExitCode> {
    use dialgate_controlplane::driver::dpdk::{self, DataPlane};
    use dialgate_controlplane::gateway::DbVerifier;
    use dialgate_dataplane::coremap::CoreMap;

    let text = std::fs::read_to_string(cores).with_context(|| format!("cannot read {cores}"))?;
    let plan = CoreMap::from_toml(&text).and_then(|m| m.plan()).map_err(|e| anyhow::anyhow!("{cores}: {e}"))?;
    let span = gw.pool.span();
    let mut dp = DataPlane::start(cfg, plan, span, &gw.name)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("tokio runtime")?;
    let unix_now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let diag = diag_for(cfg);
    let (stop_control, control) = {
        let _guard = rt.enter();
        spawn_control(bind_control(control)?, &diag)
    };
    let reload_diag = diag.clone();
    let (name, dpd) = (gw.name.clone(), gw.dpd);
    let mut responder =
        Responder::new(gw.ike, SystemEntropy::default(), gw.verifier, gw.pool, Instant::now(), unix_now);
    responder.set_spi_source(dp.spi_source());
    let (deletes, approvals) = {
        let _guard = rt.enter();
        attach(&mut responder, cfg, cfg_path, &name, dpd, &diag)?
    };
    let mut log = EventLog::with_diag(&gw.name, diag);
    println!("dialgate: tunnel {} on DPDK ({dp:?})", gw.name);
    let path = cfg_path.to_string();
    reload_diag.set_firewall(Arc::new(dp.policy_lister()));
    let reload = move |r: &mut Responder<_, DbVerifier, _>, dp: &mut DataPlane| match config::load_file(&path) {
        Ok(new) => match dp.reload_firewall(&new) {
            Ok(n) => {
                r.verifier_mut().db.update(&new);
                reload_diag.set_two_factor_users(diagnose::two_factor_users(&new));
                reload_diag.set_firewall(Arc::new(dp.policy_lister()));
                println!("dialgate: {path} reloaded (users, groups, tokens, {n} firewall policies)");
            }
            Err(e) => {
                eprintln!("{path}: firewall policy: {e}");
                println!("dialgate: {path} has 1 error(s); the running configuration is unchanged");
            }
        },
        Err(errs) => {
            for e in &errs {
                eprintln!("{e}");
            }
            println!("dialgate: {path} has {} error(s); the running configuration is unchanged", errs.len());
        }
    };
    let c = rt.block_on(dpdk::run(&mut responder, &mut dp, &mut log, shutdown_signal(), reload, deletes, approvals));
    let _ = stop_control.send(());
    if let Some(t) = control {
        let _ = rt.block_on(t);
    }
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
    // What the workers dropped and why: after a run that lost packets, the first question.
    let drops: Vec<String> = dp.control().nonzero_drops().iter().map(|(r, n)| format!("{}={n}", r.name())).collect();
    println!("dialgate: data-plane drops: {}", if drops.is_empty() { "none".to_string() } else { drops.join(" ") });
    Ok(ExitCode::SUCCESS)
}
