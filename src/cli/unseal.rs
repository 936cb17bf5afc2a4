//! `strongroom unseal --url URL`: a custodian hands their share to one sealed instance.
//!
//! The share is read at a prompt without echo (or as one line from standard input when that is
//! not a terminal), checked here first — a mistyped share is named before anything is sent —
//! and posted to `/v1/sys/unseal` over HTTPS (trusting `--cacert`) or plain HTTP on loopback.
//! It is never printed, logged or kept.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use axum::body::Body;
use hyper::Request;
use hyper::header::CONTENT_TYPE;
use zeroize::Zeroizing;

use super::admin::CliError;
use super::client::{PlainHttp, VaultUrl, field, send};
use crate::crypto::shares::KeyShare;

/// Reads the share, checks it, submits it; prints where unsealing stands.
pub async fn run(url: &str, cacert: Option<PathBuf>) -> Result<(), CliError> {
    let vault = VaultUrl::parse(url)?;
    let share = read_share()?;
    // Named here, before it travels: a typo costs nobody a reset.
    let parsed = KeyShare::parse(&share)
        .map_err(|e| CliError(format!("the share {e}; nothing was sent")))?;
    let body = Zeroizing::new(serde_json::to_string(
        &serde_json::json!({ "share": share.as_str() }),
    )?);
    let request = Request::post("/v1/sys/unseal")
        .header(CONTENT_TYPE, "application/json")
        .body(Body::from(body.as_str().to_owned()))
        .map_err(|_| CliError("cannot build the request".into()))?;
    let (status, answer) = send(&vault, cacert, PlainHttp::LoopbackOnly, request).await?;
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
