//! `dialgate connect`: dialgate's own IKEv2 client. Connects once with EAP-MSCHAPv2 (password,
//! optionally followed by the token code), optionally sending FortiClient posture data and a tag
//! token; prints the assigned address and CHILD_SA SPIs, or the refusal and exits 1. With
//! `--hold S` it stays up for S seconds and sends the (re-read) token file every
//! `--token-interval` in an INFORMATIONAL exchange.
//!
//! Secrets can come from the environment instead of the command line: `DIALGATE_PASSWORD`,
//! `DIALGATE_PSK`.
//!
//! `--count N` is the load generator of `scripts/soak`: N clients, each on its own UDP socket,
//! user name `--user` with `{n}` replaced by 1…N, at most `--parallel` negotiations at a time.
//! With `--hold S` they all stay up for S seconds, each sending an empty INFORMATIONAL every
//! `--keepalive` seconds (a sign of life, so the gateway's DPD has nothing to probe). Prints
//! the setup rate and the keepalive tally; exits 1 unless every client connected and every
//! keepalive was answered.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use dialgate_controlplane::driver::connect::{connect, ConnectError, ConnectOptions};
use dialgate_controlplane::driver::suite_name;
use dialgate_controlplane::posture::client::{
    ClientData, ZTNA_TAGS_CHECK_FAILURE, ZTNA_TAGS_CHECK_SUCCESS, ZTNA_TAG_TOKEN,
};
use dialgate_ike::initiator::InitiatorError;
use dialgate_ike::message::{Notify, NotifyType};
use zeroize::Zeroizing;

const USAGE: &str = "usage: dialgate connect --server IP[:PORT] --user U --password P [--code C] [--psk K] \
[--fct 'UID=..,IP=..,EMSSN=..'] [--token FILE] [--timeout S] [--local IP[:PORT]] [--natt] \
[--hold S [--token-interval S]] [--count N [--parallel P] [--keepalive S]]";

struct Args {
    opts: ConnectOptions,
    token_file: Option<String>,
    hold: Option<Duration>,
    token_interval: Duration,
    count: usize,
    parallel: usize,
    keepalive: Option<Duration>,
}

fn parse(args: &[String]) -> anyhow::Result<Args> {
    let mut server = None;
    let mut local: SocketAddr = ([0, 0, 0, 0], 0).into();
    let mut user = None;
    let mut password = std::env::var("DIALGATE_PASSWORD").ok().map(Zeroizing::new);
    let mut code = String::new();
    let mut psk = std::env::var("DIALGATE_PSK").ok().map(|p| Zeroizing::new(p.into_bytes()));
    let mut fct = None;
    let mut token = None;
    let mut timeout = Duration::from_secs(10);
    let mut natt = None;
    let mut token_file = None;
    let mut hold = None;
    let mut token_interval = Duration::from_secs(60);
    let (mut count, mut parallel, mut keepalive) = (1usize, 8usize, None);
    let secs = |v: &str, what: &str| -> anyhow::Result<Duration> {
        let f: f64 = v.parse().with_context(|| format!("{what}: seconds"))?;
        Duration::try_from_secs_f64(f).with_context(|| format!("{what}: seconds"))
    };
    let with_port = |v: &str, port: u16| -> anyhow::Result<SocketAddr> {
        v.parse::<SocketAddr>()
            .or_else(|_| v.parse::<std::net::IpAddr>().map(|ip| SocketAddr::new(ip, port)))
            .with_context(|| format!("{v:?} is not IP[:PORT]"))
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--server" => server = Some(with_port(val()?, 500)?),
            "--local" => local = with_port(val()?, 0)?,
            "--user" => user = Some(val()?.clone()),
            "--password" => password = Some(Zeroizing::new(val()?.clone())),
            "--code" => code = val()?.clone(),
            "--psk" => psk = Some(Zeroizing::new(val()?.as_bytes().to_vec())),
            "--fct" => fct = Some(ClientData::parse(val()?.as_bytes()).context("--fct")?),
            "--token" => {
                let f = val()?;
                let t = std::fs::read(f).with_context(|| format!("--token {f}"))?;
                token = Some(t.trim_ascii().to_vec());
                token_file = Some(f.clone());
            }
            "--natt" => natt = Some(true),
            "--timeout" => timeout = secs(val()?, "--timeout")?,
            "--hold" => hold = Some(secs(val()?, "--hold")?),
            "--token-interval" => token_interval = secs(val()?, "--token-interval")?,
            "--count" => count = val()?.parse().context("--count: a number")?,
            "--parallel" => parallel = val()?.parse::<usize>().context("--parallel: a number")?.max(1),
            "--keepalive" => keepalive = Some(secs(val()?, "--keepalive")?),
            other => bail!("unknown argument {other}"),
        }
    }
    let server = server.context("--server is required")?;
    let password = password.context("--password (or DIALGATE_PASSWORD) is required")?;
    let opts = ConnectOptions {
        server,
        local,
        user: user.context("--user is required")?,
        // The seed's "password immediately followed by the token code".
        password: Zeroizing::new(format!("{}{code}", password.as_str())),
        psk: psk.context("--psk (or DIALGATE_PSK) is required: the gateway authenticates with it")?,
        fct,
        token,
        timeout,
        retransmit: Duration::from_millis(1000),
        // The NAT-T port speaks IKE behind the non-ESP marker.
        natt: natt.unwrap_or(server.port() == 4500),
    };
    if count > 1 && !opts.user.contains("{n}") {
        bail!("--count needs {{n}} in --user (each client is its own user)");
    }
    Ok(Args { opts, token_file, hold, token_interval, count, parallel, keepalive })
}

fn notify_name(ty: u16) -> String {
    match ty {
        24 => "AUTHENTICATION_FAILED".into(),
        14 => "NO_PROPOSAL_CHOSEN".into(),
        17 => "INVALID_KE_PAYLOAD".into(),
        36 => "INTERNAL_ADDRESS_FAILURE".into(),
        38 => "TS_UNACCEPTABLE".into(),
        ZTNA_TAGS_CHECK_FAILURE => "ZTNA_TAGS_CHECK_FAILURE".into(),
        ZTNA_TAGS_CHECK_SUCCESS => "EMS_ZTNA_TAGS_CHECK_SUCCESS".into(),
        t => format!("notify {t}"),
    }
}

pub(crate) fn main(args: &[String]) -> anyhow::Result<ExitCode> {
    let args = match parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("dialgate connect: {e:#}\n{USAGE}");
            return Ok(ExitCode::from(2));
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("tokio runtime")?;
    if args.count > 1 {
        return Ok(rt.block_on(many(args)));
    }
    match rt.block_on(connect(&args.opts)) {
        Ok(mut c) => {
            let e = c.established();
            let addr = e.assigned.map_or("none".to_string(), |a| a.to_string());
            println!(
                "connected: assigned {addr} ike_spi {:016x}/{:016x} child_sa in_spi={:08x} out_spi={:08x} suite={}{}",
                e.ike_spis.0,
                e.ike_spis.1,
                e.child.inbound_spi,
                e.child.outbound_spi,
                suite_name(&e.child.suite),
                if e.nat_detected { " nat" } else { "" }
            );
            for n in &e.private_notifies {
                println!("{}: {}", notify_name(n.ty.0), String::from_utf8_lossy(&n.data));
            }
            let Some(hold) = args.hold else { return Ok(ExitCode::SUCCESS) };
            // Stay up, re-reading the token file and sending it on every interval.
            let code = rt.block_on(async {
                let end = tokio::time::Instant::now() + hold;
                loop {
                    let next = (tokio::time::Instant::now() + args.token_interval).min(end);
                    tokio::time::sleep_until(next).await;
                    if next >= end {
                        return ExitCode::SUCCESS;
                    }
                    let Some(f) = &args.token_file else { continue };
                    let token = match std::fs::read(f) {
                        Ok(t) => t.trim_ascii().to_vec(),
                        Err(e) => {
                            println!("token update skipped: {f}: {e}");
                            continue;
                        }
                    };
                    let n = Notify::new(NotifyType(ZTNA_TAG_TOKEN), token);
                    match c.send_notifies(vec![n], args.opts.timeout).await {
                        Ok(()) => println!("token update answered"),
                        Err(e) => {
                            println!("token update failed: {e}");
                            return ExitCode::FAILURE;
                        }
                    }
                }
            });
            Ok(code)
        }
        Err(ConnectError::Ike(InitiatorError::Refused { notify, private })) => {
            println!("refused: {}", notify_name(notify.0));
            for n in &private {
                println!("{}: {}", notify_name(n.ty.0), String::from_utf8_lossy(&n.data));
            }
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            println!("failed: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// What one of `--count` clients did.
#[derive(Default)]
struct Outcome {
    setup: Option<Duration>,
    error: Option<String>,
    keepalives: u64,
    failed_keepalives: u64,
}

/// `--count N`: N clients, `--parallel` negotiations at a time, then held with keepalives.
async fn many(args: Args) -> ExitCode {
    raise_fd_limit(args.count as u64 + 64);
    let args = std::sync::Arc::new(args);
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(args.parallel));
    let started = tokio::time::Instant::now();
    // When every client stops holding: set once the last negotiation is done.
    let (end_tx, end_rx) = tokio::sync::watch::channel(None::<tokio::time::Instant>);
    let (up_tx, mut up_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 1..=args.count {
        let (args, gate, mut end_rx, up_tx) = (args.clone(), gate.clone(), end_rx.clone(), up_tx.clone());
        tasks.spawn(async move {
            let mut out = Outcome::default();
            let mut opts = args.opts.clone();
            opts.user = opts.user.replace("{n}", &n.to_string());
            let permit = gate.acquire_owned().await;
            let t0 = tokio::time::Instant::now();
            let r = connect(&opts).await;
            drop(permit);
            // Dropped at once: the count of negotiations ends when every client has had its turn.
            let _ = up_tx.send(());
            drop(up_tx);
            let mut c = match r {
                Ok(c) => {
                    out.setup = Some(t0.elapsed());
                    c
                }
                Err(e) => {
                    out.error = Some(format!("{}: {e}", opts.user));
                    return out;
                }
            };
            if args.hold.is_none() {
                return out;
            }
            // Every client holds until the same instant: the end of the hold after the last setup.
            let mut next_keepalive = args.keepalive.map(|k| tokio::time::Instant::now() + k);
            loop {
                let end = *end_rx.borrow_and_update();
                if end.is_some_and(|e| tokio::time::Instant::now() >= e) {
                    return out;
                }
                let wake = match (end, next_keepalive) {
                    (Some(e), Some(k)) => Some(e.min(k)),
                    (e, k) => e.or(k),
                };
                tokio::select! {
                    // The end became known (or the sender is gone): look again.
                    _ = end_rx.changed() => continue,
                    () = async { match wake { Some(w) => tokio::time::sleep_until(w).await, None => std::future::pending().await } } => {}
                }
                if let (Some(k), Some(every)) = (next_keepalive, args.keepalive) {
                    if tokio::time::Instant::now() >= k {
                        next_keepalive = Some(k + every);
                        match c.send_notifies(Vec::new(), opts.timeout).await {
                            Ok(()) => out.keepalives += 1,
                            Err(_) => out.failed_keepalives += 1,
                        }
                    }
                }
            }
        });
    }
    drop(up_tx);
    let mut done = 0usize;
    while up_rx.recv().await.is_some() {
        done += 1;
        if done.is_multiple_of(100) {
            println!("connect: {done}/{} negotiated", args.count);
        }
    }
    let elapsed = started.elapsed();
    println!(
        "connect: {} negotiations in {:.1} s ({:.0}/s)",
        args.count,
        elapsed.as_secs_f64(),
        args.count as f64 / elapsed.as_secs_f64().max(1e-9)
    );
    let hold = args.hold.unwrap_or_default();
    let _ = end_tx.send(Some(tokio::time::Instant::now() + hold));
    if args.hold.is_some() {
        println!("connect: holding for {} s", hold.as_secs());
    }
    let mut outcomes = Vec::new();
    while let Some(r) = tasks.join_next().await {
        outcomes.push(r.unwrap_or_else(|e| Outcome { error: Some(format!("client task: {e}")), ..Outcome::default() }));
    }
    let connected = outcomes.iter().filter(|o| o.setup.is_some()).count();
    let mut setups: Vec<Duration> = outcomes.iter().filter_map(|o| o.setup).collect();
    setups.sort();
    let pct = |p: f64| setups.get(((setups.len() as f64 * p) as usize).min(setups.len().saturating_sub(1)));
    let ms = |d: Option<&Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    let (ka, ka_failed): (u64, u64) =
        outcomes.iter().fold((0, 0), |(a, b), o| (a + o.keepalives, b + o.failed_keepalives));
    println!(
        "connect: connected {connected}/{} (setup p50 {:.1} ms, p99 {:.1} ms); keepalives answered {ka}, failed {ka_failed}",
        args.count,
        ms(pct(0.5)),
        ms(pct(0.99))
    );
    for e in outcomes.iter().filter_map(|o| o.error.as_ref()).take(5) {
        println!("connect: failed: {e}");
    }
    if connected == args.count && ka_failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// One socket per client: lift the soft descriptor limit towards `want` (up to the hard limit).
fn raise_fd_limit(want: u64) {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit read and write the one struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < want {
            r.rlim_cur = want.min(r.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}
