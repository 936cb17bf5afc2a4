//! `strongroom dev` as a newcomer runs it: one command to a working vault on the embedded
//! store, and a second start that keeps everything.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::cli::{serve_process, strongroom};
use crate::helpers::random_pan;

/// A data directory of its own, removed afterwards.
struct DataDir(PathBuf);

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Dev {
    child: Child,
    base: String,
    banner: String,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `strongroom dev` and waits for its banner; returns it with how long that took.
fn start(dir: &Path) -> (Dev, Duration) {
    let started = Instant::now();
    let mut child = strongroom()
        .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut base = None;
    let mut banner = String::new();
    for line in lines.map_while(Result::ok) {
        if let Some(rest) = line.split("ready at ").nth(1) {
            base = rest.split_whitespace().next().map(str::to_owned);
        }
        banner.push_str(&line);
        banner.push('\n');
        if line.starts_with("Ctrl-C stops it") {
            break;
        }
    }
    let dev = Dev {
        child,
        base: base.expect("dev announces where it serves"),
        banner,
    };
    (dev, started.elapsed())
}

fn key_of(credentials: &Value, name: &str) -> String {
    credentials["principals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn dev_runs_a_working_vault_in_one_command_and_keeps_it_across_restarts() {
    let dir = DataDir(
        std::env::temp_dir().join(format!("strongroom-dev-{}", uuid::Uuid::new_v4().simple())),
    );
    let (dev, ready_in) = start(&dir.0);
    eprintln!("strongroom dev ready in {} ms", ready_in.as_millis());

    let credentials: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.0.join("dev-credentials.json")).unwrap())
            .unwrap();
    let principals = credentials["principals"].as_array().unwrap();
    let roles: Vec<&str> = principals
        .iter()
        .map(|p| p["roles"][0].as_str().unwrap())
        .collect();
    for role in [
        "tokenizer",
        "detokenizer",
        "requester",
        "approver",
        "auditor",
        "admin",
    ] {
        assert!(roles.contains(&role), "{role} in {credentials}");
    }
    for p in principals {
        let person = ["requester", "approver"].contains(&p["roles"][0].as_str().unwrap());
        assert_eq!(p["totp_secret"].is_string(), person, "{p}");
    }
    #[cfg(unix)]
    for file in ["master.key", "dev-credentials.json"] {
        assert_eq!(mode(&dir.0.join(file)), 0o600, "{file}");
    }
    // Each with its id, as `principal list` gives it (for `principal disable --id` and such).
    let (ok, out, err) = crate::cli::run(
        strongroom()
            .args(["principal", "list", "--tenant", "demo", "--json"])
            .env(
                "DATABASE_URL",
                format!("sqlite://{}", dir.0.join("strongroom.db").display()),
            ),
    );
    assert!(ok, "{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    for p in principals {
        let id = p["id"].as_str().expect("an id in dev-credentials.json");
        let row = listed["principals"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["id"] == id)
            .unwrap_or_else(|| panic!("{id} in {listed}"));
        assert_eq!(row["name"], p["name"]);
    }

    // The newcomer's walk: tokenize, an auto-approved grant, detokenize.
    let client = reqwest::Client::new();
    let (tokenizer, payments) = (
        key_of(&credentials, "checkout"),
        key_of(&credentials, "payments"),
    );
    let pan = random_pan("4", 16);
    let tokenize = |base: String| {
        client
            .post(format!("{base}/v1/tokens"))
            .bearer_auth(&tokenizer)
            .json(&json!({"value": pan}))
            .send()
    };
    let r = tokenize(dev.base.clone()).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let detokenize = async |base: &str| {
        let grant: Value = client
            .post(format!("{base}/v1/access-requests"))
            .bearer_auth(&payments)
            .json(
                &json!({"any_token": true, "purpose": "payment_authorization",
                          "reason": "order 1001", "duration_seconds": 60, "max_uses": 1}),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(grant["status"], "approved", "{grant}");
        client
            .post(format!("{base}/v1/detokenize"))
            .bearer_auth(&payments)
            .header("x-access-grant", grant["grant"].as_str().unwrap())
            .json(&json!({"tokens": [token]}))
            .send()
            .await
            .unwrap()
    };
    let r = detokenize(&dev.base).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["data"][0]["value"], pan.as_str());

    // A demo person's one-time code, as `strongroom totp code` prints it, opens a request.
    let totp = |name: &str| {
        let out = strongroom()
            .args(["totp", "code", name, "--data-dir"])
            .arg(&dir.0)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = totp("alice");
    assert!(ok, "{err}");
    // The code alone on standard output (for `$(...)`), its validity on standard error.
    let code = out.trim_end().to_owned();
    assert!(
        code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
        "{out}"
    );
    assert!(err.contains("more seconds"), "{err}");
    let r = client
        .post(format!("{}/v1/access-requests", dev.base))
        .bearer_auth(key_of(&credentials, "alice"))
        .json(
            &json!({"tokens": [token], "purpose": "chargeback", "reason": "CB-1 for order 7",
                      "duration_seconds": 600, "totp": code}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    // The banner shows the console and how to sign in to it; bob does, with his code.
    let console = format!("The people's console: {}/console", dev.base);
    assert!(dev.banner.contains(&console), "{}", dev.banner);
    let code_command = format!("totp code --data-dir {} bob", dir.0.display());
    assert!(dev.banner.contains(&code_command), "{}", dev.banner);
    let r = client
        .get(format!("{}/console", dev.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (ok, out, err) = totp("bob");
    assert!(ok, "{err}");
    let r = client
        .post(format!("{}/v1/sessions", dev.base))
        .json(&json!({"api_key": key_of(&credentials, "bob"),
                      "totp": out.split_whitespace().next().unwrap()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let (ok, _, err) = totp("checkout");
    assert!(!ok && err.contains("has no second factor"), "{err}");
    let (ok, _, err) = totp("mallory");
    assert!(!ok && err.contains("alice, bob"), "{err}");

    // A second start on the same directory: same keys, same principals, same tokens.
    drop(dev);
    let (again, _) = start(&dir.0);
    let r = tokenize(again.base.clone()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "the PAN is already tokenized");
    assert_eq!(r.json::<Value>().await.unwrap()["token"], token.as_str());
    let r = detokenize(&again.base).await;
    assert_eq!(
        r.json::<Value>().await.unwrap()["data"][0]["value"],
        pan.as_str()
    );
    let after: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.0.join("dev-credentials.json")).unwrap())
            .unwrap();
    assert_eq!(after, credentials);

    // The trail of both runs verifies against its checkpoints.
    drop(again);
    let master_key = std::fs::read_to_string(dir.0.join("master.key")).unwrap();
    let out = strongroom()
        .args(["audit", "verify", "--audit-checkpoint-file"])
        .arg(dir.0.join("audit-checkpoints.jsonl"))
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.0.join("strongroom.db").display()),
        )
        .env("STRONGROOM_MASTER_KEY", master_key.trim())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("verified"), "{text}");
}

fn new_dir(prefix: &str) -> DataDir {
    DataDir(std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple())))
}

/// Tokenizes one card on a dev vault, so that the database has written through its WAL.
async fn tokenize_one(dev: &Dev, dir: &Path) {
    let credentials: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("dev-credentials.json")).unwrap())
            .unwrap();
    let r = reqwest::Client::new()
        .post(format!("{}/v1/tokens", dev.base))
        .bearer_auth(key_of(&credentials, "checkout"))
        .json(&json!({"value": random_pan("4", 16)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[cfg(unix)]
#[tokio::test]
async fn the_banners_calls_work_as_pasted_the_services_flow_and_the_peoples() {
    let dir = new_dir("strongroom-dev-paste");
    let (dev, _) = start(&dir.0);
    let (_, calls) = dev
        .banner
        .split_once("Try it from a shell")
        .expect("the banner has calls to try");
    let script: Vec<&str> = calls
        .lines()
        .skip(1)
        .take_while(|line| !line.starts_with("Ctrl-C"))
        .collect();
    let out = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c"])
        .arg(script.join("\n"))
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}\n{}", dev.banner);
    // The payment service's detokenize, bob's approval and alice's reveal, in that order.
    let detokenized = stdout.find("\"value\":\"4111111111111111\"");
    let approved = stdout.find("\"status\":\"approved\"");
    let revealed = stdout.rfind("\"value\":\"4111111111111111\"");
    assert!(
        detokenized.is_some() && approved > detokenized && revealed > approved,
        "{stdout}\n{stderr}"
    );
}

#[tokio::test]
async fn dev_keeps_its_directory_0700_and_every_file_in_it_0600_the_database_and_wal_included() {
    let dir = new_dir("strongroom-dev-modes");
    let (dev, _) = start(&dir.0);
    tokenize_one(&dev, &dir.0).await;
    assert_eq!(mode(&dir.0), 0o700);
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir.0).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(entry.file_type().unwrap().is_file(), "{name}");
        assert_eq!(mode(&entry.path()), 0o600, "{name}");
        names.push(name);
    }
    for expected in [
        "master.key",
        "dev-credentials.json",
        "policies.toml",
        "audit-checkpoints.jsonl",
        "strongroom.db",
        "strongroom.db-wal",
        "strongroom.db-shm",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
}

#[test]
fn a_dev_vaults_key_is_marked_and_serve_and_migrate_refuse_it() {
    let dir = new_dir("strongroom-dev-key");
    let (dev, _) = start(&dir.0);
    drop(dev);
    let key = std::fs::read_to_string(dir.0.join("master.key")).unwrap();
    assert!(key.starts_with("strongroom-dev-key:"), "the key is marked");
    let base64 = key.trim().trim_start_matches("strongroom-dev-key:");
    let url = format!("sqlite://{}", dir.0.join("strongroom.db").display());
    for args in [&["serve", "--listen", "127.0.0.1:0"][..], &["migrate"]] {
        let out = strongroom()
            .args(args)
            .env("DATABASE_URL", &url)
            .env("STRONGROOM_MASTER_KEY", key.trim())
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(!out.status.success(), "{args:?}");
        assert!(
            stderr.contains("is a development key made by `strongroom dev`"),
            "{args:?}: {stderr}"
        );
        assert!(!stdout.contains(base64) && !stderr.contains(base64));
    }
}

#[cfg(unix)]
#[tokio::test]
async fn dev_reads_a_plain_key_from_an_older_data_dir_marks_it_and_closes_files_left_open() {
    use std::os::unix::fs::PermissionsExt;
    let dir = new_dir("strongroom-dev-old");
    let (dev, _) = start(&dir.0);
    drop(dev);
    // What an older version left: the key in plain base64, the database readable by all.
    let key_file = dir.0.join("master.key");
    let marked = std::fs::read_to_string(&key_file).unwrap();
    let plain = marked.trim_start_matches("strongroom-dev-key:").to_owned();
    std::fs::write(&key_file, &plain).unwrap();
    for name in ["strongroom.db", "audit-checkpoints.jsonl"] {
        std::fs::set_permissions(dir.0.join(name), std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    let (again, _) = start(&dir.0);
    tokenize_one(&again, &dir.0).await;
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), marked);
    assert_eq!(mode(&key_file), 0o600);
    for name in [
        "strongroom.db",
        "audit-checkpoints.jsonl",
        "strongroom.db-wal",
    ] {
        assert_eq!(mode(&dir.0.join(name)), 0o600, "{name}");
    }
}

#[cfg(unix)]
#[test]
fn dev_refuses_a_data_dir_that_other_users_can_read_and_that_holds_files() {
    use std::os::unix::fs::PermissionsExt;
    let dir = new_dir("strongroom-dev-open");
    std::fs::create_dir_all(&dir.0).unwrap();
    std::fs::write(dir.0.join("notes.txt"), "mine").unwrap();
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = strongroom()
        .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir.0)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("open to other users"), "{stderr}");
    assert!(
        !dir.0.join("master.key").exists(),
        "nothing is written there"
    );
    assert_eq!(mode(&dir.0), 0o755, "and nothing of it is changed");
}

#[test]
fn dev_refuses_a_non_loopback_address() {
    let dir = DataDir(
        std::env::temp_dir().join(format!("strongroom-dev-{}", uuid::Uuid::new_v4().simple())),
    );
    let out = strongroom()
        .args(["dev", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(&dir.0)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback only"));
    assert!(!dir.0.exists(), "nothing is created for a refused start");
}

#[tokio::test]
async fn serve_runs_on_the_embedded_store_from_a_sqlite_url() {
    let dir = DataDir(
        std::env::temp_dir().join(format!("strongroom-lite-{}", uuid::Uuid::new_v4().simple())),
    );
    std::fs::create_dir_all(&dir.0).unwrap();
    let url = format!("sqlite://{}", dir.0.join("vault.db").display());
    let master_key = crate::helpers::new_master_key();
    let run = |args: &[&str]| {
        let out = strongroom()
            .args(args)
            .env("DATABASE_URL", &url)
            .env("STRONGROOM_MASTER_KEY", &master_key)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&["migrate"]);
    let created: Value = serde_json::from_str(
        run(&[
            "principal",
            "create",
            "--tenant",
            "shop",
            "--name",
            "web",
            "--role",
            "tokenizer",
            "--json",
        ])
        .trim(),
    )
    .unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    let server = serve_process(&url, &master_key, None);
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/v1/tokens", server.address))
        .bearer_auth(&key)
        .json(&json!({"value": random_pan("4", 16)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = client
        .get(format!("{}/v1/tokens/{token}", server.address))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = client
        .get(format!("{}/readyz", server.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}
