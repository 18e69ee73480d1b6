//! `dialgate`: the gateway binary and its offline tools.
//!
//! Each subcommand lives in its own module and returns an `ExitCode`-worthy result; usage
//! errors print one line on stderr and exit 2.

use std::process::ExitCode;

mod config;
mod connect;
mod diagnose;
mod esp;
mod posture;
mod run;

const USAGE: &str =
    "usage: dialgate esp seal|open ... | dialgate config check|show FILE ... | dialgate run --config FILE [--cores FILE | --listen ADDR] [--tunnel NAME] [--control-socket PATH] | dialgate diagnose COMMAND... | dialgate connect ... | dialgate posture-server --file tags.json";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or(&[]);
    let result = match args.first().map(String::as_str) {
        Some("esp") => esp::main(rest),
        Some("config") => config::main(rest),
        Some("run") => run::main(rest),
        Some("diagnose") => diagnose::main(rest),
        Some("connect") => connect::main(rest),
        Some("posture-server") => posture::main(rest),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dialgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}
