//! A posture-server connector: an HTTP/1.1 client (rustls for `https`, plain `http` for tests
//! and lab servers) that fetches [`super::api::SNAPSHOT_PATH`] into the [`PostureCache`].
//!
//! How to use it: [`Endpoint::from_config`] turns a `config endpoint-control fctems` entry into
//! a target; [`fetch`] does one bounded request; [`super::Refresher`] calls it periodically.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::rustls::{self, pki_types::ServerName, RootCertStore};

use super::api::{Snapshot, SNAPSHOT_PATH, TENANT_HEADER};
use crate::config::Fctems;

/// Largest snapshot accepted.
pub const MAX_SNAPSHOT: usize = 16 * 1024 * 1024;

/// Where and how to reach one posture server.
#[derive(Clone)]
pub struct Endpoint {
    /// Connector name.
    pub name: String,
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// TLS configuration; `None` for plain `http://`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// `tenant-id`, sent in [`TENANT_HEADER`].
    pub tenant: String,
    /// Bound for one whole request (`call-timeout`).
    pub timeout: Duration,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("name", &self.name)
            .field("url", &self.url())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

fn roots(ca_file: &str) -> Result<RootCertStore, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let path = if ca_file.is_empty() { "/etc/ssl/certs/ca-certificates.crt" } else { ca_file };
    let mut store = RootCertStore::empty();
    let iter = CertificateDer::pem_file_iter(path).map_err(|e| format!("ca-cert {path}: {e}"))?;
    for cert in iter {
        let cert = cert.map_err(|e| format!("ca-cert {path}: {e}"))?;
        store.add(cert).map_err(|e| format!("ca-cert {path}: {e}"))?;
    }
    if store.is_empty() {
        return Err(format!("ca-cert {path}: no certificate"));
    }
    Ok(store)
}

impl Endpoint {
    /// The target of an fctems entry: `server` is a host (HTTPS on `https-port`) or a URL
    /// `http://host:port` / `https://host:port` (dialgate extension for lab servers).
    pub fn from_config(e: &Fctems) -> Result<Self, String> {
        let (tls, rest) = if let Some(r) = e.server.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = e.server.strip_prefix("http://") {
            (false, r)
        } else {
            (true, e.server.as_str())
        };
        let rest = rest.trim_end_matches('/');
        let default_port = u16::try_from(e.https_port).unwrap_or(443);
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.starts_with('[') => (
                h.trim_matches(|c| c == '[' || c == ']').to_string(),
                p.parse().map_err(|_| format!("bad port in {:?}", e.server))?,
            ),
            _ => (rest.to_string(), if tls { default_port } else { 80 }),
        };
        if host.is_empty() {
            return Err(format!("endpoint-control fctems {:?}: no server", e.name));
        }
        let tls = if tls {
            let roots = roots(&e.ca_cert)?;
            let cfg = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
            Some(Arc::new(cfg))
        } else {
            None
        };
        Ok(Self {
            name: e.name.clone(),
            host,
            port,
            tls,
            tenant: e.tenant_id.clone(),
            timeout: Duration::from_secs(u64::from(e.call_timeout)),
        })
    }

    /// The snapshot URL.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}:{}{SNAPSHOT_PATH}", self.host, self.port)
    }
}

async fn request<S>(io: S, ep: &Endpoint) -> Result<Snapshot, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(|e| format!("http: {e}"))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = hyper::Request::get(SNAPSHOT_PATH)
        .header(hyper::header::HOST, format!("{}:{}", ep.host, ep.port))
        .header(TENANT_HEADER, ep.tenant.as_str())
        .header(hyper::header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    let resp = sender.send_request(req).await.map_err(|e| format!("http: {e}"))?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_SNAPSHOT)
        .collect()
        .await
        .map_err(|e| format!("reading body: {e}"))?
        .to_bytes();
    driver.abort();
    if !status.is_success() {
        return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body[..body.len().min(200)])));
    }
    let snap: Snapshot = serde_json::from_slice(&body).map_err(|e| format!("bad snapshot: {e}"))?;
    snap.validate().map_err(|e| format!("bad snapshot: {e}"))?;
    Ok(snap)
}

/// One fetch of the snapshot, bounded by the endpoint's timeout.
pub async fn fetch(ep: &Endpoint) -> Result<Snapshot, String> {
    let work = async {
        let tcp = TcpStream::connect((ep.host.as_str(), ep.port)).await.map_err(|e| format!("connect: {e}"))?;
        match &ep.tls {
            None => request(tcp, ep).await,
            Some(cfg) => {
                let name = ServerName::try_from(ep.host.clone()).map_err(|e| format!("server name: {e}"))?;
                let tls = tokio_rustls::TlsConnector::from(cfg.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("tls: {e}"))?;
                request(tls, ep).await
            }
        }
    };
    match tokio::time::timeout(ep.timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} ms", ep.timeout.as_millis())),
    }
}
