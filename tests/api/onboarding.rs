//! What a newcomer meets between a fresh clone and a production-shaped vault: the key in a
//! file, finding principals and their ids, and a clear message for each mistake on the way.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Stdio;

use serde_json::Value;

use crate::cli::{run, strongroom};
use crate::helpers::*;

/// A directory of its own, removed afterwards.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "strongroom-onboarding-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(unix)]
fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[cfg(unix)]
#[tokio::test]
async fn keygen_writes_a_key_file_only_its_owner_reads_and_every_command_takes_it() {
    use std::os::unix::fs::PermissionsExt;
    let scratch = Scratch::new();
    let file = scratch.0.join("master.key");
    let (ok, out, err) = run(strongroom().arg("keygen").arg("--out").arg(&file));
    assert!(ok, "{err}");
    let key = std::fs::read_to_string(&file).unwrap();
    assert!(!out.contains(key.trim()), "the key is never printed: {out}");
    assert!(out.contains("Back the file up"), "{out}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // Never overwritten; kept on request.
    let (ok, _, err) = run(strongroom().arg("keygen").arg("--out").arg(&file));
    assert!(!ok && err.contains("not overwritten"), "{err}");
    let (ok, out, err) = run(strongroom()
        .arg("keygen")
        .arg("--out")
        .arg(&file)
        .arg("--keep-existing"));
    assert!(ok && out.contains("kept"), "{out}{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), key);

    // The file serves every command: a principal with a second factor needs the key.
    let db = TestDb::create(true).await;
    let (ok, out, err) = run(strongroom()
        .args(["principal", "create", "--tenant", "acme", "--name", "alice"])
        .args(["--role", "requester", "--totp", "--json"])
        .env("DATABASE_URL", &db.url)
        .env("STRONGROOM_MASTER_KEY_FILE", &file));
    assert!(ok, "{err}");
    assert!(serde_json::from_str::<Value>(&out).unwrap()["totp_secret"].is_string());
    let server = crate::cli::serve_process(&db.url, key.trim(), None);
    drop(server);

    // Refused: readable by others, both sources at once, a missing file, an empty one.
    set_mode(&file, 0o640);
    let (ok, _, err) = run(strongroom()
        .args(["keys", "status"])
        .env("DATABASE_URL", &db.url)
        .env("STRONGROOM_MASTER_KEY_FILE", &file));
    assert!(
        !ok && err.contains("chmod 600") && err.contains("0640"),
        "{err}"
    );
    set_mode(&file, 0o600);
    let (ok, out, err) = run(strongroom()
        .args(["keys", "status", "--json"])
        .env("DATABASE_URL", &db.url)
        .env("STRONGROOM_MASTER_KEY_FILE", &file));
    assert!(ok, "{err}");
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        status["master_key"]["source"],
        "file (STRONGROOM_MASTER_KEY_FILE)"
    );
    assert_eq!(status["master_key"]["opens_stored_keys"], true, "{status}");
    let (ok, _, err) = run(strongroom()
        .args(["migrate"])
        .env("DATABASE_URL", &db.url)
        .env("STRONGROOM_MASTER_KEY_FILE", &file)
        .env("STRONGROOM_MASTER_KEY", key.trim()));
    assert!(!ok && err.contains("keep one"), "{err}");
    let missing = scratch.0.join("nope.key");
    let (ok, _, err) = run(strongroom()
        .args(["migrate"])
        .env("DATABASE_URL", &db.url)
        .env("STRONGROOM_MASTER_KEY_FILE", &missing));
    assert!(
        !ok && err.contains("nope.key") && err.contains("No such file"),
        "{err}"
    );
    // Not a regular file: refused as such, never with advice to `chmod` it.
    for path in ["/dev/null", scratch.0.to_str().unwrap()] {
        let (ok, _, err) = run(strongroom()
            .args(["migrate"])
            .env("DATABASE_URL", &db.url)
            .env("STRONGROOM_MASTER_KEY_FILE", path));
        assert!(
            !ok && (err.contains("is not a regular file") || err.contains("is a directory"))
                && !err.contains("chmod"),
            "{err}"
        );
    }
    // A development key in a file: the refusal names the file, not a variable that is unset.
    let dev_key = scratch.0.join("dev.key");
    std::fs::write(&dev_key, format!("strongroom-dev-key:{}", key.trim())).unwrap();
    set_mode(&dev_key, 0o600);
    let (ok, _, err) = run(strongroom()
        .args(["migrate"])
        .env("DATABASE_URL", &db.url)
        .env("STRONGROOM_MASTER_KEY_FILE", &dev_key));
    assert!(
        !ok && err.contains("dev.key") && err.contains("development key"),
        "{err}"
    );
    assert!(!err.contains(key.trim()), "{err}");
    let weak = scratch.0.join("weak.key");
    std::fs::write(&weak, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n").unwrap();
    set_mode(&weak, 0o600);
    let (ok, _, err) = run(strongroom()
        .args(["migrate"])
        .env("DATABASE_URL", &db.url)
        .env("STRONGROOM_MASTER_KEY_FILE", &weak));
    assert!(
        !ok && err.contains("weak.key") && err.contains("not a random key"),
        "{err}"
    );
    assert!(!err.contains("AAAAAAAA"), "{err}");
    for stream in [&out, &err] {
        assert!(!stream.contains(key.trim()));
    }
}

#[tokio::test]
async fn principal_list_and_show_give_ids_roles_factors_and_never_a_secret() {
    let db = TestDb::create(true).await;
    let master_key = new_master_key();
    let create = |tenant: &str, name: &str, role: &str, totp: bool| {
        let mut command = strongroom();
        command
            .args(["principal", "create", "--tenant", tenant, "--name", name])
            .args(["--role", role, "--json"])
            .env("DATABASE_URL", &db.url)
            .env("STRONGROOM_MASTER_KEY", &master_key);
        if totp {
            command.arg("--totp");
        }
        let (ok, out, err) = run(&mut command);
        assert!(ok, "{err}");
        serde_json::from_str::<Value>(&out).unwrap()
    };
    let alice = create("acme", "alice", "requester", true);
    let checkout = create("acme", "checkout", "tokenizer", false);
    let other = create("globex", "checkout", "tokenizer", false);
    let id = |p: &Value| p["id"].as_str().unwrap().to_owned();
    let (ok, _, err) = run(strongroom()
        .args(["principal", "disable", "--id", &id(&checkout)])
        .env("DATABASE_URL", &db.url));
    assert!(ok, "{err}");

    let (ok, table, err) = run(strongroom()
        .args(["principal", "list"])
        .env("DATABASE_URL", &db.url));
    assert!(ok, "{err}");
    for p in [&alice, &checkout, &other] {
        assert!(table.contains(&id(p)), "{table}");
        assert!(!table.contains(p["key"].as_str().unwrap()), "{table}");
    }
    assert!(!table.contains(alice["totp_secret"].as_str().unwrap()));
    assert!(table.starts_with("ID "), "{table}");

    let (ok, out, err) = run(strongroom()
        .args(["principal", "list", "--tenant", "acme", "--json"])
        .env("DATABASE_URL", &db.url));
    assert!(ok, "{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    let principals = listed["principals"].as_array().unwrap();
    assert_eq!(principals.len(), 2, "only acme's: {listed}");
    let (a, c) = (&principals[0], &principals[1]);
    assert_eq!(
        (a["name"].as_str(), c["name"].as_str()),
        (Some("alice"), Some("checkout"))
    );
    assert_eq!(a["id"], alice["id"]);
    assert_eq!(a["tenant"], "acme");
    assert_eq!(a["tenant_id"], alice["tenant_id"]);
    assert_eq!(a["roles"], serde_json::json!(["requester"]));
    assert_eq!(a["second_factor"], "totp");
    assert_eq!(c["second_factor"], "none");
    assert!(a["created_at"].is_string() && a["expires_at"].is_null());
    assert!(
        a["disabled_at"].is_null() && c["disabled_at"].is_string(),
        "{listed}"
    );
    assert!(!out.contains("key_hash") && !out.contains(alice["key"].as_str().unwrap()));

    let (ok, out, err) = run(strongroom()
        .args(["principal", "show", "--id", &id(&alice), "--json"])
        .env("DATABASE_URL", &db.url));
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), *a);
    let (ok, out, err) = run(strongroom()
        .args([
            "principal",
            "show",
            "--tenant",
            "globex",
            "--name",
            "checkout",
        ])
        .env("DATABASE_URL", &db.url));
    assert!(
        ok && out.contains(&id(&other)) && out.contains("tokenizer"),
        "{out}{err}"
    );
    let (ok, _, err) = run(strongroom()
        .args(["principal", "show", "--tenant", "globex", "--name", "alice"])
        .env("DATABASE_URL", &db.url));
    assert!(
        !ok && err.contains("no principal named \"alice\" in tenant \"globex\""),
        "{err}"
    );
    let (ok, _, err) = run(strongroom()
        .args(["principal", "list", "--tenant", "initech"])
        .env("DATABASE_URL", &db.url));
    assert!(!ok && err.contains("initech"), "{err}");
}

#[tokio::test]
async fn a_database_that_cannot_be_used_is_named_with_its_reason_and_what_to_do() {
    // Nothing listens on port 1: the OS's reason, at once.
    let (ok, _, err) = run(strongroom().args(["migrate"]).env(
        "DATABASE_URL",
        "postgres://strongroom:s3cret@127.0.0.1:1/vault",
    ));
    assert!(!ok);
    assert!(
        err.contains("cannot connect to PostgreSQL at 127.0.0.1:1") && err.contains("refused"),
        "{err}"
    );
    assert!(
        !err.contains("s3cret") && !err.contains("pool timed out"),
        "{err}"
    );

    // A database that does not exist: its name and the line to create it.
    let admin = std::env::var("STRONGROOM_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let missing = format!("strongroom_missing_{}", uuid::Uuid::new_v4().simple());
    let url = admin
        .rsplit_once('/')
        .map(|(server, _)| format!("{server}/{missing}"))
        .unwrap();
    let (ok, _, err) = run(strongroom().args(["migrate"]).env("DATABASE_URL", &url));
    assert!(!ok);
    assert!(
        err.contains(&format!("database \"{missing}\" does not exist")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "createdb -h 127.0.0.1 -p 5432 -O postgres {missing}"
        )),
        "{err}"
    );
    assert!(!err.contains("line "), "{err}");

    // A role without the privileges: the privilege named, what to do, no line of PostgreSQL's
    // own source.
    let db = TestDb::create(true).await;
    let role = format!("strongroom_norights_{}", uuid::Uuid::new_v4().simple());
    let pool = db.pool().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("create role {role} login")))
        .execute(&pool)
        .await
        .unwrap();
    let url = db.url.replacen("postgres@", &format!("{role}@"), 1);
    assert_ne!(
        url, db.url,
        "the test database's URL names the postgres user"
    );
    let (ok, _, err) = run(strongroom()
        .args(["principal", "list"])
        .env("DATABASE_URL", &url));
    sqlx::query(sqlx::AssertSqlSafe(format!("drop role {role}")))
        .execute(&pool)
        .await
        .unwrap();
    assert!(
        !ok && err.contains("permission denied") && err.contains("lacks a privilege"),
        "{err}"
    );
    assert!(
        err.contains(&format!("connected as user \"{role}\"")),
        "{err}"
    );
    assert!(!err.contains(" at line "), "{err}");

    // Another engine's URL: its scheme, never the URL (which holds a password).
    for command in [vec!["migrate"], vec!["principal", "list"], vec!["serve"]] {
        let (ok, _, err) = run(strongroom()
            .args(&command)
            .env("DATABASE_URL", "mysql://root:hunter2@db.internal/vault")
            .env("STRONGROOM_MASTER_KEY", new_master_key()));
        assert!(!ok, "{command:?}");
        assert!(
            err.contains("unsupported database URL scheme `mysql:`"),
            "{err}"
        );
        assert!(
            err.contains("postgres://") && err.contains("sqlite://"),
            "{err}"
        );
        assert!(
            !err.contains("hunter2") && !err.contains("db.internal"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn policy_file_trouble_is_named_with_the_path_the_os_reason_and_the_line() {
    let db = TestDb::create(true).await;
    let serve = |policy: &std::path::Path| {
        run(strongroom()
            .args(["serve", "--listen", "127.0.0.1:0", "--policy-file"])
            .arg(policy)
            .env("DATABASE_URL", &db.url)
            .env("STRONGROOM_MASTER_KEY", new_master_key()))
    };
    let scratch = Scratch::new();
    let (ok, _, err) = serve(&scratch.0.join("policies.toml"));
    assert!(!ok);
    assert!(
        err.contains("policies.toml") && err.contains("No such file"),
        "{err}"
    );

    let file = scratch.0.join("bad.toml");
    std::fs::write(
        &file,
        "[[policy]]\nname = \"support\"\nroles = [\"requester\"]\npurposes = [\"dispute\"]\n\
         approvals = 1\nmax_duration_seconds = \"an hour\"\n",
    )
    .unwrap();
    let (ok, _, err) = serve(&file);
    assert!(!ok);
    assert!(
        err.contains("policy `support`") && err.contains("line 6"),
        "{err}"
    );
}

#[tokio::test]
async fn serve_warns_at_start_when_no_policy_allows_anything_and_listens_on_localhost() {
    let db = TestDb::create(true).await;
    let mut child = strongroom()
        .args(["serve", "--listen", "localhost:0"])
        .env("DATABASE_URL", &db.url)
        .env("STRONGROOM_MASTER_KEY", new_master_key())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut warned = false;
    let mut address = None;
    for line in BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        let entry: Value = serde_json::from_str(&line).unwrap_or_default();
        if entry["level"] == "WARN" && line.contains("no access policy") {
            warned = true;
        }
        if entry["message"] == "strongroom serving" {
            address = entry["listen"].as_str().map(str::to_owned);
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(warned, "a warning names the missing policies");
    let address = address.expect("the server announces its address");
    assert!(address.starts_with("127.0.0.1:"), "{address}");

    let (ok, _, err) = run(strongroom().args(["serve", "--listen", "vault.example:8443"]));
    assert!(
        !ok && err.contains("IP address") && err.contains("localhost:PORT"),
        "{err}"
    );
}

#[test]
fn help_lists_roles_engines_the_log_filter_and_where_to_go_next() {
    let (ok, out, _) = run(strongroom().arg("--help"));
    assert!(ok);
    for needle in [
        "strongroom dev",
        "/console",
        "Production",
        "docs/keys.md",
        "STRONGROOM_LOG",
        "postgres://",
        "sqlite://",
        "tokenizer, detokenizer, requester, approver, auditor, admin",
    ] {
        assert!(out.contains(needle), "{needle} in {out}");
    }
    let (_, out, _) = run(strongroom().args(["principal", "create", "--help"]));
    for role in [
        "tokenizer",
        "detokenizer",
        "requester",
        "approver",
        "auditor",
        "admin",
    ] {
        assert!(out.contains(role), "{role} in {out}");
    }
    let (_, out, _) = run(strongroom().args(["serve", "--help"]));
    assert!(
        out.contains("sqlite://") && out.contains("STRONGROOM_LOG"),
        "{out}"
    );
}

#[tokio::test]
async fn health_asks_a_running_vault_and_fails_on_silence_on_nothing_or_without_its_ca() {
    let db = TestDb::create(true).await;
    let server = crate::cli::serve_process(&db.url, &new_master_key(), None);
    let health = |args: &[&str]| {
        let mut command = strongroom();
        command.arg("health").args(args);
        run(&mut command)
    };
    let (ok, out, err) = health(&["--url", &server.address]);
    assert!(ok && out.contains("/healthz answered 200"), "{out}{err}");
    let (ok, out, err) = health(&["--ready", "--url", &format!("{}/", server.address)]);
    assert!(ok && out.contains("/readyz answered 200"), "{out}{err}");
    let https = server.address.replacen("http://", "https://", 1);
    let (ok, _, err) = health(&["--url", &https]);
    assert!(!ok && err.contains("https needs --cacert"), "{err}");
    drop(server);

    // A listener that takes the connection and never answers: given up within the timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let (ok, _, err) = health(&["--url", &url, "--timeout-ms", "300"]);
    assert!(!ok && err.contains("did not answer within 300 ms"), "{err}");
    // Nothing listening; https without the CA that signed the vault's certificate.
    drop(silent);
    let (ok, _, err) = health(&["--url", &url]);
    assert!(!ok && err.contains("cannot reach"), "{err}");
}
