//! The command line's HTTP client of a running vault (`unseal`, `health`): one request over
//! HTTPS trusting `--cacert`, or plain HTTP, with a JSON answer.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use hyper::Request;
use hyper::header::HOST;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::net::TcpStream;

use super::admin::CliError;

/// Largest answer read.
const MAX_ANSWER: usize = 64 * 1024;

/// Where a vault answers: `https://host:port` or `http://host:port`.
#[derive(Debug, Clone)]
pub(super) struct VaultUrl {
    https: bool,
    host: String,
    port: u16,
}

impl VaultUrl {
    /// Parses `--url`.
    pub(super) fn parse(url: &str) -> Result<VaultUrl, CliError> {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|_| CliError(format!("--url {url} is not a URL (https://host:port)")))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(CliError("--url must start with https:// or http://".into())),
        };
        let host = uri
            .host()
            .ok_or_else(|| CliError("--url has no host".into()))?
            .trim_matches(['[', ']'])
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        Ok(VaultUrl { https, host, port })
    }

    /// The `Host` header's value.
    pub(super) fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// What may travel over plain HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PlainHttp {
    /// Nothing secret: anywhere.
    Anywhere,
    /// A secret (a key share): to loopback only.
    LoopbackOnly,
}

/// Sends `request` (its path and body; the `Host` header is set here) and reads the answer:
/// its status and JSON body (`null` when it is not JSON).
pub(super) async fn send(
    url: &VaultUrl,
    cacert: Option<PathBuf>,
    plain: PlainHttp,
    mut request: Request<Body>,
) -> Result<(u16, Value), CliError> {
    let (host, port) = (url.host.as_str(), url.port);
    if let Ok(value) = url.authority().parse() {
        request.headers_mut().insert(HOST, value);
    }
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|e| CliError(format!("cannot reach {host}:{port}: {e}")))?;
    if url.https {
        let connector = tokio_rustls::TlsConnector::from(client_config(cacert)?);
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| CliError(format!("{host} is not a valid server name")))?;
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| CliError(format!("TLS with {host}:{port} failed: {e}")))?;
        exchange(TokioIo::new(tls), request).await
    } else {
        if plain == PlainHttp::LoopbackOnly && !tcp.peer_addr().is_ok_and(|a| a.ip().is_loopback())
        {
            return Err(CliError(
                "a share goes over HTTPS only (plain HTTP is for loopback): use https://".into(),
            ));
        }
        exchange(TokioIo::new(tcp), request).await
    }
}

fn client_config(cacert: Option<PathBuf>) -> Result<Arc<rustls::ClientConfig>, CliError> {
    let path = cacert.ok_or_else(|| {
        CliError("https needs --cacert FILE: the certificate (PEM) that signed the vault's".into())
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&path)
        .map_err(|e| CliError(format!("cannot read {}: {e}", path.display())))?
    {
        let cert = cert.map_err(|e| CliError(format!("{}: {e}", path.display())))?;
        roots
            .add(cert)
            .map_err(|e| CliError(format!("{}: {e}", path.display())))?;
    }
    Ok(Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

async fn exchange<T>(io: TokioIo<T>, request: Request<Body>) -> Result<(u16, Value), CliError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| CliError(format!("HTTP with the vault failed: {e}")))?;
    tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| CliError(format!("HTTP with the vault failed: {e}")))?;
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(Body::new(response.into_body()), MAX_ANSWER)
        .await
        .map_err(|e| CliError(format!("reading the vault's answer failed: {e}")))?;
    Ok((status, serde_json::from_slice(&bytes).unwrap_or_default()))
}

/// A field of a JSON answer, `null` when absent.
pub(super) fn field(answer: &Value, name: &str) -> Value {
    answer.get(name).cloned().unwrap_or_default()
}

/// `strongroom health`: the vault's `path` (`/healthz` or `/readyz`), within `timeout`;
/// success only on 200.
pub(super) async fn health(
    url: &str,
    path: &str,
    cacert: Option<PathBuf>,
    timeout: std::time::Duration,
) -> Result<(), CliError> {
    let vault = VaultUrl::parse(url)?;
    let url = url.trim_end_matches('/');
    let request = Request::get(path)
        .body(Body::empty())
        .map_err(|_| CliError("cannot build the request".into()))?;
    let asked = send(&vault, cacert, PlainHttp::Anywhere, request);
    match tokio::time::timeout(timeout, asked).await {
        Err(_) => Err(CliError(format!(
            "{url}{path} did not answer within {} ms",
            timeout.as_millis()
        ))),
        Ok(Err(e)) => Err(e),
        Ok(Ok((200, _))) => {
            println!("ok: {url}{path} answered 200");
            Ok(())
        }
        Ok(Ok((status, answer))) => Err(CliError(format!(
            "{url}{path} answered {status} {}{}",
            field(&answer, "code").as_str().unwrap_or_default(),
            field(&answer, "reason")
                .as_str()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ))),
    }
}
