//! The `strongroom` binary as an operator runs it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{Connection, Executor, PgConnection};

use crate::helpers::*;

pub fn strongroom() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_strongroom"));
    command
        .env_remove("DATABASE_URL")
        .env_remove("STRONGROOM_MASTER_KEY")
        .env_remove("STRONGROOM_MASTER_KEY_FILE")
        .env_remove("STRONGROOM_POLICY_FILE")
        .env_remove("STRONGROOM_LISTEN");
    command
}

pub fn run(command: &mut Command) -> (bool, String, String) {
    let out = command.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn keygen_prints_a_fresh_32_byte_key() {
    let (ok, a, _) = run(strongroom().arg("keygen"));
    assert!(ok);
    let (_, b, _) = run(strongroom().arg("keygen"));
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(a.trim())
        .unwrap();
    assert_eq!(decoded.len(), 32);
    assert_ne!(a, b);
}

#[tokio::test]
async fn migrate_then_principal_create_gives_a_key_that_works() {
    let db = std::sync::Arc::new(TestDb::create(false).await);
    let (ok, out, err) = run(strongroom().args(["migrate"]).env("DATABASE_URL", &db.url));
    assert!(ok, "{err}");
    assert!(out.contains("applied"), "{out}");
    let (ok, out, _) = run(strongroom().args(["migrate"]).env("DATABASE_URL", &db.url));
    assert!(ok && out.contains("current"));

    let (ok, out, err) = run(strongroom()
        .args([
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
        .env("DATABASE_URL", &db.url));
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(created["tenant"], "shop");
    assert_eq!(created["name"], "web");
    assert_eq!(created["roles"], json!(["tokenizer"]));
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("sr_"));
    // Only the hash is stored.
    let pool = db.pool().await;
    let stored: Vec<u8> = sqlx::query_scalar("select key_hash from principals")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored.len(), 32);
    assert!(!String::from_utf8_lossy(&stored).contains(&key));

    let master_key = new_master_key();
    // A person with a second factor: needs the master key to seal the secret.
    let totp_args = [
        "principal",
        "create",
        "--tenant",
        "shop",
        "--name",
        "alice",
        "--role",
        "requester",
        "--totp",
        "--json",
    ];
    let (ok, _, err) = run(strongroom().args(totp_args).env("DATABASE_URL", &db.url));
    assert!(!ok && err.contains("STRONGROOM_MASTER_KEY"), "{err}");
    let (ok, out, err) = run(strongroom()
        .args(totp_args)
        .env("DATABASE_URL", &db.url)
        .env("STRONGROOM_MASTER_KEY", &master_key));
    assert!(ok, "{err}");
    let alice: Value = serde_json::from_str(out.trim()).unwrap();
    let secret = alice["totp_secret"].as_str().unwrap();
    assert_eq!(secret.len(), 32, "160 bits in base32");
    assert!(alice["otpauth_uri"].as_str().unwrap().contains(secret));
    let sealed: Vec<u8> =
        sqlx::query_scalar("select totp_secret from principals where name = 'alice'")
            .fetch_one(&pool)
            .await
            .unwrap();
    let raw = base32_decode(secret);
    assert!(
        !sealed.windows(raw.len()).any(|w| w == raw.as_slice()),
        "sealed at rest"
    );

    let app = start(db, master_key, Keys::only(&key), Options::default()).await;
    let r = app
        .tokenize(&key, &json!({"value": random_pan("4", 16)}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let token: Value = r.json().await.unwrap();
    // The enrolled factor works: alice asks for a grant with her code.
    let person = Person {
        id: alice["id"].as_str().unwrap().parse().unwrap(),
        key: alice["key"].as_str().unwrap().to_owned(),
        totp: std::sync::Arc::new(strongroom::crypto::totp::TotpSecret::from_bytes(&raw).unwrap()),
    };
    let r = app
        .create_request(
            &person.key,
            &json!({"tokens": [token["token"]], "purpose": "dispute", "reason": "case 9",
                    "duration_seconds": 600, "totp": app.code(&person)}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

/// RFC 4648 base32, no padding.
fn base32_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bits = 0u64;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c).unwrap() as u64;
        bits = (bits << 5) | v;
        count += 5;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}

#[tokio::test]
async fn principal_create_refuses_admin_with_a_card_data_role() {
    let db = TestDb::create(true).await;
    let (ok, out, err) = run(strongroom()
        .args([
            "principal",
            "create",
            "--tenant",
            "shop",
            "--name",
            "boss",
            "--role",
            "admin",
            "--role",
            "detokenizer",
        ])
        .env("DATABASE_URL", &db.url));
    assert!(!ok);
    assert!(out.is_empty());
    assert!(err.contains("admin cannot be combined"), "{err}");
    let (ok, _, err) = run(strongroom()
        .args([
            "principal",
            "create",
            "--tenant",
            "shop",
            "--name",
            "x",
            "--role",
            "root",
        ])
        .env("DATABASE_URL", &db.url));
    assert!(!ok && err.contains("unknown role"), "{err}");
}

#[tokio::test]
async fn serve_refuses_to_start_on_a_schema_that_is_behind() {
    let db = TestDb::create(false).await;
    let (ok, _, err) = run(strongroom()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("DATABASE_URL", &db.url)
        .env("STRONGROOM_MASTER_KEY", new_master_key()));
    assert!(!ok);
    assert!(err.contains("strongroom migrate"), "{err}");
}

#[test]
fn serve_refuses_a_missing_or_malformed_master_key_without_printing_it() {
    let (ok, _, err) = run(strongroom()
        .args(["serve"])
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/x"));
    assert!(
        !ok && err.contains("STRONGROOM_MASTER_KEY is not set"),
        "{err}"
    );
    let bad = "c2VjcmV0LWJ1dC1zaG9ydA==";
    let (ok, out, err) = run(strongroom()
        .args(["serve"])
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/x")
        .env("STRONGROOM_MASTER_KEY", bad));
    assert!(!ok && err.contains("32 bytes"), "{err}");
    assert!(!err.contains(bad) && !out.contains(bad));
    let (ok, _, err) = run(strongroom()
        .args(["serve"])
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/x")
        .env("STRONGROOM_MASTER_KEY", "%%%not base64%%%"));
    assert!(
        !ok && err.contains("not valid base64") && !err.contains("%%%"),
        "{err}"
    );
}

/// The commands that must refuse a development or weak key, run against a database that does
/// not answer: the key is refused before any connection is tried.
const PRODUCTION_COMMANDS: &[&[&str]] = &[
    &["serve", "--listen", "127.0.0.1:0"],
    &["migrate"],
    &[
        "principal",
        "create",
        "--tenant",
        "t",
        "--name",
        "n",
        "--role",
        "tokenizer",
    ],
    &[
        "principal",
        "disable",
        "--id",
        "00000000-0000-0000-0000-000000000000",
    ],
    &[
        "principal",
        "unlock-totp",
        "--id",
        "00000000-0000-0000-0000-000000000000",
    ],
];

/// Runs `args` with `key` as the master key against a database that does not answer.
fn run_with_key(args: &[&str], key: &str) -> (bool, String, String) {
    run(strongroom()
        .args(args)
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/x")
        .env("STRONGROOM_MASTER_KEY", key))
}

#[test]
fn serve_migrate_and_principal_commands_refuse_a_dev_key_without_printing_it() {
    let dev = strongroom::crypto::keys::MasterKey::generate_dev_text(
        &strongroom::random::SystemRandom::new(),
    )
    .unwrap();
    let base64 = dev.split(':').nth(1).unwrap();
    for args in PRODUCTION_COMMANDS {
        let (ok, out, err) = run_with_key(args, &dev);
        assert!(!ok, "{args:?}");
        assert!(
            err.contains("development key made by `strongroom dev`")
                && err.contains("strongroom keygen"),
            "{args:?}: {err}"
        );
        assert!(!err.contains(base64) && !out.contains(base64), "{args:?}");
    }
}

#[test]
fn serve_migrate_and_principal_commands_refuse_weak_keys_without_printing_them() {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let counting: Vec<u8> = (0..32).collect();
    let weak = [
        "A".repeat(43) + "=", // 32 zero bytes
        b64(&[0x41; 32]),
        b64(b"0123456789abcdef0123456789abcdef"),
        b64(b"abababababababababababababababab"),
        b64(&counting),
    ];
    for key in &weak {
        for args in PRODUCTION_COMMANDS {
            let (ok, out, err) = run_with_key(args, key);
            assert!(!ok, "{args:?} {key}");
            assert!(
                err.contains("STRONGROOM_MASTER_KEY is not a random key")
                    && err.contains("strongroom keygen"),
                "{args:?}: {err}"
            );
            assert!(!err.contains(key.as_str()) && !out.contains(key.as_str()));
        }
    }
    // Weak stays weak when marked as a dev key, and is reported as weak.
    let (ok, _, err) = run_with_key(
        &["serve"],
        &format!("{}{}", strongroom::crypto::keys::DEV_KEY_PREFIX, weak[1]),
    );
    assert!(!ok && err.contains("not a random key"), "{err}");
}

#[tokio::test]
async fn a_key_from_keygen_passes_migrate_and_serve() {
    let (ok, key, _) = run(strongroom().arg("keygen"));
    assert!(ok);
    let key = key.trim().to_owned();
    let db = TestDb::create(false).await;
    let (ok, out, err) = run(strongroom()
        .args(["migrate"])
        .env("DATABASE_URL", &db.url)
        .env("STRONGROOM_MASTER_KEY", &key));
    assert!(ok && out.contains("applied"), "{err}");
    let server = serve_process(&db.url, &key, None);
    let r = reqwest::get(format!("{}/readyz", server.address))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn audit_verify_creates_no_key_on_a_vault_that_was_never_served() {
    // Verifying with checkpoints needs the vault's checkpoint key; on a database no vault has
    // served there is none, and verify must not make one under whatever key it was given.
    let db = TestDb::create(true).await;
    let file = std::env::temp_dir().join(format!("sr-verify-{}.jsonl", uuid::Uuid::new_v4()));
    std::fs::write(&file, "").unwrap();
    let (ok, _, err) = run(strongroom()
        .args(["audit", "verify", "--audit-checkpoint-file"])
        .arg(&file)
        .env("DATABASE_URL", &db.url)
        .env("STRONGROOM_MASTER_KEY", new_master_key()));
    assert!(!ok);
    assert!(err.contains("no audit checkpoint key"), "{err}");
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    let secrets: i64 = sqlx::query_scalar("select count(*) from vault_secrets")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(secrets, 0);
    let _ = std::fs::remove_file(file);
}

#[test]
fn serve_refuses_plain_http_on_a_non_loopback_address() {
    let (ok, _, err) = run(strongroom()
        .args(["serve", "--listen", "0.0.0.0:0"])
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/x")
        .env("STRONGROOM_MASTER_KEY", new_master_key()));
    assert!(!ok);
    assert!(err.contains("refusing plain HTTP"), "{err}");
    // The variable works as the flag does.
    let (ok, _, err) = run(strongroom()
        .args(["serve"])
        .env("STRONGROOM_LISTEN", "0.0.0.0:0")
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/x")
        .env("STRONGROOM_MASTER_KEY", new_master_key()));
    assert!(!ok && err.contains("refusing plain HTTP"), "{err}");
}

#[tokio::test]
async fn serve_refuses_another_master_key_than_the_one_that_wrapped_the_keys() {
    let app = spawn_pg_app().await;
    let (ok, _, err) = run(strongroom()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("DATABASE_URL", &app.db.url)
        .env("STRONGROOM_MASTER_KEY", new_master_key()));
    assert!(!ok);
    assert!(err.contains("master key does not match"), "{err}");
}

#[tokio::test]
async fn serve_logs_json_serves_and_shuts_down_gracefully_on_sigterm() {
    let db = TestDb::create(true).await;
    let mut child = strongroom()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("DATABASE_URL", &db.url)
        .env("STRONGROOM_MASTER_KEY", new_master_key())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut listen = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        let entry: Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
        if entry["message"] == "strongroom serving" {
            listen = entry["listen"].as_str().map(str::to_owned);
            break;
        }
    }
    let listen = listen.expect("the server announces its address");
    let r = reqwest::get(format!("http://{listen}/readyz"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut waited = Duration::ZERO;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            waited < Duration::from_secs(20),
            "did not stop after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    };
    assert!(status.success(), "graceful shutdown exits 0");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("shutting down")), "{rest:?}");
}

#[tokio::test]
async fn serve_refuses_a_bad_policy_file_naming_the_policy_and_the_reason() {
    let db = TestDb::create(true).await;
    let path = write_policy_file(
        "[[policy]]\nname = \"support\"\nroles = [\"requester\"]\npurposes = [\"dispute\"]\napprovals = 1\nmax_duration_seconds = 0\n",
    );
    let (ok, _, err) = run(strongroom()
        .args(["serve", "--listen", "127.0.0.1:0", "--policy-file"])
        .arg(&path)
        .env("DATABASE_URL", &db.url)
        .env("STRONGROOM_MASTER_KEY", new_master_key()));
    let _ = std::fs::remove_file(&path);
    assert!(!ok);
    assert!(err.contains("policy `support`"), "{err}");
    assert!(err.contains("max_duration_seconds"), "{err}");
}

/// A `strongroom serve` process, killed when dropped.
pub struct Server {
    child: std::process::Child,
    pub address: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(db: &TestDb, master_key: &str, policy_file: &std::path::Path) -> Server {
    serve_process(&db.url, master_key, Some(policy_file))
}

/// Starts `strongroom serve` on a loopback port against `url` and waits for its address.
pub fn serve_process(url: &str, master_key: &str, policy_file: Option<&std::path::Path>) -> Server {
    let mut command = strongroom();
    command.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--rate-limit-per-second",
        "0",
    ]);
    if let Some(file) = policy_file {
        command.arg("--policy-file").arg(file);
    }
    let mut child = command
        .env("DATABASE_URL", url)
        .env("STRONGROOM_MASTER_KEY", master_key)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut address = None;
    for line in lines.map_while(Result::ok) {
        let entry: Value = serde_json::from_str(&line).unwrap_or_default();
        if entry["message"] == "strongroom serving" {
            address = entry["listen"].as_str().map(|l| format!("http://{l}"));
            break;
        }
    }
    Server {
        child,
        address: address.expect("the server announces its address"),
    }
}

#[tokio::test]
async fn two_server_processes_share_use_counts_and_revocations() {
    let db = std::sync::Arc::new(TestDb::create(true).await);
    let master_key = new_master_key();
    let keys = seed_principals(
        &db.url,
        &master_key,
        std::sync::Arc::new(strongroom::clock::SystemClock),
    )
    .await;
    let policy_file = write_policy_file(TEST_POLICIES);
    let (a, b) = (
        serve(&db, &master_key, &policy_file),
        serve(&db, &master_key, &policy_file),
    );
    let client = reqwest::Client::new();
    let token: Value = client
        .post(format!("{}/v1/tokens", a.address))
        .bearer_auth(&keys.tokenizer)
        .json(&json!({"value": random_pan("4", 16)}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["token"].as_str().unwrap().to_owned();
    let grant = |server: &Server, max_uses: u32| {
        client
            .post(format!("{}/v1/access-requests", server.address))
            .bearer_auth(&keys.detokenizer)
            .json(
                &json!({"any_token": true, "purpose": "payment_authorization",
                          "reason": "order 7", "duration_seconds": 60, "max_uses": max_uses}),
            )
            .send()
    };
    let detokenize = |server: &Server, grant: &str| {
        client
            .post(format!("{}/v1/detokenize", server.address))
            .bearer_auth(&keys.detokenizer)
            .header("x-access-grant", grant)
            .json(&json!({"tokens": [token]}))
            .send()
    };

    // max_uses holds across both processes: 3 uses, 12 concurrent calls.
    let three: Value = grant(&a, 3).await.unwrap().json().await.unwrap();
    let jwt = three["grant"].as_str().unwrap().to_owned();
    let calls: Vec<_> = (0..12)
        .map(|i| tokio::spawn(detokenize(if i % 2 == 0 { &a } else { &b }, &jwt)))
        .collect();
    let mut codes = Vec::new();
    for call in calls {
        let response = call.await.unwrap().unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        codes.push((status, body["code"].as_str().map(str::to_owned)));
    }
    let ok = codes.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    assert_eq!(ok, 3, "{codes:?}");
    assert!(
        codes
            .iter()
            .all(|(s, c)| *s == StatusCode::OK || c.as_deref() == Some("grant_exhausted"))
    );

    // A grant revoked on one process is refused by the other at once.
    let five: Value = grant(&b, 5).await.unwrap().json().await.unwrap();
    let (jwt, jti) = (
        five["grant"].as_str().unwrap().to_owned(),
        five["grant_jti"].as_str().unwrap().to_owned(),
    );
    assert_eq!(detokenize(&b, &jwt).await.unwrap().status(), StatusCode::OK);
    let revoked = client
        .post(format!("{}/v1/grants/{jti}/revoke", a.address))
        .bearer_auth(&keys.detokenizer)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    let r = detokenize(&b, &jwt).await.unwrap();
    assert_problem(r, StatusCode::FORBIDDEN, "grant_revoked").await;
    let _ = std::fs::remove_file(&policy_file);
}

#[tokio::test]
async fn principal_changes_are_audited_checkpointed_and_verified() {
    let db = TestDb::create(true).await;
    let master_key = new_master_key();
    let checkpoints = std::env::temp_dir().join(format!(
        "strongroom-cli-checkpoints-{}.jsonl",
        uuid::Uuid::new_v4().simple()
    ));
    let with_env = |command: &mut Command| {
        command
            .env("DATABASE_URL", &db.url)
            .env("STRONGROOM_MASTER_KEY", &master_key)
            .env("STRONGROOM_AUDIT_CHECKPOINT_FILE", &checkpoints);
    };
    let mut create = strongroom();
    create.args([
        "principal",
        "create",
        "--tenant",
        "shop",
        "--name",
        "carol",
        "--role",
        "approver",
        "--totp",
        "--json",
    ]);
    with_env(&mut create);
    let (ok, out, err) = run(&mut create);
    assert!(ok, "{err}");
    let id = serde_json::from_str::<Value>(out.trim()).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A name taken in the tenant: refused, recorded, and no second account.
    let mut again = strongroom();
    again.args([
        "principal",
        "create",
        "--tenant",
        "shop",
        "--name",
        "carol",
        "--role",
        "approver",
    ]);
    with_env(&mut again);
    let (ok, _, err) = run(&mut again);
    assert!(!ok && err.contains("already exists"), "{err}");
    // A refused creation is recorded too: admin cannot hold a card-data role.
    let mut refused = strongroom();
    refused.args([
        "principal",
        "create",
        "--tenant",
        "shop",
        "--name",
        "mallory",
        "--role",
        "admin",
        "--role",
        "approver",
    ]);
    with_env(&mut refused);
    assert!(!run(&mut refused).0);
    // A lock lifted by an admin (carol has a second factor), recorded like any change.
    let mut unlock = strongroom();
    unlock.args(["principal", "unlock-totp", "--id", &id]);
    with_env(&mut unlock);
    let (ok, out, err) = run(&mut unlock);
    assert!(ok && out.contains("unlocked"), "{err}");
    let mut disable = strongroom();
    disable.args(["principal", "disable", "--id", &id]);
    with_env(&mut disable);
    assert!(run(&mut disable).0);

    let pool = db.pool().await;
    let events: Vec<(String, Option<String>, Option<String>)> =
        sqlx::query_as("select action, subject, detail from audit_events order by id")
            .fetch_all(&pool)
            .await
            .unwrap();
    let actions: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
    // The new vault's keys, then the principal's creation and its disabling.
    assert!(actions.contains(&"key.create"), "{events:?}");
    let created = events.iter().find(|e| e.0 == "principal.create").unwrap();
    assert_eq!(created.1.as_deref(), Some(id.as_str()));
    assert_eq!(created.2.as_deref(), Some("roles=approver totp"));
    let disabled = events.iter().find(|e| e.0 == "principal.disable").unwrap();
    assert_eq!(disabled.1.as_deref(), Some(id.as_str()));
    let unlocked = events
        .iter()
        .find(|e| e.0 == "principal.totp_unlock")
        .unwrap();
    assert_eq!(unlocked.1.as_deref(), Some(id.as_str()));
    let refusals: Vec<(String, Option<String>)> = sqlx::query_as(
        "select code, detail from audit_events where action = 'principal.create' \
         and outcome = 'denied' order by id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        refusals,
        vec![
            (
                "principal_exists".to_owned(),
                Some("roles=approver".to_owned())
            ),
            (
                "invalid_roles".to_owned(),
                Some("roles=admin,approver".to_owned())
            ),
        ]
    );
    let carols: i64 = sqlx::query_scalar("select count(*) from principals where name = 'carol'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(carols, 1);

    let mut verify = strongroom();
    verify.args(["audit", "verify"]);
    with_env(&mut verify);
    let (ok, out, err) = run(&mut verify);
    assert!(ok, "{err}");
    assert!(
        out.contains("checkpoints matched") && !out.contains(" 0 checkpoints"),
        "{out}"
    );

    // The disabling's whole chain deleted by a superuser: only its checkpoint remembers it.
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    conn.execute("set session_replication_role = replica")
        .await
        .unwrap();
    conn.execute("delete from audit_events where action = 'principal.disable'")
        .await
        .unwrap();
    let (ok, _, err) = run(&mut verify);
    assert!(!ok);
    assert!(
        err.contains("ends at seq 0") && err.contains("records were cut off"),
        "{err}"
    );
    let _ = std::fs::remove_file(&checkpoints);
}

#[tokio::test]
async fn keys_status_shows_every_key_s_state_and_use_and_never_a_key() {
    let app = spawn_pg_app().await;
    for _ in 0..3 {
        app.token_for(&random_pan("4", 16)).await;
    }
    app.checkout_grant(1).await;
    let status = |master: Option<&str>, json: bool| {
        let mut command = strongroom();
        command
            .args(["keys", "status"])
            .env("DATABASE_URL", &app.db.url);
        if json {
            command.arg("--json");
        }
        if let Some(key) = master {
            command.env("STRONGROOM_MASTER_KEY", key);
        }
        let (ok, out, err) = run(&mut command);
        assert!(ok, "{err}");
        assert!(
            master.is_none_or(|key| !out.contains(key.trim()) && !err.contains(key.trim())),
            "the master key was printed"
        );
        out
    };
    let out = status(Some(&app.master_key), true);
    let s: Value = serde_json::from_str(&out).unwrap();
    let fingerprint = s["master_key"]["fingerprint"].as_str().unwrap().to_owned();
    assert_eq!(fingerprint.len(), 12);
    assert_eq!(s["master_key"]["opens_stored_keys"], true);
    assert_eq!(s["master_key"]["kind"], "production");
    let data = s["data_keys"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{out}");
    assert_eq!(data[0]["version"], 1);
    assert_eq!(data[0]["state"], "active");
    assert_eq!(data[0]["rows"], 3);
    assert!(data[0]["encryptions"].as_u64().unwrap() >= 3);
    assert!(data[0]["retired_at"].is_null());
    let signing = s["signing_keys"].as_array().unwrap();
    assert_eq!(signing.len(), 1, "{out}");
    assert_eq!(signing[0]["state"], "active");
    let secrets: Vec<&str> = s["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert!(secrets.contains(&"fingerprint-root"), "{secrets:?}");
    // Another master key is told apart and found not to open the keys; none at all is shown
    // as not set; the text form says the same.
    let (_, other, _) = run(strongroom().arg("keygen"));
    let s: Value = serde_json::from_str(&status(Some(&other), true)).unwrap();
    assert_eq!(s["master_key"]["opens_stored_keys"], false);
    assert_ne!(s["master_key"]["fingerprint"], fingerprint.as_str());
    let s: Value = serde_json::from_str(&status(None, true)).unwrap();
    assert_eq!(s["master_key"]["source"], "not set");
    let text = status(Some(&app.master_key), false);
    assert!(
        text.contains(&format!("fingerprint {fingerprint}")),
        "{text}"
    );
    assert!(text.contains("data key v1: active, "), "{text}");
    assert!(text.contains(", 3 rows,"), "{text}");
}

#[tokio::test]
async fn keys_rotate_makes_a_new_data_key_active_and_every_old_row_still_reads() {
    let app = spawn_app_with(Options {
        engine: crate::helpers::Engine::Postgres,
        configure: Box::new(|c| c.purge_interval = Duration::from_millis(200)),
        ..Options::default()
    })
    .await;
    let pans: Vec<String> = (0..2).map(|_| random_pan("4", 16)).collect();
    let mut old = Vec::new();
    for pan in &pans {
        old.push(app.token_for(pan).await);
    }
    let rotate = |master: &str| {
        run(strongroom()
            .args(["keys", "rotate"])
            .env("DATABASE_URL", &app.db.url)
            .env("STRONGROOM_MASTER_KEY", master))
    };
    // Another master key is refused before anything is made.
    let (_, other, _) = run(strongroom().arg("keygen"));
    let (ok, _, err) = rotate(other.trim());
    assert!(!ok && err.contains("does not match"), "{err}");
    let (ok, out, err) = rotate(&app.master_key);
    assert!(ok, "{err}");
    assert!(out.contains("data key v2 is active; retired: v1"), "{out}");
    // The running server picks it up without a restart: new rows are sealed under v2.
    let pool = app.db.pool().await;
    let mut picked_up = false;
    for _ in 0..50 {
        let token = app.token_for(&random_pan("5", 16)).await;
        let version: Option<i32> =
            sqlx::query_scalar("select dek_version from tokens where token = $1")
                .bind(&token)
                .fetch_one(&pool)
                .await
                .unwrap();
        if version == Some(2) {
            picked_up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(picked_up, "the server kept sealing under the retired key");
    // The old rows still read back under their retired key.
    let grant = app.checkout_grant(10).await;
    let jwt = grant["grant"].as_str().unwrap().to_owned();
    let r = app
        .detokenize(&app.keys.detokenizer, Some(&jwt), &[&old[0], &old[1]])
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    let values: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["value"].as_str().unwrap())
        .collect();
    assert_eq!(values, vec![pans[0].as_str(), pans[1].as_str()]);
    // The status says so, and the trail has the rotation with the operator's chain.
    let (ok, out, _) = run(strongroom()
        .args(["keys", "status", "--json"])
        .env("DATABASE_URL", &app.db.url)
        .env("STRONGROOM_MASTER_KEY", &app.master_key));
    assert!(ok);
    let s: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s["data_keys"][0]["state"], "retired");
    assert_eq!(s["data_keys"][0]["rows"], 2);
    assert!(s["data_keys"][0]["retired_at"].is_string());
    assert_eq!(s["data_keys"][1]["state"], "active");
    assert!(s["data_keys"][1]["rows"].as_u64().unwrap() >= 1);
    let (outcome, subject, detail): (String, Option<String>, Option<String>) = sqlx::query_as(
        "select outcome, subject, detail from audit_events where action = 'key.rotate'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (outcome.as_str(), subject.as_deref(), detail.as_deref()),
        ("success", Some("data_key:2"), Some("retired=1 by=operator"))
    );
    let (ok, out) = crate::audit::verify(&app, None);
    assert!(ok, "{out}");
}

#[tokio::test]
async fn a_rotation_under_load_loses_no_token_and_two_at_once_leave_one_active_key() {
    let app = std::sync::Arc::new(
        spawn_app_with(Options {
            engine: crate::helpers::Engine::Postgres,
            configure: Box::new(|c| c.purge_interval = Duration::from_millis(100)),
            ..Options::default()
        })
        .await,
    );
    // Sixteen callers tokenize while two operators rotate at once.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let callers: Vec<_> = (0..16)
        .map(|i| {
            let (app, stop) = (std::sync::Arc::clone(&app), std::sync::Arc::clone(&stop));
            tokio::spawn(async move {
                let mut issued = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let pan = random_pan(if i % 2 == 0 { "4" } else { "5" }, 16);
                    let r = app
                        .tokenize(&app.keys.tokenizer, &json!({"value": pan}))
                        .await;
                    assert_eq!(r.status(), StatusCode::CREATED);
                    let body: Value = r.json().await.unwrap();
                    issued.push((body["token"].as_str().unwrap().to_owned(), pan));
                }
                issued
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rotate = || {
        let (url, key) = (app.db.url.clone(), app.master_key.clone());
        std::thread::spawn(move || {
            run(strongroom()
                .args(["keys", "rotate"])
                .env("DATABASE_URL", url)
                .env("STRONGROOM_MASTER_KEY", key))
        })
    };
    let (a, b) = (rotate(), rotate());
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    assert!(a.0 || b.0, "{a:?} {b:?}");
    for (ok, out, err) in [&a, &b] {
        assert!(
            *ok || err.contains("another rotation made that key version first"),
            "{out}{err}"
        );
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut issued = Vec::new();
    for caller in callers {
        issued.extend(caller.await.unwrap());
    }
    let pool = app.db.pool().await;
    let (active, versions): (i64, i64) = sqlx::query_as(
        "select (select count(*) from data_keys where retired_at is null), \
                (select count(distinct dek_version) from tokens)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(active, 1, "exactly one active data key");
    assert!(
        versions >= 2,
        "rows were sealed before and after the rotation"
    );
    // Every token issued, under whichever key, reads back as its card number.
    crate::keys::assert_all_read_back(&app, &issued).await;
    assert!(issued.len() > 50, "the load ran: {}", issued.len());
}
