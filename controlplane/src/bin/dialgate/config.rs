//! `dialgate config check|show`: check a FortiOS-style configuration, print its canonical form.
//!
//! `check` prints every error as `file:line:col: message` on stderr and exits 1, or prints a
//! one-line summary and exits 0. `show` prints the canonical text (secrets masked unless
//! `--reveal-secrets`) of the whole file or of a table / entry path such as
//! `vpn ipsec phase1-interface Test-Dialup`. `--fragment` skips the whole-configuration checks
//! (for a single block, like the seed documents' examples).

use std::process::ExitCode;

use anyhow::bail;
use dialgate_controlplane::config::{self, Config, ConfigError};

const USAGE: &str = "usage: dialgate config check [--fragment] FILE
       dialgate config show [--fragment] [--reveal-secrets] FILE [PATH...]";

fn load(path: &str, fragment: bool) -> Result<Config, Vec<ConfigError>> {
    if fragment {
        match std::fs::read_to_string(path) {
            Ok(text) => config::parse_str(&text, path),
            Err(e) => {
                Err(vec![ConfigError { file: path.to_string(), pos: None, message: format!("cannot read: {e}") }])
            }
        }
    } else {
        config::load_file(path)
    }
}

fn report(errs: &[ConfigError]) -> ExitCode {
    for e in errs {
        eprintln!("{e}");
    }
    eprintln!("{} error{}", errs.len(), if errs.len() == 1 { "" } else { "s" });
    ExitCode::FAILURE
}

pub(crate) fn main(args: &[String]) -> anyhow::Result<ExitCode> {
    let Some(cmd) = args.first().map(String::as_str) else {
        eprintln!("{USAGE}");
        return Ok(ExitCode::from(2));
    };
    let mut fragment = false;
    let mut reveal = false;
    let mut positional: Vec<&str> = Vec::new();
    for a in &args[1..] {
        match a.as_str() {
            "--fragment" => fragment = true,
            "--reveal-secrets" if cmd == "show" => reveal = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(ExitCode::SUCCESS);
            }
            s if s.starts_with("--") && positional.is_empty() => bail!("unknown option {s}\n{USAGE}"),
            s => positional.push(s),
        }
    }
    let Some((file, path)) = positional.split_first() else {
        eprintln!("{USAGE}");
        return Ok(ExitCode::from(2));
    };
    match cmd {
        "check" => {
            if !path.is_empty() {
                eprintln!("{USAGE}");
                return Ok(ExitCode::from(2));
            }
            match load(file, fragment) {
                Ok(c) => {
                    println!(
                        "{file}: OK ({} interfaces, {} users, {} groups, {} tokens, {} phase1, {} phase2, {} policies)",
                        c.interfaces.len(),
                        c.users.len(),
                        c.groups.len(),
                        c.fortitokens.len(),
                        c.phase1.len(),
                        c.phase2.len(),
                        c.policies.len()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(errs) => Ok(report(&errs)),
            }
        }
        "show" => match load(file, fragment) {
            Ok(c) => match c.show(path, reveal) {
                Ok(text) => {
                    print!("{text}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("dialgate config show: {e}");
                    Ok(ExitCode::FAILURE)
                }
            },
            Err(errs) => Ok(report(&errs)),
        },
        _ => {
            eprintln!("{USAGE}");
            Ok(ExitCode::from(2))
        }
    }
}
