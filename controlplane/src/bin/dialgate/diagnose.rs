//! `dialgate diagnose …`: asks the running gateway over its control socket.
//!
//! The words after `diagnose` are the FortiOS command (`vpn ike gateway list`, `vpn tunnel list
//! name NAME`, `debug application ike -1`, `vpn ike log filter rem-addr4 ADDR`, `debug enable`,
//! …; `dialgate diagnose help` lists them). `--socket PATH` (or `DIALGATE_SOCKET`) names the
//! socket, default `/run/dialgate/dialgate.sock`. `debug enable` prints debug lines as they
//! happen until Ctrl-C, `--for SECS` or `dialgate diagnose debug disable`.
//!
//! Exit codes: 0 answered, 1 no gateway to talk to, 2 usage error or a command the gateway
//! does not know (its message lists the commands).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use dialgate_controlplane::diagnose::server::DEFAULT_SOCKET;

const USAGE: &str = "usage: dialgate diagnose [--socket PATH] [--for SECS] COMMAND...   (dialgate diagnose help)";

fn quote(w: &str) -> String {
    if w.is_empty() || w.chars().any(char::is_whitespace) {
        format!("\"{w}\"")
    } else {
        w.to_string()
    }
}

pub(crate) fn main(args: &[String]) -> anyhow::Result<ExitCode> {
    let mut socket = std::env::var("DIALGATE_SOCKET").ok().filter(|s| !s.is_empty());
    let mut limit: Option<Duration> = None;
    let mut words = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--socket" => match it.next() {
                Some(p) => socket = Some(p.clone()),
                None => return usage("--socket needs a path"),
            },
            "--for" => match it.next().and_then(|s| s.parse::<f64>().ok()).filter(|s| *s >= 0.0 && s.is_finite()) {
                Some(s) => limit = Some(Duration::from_secs_f64(s)),
                None => return usage("--for needs a number of seconds"),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(ExitCode::SUCCESS);
            }
            w => words.push(quote(w)),
        }
    }
    if words.is_empty() {
        return usage("no command");
    }
    let path = socket.unwrap_or_else(|| DEFAULT_SOCKET.to_string());
    let stream = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "dialgate diagnose: cannot connect to {path}: {e} (is `dialgate run` running? see --socket / DIALGATE_SOCKET)"
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut w = &stream;
    w.write_all(format!("{}\n", words.join(" ")).as_bytes())?;
    let deadline = limit.map(|l| Instant::now() + l);
    let mut r = BufReader::new(&stream);
    let mut status = String::new();
    r.read_line(&mut status)?;
    match status.trim_end() {
        "ok" => {
            let mut out = Vec::new();
            r.read_to_end(&mut out)?;
            std::io::stdout().write_all(&out)?;
            Ok(ExitCode::SUCCESS)
        }
        "error" => {
            let mut out = Vec::new();
            r.read_to_end(&mut out)?;
            eprint!("dialgate diagnose: {}", String::from_utf8_lossy(&out));
            Ok(ExitCode::from(2))
        }
        "stream" => {
            let mut notice = String::new();
            r.read_line(&mut notice)?;
            eprint!("{notice}");
            stream_lines(&stream, r, deadline)?;
            Ok(ExitCode::SUCCESS)
        }
        other => {
            eprintln!("dialgate diagnose: unexpected answer {other:?} from {path}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Copies the debug stream to stdout until the gateway closes it or `deadline` passes.
fn stream_lines(stream: &UnixStream, mut r: BufReader<&UnixStream>, deadline: Option<Instant>) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    loop {
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            stream.set_read_timeout(Some(left))?;
        }
        let n = match r.fill_buf() {
            Ok([]) => return Ok(()),
            Ok(b) => {
                out.write_all(b)?;
                out.flush()?;
                b.len()
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        r.consume(n);
    }
}

fn usage(why: &str) -> anyhow::Result<ExitCode> {
    eprintln!("dialgate diagnose: {why}\n{USAGE}");
    Ok(ExitCode::from(2))
}
