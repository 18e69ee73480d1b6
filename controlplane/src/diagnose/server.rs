//! The control socket: `dialgate diagnose …` talks to the running gateway over a Unix socket.
//!
//! How to drive it: [`Server::bind`] the socket path (its directory is created, a stale socket
//! left by a dead gateway is removed, a live one is refused; the socket is made mode 0600), then
//! run [`Server::serve`] with the [`Diag`] handle next to the driver until `shutdown` resolves;
//! the socket file is removed on the way out. [`serve`] does both.
//!
//! Protocol (one connection per command): the client sends one line, the words after
//! `dialgate diagnose` (a word may be double-quoted). The server answers with a status line and
//! closes:
//! - `ok` then the command's text;
//! - `error` then a message (unknown command, bad argument): the client exits 2;
//! - `stream` then one notice line, then debug lines as they happen, until the client closes,
//!   `diagnose debug disable`/`reset` ends the streams, or the server stops
//!   (`diagnose debug enable`).

use std::fmt::Write as _;
use std::future::Future;
use std::io;
use std::net::Ipv4Addr;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::{render, AddrFilter, App, Diag, PostureList};

/// Where `dialgate run` listens and `dialgate diagnose` connects unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/dialgate/dialgate.sock";

/// Longest command line accepted.
const MAX_LINE: u64 = 4096;

/// The commands, for `help` and error messages.
pub const HELP: &str = "commands (after `dialgate diagnose`):
  vpn ike gateway list [name NAME]
  vpn tunnel list [name NAME]
  vpn ike stats
  vpn ike log filter rem-addr4 ADDR [LAST-ADDR]
  vpn ike log filter clear            (also: vpn ike log-filter clear)
  vpn ike log filter list
  debug application ike|fnbamd|eap_proxy [LEVEL]
  debug console timestamp enable|disable
  debug enable                        (prints debug lines until Ctrl-C, --for SECS or debug disable)
  debug disable
  debug reset
  debug info
  firewall policy list
  firewall dynamic list [TAG]         (posture tags and their endpoint addresses)
  endpoint ec-shm list                (posture endpoint records)
  user token approve USER             (approve a pending token push)
  test application ike fault          (drill: the IKE loop fails one step and is restarted)
  help";

/// A parsed `diagnose` command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `vpn ike gateway list [name N]`.
    GatewayList(Option<String>),
    /// `vpn tunnel list [name N]`.
    TunnelList(Option<String>),
    /// `vpn ike stats`.
    IkeStats,
    /// `vpn ike log filter rem-addr4 A [B]` / `clear`.
    SetFilter(Option<AddrFilter>),
    /// `vpn ike log filter [list]`.
    ShowFilter,
    /// `debug application APP LEVEL` (`None`: show the level).
    Application(App, Option<i32>),
    /// `debug console timestamp enable|disable`.
    Timestamps(bool),
    /// `debug enable`.
    Enable,
    /// `debug disable`.
    Disable,
    /// `debug reset`.
    Reset,
    /// `debug info`.
    Info,
    /// `firewall policy list`.
    FirewallPolicyList,
    /// `firewall dynamic list [TAG]`.
    DynamicList(Option<String>),
    /// `endpoint ec-shm list`.
    EcShmList,
    /// `user token approve USER`.
    ApproveToken(String),
    /// `test application ike fault`.
    FaultDrill,
    /// `help`.
    Help,
}

/// Splits a command line into words; `"…"` groups a word with spaces.
pub fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut any) = (false, false);
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

fn name_arg(rest: &[&str]) -> Result<Option<String>, String> {
    match rest {
        [] => Ok(None),
        ["name", n] => Ok(Some((*n).to_string())),
        _ => Err("expected: [name NAME]".into()),
    }
}

fn ipv4(s: &str) -> Result<Ipv4Addr, String> {
    s.parse().map_err(|_| format!("not an IPv4 address: {s}"))
}

/// Parses the words after `dialgate diagnose`.
pub fn parse(words: &[String]) -> Result<Command, String> {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let unknown = || format!("unknown command: {}\n{HELP}", w.join(" "));
    let filter = |rest: &[&str]| -> Result<Command, String> {
        match rest {
            ["rem-addr4", a] => {
                let a = ipv4(a)?;
                Ok(Command::SetFilter(Some(AddrFilter { start: a, end: a })))
            }
            ["rem-addr4", a, b] => {
                let (a, b) = (ipv4(a)?, ipv4(b)?);
                if u32::from(a) > u32::from(b) {
                    return Err(format!("rem-addr4: {a} is after {b}"));
                }
                Ok(Command::SetFilter(Some(AddrFilter { start: a, end: b })))
            }
            ["clear"] => Ok(Command::SetFilter(None)),
            [] | ["list"] => Ok(Command::ShowFilter),
            _ => Err(format!("expected: rem-addr4 ADDR [LAST-ADDR] | clear | list\n{HELP}")),
        }
    };
    match w.as_slice() {
        ["vpn", "ike", "gateway", "list", rest @ ..] => name_arg(rest).map(Command::GatewayList),
        ["vpn", "tunnel", "list", rest @ ..] => name_arg(rest).map(Command::TunnelList),
        ["vpn", "ike", "stats"] => Ok(Command::IkeStats),
        ["vpn", "ike", "log", "filter", rest @ ..] | ["vpn", "ike", "log-filter", rest @ ..] => filter(rest),
        ["debug", "application", app, rest @ ..] => {
            let a = App::parse(app).ok_or_else(|| format!("unknown application {app} (ike, fnbamd, eap_proxy)"))?;
            match rest {
                [] => Ok(Command::Application(a, None)),
                [l] => {
                    let l: i32 = l.parse().map_err(|_| format!("not a debug level: {l}"))?;
                    Ok(Command::Application(a, Some(l)))
                }
                _ => Err("expected: debug application APP [LEVEL]".into()),
            }
        }
        ["debug", "console", "timestamp", "enable"] => Ok(Command::Timestamps(true)),
        ["debug", "console", "timestamp", "disable"] => Ok(Command::Timestamps(false)),
        ["debug", "enable"] => Ok(Command::Enable),
        ["debug", "disable"] => Ok(Command::Disable),
        ["debug", "reset"] => Ok(Command::Reset),
        ["debug", "info"] => Ok(Command::Info),
        ["firewall", "policy", "list"] => Ok(Command::FirewallPolicyList),
        ["firewall", "dynamic", "list"] => Ok(Command::DynamicList(None)),
        ["firewall", "dynamic", "list", tag] => Ok(Command::DynamicList(Some((*tag).to_string()))),
        ["endpoint", "ec-shm", "list"] => Ok(Command::EcShmList),
        ["user", "token", "approve", user] => Ok(Command::ApproveToken((*user).to_string())),
        ["test", "application", "ike", "fault"] => Ok(Command::FaultDrill),
        ["help"] | [] => Ok(Command::Help),
        _ => Err(unknown()),
    }
}

/// The answer to one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Text for stdout.
    Text(String),
    /// An error for stderr (exit 2).
    Error(String),
    /// Start streaming; the notice goes to the client's stderr.
    Stream(String),
}

fn filter_text(f: Option<AddrFilter>) -> String {
    match f {
        Some(f) if f.start == f.end => format!("rem-addr4: {}", f.start),
        Some(f) => format!("rem-addr4: {}-{}", f.start, f.end),
        None => "rem-addr4: any".into(),
    }
}

/// Runs a command that does not stream (and sets up the settings of one that does).
pub fn execute(diag: &Diag, cmd: &Command) -> Reply {
    match cmd {
        Command::GatewayList(n) => Reply::Text(render::gateway_list(&diag.snapshot(), n.as_deref())),
        Command::TunnelList(n) => Reply::Text(render::tunnel_list(&diag.snapshot(), n.as_deref())),
        Command::IkeStats => Reply::Text(diag.stats_text()),
        Command::SetFilter(f) => {
            diag.set_filter(*f);
            Reply::Text(String::new())
        }
        Command::ShowFilter => Reply::Text(format!("vd: any\n{}\n", filter_text(diag.settings().filter))),
        Command::Application(a, Some(l)) => {
            diag.set_level(*a, *l);
            Reply::Text(String::new())
        }
        Command::Application(a, None) => {
            Reply::Text(format!("{} debug level is {}\n", a.name(), diag.settings().level(*a)))
        }
        Command::Timestamps(on) => {
            diag.set_timestamps(*on);
            Reply::Text(String::new())
        }
        Command::Disable => {
            diag.debug_disable();
            Reply::Text(String::new())
        }
        Command::Reset => {
            diag.debug_reset();
            Reply::Text(String::new())
        }
        Command::Info => {
            let s = diag.settings();
            let mut out = String::new();
            let _ = writeln!(out, "debug output: {}", if diag.stream_count() > 0 { "enable" } else { "disable" });
            let _ = writeln!(out, "console timestamp: {}", if s.timestamps { "enable" } else { "disable" });
            for a in [App::Ike, App::Fnbamd, App::EapProxy] {
                if s.level(a) != 0 {
                    let _ = writeln!(out, "{} debug level: {}", a.name(), s.level(a));
                }
            }
            let _ = writeln!(out, "ike log filter: {}", filter_text(s.filter));
            let _ = writeln!(out, "streams: {}", diag.stream_count());
            Reply::Text(out)
        }
        Command::FirewallPolicyList => match diag.firewall_policy_list() {
            Some(t) => Reply::Text(t),
            None => Reply::Error("no firewall policy set is loaded".into()),
        },
        Command::DynamicList(tag) => match diag.posture_list(PostureList::DynamicList(tag.as_deref())) {
            Some(t) => Reply::Text(t),
            None => Reply::Error("no tunnel checks posture (remote-gw-match ztna)".into()),
        },
        Command::ApproveToken(user) => {
            if diag.approve_token(user) {
                Reply::Text(format!("token push approval for {user:?} passed to the gateway\n"))
            } else {
                Reply::Error("this gateway takes no token approvals".into())
            }
        }
        Command::FaultDrill => {
            if diag.request_fault_drill() {
                Reply::Text(
                    "fault drill: the IKE control loop fails its next step and is restarted (see vpn ike stats)\n"
                        .into(),
                )
            } else {
                Reply::Error("no supervised IKE loop runs here".into())
            }
        }
        Command::EcShmList => match diag.posture_list(PostureList::EcShmList) {
            Some(t) => Reply::Text(t),
            None => Reply::Error("no tunnel checks posture (remote-gw-match ztna)".into()),
        },
        Command::Help => Reply::Text(format!("{HELP}\n")),
        Command::Enable => {
            let s = diag.settings();
            let apps: Vec<String> = [App::Ike, App::Fnbamd]
                .into_iter()
                .filter(|a| s.level(*a) != 0)
                .map(|a| format!("{} {}", a.name(), s.level(a)))
                .collect();
            let notice = if apps.is_empty() {
                "debug output enabled, but no application has a debug level: run `dialgate diagnose debug application ike -1` first".to_string()
            } else {
                format!("debug output enabled ({}; filter {})", apps.join(", "), filter_text(s.filter))
            };
            Reply::Stream(notice)
        }
    }
}

/// A bound control socket.
#[derive(Debug)]
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
}

impl Server {
    /// Binds `path`: creates its directory, removes a stale socket (refuses a live one or a
    /// file that is not a socket), and makes the socket mode 0600.
    pub fn bind(path: &Path) -> io::Result<Server> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new().recursive(true).mode(0o755).create(dir)?;
        }
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", path.display()),
                ));
            }
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} is served by a running dialgate", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        Ok(Server { listener, path: path.to_path_buf() })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Answers clients until `shutdown` resolves, then ends the debug streams and removes the
    /// socket file.
    pub async fn serve(self, diag: Diag, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                r = self.listener.accept() => {
                    // Accept errors (EMFILE, a client gone before accept) are transient.
                    if let Ok((stream, _)) = r {
                        tokio::spawn(connection(stream, diag.clone()));
                    }
                }
            }
        }
        diag.debug_disable();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds `path` and serves it until `shutdown` (see [`Server`]).
pub async fn serve(path: &Path, diag: Diag, shutdown: impl Future<Output = ()>) -> io::Result<()> {
    Server::bind(path)?.serve(diag, shutdown).await;
    Ok(())
}

async fn connection(stream: UnixStream, diag: Diag) {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd.take(MAX_LINE));
    let mut line = String::new();
    match tokio::time::timeout(Duration::from_secs(10), rd.read_line(&mut line)).await {
        Ok(Ok(n)) if n > 0 => {}
        _ => return,
    }
    let reply = match parse(&words(&line)) {
        Ok(cmd) => execute(&diag, &cmd),
        Err(e) => Reply::Error(e),
    };
    let notice = match reply {
        Reply::Text(t) => {
            let _ = wr.write_all(format!("ok\n{t}").as_bytes()).await;
            let _ = wr.shutdown().await;
            return;
        }
        Reply::Error(e) => {
            let _ = wr.write_all(format!("error\n{e}\n").as_bytes()).await;
            let _ = wr.shutdown().await;
            return;
        }
        Reply::Stream(n) => n,
    };
    let mut rx = diag.subscribe();
    if wr.write_all(format!("stream\n{notice}\n").as_bytes()).await.is_err() {
        return;
    }
    let mut rd = rd.into_inner().into_inner();
    let mut buf = [0u8; 256];
    loop {
        tokio::select! {
            l = rx.recv() => match l {
                Some(l) => {
                    let mut b = Vec::with_capacity(l.len() + 1);
                    b.extend_from_slice(l.as_bytes());
                    b.push(b'\n');
                    if wr.write_all(&b).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
            // The client never sends more: EOF or an error means it went away.
            r = rd.read(&mut buf) => if !matches!(r, Ok(n) if n > 0) { break },
        }
    }
    let _ = wr.shutdown().await;
}
