//! The key ceremony: a master key made or split into custodians' shares, of which any
//! threshold rebuild it and which never show the key itself.

use base64::Engine;
use serde_json::Value;

use strongroom::crypto::keys::MasterKey;
use strongroom::crypto::shares::{self, KeyShare, ShareError};

use crate::cli::{run, strongroom};
use crate::helpers::*;

fn parse_all(out: &str) -> (Vec<KeyShare>, u64) {
    let body: Value = serde_json::from_str(out).unwrap();
    let list = body["shares"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| KeyShare::parse(s.as_str().unwrap()).unwrap())
        .collect();
    (list, body["threshold"].as_u64().unwrap())
}

#[test]
fn keygen_prints_only_shares_and_any_threshold_of_them_rebuild_a_strong_key() {
    let (ok, out, err) =
        run(strongroom().args(["keygen", "--shares", "5", "--threshold", "3", "--json"]));
    assert!(ok, "{err}");
    let (made, threshold) = parse_all(&out);
    assert_eq!((made.len(), threshold), (5, 3));
    assert!(err.contains("any 3 of these 5 shares"), "{err}");
    let key = shares::combine(&[made[4].clone(), made[0].clone(), made[2].clone()]).unwrap();
    let master = MasterKey::from_bytes(&key).unwrap();
    // Nothing printed is the key, in any form.
    let text = base64::engine::general_purpose::STANDARD.encode(*key);
    assert!(!out.contains(&text) && !err.contains(&text));
    assert!(err.contains(&master.fingerprint()), "{err}");
    // Text output: one share a line on standard output, nothing else.
    let (ok, out, _) = run(strongroom().args(["keygen", "--shares", "2", "--threshold", "2"]));
    assert!(ok);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| KeyShare::parse(l).is_ok()));
    // Counts out of range are refused before anything is made.
    for args in [["3", "4"], ["17", "3"], ["3", "1"]] {
        let (ok, out, _) =
            run(strongroom().args(["keygen", "--shares", args[0], "--threshold", args[1]]));
        assert!(!ok && out.is_empty(), "{args:?}");
    }
}

#[tokio::test]
async fn keys_split_splits_the_vault_s_own_key_and_records_it_without_a_share() {
    let app = spawn_app().await;
    let split = |key: &str| {
        run(strongroom()
            .args([
                "keys",
                "split",
                "--shares",
                "4",
                "--threshold",
                "2",
                "--json",
            ])
            .env("DATABASE_URL", &app.db.url)
            .env("STRONGROOM_MASTER_KEY", key))
    };
    let (ok, out, err) = split(&app.master_key);
    assert!(ok, "{err}");
    let (made, _) = parse_all(&out);
    let rebuilt = shares::combine(&made[1..3]).unwrap();
    let expected = base64::engine::general_purpose::STANDARD
        .decode(app.master_key.trim())
        .unwrap();
    assert_eq!(rebuilt.as_slice(), expected.as_slice());
    // A second split is another set: its shares do not combine with the first's.
    let (ok, again, _) = split(&app.master_key);
    assert!(ok);
    let (other, _) = parse_all(&again);
    assert!(matches!(
        shares::combine(&[made[0].clone(), other[1].clone()]),
        Err(ShareError::OtherSplit(_))
    ));
    // Another key, a strong one, is not this vault's: refused, nothing printed.
    let (ok, out, err) = split(&new_master_key());
    assert!(!ok && out.is_empty(), "{out}");
    assert!(
        err.contains("does not open this vault's stored keys"),
        "{err}"
    );

    let r = app
        .audit(&app.keys.auditor, "?scope=system&action=key.split")
        .await;
    let events: Value = r.json().await.unwrap();
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    for e in events {
        let detail = e["detail"].as_str().unwrap();
        assert!(
            detail.starts_with("shares=4 threshold=2 master="),
            "{detail}"
        );
        assert!(e["subject"].as_str().unwrap().starts_with("split:"));
    }
    let text = serde_json::to_string(events).unwrap();
    for share in made.iter().chain(&other) {
        assert!(!text.contains(&share.to_text()[14..60]));
    }
}

/// A `strongroom serve --sealed` process: its address, and its log lines as they come.
struct Sealed {
    child: std::process::Child,
    address: String,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Drop for Sealed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_sealed(url: &str, policy_file: &std::path::Path, threshold: Option<&str>) -> Sealed {
    serve_sealed_with(url, policy_file, threshold, &[])
}

fn serve_sealed_with(
    url: &str,
    policy_file: &std::path::Path,
    threshold: Option<&str>,
    extra: &[&std::ffi::OsStr],
) -> Sealed {
    use std::io::BufRead;
    let mut command = strongroom();
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--rate-limit-per-second",
            "0",
        ])
        .arg("--policy-file")
        .arg(policy_file);
    command.args(extra);
    match threshold {
        // No key and a threshold: sealed by itself.
        Some(m) => command.args(["--unseal-threshold", m]),
        None => command.arg("--sealed"),
    };
    let mut child = command
        .env("DATABASE_URL", url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut address = None;
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    for line in lines.by_ref().map_while(Result::ok) {
        log.lock().unwrap().push(line.clone());
        let entry: Value = serde_json::from_str(&line).unwrap_or_default();
        if entry["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("strongroom sealed"))
        {
            address = entry["listen"].as_str().map(|l| format!("http://{l}"));
            break;
        }
    }
    // Keep reading, so the pipe never fills and the test can look at every line.
    let sink = std::sync::Arc::clone(&log);
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    Sealed {
        child,
        address: address.expect("a sealed instance announces its address"),
        log,
    }
}

async fn submit(client: &reqwest::Client, base: &str, share: &str) -> reqwest::Response {
    client
        .post(format!("{base}/v1/sys/unseal"))
        .json(&serde_json::json!({ "share": share }))
        .send()
        .await
        .unwrap()
}

async fn progress(r: reqwest::Response) -> (bool, u64) {
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    (
        body["sealed"].as_bool().unwrap(),
        body["progress"].as_u64().unwrap(),
    )
}

async fn wait_ready(client: &reqwest::Client, base: &str) {
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status() == reqwest::StatusCode::OK
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{base} never became ready");
}

fn split_texts(app: &TestApp, shares: &str, threshold: &str) -> Vec<String> {
    let (ok, out, err) = run(strongroom()
        .args([
            "keys",
            "split",
            "--shares",
            shares,
            "--threshold",
            threshold,
            "--json",
        ])
        .env("DATABASE_URL", &app.db.url)
        .env("STRONGROOM_MASTER_KEY", &app.master_key));
    assert!(ok, "{err}");
    let body: Value = serde_json::from_str(&out).unwrap();
    body["shares"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn custodians_unseal_a_sealed_start_over_http_each_instance_on_its_own_and_an_admin_seals_it()
{
    use reqwest::StatusCode;

    let app = spawn_pg_app().await;
    let pan = random_pan("4", 16);
    let token = app.token_for(&pan).await;
    let texts = split_texts(&app, "5", "3");
    let other_split = split_texts(&app, "5", "3");
    let (ok, out, _) =
        run(strongroom().args(["keygen", "--shares", "5", "--threshold", "3", "--json"]));
    assert!(ok);
    let foreign: Vec<String> = serde_json::from_str::<Value>(&out).unwrap()["shares"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();
    let policy_file = write_policy_file(TEST_POLICIES);
    let client = reqwest::Client::new();

    let one = serve_sealed(&app.db.url, &policy_file, None);
    let base = one.address.clone();
    // Sealed: alive, not ready, and nothing else answers.
    let r = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = client.get(format!("{base}/readyz")).send().await.unwrap();
    let problem = assert_problem(r, StatusCode::SERVICE_UNAVAILABLE, "not_ready").await;
    assert_eq!(problem["reason"], "sealed");
    for (method, path) in [
        ("POST", "/v1/tokens"),
        ("GET", "/v1/audit"),
        ("POST", "/v1/detokenize"),
        ("POST", "/v1/sys/seal"),
        ("GET", "/console"),
    ] {
        let r = client
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .bearer_auth(&app.keys.admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["retry-after"], "1");
        assert_problem(r, StatusCode::SERVICE_UNAVAILABLE, "sealed").await;
    }

    // A whole set of another key's shares rebuilds nothing this vault opens: reset.
    assert_eq!(
        progress(submit(&client, &base, &foreign[0]).await).await,
        (true, 1)
    );
    assert_eq!(
        progress(submit(&client, &base, &foreign[1]).await).await,
        (true, 2)
    );
    let r = submit(&client, &base, &foreign[2]).await;
    let problem = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "unseal_failed").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("reset"),
        "{problem}"
    );
    let r = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);

    // A mistyped share is named at once and changes nothing.
    let r = submit(&client, &base, &typo(&texts[0])).await;
    let problem = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_share").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("mistyped"),
        "{problem}"
    );
    assert_eq!(
        progress(submit(&client, &base, &texts[1]).await).await,
        (true, 1)
    );
    // The same share twice, or a share of another split (anyone can make one), is refused
    // alone: the custodians' progress stays.
    let r = submit(&client, &base, &texts[1]).await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_share").await;
    let r = submit(&client, &base, &other_split[0]).await;
    let problem = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_share").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("another split"),
        "{problem}"
    );

    // Three custodians: sealed, sealed, unsealed; then it serves, and the token reads back.
    assert_eq!(
        progress(submit(&client, &base, &texts[3]).await).await,
        (true, 2)
    );
    let last = std::time::Instant::now();
    assert_eq!(
        progress(submit(&client, &base, &texts[4]).await).await,
        (false, 3)
    );
    wait_ready(&client, &base).await;
    eprintln!(
        "unsealed: ready {} ms after the last share",
        last.elapsed().as_millis()
    );
    assert_eq!(
        detokenize_at(&base, &app.keys.detokenizer, &token).await,
        pan
    );
    // Late custodians are told, and nothing is taken.
    assert_eq!(
        progress(submit(&client, &base, &texts[2]).await).await,
        (false, 0)
    );

    // A second instance is unsealed on its own: still sealed though the first is not.
    let two = serve_sealed(&app.db.url, &policy_file, Some("3"));
    let r = client
        .get(format!("{}/readyz", two.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    // It was started for threshold 3: a 2-of-N share is refused as such.
    let two_of = split_texts(&app, "3", "2");
    let r = submit(&client, &two.address, &two_of[0]).await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_share").await;
    for (i, share) in texts.iter().take(3).enumerate() {
        let (sealed, n) = progress(submit(&client, &two.address, share).await).await;
        assert_eq!((sealed, n), (i < 2, i as u64 + 1));
    }
    wait_ready(&client, &two.address).await;

    // An admin seals the first again; only an admin may.
    let r = client
        .post(format!("{base}/v1/sys/seal"))
        .bearer_auth(&app.keys.auditor)
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r = client
        .post(format!("{base}/v1/sys/seal"))
        .bearer_auth(&app.keys.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let mut sealed_again = false;
    for _ in 0..200 {
        // A kept-alive connection may be closed under the request as the instance stops.
        let r = client
            .get(format!("{base}/v1/tokens/{token}"))
            .bearer_auth(&app.keys.tokenizer)
            .send()
            .await;
        if r.is_ok_and(|r| r.status() == StatusCode::SERVICE_UNAVAILABLE) {
            sealed_again = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(sealed_again, "sealed after the admin's seal");
    let r = client
        .get(format!("{}/readyz", two.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "the other instance serves on");
    // And unseals again: all five custodians at once; one of them unseals it, and the shares
    // that come after are answered and never combined into a second unseal.
    let answers: Vec<_> = texts
        .iter()
        .map(|share| {
            let (client, base, share) = (client.clone(), base.clone(), share.clone());
            tokio::spawn(async move { progress(submit(&client, &base, &share).await).await })
        })
        .collect();
    let mut unsealing = 0;
    for answer in answers {
        match answer.await.unwrap() {
            (false, 3) => unsealing += 1,
            (true, 1 | 2) | (false, 0) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(unsealing, 1);
    wait_ready(&client, &base).await;

    // The trail: each custodian's slot, the failures, the unseals and the seal; never a share.
    let read = async |action: &str| -> Vec<Value> {
        let r = app
            .audit(
                &app.keys.auditor,
                &format!("?scope=system&action={action}&limit=500"),
            )
            .await;
        let body: Value = r.json().await.unwrap();
        body["events"].as_array().unwrap().clone()
    };
    let progress_events = read("unseal.progress").await;
    let slots: Vec<&str> = progress_events
        .iter()
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    assert!(slots.contains(&"slot=5 progress=3/3"), "{slots:?}");
    let failed = read("unseal.failed").await;
    let reasons: Vec<&str> = failed
        .iter()
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    for reason in [
        "mistyped",
        "slot=2 again",
        "other_split",
        "wrong_set; reset",
        "other_threshold",
    ] {
        assert!(
            reasons.iter().any(|r| r.starts_with(reason)),
            "{reason} in {reasons:?}"
        );
    }
    assert_eq!(read("unseal").await.len(), 3);
    let r = app.audit(&app.keys.auditor, "?action=seal").await;
    let seals: Value = r.json().await.unwrap();
    let outcomes: Vec<&str> = seals["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes.len(), 2, "{seals}");
    assert!(outcomes.contains(&"success") && outcomes.contains(&"denied"));
    let everything = serde_json::to_string(&[progress_events, failed]).unwrap()
        + &one.log.lock().unwrap().join("\n")
        + &two.log.lock().unwrap().join("\n");
    for share in texts.iter().chain(&foreign).chain(&other_split) {
        assert!(
            !everything.contains(&share[17..60]),
            "a share was recorded or logged"
        );
    }
    let _ = std::fs::remove_file(policy_file);
}

#[tokio::test]
async fn custodians_unseal_with_the_cli_over_tls_and_a_typo_is_named_before_it_is_sent() {
    use std::io::Write;

    let app = spawn_pg_app().await;
    let texts = split_texts(&app, "3", "2");
    let dir = std::env::temp_dir().join(format!("strongroom-unseal-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let policy_file = write_policy_file(TEST_POLICIES);
    let sealed = serve_sealed_with(
        &app.db.url,
        &policy_file,
        None,
        &[
            "--tls-cert".as_ref(),
            cert.as_os_str(),
            "--tls-key".as_ref(),
            key.as_os_str(),
        ],
    );
    let url = sealed
        .address
        .replace("http://127.0.0.1", "https://localhost");
    let unseal = |share: &str, cacert: Option<&std::path::Path>| {
        let mut command = strongroom();
        command.args(["unseal", "--url", &url]);
        if let Some(ca) = cacert {
            command.arg("--cacert").arg(ca);
        }
        let mut child = command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{share}").unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // A typo is named here, and nothing reaches the vault.
    let (ok, _, err) = unseal(&typo(&texts[0]), Some(&cert));
    assert!(
        !ok && err.contains("mistyped") && err.contains("nothing was sent"),
        "{err}"
    );
    // HTTPS needs the CA.
    let (ok, _, err) = unseal(&texts[0], None);
    assert!(!ok && err.contains("--cacert"), "{err}");
    let (ok, out, err) = unseal(&texts[0], Some(&cert));
    assert!(ok, "{err}");
    assert!(out.contains("1 of 2"), "{out}");
    assert!(!out.contains(&texts[0][17..60]) && !err.contains(&texts[0][17..60]));
    let (ok, out, err) = unseal(&texts[0], Some(&cert));
    assert!(!ok && err.contains("invalid_share"), "{out}{err}");
    let (ok, out, err) = unseal(&texts[2], Some(&cert));
    assert!(ok, "{err}");
    assert!(out.contains("unsealed"), "{out}");
    let root = reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([root])
        .build()
        .unwrap();
    wait_ready(&client, &url).await;
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_file(policy_file);
}

#[test]
fn a_sealed_start_refuses_a_master_key_left_in_its_environment() {
    let (ok, _, err) = run(strongroom()
        .args(["serve", "--sealed", "--listen", "127.0.0.1:0"])
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .env("STRONGROOM_MASTER_KEY", new_master_key()));
    assert!(!ok);
    assert!(err.contains("remove the key from the environment"), "{err}");
}

/// Runs `strongroom keys ARGS` on `url` with `env`, standard input `input`.
fn keys_with_input(
    url: &str,
    args: &[&str],
    env: &[(&str, &str)],
    input: &str,
) -> (bool, String, String) {
    use std::io::Write;
    let mut command = strongroom();
    command.arg("keys").args(args).env("DATABASE_URL", url);
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The share with one hex digit of its body changed.
fn typo(share: &str) -> String {
    let mut bytes = share.as_bytes().to_vec();
    bytes[30] = if bytes[30] == b'0' { b'1' } else { b'0' };
    String::from_utf8(bytes).unwrap()
}

fn shares_of(out: &str) -> Vec<String> {
    serde_json::from_str::<Value>(out).unwrap()["shares"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_vault_moves_from_its_key_to_shares_is_re_split_from_shares_and_moves_back() {
    let app = spawn_pg_app().await;
    let pan = random_pan("4", 16);
    let token = app.token_for(&pan).await;
    let url = app.db.url.clone();

    // Environment key → a new key that only exists as 3 shares (2 rebuild it).
    let (ok, out, err) = keys_with_input(
        &url,
        &[
            "rewrap",
            "--to-shares",
            "3",
            "--to-threshold",
            "2",
            "--json",
        ],
        &[("STRONGROOM_MASTER_KEY", &app.master_key)],
        "",
    );
    assert!(ok, "{err}");
    let first = shares_of(&out);
    assert_eq!(first.len(), 3);
    // The old key opens nothing now.
    let (ok, _, err) = keys_with_input(
        &url,
        &["split", "--shares", "2", "--threshold", "2"],
        &[("STRONGROOM_MASTER_KEY", &app.master_key)],
        "",
    );
    assert!(!ok && err.contains("does not open"), "{err}");

    // A custodian leaves: two of them re-split the key without anyone holding it whole.
    let resplit = [
        "split",
        "--from-shares",
        "--shares",
        "4",
        "--threshold",
        "3",
        "--json",
    ];
    let (ok, _, err) = keys_with_input(
        &url,
        &resplit,
        &[],
        &format!("{}\n{}\n", first[0], typo(&first[2])),
    );
    assert!(
        !ok && err.contains("share 2") && err.contains("nothing was done"),
        "{err}"
    );
    let (ok, out, err) = keys_with_input(
        &url,
        &resplit,
        &[],
        &format!("{}\n{}\n", first[0], first[2]),
    );
    assert!(ok, "{err}");
    let second = shares_of(&out);
    assert_eq!(second.len(), 4);
    let (ok, _, err) = keys_with_input(
        &url,
        &["rewrap", "--from-shares"],
        &[],
        &format!("{}\n", second[1]),
    );
    assert!(
        !ok && err.contains("ended after 1 share(s); 3 needed"),
        "{err}"
    );

    // Shares → a new environment key; the token reads back under it.
    let env_key = new_master_key();
    let (ok, _, err) = keys_with_input(
        &url,
        &["rewrap", "--from-shares"],
        &[("STRONGROOM_NEW_MASTER_KEY", &env_key)],
        &format!("{}\n{}\n{}\n", second[3], second[0], second[1]),
    );
    assert!(ok, "{err}");
    let policy_file = write_policy_file(TEST_POLICIES);
    let server = crate::cli::serve_process(&url, &env_key, Some(&policy_file));
    assert_eq!(
        detokenize_at(&server.address, &app.keys.detokenizer, &token).await,
        pan
    );
    let details = system_details(&server.address, &app.keys.auditor, "key.rewrap").await;
    // Newest first.
    assert!(
        details[0].contains("from_kind=shares to_kind=environment"),
        "{details:?}"
    );
    assert!(
        details[1].contains("from_kind=environment to_kind=shares"),
        "{details:?}"
    );
    let _ = std::fs::remove_file(policy_file);
}
