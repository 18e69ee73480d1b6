//! `dialgate posture-server`: dialgate's posture API served from a JSON file (a
//! [`super::api::Snapshot`]), reloaded when the file changes.
//!
//! How to use it: [`ServerState::load`] the file (errors say why), then [`serve`] on a bound
//! listener until `shutdown` resolves. Every request first checks the file's modification time
//! and reloads it; a file that no longer parses keeps the last good document (logged).

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::api::{Snapshot, SNAPSHOT_PATH, TENANT_HEADER};

/// The served document and where it comes from.
#[derive(Debug)]
pub struct ServerState {
    file: PathBuf,
    mtime: Option<SystemTime>,
    len: u64,
    /// The resolved document.
    pub snapshot: Arc<Snapshot>,
}

fn read(file: &Path) -> Result<Snapshot, String> {
    let text = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let snap: Snapshot = serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    snap.validate().map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(snap.resolved())
}

fn stamp(file: &Path) -> (Option<SystemTime>, u64) {
    std::fs::metadata(file).map(|m| (m.modified().ok(), m.len())).unwrap_or((None, 0))
}

impl ServerState {
    /// Loads `file`.
    pub fn load(file: &Path) -> Result<Self, String> {
        let (mtime, len) = stamp(file);
        Ok(Self { file: file.to_path_buf(), mtime, len, snapshot: Arc::new(read(file)?) })
    }

    /// Reloads the file if it changed: `Some(Ok)` reloaded, `Some(Err)` kept the old document.
    pub fn reload_if_changed(&mut self) -> Option<Result<(), String>> {
        let (mtime, len) = stamp(&self.file);
        if (mtime, len) == (self.mtime, self.len) {
            return None;
        }
        self.mtime = mtime;
        self.len = len;
        Some(read(&self.file).map(|s| self.snapshot = Arc::new(s)))
    }
}

fn reply(status: StatusCode, ctype: &str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn json<T: serde::Serialize>(v: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec_pretty(v) {
        Ok(b) => reply(StatusCode::OK, "application/json", b),
        Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", e.to_string().into_bytes()),
    }
}

/// Answers one request from the current document.
pub fn route(snap: &Snapshot, method: &hyper::Method, path: &str, tenant: Option<&str>) -> Response<Full<Bytes>> {
    if method != hyper::Method::GET {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", b"GET only\n".to_vec());
    }
    // A connector configured with a tenant only talks to that tenant.
    if let Some(t) = tenant.filter(|t| !t.is_empty()) {
        if !snap.tenant.is_empty() && t != snap.tenant {
            return reply(StatusCode::FORBIDDEN, "text/plain", b"wrong tenant\n".to_vec());
        }
    }
    match path {
        SNAPSHOT_PATH => json(snap),
        "/api/v1/server" => json(&serde_json::json!({ "serial": snap.serial, "tenant": snap.tenant })),
        "/api/v1/tags" => json(&snap.tags),
        "/api/v1/endpoints" => json(&snap.endpoints),
        "/api/v1/token-key" => match &snap.token_public_key {
            Some(k) => reply(StatusCode::OK, "application/x-pem-file", k.clone().into_bytes()),
            None => reply(StatusCode::NOT_FOUND, "text/plain", b"no token key\n".to_vec()),
        },
        _ => reply(StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()),
    }
}

/// Serves `state` on `listener` until `shutdown`; `log` gets one line per reload.
pub async fn serve<F>(
    listener: TcpListener,
    state: ServerState,
    log: impl Fn(String) + Send + Sync + 'static,
    shutdown: F,
) -> std::io::Result<()>
where
    F: std::future::Future<Output = ()>,
{
    let state = Arc::new(Mutex::new(state));
    let log = Arc::new(log);
    tokio::pin!(shutdown);
    loop {
        let (tcp, _) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            a = listener.accept() => a?,
        };
        let state = state.clone();
        let log = log.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let snap = {
                    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                    match st.reload_if_changed() {
                        Some(Ok(())) => log(format!(
                            "posture-server: reloaded {} ({} tags, {} endpoints)",
                            st.file.display(),
                            st.snapshot.tags.len(),
                            st.snapshot.endpoints.len()
                        )),
                        Some(Err(e)) => log(format!("posture-server: reload failed, keeping the last document: {e}")),
                        None => {}
                    }
                    st.snapshot.clone()
                };
                let tenant = req.headers().get(TENANT_HEADER).and_then(|v| v.to_str().ok());
                let resp = route(&snap, req.method(), req.uri().path(), tenant);
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), svc).await;
        });
    }
}
