//! `dialgate posture-server --file tags.json [--listen ADDR:PORT] [--tls-cert C --tls-key K]`:
//! dialgate's posture API
//! (`controlplane/posture/API.md`) served from a JSON file, reloaded when it changes, over HTTP
//! or (with a certificate) HTTPS.
//!
//! Prints `posture-server: listening on ADDR` on stdout once bound; reloads and errors on stderr.
//! Stops on SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use dialgate_controlplane::posture::server::{serve, tls_acceptor, ServerState};

const USAGE: &str =
    "usage: dialgate posture-server --file tags.json [--listen ADDR:PORT] [--tls-cert CERT.pem --tls-key KEY.pem]";

pub(crate) fn main(args: &[String]) -> anyhow::Result<ExitCode> {
    let mut file = None;
    let (mut cert, mut key) = (None::<PathBuf>, None::<PathBuf>);
    let mut listen: SocketAddr = ([127, 0, 0, 1], 8910).into();
    let mut it = args.iter();
    let parsed: anyhow::Result<()> = (|| {
        while let Some(a) = it.next() {
            let mut val = || it.next().with_context(|| format!("{a} needs a value"));
            match a.as_str() {
                "--file" => file = Some(PathBuf::from(val()?)),
                "--tls-cert" => cert = Some(PathBuf::from(val()?)),
                "--tls-key" => key = Some(PathBuf::from(val()?)),
                "--listen" => listen = val()?.parse().context("--listen: expected ADDR:PORT")?,
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                other => bail!("unknown argument {other}"),
            }
        }
        Ok(())
    })();
    let file = match (parsed, file) {
        (Ok(()), Some(f)) => f,
        (Err(e), _) => {
            eprintln!("dialgate posture-server: {e}\n{USAGE}");
            return Ok(ExitCode::from(2));
        }
        (Ok(()), None) => {
            eprintln!("dialgate posture-server: --file is required\n{USAGE}");
            return Ok(ExitCode::from(2));
        }
    };
    let state = match ServerState::load(&file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dialgate posture-server: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let tls = match (&cert, &key) {
        (None, None) => None,
        (Some(c), Some(k)) => match tls_acceptor(c, k) {
            Ok(a) => Some(a),
            Err(e) => {
                eprintln!("dialgate posture-server: {e}");
                return Ok(ExitCode::FAILURE);
            }
        },
        _ => {
            eprintln!("dialgate posture-server: --tls-cert and --tls-key go together\n{USAGE}");
            return Ok(ExitCode::from(2));
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("tokio runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot bind {listen}"))?;
        println!(
            "posture-server: listening on {} (serial {}, {} tags, {} endpoints)",
            listener.local_addr()?,
            state.snapshot.serial,
            state.snapshot.tags.len(),
            state.snapshot.endpoints.len()
        );
        serve(listener, state, tls, |line| eprintln!("{line}"), crate::run::shutdown_signal()).await?;
        Ok(ExitCode::SUCCESS)
    })
}
