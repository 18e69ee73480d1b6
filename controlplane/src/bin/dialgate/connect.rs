//! `dialgate connect`: dialgate's own IKEv2 client. Connects once with EAP-MSCHAPv2 (password,
//! optionally followed by the token code), optionally sending FortiClient posture data and a tag
//! token; prints the assigned address and CHILD_SA SPIs, or the refusal and exits 1. With
//! `--hold S` it stays up for S seconds and sends the (re-read) token file every
//! `--token-interval` in an INFORMATIONAL exchange.
//!
//! Secrets can come from the environment instead of the command line: `DIALGATE_PASSWORD`,
//! `DIALGATE_PSK`.

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
[--hold S [--token-interval S]]";

struct Args {
    opts: ConnectOptions,
    token_file: Option<String>,
    hold: Option<Duration>,
    token_interval: Duration,
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
    Ok(Args { opts, token_file, hold, token_interval })
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
