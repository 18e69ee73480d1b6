//! FortiOS-style configuration: reader, typed model, validation and canonical printer.
//!
//! How to drive it:
//! - [`load_str`] / [`load_file`] read a complete configuration and check it whole (references
//!   between objects, incompatible settings). Errors are a list of [`ConfigError`]s that display
//!   as `file:line:col: message`, with the nearest known names for a misspelt table, key or
//!   reference.
//! - [`parse_str`] reads and type-checks without the whole-configuration checks: a fragment such
//!   as one block copied from the documentation loads on its own.
//! - [`Config::show`] prints the canonical FortiOS form (secrets masked unless asked), which
//!   loads back to an equal [`Config`].
//! - [`ConfigStore`] holds the running configuration; a reload that fails leaves it untouched.
//!
//! Syntax: `config PATH` … `edit NAME` … `set KEY VALUE…` / `unset KEY` … `next` … `end`, also
//! `delete NAME`; quoted strings with `\` escapes; `#` comments. The reader is token-based: one
//! statement a line and the seeds' flattened one-line text are read alike. Placeholders copied
//! from documentation (`<password>`, `<secret>`, `<index>`, `<name>`) are refused with their
//! position and what to put there instead: they are never taken as values.

mod build;
mod lexer;
pub mod objects;
mod parser;
mod show;
mod validate;
pub mod value;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

pub use objects::{
    AddrGrp, Address, AddressType, AssignIpFrom, AuthMethod, CertLocal, DnsMode, DpdMode, DpdkDevice, EapIdentity,
    Fctems, FortiToken, GroupType, Interface, InterfaceRole, InterfaceType, LinkStatus, LocalUser, LogTraffic,
    NatTraversal, PeerType, Phase1, Phase1Type, Phase2, Policy, PolicyAction, PortSpec, RemoteGwMatch, ServiceCustom,
    ServiceProtocol, StaticRoute, TokenStatus, TotpAlgorithm, TwoFactor, UserGroup, UserSetting, UserType, WizardType,
};
pub use show::quote;
pub use validate::{BUILTIN_ADDRESSES, BUILTIN_SCHEDULES, BUILTIN_SERVICES};
pub use value::{Cipher, Flag, Hash, IpMask, Phase1Proposal, Phase2Proposal, Secret};

/// A position in the source text (1-based line and column, columns counted in characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    /// Line, from 1.
    pub line: u32,
    /// Column, from 1.
    pub col: u32,
}

/// One problem in a configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file name given to the loader.
    pub file: String,
    /// Where in the file, when known (whole-configuration checks of a [`Config`] built in code
    /// have none).
    pub pos: Option<Pos>,
    /// What is wrong and what would be right.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some(p) => write!(f, "{}:{}:{}: {}", self.file, p.line, p.col, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// The whole configuration: one list per FortiOS table, in the order entries were created.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Config {
    /// `config system interface`.
    pub interfaces: Vec<Interface>,
    /// `config router static`.
    pub static_routes: Vec<StaticRoute>,
    /// `config firewall address`.
    pub addresses: Vec<Address>,
    /// `config firewall addrgrp`.
    pub addrgrps: Vec<AddrGrp>,
    /// `config firewall service custom`.
    pub services: Vec<ServiceCustom>,
    /// `config firewall policy`, in evaluation order.
    pub policies: Vec<Policy>,
    /// `config user local`.
    pub users: Vec<LocalUser>,
    /// `config user group`.
    pub groups: Vec<UserGroup>,
    /// `config user fortitoken`.
    pub fortitokens: Vec<FortiToken>,
    /// `config user setting`.
    pub user_setting: UserSetting,
    /// `config vpn ipsec phase1-interface`.
    pub phase1: Vec<Phase1>,
    /// `config vpn ipsec phase2-interface`.
    pub phase2: Vec<Phase2>,
    /// `config endpoint-control fctems`.
    pub fctems: Vec<Fctems>,
    /// `config vpn certificate local`.
    pub cert_locals: Vec<CertLocal>,
}

fn to_errors(file: &str, mut raw: Vec<(Option<Pos>, String)>) -> Vec<ConfigError> {
    raw.sort_by_key(|(p, _)| p.unwrap_or_default());
    raw.into_iter().map(|(pos, message)| ConfigError { file: file.to_string(), pos, message }).collect()
}

fn end_pos(text: &str) -> Pos {
    let line = text.matches('\n').count() + 1;
    let col = text.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Pos { line: u32::try_from(line).unwrap_or(u32::MAX), col: u32::try_from(col).unwrap_or(u32::MAX) }
}

fn read(text: &str) -> (Config, build::SourceMap, Vec<(Pos, String)>) {
    let (toks, mut errs) = lexer::lex(text);
    let (blocks, perrs) = parser::parse(&toks, end_pos(text));
    errs.extend(perrs);
    let mut cfg = Config::default();
    let mut src = build::SourceMap::default();
    build::apply(&mut cfg, &blocks, &mut src, &mut errs);
    (cfg, src, errs)
}

/// Reads and type-checks `text` without the whole-configuration checks (for fragments).
pub fn parse_str(text: &str, file_name: &str) -> Result<Config, Vec<ConfigError>> {
    let (cfg, _, errs) = read(text);
    if errs.is_empty() {
        Ok(cfg)
    } else {
        Err(to_errors(file_name, errs.into_iter().map(|(p, m)| (Some(p), m)).collect()))
    }
}

/// Reads a complete configuration and checks it whole. All errors found are returned, in order;
/// the whole-configuration checks run once the text reads without error.
pub fn load_str(text: &str, file_name: &str) -> Result<Config, Vec<ConfigError>> {
    let (cfg, src, errs) = read(text);
    let mut all: Vec<(Option<Pos>, String)> = errs.into_iter().map(|(p, m)| (Some(p), m)).collect();
    // Whole-configuration checks only on a configuration that read cleanly: on a broken one
    // they would report the consequences of the errors above (a refused `set ike-version 3`
    // leaves version 1, which is then "not supported").
    if all.is_empty() {
        all.extend(validate::validate(&cfg, Some(&src)));
    }
    if all.is_empty() {
        Ok(cfg)
    } else {
        Err(to_errors(file_name, all))
    }
}

/// Reads and checks a configuration file.
pub fn load_file(path: impl AsRef<Path>) -> Result<Config, Vec<ConfigError>> {
    let path = path.as_ref();
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => load_str(&text, &name),
        Err(e) => Err(vec![ConfigError { file: name, pos: None, message: format!("cannot read: {e}") }]),
    }
}

impl Config {
    /// The whole-configuration checks, for a configuration built or changed in code.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let errs = validate::validate(self, None);
        if errs.is_empty() {
            Ok(())
        } else {
            Err(to_errors("<config>", errs))
        }
    }

    /// The canonical FortiOS text of the part selected by `path` (empty: everything), e.g.
    /// `["vpn", "ipsec", "phase1-interface", "Test-Dialup"]`. Secrets print as `ENC ********`
    /// unless `reveal_secrets`.
    pub fn show(&self, path: &[&str], reveal_secrets: bool) -> Result<String, String> {
        show::show(self, path, reveal_secrets)
    }

    /// A phase-1 gateway by name.
    pub fn phase1(&self, name: &str) -> Option<&Phase1> {
        self.phase1.iter().find(|p| p.name == name)
    }

    /// The phase-2 entries of a phase-1 gateway.
    pub fn phase2_of<'a>(&'a self, phase1: &'a str) -> impl Iterator<Item = &'a Phase2> + 'a {
        self.phase2.iter().filter(move |p| p.phase1name == phase1)
    }

    /// A local user by name.
    pub fn user(&self, name: &str) -> Option<&LocalUser> {
        self.users.iter().find(|u| u.name == name)
    }

    /// A port by name.
    pub fn interface(&self, name: &str) -> Option<&Interface> {
        self.interfaces.iter().find(|i| i.name == name)
    }

    /// The prefixes and ranges an address or address group stands for (groups expanded; the
    /// built-in `all` is 0.0.0.0/0). `None` for an unknown name.
    pub fn resolve_address(&self, name: &str) -> Option<Vec<(std::net::Ipv4Addr, std::net::Ipv4Addr)>> {
        let mut out = Vec::new();
        let mut stack = vec![name];
        let mut seen = std::collections::HashSet::new();
        while let Some(n) = stack.pop() {
            if !seen.insert(n) {
                continue;
            }
            if let Some(a) = self.addresses.iter().find(|a| a.name == n) {
                match a.kind {
                    AddressType::Ipmask => {
                        let first = a.subnet.network();
                        let last = u32::from(first) | !u32::from(a.subnet.mask());
                        out.push((first, last.into()));
                    }
                    AddressType::Iprange => out.push((a.start_ip, a.end_ip)),
                }
            } else if let Some(g) = self.addrgrps.iter().find(|g| g.name == n) {
                stack.extend(g.member.iter().map(String::as_str));
            } else if n == "all" {
                out.push((std::net::Ipv4Addr::UNSPECIFIED, std::net::Ipv4Addr::BROADCAST));
            } else if n != "none" {
                return None;
            }
        }
        Some(out)
    }
}

/// The running configuration, replaced only by a configuration that loads without error.
#[derive(Debug, Clone)]
pub struct ConfigStore {
    current: Arc<Config>,
}

impl ConfigStore {
    /// Starts with a configuration that has already been loaded.
    pub fn new(cfg: Config) -> Self {
        ConfigStore { current: Arc::new(cfg) }
    }

    /// The running configuration.
    pub fn current(&self) -> Arc<Config> {
        Arc::clone(&self.current)
    }

    /// Loads `text`; on success it becomes the running configuration, on failure nothing changes.
    pub fn reload_str(&mut self, text: &str, file_name: &str) -> Result<Arc<Config>, Vec<ConfigError>> {
        let cfg = load_str(text, file_name)?;
        self.current = Arc::new(cfg);
        Ok(self.current())
    }

    /// Loads a file; on failure the running configuration stays.
    pub fn reload_file(&mut self, path: impl AsRef<Path>) -> Result<Arc<Config>, Vec<ConfigError>> {
        let cfg = load_file(path)?;
        self.current = Arc::new(cfg);
        Ok(self.current())
    }
}
