//! `dialgate posture-server`: dialgate's posture API served from a JSON file (a
//! [`super::api::Snapshot`]), reloaded when the file changes.
//!
//! How to use it: [`ServerState::load`] the file (errors say why), then [`serve`] on a bound
//! listener (plain HTTP, or HTTPS with a [`tls_acceptor`]) until `shutdown` resolves. Every request first checks the file's modification time
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
use tokio_rustls::TlsAcceptor;

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

/// A TLS acceptor from a PEM certificate chain and a PEM private key.
pub fn tls_acceptor(cert_file: &Path, key_file: &Path) -> Result<TlsAcceptor, String> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert_file)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", cert_file.display()))?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| format!("{}: {e}", key_file.display()))?;
    let cfg = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("{}: {e}", cert_file.display()))?;
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// Serves `state` on `listener` (over TLS when `tls` is given) until `shutdown`; `log` gets one
/// line per reload.
pub async fn serve<F>(
    listener: TcpListener,
    state: ServerState,
    tls: Option<TlsAcceptor>,
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
        let tls = tls.clone();
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
            let http = hyper::server::conn::http1::Builder::new();
            match tls {
                None => {
                    let _ = http.serve_connection(TokioIo::new(tcp), svc).await;
                }
                Some(acceptor) => {
                    // A failed handshake only ends this connection.
                    if let Ok(stream) = acceptor.accept(tcp).await {
                        let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Fctems;
    use crate::posture::connector::{fetch, Endpoint};
    use std::time::Duration;

    const DOC: &str = r#"{"serial":"FCTEMS1","tenant":"T1","tags":[{"name":"lab","addresses":["10.0.0.1"]}],
        "endpoints":[{"uid":"U1","address":"10.0.0.2","tags":["lab"]}]}"#;

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("dialgate-ps-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    async fn start(file: &Path, tls: Option<TlsAcceptor>) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let st = ServerState::load(file).unwrap();
        tokio::spawn(serve(l, st, tls, |_| {}, async move {
            let _ = rx.await;
        }));
        (addr, tx)
    }

    fn endpoint(server: String, tenant: &str, ca: &str) -> Endpoint {
        let mut e = <Fctems as crate::config::objects::Object>::with_key("EMS1");
        e.server = server;
        e.tenant_id = tenant.into();
        e.ca_cert = ca.into();
        e.call_timeout = 5;
        Endpoint::from_config(&e).unwrap()
    }

    #[tokio::test]
    async fn http_fetch_reload_tenant_and_timeout() {
        let d = dir("http");
        let f = d.join("tags.json");
        std::fs::write(&f, DOC).unwrap();
        let (addr, _stop) = start(&f, None).await;
        let ep = endpoint(format!("http://{addr}"), "T1", "");
        let s = fetch(&ep).await.unwrap();
        assert_eq!(s.serial, "FCTEMS1");
        // Resolved: the endpoint's address joined its tag.
        assert_eq!(s.tags[0].addresses, ["10.0.0.1", "10.0.0.2"]);

        // The file changes: the next request sees it; a broken file keeps the last document.
        std::fs::write(&f, DOC.replace("10.0.0.1", "10.0.0.9")).unwrap();
        assert_eq!(fetch(&ep).await.unwrap().tags[0].addresses[0], "10.0.0.9");
        std::fs::write(&f, "{ broken").unwrap();
        assert_eq!(fetch(&ep).await.unwrap().tags[0].addresses[0], "10.0.0.9");

        // Another tenant is refused.
        let err = fetch(&endpoint(format!("http://{addr}"), "T2", "")).await.unwrap_err();
        assert!(err.contains("403"), "{err}");

        // A server that accepts and never answers counts as unreachable after the timeout.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut slow = endpoint(format!("http://{}", silent.local_addr().unwrap()), "", "");
        slow.timeout = Duration::from_millis(200);
        let t0 = std::time::Instant::now();
        let err = fetch(&slow).await.unwrap_err();
        assert!(err.contains("no answer within 200 ms"), "{err}");
        assert!(t0.elapsed() < Duration::from_secs(2));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[tokio::test]
    async fn https_fetch_verifies_the_server() {
        let d = dir("https");
        let (cert, key) = (d.join("cert.pem"), d.join("key.pem"));
        // A CA and a server certificate for 127.0.0.1 signed by it (webpki refuses a CA
        // certificate as the server's own).
        let script = "set -e
            printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n' > ext.cnf
            for ca in ca other; do
              openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=$ca -keyout $ca.key -out $ca.pem 2>/dev/null
            done
            openssl req -newkey rsa:2048 -nodes -subj /CN=posture -keyout key.pem -out leaf.csr 2>/dev/null
            openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile ext.cnf -out cert.pem 2>/dev/null";
        let ok = std::process::Command::new("bash")
            .args(["-c", script])
            .current_dir(&d)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            eprintln!("openssl not available: https test skipped");
            return;
        }
        let f = d.join("tags.json");
        std::fs::write(&f, DOC).unwrap();
        let (addr, _stop) = start(&f, Some(tls_acceptor(&cert, &key).unwrap())).await;
        let ca = d.join("ca.pem").to_string_lossy().into_owned();
        let s = fetch(&endpoint(format!("https://{addr}"), "", &ca)).await.unwrap();
        assert_eq!(s.serial, "FCTEMS1");
        // Plain HTTP to the TLS port fails, and so does a client that does not trust the cert.
        assert!(fetch(&endpoint(format!("http://{addr}"), "", "")).await.is_err());
        let other = d.join("other.pem");
        let err = fetch(&endpoint(format!("https://{addr}"), "", &other.to_string_lossy())).await.unwrap_err();
        assert!(err.contains("tls"), "{err}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
