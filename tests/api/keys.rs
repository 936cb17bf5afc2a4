//! The key lifecycle as an operator drives it: re-encryption (killed halfway and resumed,
//! beside a serving instance, and in `serve`'s background), destroying a data key, rewrapping
//! under a new master key and shredding a tenant.

use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::cli::{run, strongroom};
use crate::helpers::*;

/// `keys status --json` of the app's database under `master`.
pub fn key_status(app: &TestApp, master: &str) -> Value {
    let (ok, out, err) = run(strongroom()
        .args(["keys", "status", "--json"])
        .env("DATABASE_URL", &app.db.url)
        .env("STRONGROOM_MASTER_KEY", master));
    assert!(ok, "{err}");
    assert!(!out.contains(master.trim()), "the master key was printed");
    serde_json::from_str(&out).unwrap()
}

fn keys_command(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    run(strongroom()
        .arg("keys")
        .args(args)
        .env("DATABASE_URL", &app.db.url)
        .env("STRONGROOM_MASTER_KEY", &app.master_key))
}

/// Tokenizes `n` random cards in batches; returns (token, card number) pairs.
pub async fn tokenize_many(app: &TestApp, n: usize) -> Vec<(String, String)> {
    let mut issued = Vec::with_capacity(n);
    let pans: Vec<String> = (0..n).map(|_| random_pan("4", 16)).collect();
    for chunk in pans.chunks(500) {
        let items: Vec<Value> = chunk.iter().map(|p| json!({"value": p})).collect();
        let r = app
            .tokenize_batch(&app.keys.tokenizer, &json!({"items": items}))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let body: Value = r.json().await.unwrap();
        for (pan, item) in chunk.iter().zip(body["results"].as_array().unwrap()) {
            issued.push((item["token"].as_str().unwrap().to_owned(), pan.clone()));
        }
    }
    issued
}

/// Asserts every token reads back as its card number under one grant.
pub async fn assert_all_read_back(app: &TestApp, issued: &[(String, String)]) {
    let grant = app.checkout_grant(1000).await;
    let jwt = grant["grant"].as_str().unwrap().to_owned();
    for chunk in issued.chunks(100) {
        let tokens: Vec<&str> = chunk.iter().map(|(t, _)| t.as_str()).collect();
        let r = app
            .detokenize(&app.keys.detokenizer, Some(&jwt), &tokens)
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let body: Value = r.json().await.unwrap();
        for ((_, pan), got) in chunk.iter().zip(body["data"].as_array().unwrap()) {
            assert_eq!(got["value"], pan.as_str());
        }
    }
}

async fn rows_under(app: &TestApp, version: i32) -> i64 {
    sqlx::query_scalar("select count(*) from tokens where dek_version = $1")
        .bind(version)
        .fetch_one(&app.db.pool().await)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_reencryption_killed_halfway_loses_nothing_and_the_next_run_finishes_it() {
    let app = spawn_app_with(Options {
        engine: Engine::Postgres,
        configure: Box::new(|c| c.purge_interval = Duration::from_millis(200)),
        ..Options::default()
    })
    .await;
    let mut issued = tokenize_many(&app, 2000).await;
    let (ok, _, err) = keys_command(&app, &["rotate"]);
    assert!(ok, "{err}");
    // Before: everything under the retired v1, and v1 cannot be destroyed yet.
    let before = key_status(&app, &app.master_key);
    assert_eq!(before["data_keys"][0]["state"], "retired");
    assert_eq!(before["data_keys"][0]["rows"], 2000);
    let (ok, _, err) = keys_command(&app, &["destroy", "--data-key", "1"]);
    assert!(!ok && err.contains("still seals 2000 live rows"), "{err}");
    let (ok, _, err) = keys_command(&app, &["destroy", "--data-key", "2"]);
    assert!(!ok && err.contains("is the active (newest) key"), "{err}");

    // A run in small batches, killed once a few batches have committed.
    let mut child = strongroom()
        .args(["keys", "reencrypt", "--batch-size", "20"])
        .env("DATABASE_URL", &app.db.url)
        .env("STRONGROOM_MASTER_KEY", &app.master_key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pool = app.db.pool().await;
    let mut batches = 0i64;
    for _ in 0..400 {
        batches =
            sqlx::query_scalar("select count(*) from audit_events where action = 'key.reencrypt'")
                .fetch_one(&pool)
                .await
                .unwrap();
        if batches >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap();
    let _ = child.wait();
    assert!(batches >= 3, "the run never committed a batch");
    let left = rows_under(&app, 1).await;
    assert!(left > 0 && left < 2000, "killed halfway: {left} left");
    // Halfway, every token reads (some under v1, some under v2), and the serving instance
    // goes on: new tokens, deletes.
    assert_all_read_back(&app, &issued).await;
    let deleted: Vec<(String, String)> = issued.drain(..10).collect();
    let deleted_unmoved: i64 =
        sqlx::query_scalar("select count(*) from tokens where token = any($1) and dek_version = 1")
            .bind(deleted.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>())
            .fetch_one(&pool)
            .await
            .unwrap();
    for (token, _) in &deleted {
        assert_eq!(
            app.delete_token(&app.keys.tokenizer, token).await.status(),
            StatusCode::NO_CONTENT
        );
    }
    issued.extend(tokenize_many(&app, 50).await);

    // The next run finishes what is left and says so; deleted tokens stay deleted.
    let (ok, out, err) = keys_command(&app, &["reencrypt"]);
    assert!(ok, "{err}");
    assert!(out.contains("0 left under retired keys"), "{out}");
    assert!(
        err.contains("rows to re-encrypt onto data key v2"),
        "progress is shown: {err}"
    );
    assert_eq!(rows_under(&app, 1).await, 0);
    for (token, _) in &deleted {
        assert_eq!(
            app.get_token(&app.keys.tokenizer, token).await.status(),
            StatusCode::NOT_FOUND
        );
    }
    let moved: i64 = sqlx::query_scalar(
        "select cast(coalesce(sum(cast(split_part(split_part(detail, 'moved=', 2), ' ', 1) as bigint)), 0) as bigint) \
         from audit_events where action = 'key.reencrypt' and outcome = 'success'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        moved,
        2000 - deleted_unmoved,
        "the records count every row moved, once"
    );

    // Not while a serving instance may still seal under it (it retired moments ago); once
    // two housekeeping passes have gone by (here: its retirement moved back), v1 can go;
    // everything still reads under v2, and the status shows it destroyed.
    let (ok, _, err) = keys_command(&app, &["destroy", "--data-key", "1"]);
    assert!(
        !ok && err.contains("serving instances may still seal"),
        "{err}"
    );
    sqlx::query("update data_keys set retired_at = retired_at - interval '5 minutes'")
        .execute(&pool)
        .await
        .unwrap();
    let (ok, out, err) = keys_command(&app, &["destroy", "--data-key", "1"]);
    assert!(ok, "{err}");
    assert!(out.contains("data key v1 is destroyed"), "{out}");
    let (ok, _, err) = keys_command(&app, &["destroy", "--data-key", "1"]);
    assert!(!ok && err.contains("there is no data key v1"), "{err}");
    let (ok, _, err) = keys_command(&app, &["destroy", "--data-key", "4294967295"]);
    assert!(
        !ok && err.contains("there is no data key v4294967295"),
        "{err}"
    );
    let after = key_status(&app, &app.master_key);
    assert_eq!(after["data_keys"][0]["state"], "destroyed");
    assert!(after["data_keys"][0]["destroyed_at"].is_string());
    assert_eq!(after["data_keys"][1]["state"], "active");
    assert_eq!(after["data_keys"][1]["rows"], 2040);
    assert_eq!(after["master_key"]["opens_stored_keys"], true);
    assert_all_read_back(&app, &issued).await;
    // A rotation after a destruction never reuses the version.
    let (ok, out, err) = keys_command(&app, &["rotate"]);
    assert!(ok, "{err}");
    assert!(out.contains("data key v3 is active"), "{out}");
    let records: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "select outcome, coalesce(code, ''), subject from audit_events \
         where action = 'key.destroy' order by at, seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        records,
        vec![
            (
                "denied".into(),
                "rows_remain".into(),
                Some("data_key:1".into())
            ),
            (
                "denied".into(),
                "key_active".into(),
                Some("data_key:2".into())
            ),
            (
                "denied".into(),
                "key_recently_retired".into(),
                Some("data_key:1".into())
            ),
            ("success".into(), String::new(), Some("data_key:1".into())),
            (
                "denied".into(),
                "not_found".into(),
                Some("data_key:1".into())
            ),
            (
                "denied".into(),
                "not_found".into(),
                Some("data_key:4294967295".into())
            ),
        ]
    );
    let (ok, out) = crate::audit::verify(&app, None);
    assert!(ok, "{out}");
}

#[tokio::test]
async fn serve_reencrypts_in_the_background_at_its_rate_and_shows_progress() {
    let app = spawn_pg_app().await;
    let issued = tokenize_many(&app, 600).await;
    let (ok, _, err) = keys_command(&app, &["rotate"]);
    assert!(ok, "{err}");
    // An instance that re-encrypts in the background, beside one that serves.
    let other = start(
        std::sync::Arc::clone(&app.db),
        app.master_key.clone(),
        app.keys.clone(),
        Options {
            configure: Box::new(|c| c.reencrypt_rows_per_second = 2000),
            ..Options::default()
        },
    )
    .await;
    let mut left = i64::MAX;
    for _ in 0..100 {
        left = rows_under(&app, 1).await;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "the background re-encryption did not finish");
    let metrics = reqwest::get(other.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("strongroom_reencrypted_rows_total 600"),
        "{metrics}"
    );
    assert!(
        metrics.contains("strongroom_reencrypt_rows_remaining 0"),
        "{metrics}"
    );
    let by: Vec<String> = sqlx::query_scalar(
        "select distinct split_part(detail, 'by=', 2) from audit_events \
         where action = 'key.reencrypt'",
    )
    .fetch_all(&app.db.pool().await)
    .await
    .unwrap();
    assert_eq!(by, vec!["background".to_owned()]);
    assert_all_read_back(&app, &issued).await;
}

/// A globex grant for any token, through the globex detokenizer's own request.
async fn globex_grant(app: &TestApp) -> String {
    let r = app
        .create_request(
            &app.keys.other_tenant_detokenizer,
            &json!({
                "any_token": true,
                "purpose": "payment_authorization",
                "reason": "authorize order 2002",
                "duration_seconds": 60,
                "max_uses": 100,
            }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: Value = r.json().await.unwrap();
    body["grant"].as_str().unwrap().to_owned()
}

async fn globex_tokens(app: &TestApp, n: usize) -> Vec<(String, String)> {
    let mut issued = Vec::new();
    for _ in 0..n {
        let pan = random_pan("5", 16);
        let r = app
            .tokenize(&app.keys.other_tenant_tokenizer, &json!({"value": pan}))
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let body: Value = r.json().await.unwrap();
        issued.push((body["token"].as_str().unwrap().to_owned(), pan));
    }
    issued
}

async fn assert_globex_reads_back(app: &TestApp, issued: &[(String, String)]) {
    let jwt = globex_grant(app).await;
    let tokens: Vec<&str> = issued.iter().map(|(t, _)| t.as_str()).collect();
    let r = app
        .detokenize(&app.keys.other_tenant_detokenizer, Some(&jwt), &tokens)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    for ((_, pan), got) in issued.iter().zip(body["data"].as_array().unwrap()) {
        assert_eq!(got["value"], pan.as_str());
    }
}

#[tokio::test]
async fn shredding_one_tenant_of_two_destroys_its_card_data_and_stops_it_and_leaves_the_other() {
    let app = spawn_app_with(Options {
        engine: Engine::Postgres,
        configure: Box::new(|c| c.purge_interval = Duration::from_millis(100)),
        ..Options::default()
    })
    .await;
    let acme = tokenize_many(&app, 20).await;
    let globex = globex_tokens(&app, 3).await;
    // A second instance whose housekeeping will not run during the test: it holds acme's key.
    let stale = app.another_instance().await;
    stale.token_for(&random_pan("4", 16)).await;
    // Its first housekeeping pass runs as it starts; let it finish before the shred, so the
    // next is a minute away.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grant = app.checkout_grant(100).await;
    let jwt = grant["grant"].as_str().unwrap().to_owned();
    let before = key_status(&app, &app.master_key);
    let states: Vec<(&str, &str)> = before["tenant_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["name"].as_str().unwrap(), k["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, vec![("acme", "active"), ("globex", "active")]);

    let shred = |tenant: &str, confirm: &str| {
        run(strongroom()
            .args(["tenant", "shred", "--tenant", tenant, "--confirm", confirm])
            .env("DATABASE_URL", &app.db.url)
            .env("STRONGROOM_MASTER_KEY", &app.master_key))
    };
    let (ok, _, err) = shred("acme", "acme-typo");
    assert!(
        !ok && err.contains("--confirm does not repeat --tenant"),
        "{err}"
    );
    let (ok, out, err) = shred("acme", "acme");
    assert!(ok, "{err}");
    assert!(
        out.contains("tenant acme is shredded") && out.contains("21 tokens destroyed"),
        "{out}"
    );
    let (ok, _, err) = shred("acme", "acme");
    assert!(!ok && err.contains("shredded already"), "{err}");

    // Its callers are gone at once; the other tenant is untouched.
    assert_eq!(
        app.get_token(&app.keys.tokenizer, &acme[0].0)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_globex_reads_back(&app, &globex).await;
    assert_eq!(globex_tokens(&app, 1).await.len(), 1);

    // Its key is gone, and nothing of its card data is left in its rows.
    let pool = app.db.pool().await;
    let (wrapped, live, fingerprinted, revoked, enabled): (Option<Vec<u8>>, i64, i64, i64, i64) =
        sqlx::query_as(
            "select (select k.wrapped from tenant_keys k join tenants t on t.id = k.tenant_id \
                     where t.name = 'acme'), \
                    (select count(*) from tokens k join tenants t on t.id = k.tenant_id \
                     where t.name = 'acme' and (sealed_pan is not null or masked_pan is not null)), \
                    (select count(*) from tokens k join tenants t on t.id = k.tenant_id \
                     where t.name = 'acme' and fingerprint is not null), \
                    (select count(*) from grants where jti = $1 and revoked_at is not null), \
                    (select count(*) from principals p join tenants t on t.id = p.tenant_id \
                     where t.name = 'acme' and disabled_at is null)",
        )
        .bind(uuid::Uuid::parse_str(grant["grant_jti"].as_str().unwrap_or_default()).ok())
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(wrapped, None);
    assert_eq!((live, fingerprinted, enabled), (0, 0, 0));
    assert!(revoked <= 1);
    let unrevoked: i64 = sqlx::query_scalar(
        "select count(*) from grants g join tenants t on t.id = g.tenant_id \
         where t.name = 'acme' and revoked_at is null and expires_at > now()",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(unrevoked, 0, "every unexpired grant is revoked");

    // A credential that outlived the shred (here: re-enabled behind the vault's back, with
    // its grant) still finds nothing: the tokens are gone, and nothing is stored again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for table in ["principals set disabled_at", "grants set revoked_at"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "update {table} = null where tenant_id = (select id from tenants where name = 'acme')"
        )))
        .execute(&pool)
        .await
        .unwrap();
    }
    assert_problem(
        app.get_token(&app.keys.tokenizer, &acme[0].0).await,
        StatusCode::GONE,
        "token_destroyed",
    )
    .await;
    assert_problem(
        app.detokenize(&app.keys.detokenizer, Some(&jwt), &[&acme[1].0])
            .await,
        StatusCode::GONE,
        "token_destroyed",
    )
    .await;
    assert_problem(
        app.tokenize(&app.keys.tokenizer, &json!({"value": acme[2].1}))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    // The instance that has not yet forgotten acme's key stores a token as if in flight during
    // the shred; the other instance's housekeeping destroys it, recorded.
    let late = stale.token_for(&random_pan("4", 16)).await;
    let mut swept = false;
    for _ in 0..50 {
        let sealed: Option<Vec<u8>> =
            sqlx::query_scalar("select sealed_pan from tokens where token = $1")
                .bind(&late)
                .fetch_one(&pool)
                .await
                .unwrap();
        if sealed.is_none() {
            swept = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(swept, "a token written into a shredded tenant was left");
    assert_problem(
        app.get_token(&app.keys.tokenizer, &late).await,
        StatusCode::GONE,
        "token_destroyed",
    )
    .await;
    let (ok, _, err) = run(strongroom()
        .args([
            "principal",
            "create",
            "--tenant",
            "acme",
            "--name",
            "late",
            "--role",
            "tokenizer",
        ])
        .env("DATABASE_URL", &app.db.url));
    assert!(!ok && err.contains("shredded"), "{err}");

    let after = key_status(&app, &app.master_key);
    let states: Vec<(&str, &str)> = after["tenant_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["name"].as_str().unwrap(), k["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, vec![("acme", "destroyed"), ("globex", "active")]);
    let records: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
        "select outcome, coalesce(code, ''), detail from audit_events \
         where action = 'tenant.shred' order by at, seq",
    )
    .fetch_all(&pool)
    .await
    .map(|rows: Vec<(String, String, Option<String>)>| {
        rows.into_iter().map(|(o, c, d)| (o, Some(c), d)).collect()
    })
    .unwrap();
    assert_eq!(records.len(), 3, "{records:?}");
    assert_eq!(records[0].0, "success");
    assert!(
        records[0]
            .2
            .as_deref()
            .unwrap()
            .starts_with("tokens=21 grants=1 principals="),
        "{records:?}"
    );
    assert_eq!(records[1].1.as_deref(), Some("not_found"));
    assert_eq!(
        records[2].2.as_deref(),
        Some("late_tokens=1 by=housekeeping")
    );
    let (ok, out) = crate::audit::verify(&app, None);
    assert!(ok, "{out}");
}

#[tokio::test]
async fn a_rewrap_moves_every_key_to_the_new_master_key_and_the_old_one_opens_nothing() {
    let app = spawn_pg_app().await;
    let acme = tokenize_many(&app, 30).await;
    let globex = globex_tokens(&app, 3).await;
    let (db, old, keys) = (
        std::sync::Arc::clone(&app.db),
        app.master_key.clone(),
        app.keys.clone(),
    );
    let before = key_status(&app, &old);
    app.stop().await;
    let new = new_master_key();
    let rewrap = |current: &str, new: Option<&str>| {
        let mut command = strongroom();
        command
            .args(["keys", "rewrap"])
            .env("DATABASE_URL", &db.url)
            .env("STRONGROOM_MASTER_KEY", current);
        if let Some(new) = new {
            command.env("STRONGROOM_NEW_MASTER_KEY", new);
        }
        let (ok, out, err) = run(&mut command);
        assert!(
            !out.contains(current.trim()) && !err.contains(current.trim()),
            "a master key was printed"
        );
        (ok, out, err)
    };
    let (ok, _, err) = rewrap(&old, None);
    assert!(
        !ok && err.contains("STRONGROOM_NEW_MASTER_KEY is not set"),
        "{err}"
    );
    let (ok, _, err) = rewrap(&old, Some("AAAA"));
    assert!(!ok && err.contains("STRONGROOM_NEW_MASTER_KEY"), "{err}");
    let (ok, _, err) = rewrap(&old, Some(&old));
    assert!(
        !ok && err.contains("the new master key is the current one"),
        "{err}"
    );
    let (ok, _, err) = rewrap(&new, Some(&old));
    assert!(!ok && err.contains("does not match"), "{err}");
    let (ok, out, err) = rewrap(&old, Some(&new));
    assert!(ok, "{err}");
    assert!(
        out.contains("rewrapped 1 data keys") && out.contains("2 tenant keys"),
        "{out}"
    );

    // The old key opens nothing: refused with the existing message, changing nothing.
    let (ok, _, err) = run(strongroom()
        .args(["keys", "rotate"])
        .env("DATABASE_URL", &db.url)
        .env("STRONGROOM_MASTER_KEY", &old));
    assert!(!ok && err.contains("does not match"), "{err}");
    let mut config = strongroom::config::ServeConfig::new(
        db.url.clone(),
        strongroom::crypto::keys::MasterKey::from_base64(&old).unwrap(),
    );
    config.listen = "127.0.0.1:0".parse().unwrap();
    let refused = strongroom::startup::Application::build(config).await;
    assert!(
        refused
            .err()
            .is_some_and(|e| e.to_string().contains("does not match")),
        "a vault served under the old master key"
    );

    // Under the new key the status opens everything, and every token reads back.
    let app = start(db, new.clone(), keys, Options::default()).await;
    let after = key_status(&app, &new);
    assert_eq!(after["master_key"]["opens_stored_keys"], true);
    assert_ne!(
        after["master_key"]["fingerprint"],
        before["master_key"]["fingerprint"]
    );
    assert_eq!(after["data_keys"], before["data_keys"]);
    let stale = key_status(&app, &old);
    assert_eq!(stale["master_key"]["opens_stored_keys"], false);
    assert_all_read_back(&app, &acme).await;
    assert_globex_reads_back(&app, &globex).await;
    let (subject, detail): (String, String) =
        sqlx::query_as("select subject, detail from audit_events where action = 'key.rewrap'")
            .fetch_one(&app.db.pool().await)
            .await
            .unwrap();
    assert_eq!(
        subject,
        format!(
            "master_key:{}",
            after["master_key"]["fingerprint"].as_str().unwrap()
        )
    );
    assert!(detail.contains("tenant_keys=2 by=operator"), "{detail}");
    let (ok, out) = crate::audit::verify(&app, None);
    assert!(ok, "{out}");
}

#[tokio::test]
async fn a_vault_from_before_tenant_keys_upgrades_without_losing_a_token_or_finding_it_again() {
    use strongroom::crypto::fingerprint::FingerprintRoot;
    use strongroom::crypto::keys::{DataKey, MasterKey, dek_label};
    use strongroom::domain::{Pan, TenantId, Token};
    use strongroom::random::{self, SystemRandom};
    use strongroom::store::WrappedDataKey;

    // The state a vault from before tenant keys left: a data key that seals directly, the
    // vault-wide fingerprint root, and one tenant's token sealed and fingerprinted under them.
    let db = std::sync::Arc::new(TestDb::create(true).await);
    let master_text = new_master_key();
    let master = MasterKey::from_base64(&master_text).unwrap();
    let rng = SystemRandom::new();
    let store = db.store(2).await;
    let now = chrono::DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
        .unwrap()
        .to_utc();
    let dek = zeroize::Zeroizing::new(random::bytes::<32>(&rng).unwrap());
    store
        .insert_data_key(
            &WrappedDataKey {
                version: 1,
                wrapped: master.wrap(&rng, &dek_label(1), &dek).unwrap(),
                tenant_bound: false,
            },
            None,
            now,
        )
        .await
        .unwrap();
    let root = zeroize::Zeroizing::new(random::bytes::<32>(&rng).unwrap());
    store
        .insert_secret(
            "fingerprint-root",
            &master.wrap(&rng, "fingerprint-root", &root).unwrap(),
            now,
        )
        .await
        .unwrap();
    let pool = db.pool().await;
    let tenant = TenantId(uuid::Uuid::new_v4());
    sqlx::query("insert into tenants (id, name, created_at) values ($1, 'acme', $2)")
        .bind(tenant.0)
        .bind(now)
        .execute(&pool)
        .await
        .unwrap();
    let pan_text = random_pan("4", 16);
    let pan = Pan::parse(&pan_text).unwrap();
    let token = Token::parse(&format!(
        "tok_{}",
        "legacy2345".repeat(3).get(..26).unwrap()
    ))
    .unwrap();
    let sealed = DataKey::new(1, &dek)
        .seal_pan(&rng, tenant, &token, &pan)
        .unwrap();
    let fingerprint = FingerprintRoot::new(root)
        .tenant_key(tenant)
        .fingerprint(&pan);
    sqlx::query(
        "insert into tokens (tenant_id, token, format, fingerprint, sealed_pan, dek_version, \
         masked_pan, created_at) values ($1, $2, 'opaque', $3, $4, 1, $5, $6)",
    )
    .bind(tenant.0)
    .bind(token.as_str())
    .bind(fingerprint.0.to_vec())
    .bind(&sealed.bytes)
    .bind(pan.masked().as_str())
    .bind(now)
    .execute(&pool)
    .await
    .unwrap();

    // The first load after the upgrade rotates once, to a key that seals through tenant keys.
    let keys = seed_principals(&db.url, &master_text, manual_clock()).await;
    let app = start(db, master_text.clone(), keys, Options::default()).await;
    let status = key_status(&app, &master_text);
    let states: Vec<(u64, &str)> = status["data_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["version"].as_u64().unwrap(), k["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, vec![(1, "retired"), (2, "active")]);
    let by: String = sqlx::query_scalar(
        "select detail from audit_events where action = 'key.rotate' and subject = 'data_key:2'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(by, "retired=1 by=upgrade");
    // The old token still reads, and tokenizing its card again finds it (the tenant, having
    // tokens from before, keeps its fingerprints under the root).
    let legacy = vec![(token.as_str().to_owned(), pan_text.clone())];
    assert_all_read_back(&app, &legacy).await;
    let again = app
        .tokenize(
            &app.keys.tokenizer,
            &json!({"value": pan_text, "format": "opaque"}),
        )
        .await;
    let body: Value = again.json().await.unwrap();
    assert_eq!(body["token"], token.as_str(), "{body}");
    // Re-encryption moves it under the tenant's key; the old key can then go.
    let (ok, out, err) = keys_command(&app, &["reencrypt"]);
    assert!(
        ok && out.contains("re-encrypted 1 rows onto data key v2"),
        "{out}{err}"
    );
    sqlx::query("update data_keys set retired_at = '2000-01-01T00:00:00Z' where version = 1")
        .execute(&pool)
        .await
        .unwrap();
    let (ok, _, err) = keys_command(&app, &["destroy", "--data-key", "1"]);
    assert!(ok, "{err}");
    assert_all_read_back(&app, &legacy).await;
    let own: bool =
        sqlx::query_scalar("select own_fingerprints from tenant_keys where tenant_id = $1")
            .bind(tenant.0)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(!own);
}

#[tokio::test]
async fn a_rewrap_racing_a_new_tenant_s_first_card_never_leaves_a_key_under_the_old_master_key() {
    let app = spawn_pg_app().await;
    app.token_for(&random_pan("4", 16)).await;
    let (initech, _) = app
        .create_principal(
            "initech",
            "checkout",
            vec![strongroom::domain::Role::Tokenizer],
        )
        .await;
    // The new tenant's key insert is slowed, so the rewrap runs while it is in flight.
    let pool = app.db.pool().await;
    for statement in [
        "create function slow_insert() returns trigger language plpgsql as \
         $$ begin perform pg_sleep(1.5); return new; end $$",
        "create trigger slow_tenant_keys before insert on tenant_keys \
         for each row execute function slow_insert()",
    ] {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    let first_card = {
        let (url, key) = (app.url("/v1/tokens"), initech.clone());
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(key)
                .json(&json!({"value": random_pan("5", 16)}))
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    let new = new_master_key();
    // Off the runtime's thread: the server must go on serving while the command waits.
    let rewrap = || {
        let (url, old, new) = (app.db.url.clone(), app.master_key.clone(), new.clone());
        tokio::task::spawn_blocking(move || {
            run(strongroom()
                .args(["keys", "rewrap"])
                .env("DATABASE_URL", url)
                .env("STRONGROOM_MASTER_KEY", old)
                .env("STRONGROOM_NEW_MASTER_KEY", new))
        })
    };
    let (ok, out, err) = rewrap().await.unwrap();
    let status = first_card.await.unwrap();
    // Either order is safe: the rewrap waited for the insert and found a key it had not read
    // (changing nothing), or the insert came second and found the master key replaced.
    assert!(
        (!ok && err.contains("keys were made or changed") && status == StatusCode::CREATED)
            || (ok && status == StatusCode::SERVICE_UNAVAILABLE),
        "rewrap ok={ok} {out}{err}; first card {status}"
    );
    if !ok {
        let (ok, _, err) = rewrap().await.unwrap();
        assert!(ok, "{err}");
    }
    let status = key_status(&app, &new);
    assert_eq!(
        status["master_key"]["opens_stored_keys"], true,
        "every key, tenant keys included, opens under the new master key"
    );
}
