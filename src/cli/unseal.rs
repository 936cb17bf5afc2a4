//! `strongroom unseal --url URL`: a custodian hands their share to one sealed instance.
//!
//! The share is read at a prompt without echo (or as one line from standard input when that is
//! not a terminal), checked here first — a mistyped share is named before anything is sent —
//! and posted to `/v1/sys/unseal` over HTTPS (trusting `--cacert`) or plain HTTP on loopback.
//! It is never printed, logged or kept.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use hyper::Request;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::net::TcpStream;
use zeroize::Zeroizing;

use super::admin::CliError;
use crate::crypto::shares::KeyShare;

/// Largest answer read.
const MAX_ANSWER: usize = 64 * 1024;

/// Reads the share, checks it, submits it; prints where unsealing stands.
pub async fn run(url: &str, cacert: Option<PathBuf>) -> Result<(), CliError> {
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
    let share = read_share()?;
    // Named here, before it travels: a typo costs nobody a reset.
    let parsed = KeyShare::parse(&share)
        .map_err(|e| CliError(format!("the share {e}; nothing was sent")))?;
    let body = Zeroizing::new(serde_json::to_string(
        &serde_json::json!({ "share": share.as_str() }),
    )?);

    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| CliError(format!("cannot reach {host}:{port}: {e}")))?;
    let request = Request::post("/v1/sys/unseal")
        .header(HOST, format!("{host}:{port}"))
        .header(CONTENT_TYPE, "application/json")
        .body(Body::from(body.as_str().to_owned()))
        .map_err(|_| CliError("cannot build the request".into()))?;
    let response = if https {
        let connector = tokio_rustls::TlsConnector::from(client_config(cacert)?);
        let name = ServerName::try_from(host.clone())
            .map_err(|_| CliError(format!("{host} is not a valid server name")))?;
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| CliError(format!("TLS with {host}:{port} failed: {e}")))?;
        send(TokioIo::new(tls), request).await?
    } else {
        if !tcp.peer_addr().is_ok_and(|a| a.ip().is_loopback()) {
            return Err(CliError(
                "a share goes over HTTPS only (plain HTTP is for loopback): use https://".into(),
            ));
        }
        send(TokioIo::new(tcp), request).await?
    };
    let (status, answer) = response;
    if status == 200 {
        let sealed = field(&answer, "sealed").as_bool().unwrap_or(true);
        let progress = field(&answer, "progress").as_u64().unwrap_or(0);
        let threshold = field(&answer, "threshold").as_u64().unwrap_or(0);
        if sealed {
            println!(
                "share {} accepted: {progress} of {threshold}; the vault stays sealed until {} more",
                parsed.index(),
                threshold.saturating_sub(progress)
            );
        } else if progress == 0 {
            println!("the vault is not sealed: nothing was taken");
        } else {
            println!("share {} accepted: the vault is unsealed", parsed.index());
        }
        return Ok(());
    }
    Err(CliError(format!(
        "the vault refused the share ({status} {}): {}",
        field(&answer, "code").as_str().unwrap_or("?"),
        field(&answer, "detail").as_str().unwrap_or("no detail")
    )))
}

fn read_share() -> Result<Zeroizing<String>, CliError> {
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password("Your share (typing is not shown): ")
            .map(Zeroizing::new)
            .map_err(|e| CliError(format!("cannot read the share: {e}")));
    }
    let mut line = Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError(format!("cannot read the share: {e}")))?;
    Ok(line)
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

async fn send<T>(io: TokioIo<T>, request: Request<Body>) -> Result<(u16, Value), CliError>
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

/// A field of the vault's JSON answer, `null` when absent.
fn field(answer: &Value, name: &str) -> Value {
    answer.get(name).cloned().unwrap_or_default()
}
