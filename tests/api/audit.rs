//! The audit trail as auditors see it: every event with its fields, nothing secret in it, and
//! the query's filters and pages. (Integrity — append-only, tamper-evident, fail-closed — is
//! in `audit_integrity`.)

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{Connection, Executor, PgConnection};
use uuid::Uuid;

use crate::cli::{run, strongroom};
use crate::helpers::*;

/// A checkpoint file of its own for one test.
pub struct CheckpointFile(pub PathBuf);

impl CheckpointFile {
    pub fn new() -> CheckpointFile {
        CheckpointFile(std::env::temp_dir().join(format!(
            "strongroom-checkpoints-{}.jsonl",
            Uuid::new_v4().simple()
        )))
    }
}

impl Drop for CheckpointFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A server on PostgreSQL (its tests tamper with rows in SQL) whose every batch is
/// checkpointed to `file`, with one audit lane: its tests read one chain's places.
pub async fn spawn_checkpointed(file: &CheckpointFile) -> TestApp {
    spawn_checkpointed_lanes(file, 1).await
}

/// [`spawn_checkpointed`] with `lanes` audit appenders, each a chain of its own.
pub async fn spawn_checkpointed_lanes(file: &CheckpointFile, lanes: usize) -> TestApp {
    let path = file.0.clone();
    spawn_app_with(Options {
        configure: Box::new(move |c| {
            c.audit_checkpoint_file = Some(path);
            c.audit_checkpoint_interval = Duration::ZERO;
            c.audit_lanes = lanes;
        }),
        engine: Engine::Postgres,
        ..Options::default()
    })
    .await
}

/// The records matching `query` once there are any: the housekeeping writes them on its own
/// time (bounded: five seconds).
async fn events_eventually(app: &TestApp, query: &str) -> Vec<Value> {
    for _ in 0..100 {
        let found = events(app, query).await;
        if !found.is_empty() {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Vec::new()
}

pub async fn events(app: &TestApp, query: &str) -> Vec<Value> {
    let response = app.audit(&app.keys.auditor, query).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["events"].as_array().unwrap().clone()
}

fn one<'a>(events: &'a [Value], action: &str, outcome: &str) -> &'a Value {
    find(events, action, outcome, |_| true)
}

fn find<'a>(
    events: &'a [Value],
    action: &str,
    outcome: &str,
    and: impl Fn(&Value) -> bool,
) -> &'a Value {
    events
        .iter()
        .find(|e| e["action"] == action && e["outcome"] == outcome && and(e))
        .unwrap_or_else(|| panic!("no such {action}/{outcome} event in {events:#?}"))
}

/// `strongroom audit verify` against the test's database: (success, stdout + stderr).
pub fn verify(app: &TestApp, checkpoints: Option<&CheckpointFile>) -> (bool, String) {
    verify_db(&app.db, &app.master_key, checkpoints)
}

pub fn verify_db(
    db: &TestDb,
    master_key: &str,
    checkpoints: Option<&CheckpointFile>,
) -> (bool, String) {
    let mut command = strongroom();
    command
        .args(["audit", "verify"])
        .env("DATABASE_URL", &db.url)
        .env("STRONGROOM_MASTER_KEY", master_key);
    if let Some(file) = checkpoints {
        command.arg("--audit-checkpoint-file").arg(&file.0);
    }
    let (ok, out, err) = run(&mut command);
    (ok, format!("{out}{err}"))
}

/// A superuser connection with the append-only triggers switched off, as an attacker with
/// full database rights would have it.
pub async fn tamperer(db: &TestDb) -> PgConnection {
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    conn.execute("set session_replication_role = replica")
        .await
        .unwrap();
    conn
}

pub async fn exec(conn: &mut PgConnection, sql: &str) {
    conn.execute(sqlx::AssertSqlSafe(sql.to_owned()))
        .await
        .unwrap();
}

pub async fn some_traffic(app: &TestApp, n: usize) -> Vec<String> {
    let mut tokens = Vec::new();
    for _ in 0..n {
        let token = app.token_for(&random_pan("4", 16)).await;
        let r = app.get_token(&app.keys.tokenizer, &token).await;
        assert_eq!(r.status(), StatusCode::OK);
        tokens.push(token);
    }
    tokens
}

#[tokio::test]
async fn every_event_is_recorded_with_who_what_outcome_and_context() {
    let app = spawn_pg_app().await;
    let pan = random_pan("4", 16);
    let r = app
        .tokenize(&app.keys.tokenizer, &json!({"value": pan}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let batch = json!({"items": [{"value": random_pan("5", 16)}, {"value": "1234"}]});
    assert_eq!(
        app.tokenize_batch(&app.keys.tokenizer, &batch)
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get_token(&app.keys.tokenizer, &token).await.status(),
        StatusCode::OK
    );
    let other = app.token_for(&random_pan("4", 16)).await;
    assert_eq!(
        app.delete_token(&app.keys.tokenizer, &other).await.status(),
        StatusCode::NO_CONTENT
    );
    // Refused by role, refused by input.
    assert_eq!(
        app.tokenize(&app.keys.detokenizer, &json!({"value": pan}))
            .await
            .status(),
        StatusCode::FORBIDDEN
    );

    // A payment service: auto-approved grant, two uses, then refused.
    let grant = app.checkout_grant(2).await;
    let (jwt, jti) = (
        grant["grant"].as_str().unwrap(),
        grant["grant_jti"].as_str().unwrap(),
    );
    for _ in 0..2 {
        let r = app
            .detokenize(&app.keys.detokenizer, Some(jwt), &[&token])
            .await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = app
        .detokenize(&app.keys.detokenizer, Some(jwt), &[&token])
        .await;
    assert_problem(r, StatusCode::FORBIDDEN, "grant_exhausted").await;
    let r = app.detokenize(&app.keys.detokenizer, None, &[&token]).await;
    assert_problem(r, StatusCode::FORBIDDEN, "grant_missing").await;

    // A support agent's request, approved by another person; another denied; a policy refusal.
    // Each person's code is accepted once: a second request comes from another requester.
    let ask = |purpose: &str, person: &Person| {
        json!({"tokens": [token], "purpose": purpose, "reason": "chargeback CB-77",
               "duration_seconds": 600, "totp": app.code(person)})
    };
    let pending: Value = app
        .create_request(
            &app.keys.requester.key,
            &ask("dispute", &app.keys.requester),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = pending["id"].as_str().unwrap().to_owned();
    let approved = app.approve(&app.keys.approver, &id).await;
    assert_eq!(approved.status(), StatusCode::OK);
    let approved: Value = approved.json().await.unwrap();
    let support_jti = approved["grant_jti"]
        .as_str()
        .unwrap_or_else(|| panic!("{approved}"))
        .to_owned();
    let dave = &app.keys.requester_approver;
    let r = app
        .create_request(&dave.key, &ask("chargeback", dave))
        .await;
    let denied_id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .decide(
            &app.keys.approver2.key,
            &denied_id,
            "deny",
            Some(&json!({"comment": "not our case"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .create_request(
            &app.keys.requester.key,
            &ask("marketing", &app.keys.requester),
        )
        .await;
    assert_problem(r, StatusCode::FORBIDDEN, "policy_denied").await;

    // Revocations, and a caller with a bad key.
    assert_eq!(
        app.revoke(&app.keys.requester.key, &support_jti)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let r = app.revoke_all(&app.keys.admin, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app.get_token("sr_live_not-a-real-key", &token).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let all = events(&app, "?limit=500").await;
    let acme = all[0]["tenant"].clone();
    assert!(all.iter().all(|e| e["tenant"] == acme), "one tenant only");

    let e = find(&all, "token.tokenize", "success", |e| {
        e["tokens"] == json!([token])
    });
    assert_eq!(e["request_id"], request_id);
    assert_eq!(e["source"], "127.0.0.1");
    assert_eq!(e["detail"], "created");
    assert!(e["actor"].is_string() && e["at"].is_string());
    assert_eq!(e["hash"].as_str().unwrap().len(), 64);
    let e = one(&all, "token.tokenize", "denied");
    assert_eq!(e["code"], "forbidden");
    let e = one(&all, "token.tokenize_batch", "success");
    assert_eq!(e["tokens"].as_array().unwrap().len(), 1);
    assert_eq!(e["detail"], "items=2 refused=1");
    assert_eq!(
        one(&all, "token.lookup", "success")["tokens"],
        json!([token])
    );
    assert_eq!(
        one(&all, "token.delete", "success")["tokens"],
        json!([other])
    );

    let e = find(&all, "access_request.create", "success", |e| {
        e["purpose"] == "payment_authorization"
    });
    assert_eq!(e["grant_jti"], jti);
    assert_eq!(e["detail"], "approved");
    let uses: Vec<&Value> = all
        .iter()
        .filter(|e| e["action"] == "detokenize" && e["outcome"] == "success")
        .collect();
    assert_eq!(uses.len(), 2);
    for u in &uses {
        assert_eq!(u["grant_jti"], jti);
        assert_eq!(u["purpose"], "payment_authorization");
        assert_eq!(u["tokens"], json!([token]));
        assert_eq!(u["actor"], json!(app.keys.detokenizer_id));
    }
    let refused: Vec<&Value> = all
        .iter()
        .filter(|e| e["action"] == "detokenize" && e["outcome"] == "denied")
        .collect();
    let codes: Vec<&str> = refused
        .iter()
        .map(|e| e["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"grant_exhausted") && codes.contains(&"grant_missing"));
    let exhausted = refused
        .iter()
        .find(|e| e["code"] == "grant_exhausted")
        .unwrap();
    assert_eq!(exhausted["grant_jti"], jti);

    let created = all
        .iter()
        .find(|e| e["action"] == "access_request.create" && e["subject"] == id.as_str())
        .unwrap();
    assert_eq!(created["reason"], "chargeback CB-77");
    assert_eq!(created["purpose"], "dispute");
    assert_eq!(created["detail"], "pending");
    assert_eq!(created["actor"], json!(app.keys.requester.id));
    let e = one(&all, "access_request.approve", "success");
    assert_eq!(e["subject"], id.as_str());
    assert_eq!(e["grant_jti"], support_jti.as_str());
    assert_eq!(e["actor"], json!(app.keys.approver.id));
    let e = one(&all, "access_request.deny", "success");
    assert_eq!(e["reason"], "not our case");
    assert_eq!(e["subject"], denied_id.as_str());
    let e = one(&all, "access_request.create", "denied");
    assert_eq!(e["code"], "policy_denied");
    assert_eq!(e["detail"], "purpose");
    let e = one(&all, "grant.revoke", "success");
    assert_eq!(e["grant_jti"], support_jti.as_str());
    assert!(
        one(&all, "grant.revoke_all", "success")["detail"]
            .as_str()
            .unwrap()
            .starts_with("revoked ")
    );

    // Reading the trail is itself recorded, with the filters' names.
    let reads = events(&app, "?action=audit.read").await;
    assert_eq!(reads[0]["detail"], "limit");

    // Events without a tenant: the failed authentication and the keys the vault created.
    let pool = app.db.pool().await;
    let untenanted: Vec<(String, String, Option<String>, Option<String>)> = sqlx::query_as(
        "select action, outcome, code, detail from audit_events where tenant_id is null",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(untenanted.contains(&(
        "auth.failure".into(),
        "denied".into(),
        Some("unauthenticated".into()),
        Some("unknown_key".into())
    )));
    for kind in ["data_encryption_key", "grant_signing_key"] {
        assert!(
            untenanted
                .iter()
                .any(|(a, _, _, d)| a == "key.create" && d.as_deref() == Some(kind)),
            "{kind}: {untenanted:?}"
        );
    }
    let (ok, out) = verify(&app, None);
    assert!(ok, "{out}");
}

#[tokio::test]
async fn a_lapsed_access_request_is_recorded_as_expired() {
    let clock = manual_clock();
    let app = spawn_app_with(Options {
        clock: clock.clone(),
        configure: Box::new(|c| c.purge_interval = Duration::from_millis(50)),
        ..Options::default()
    })
    .await;
    let token = app.token_for(&random_pan("4", 16)).await;
    let r = app
        .create_request(
            &app.keys.requester.key,
            &json!({"tokens": [token], "purpose": "dispute", "reason": "case 9",
                    "duration_seconds": 60, "totp": app.code(&app.keys.requester)}),
        )
        .await;
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    clock.advance(chrono::Duration::hours(2));
    let expired = events_eventually(&app, "?action=access_request.expire").await;
    let e = expired.first().expect("the sweep records the expiry");
    assert_eq!(e["subject"], id.as_str());
    assert_eq!(e["purpose"], "dispute");
    assert!(e["actor"].is_null());
    assert_eq!(e["outcome"], "success");
}

#[tokio::test]
async fn no_pan_key_code_secret_or_grant_appears_in_the_trail() {
    let app = spawn_pg_app().await;
    let pans: Vec<String> = (0..3).map(|_| random_pan("4", 16)).collect();
    let mut tokens = Vec::new();
    for pan in &pans {
        tokens.push(app.token_for(pan).await);
    }
    // Card numbers sent where they do not belong: refused, and still not recorded.
    let r = app
        .tokenize(
            &app.keys.tokenizer,
            &json!({"value": pans[0], "metadata": {"card": pans[1]}}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let _ = app.get_token(&app.keys.tokenizer, &pans[2]).await;
    let _ = app
        .audit(&app.keys.auditor, &format!("?token={}", pans[0]))
        .await;
    let code = app.code(&app.keys.requester);
    let r = app
        .create_request(
            &app.keys.requester.key,
            &json!({"tokens": [tokens[0]], "purpose": "dispute", "reason": "case 1",
                    "duration_seconds": 60, "totp": code}),
        )
        .await;
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let approver_code = app.code(&app.keys.approver);
    let r = app
        .decide(
            &app.keys.approver.key,
            &id,
            "approve",
            Some(&json!({"totp": approver_code})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let support: Value = app
        .get_request(&app.keys.requester.key, &id)
        .await
        .json()
        .await
        .unwrap();
    let support_jwt = support["grant"].as_str().unwrap().to_owned();
    let r = app
        .detokenize(&app.keys.requester.key, Some(&support_jwt), &[&tokens[0]])
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let grant = app.checkout_grant(5).await;
    let jwt = grant["grant"].as_str().unwrap().to_owned();
    let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let r = app
        .detokenize(&app.keys.detokenizer, Some(&jwt), &refs)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app.detokenize(&app.keys.tokenizer, Some(&jwt), &refs).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    let pool = app.db.pool().await;
    let rows: Vec<(String,)> = sqlx::query_as("select row_to_json(a)::text from audit_events a")
        .fetch_all(&pool)
        .await
        .unwrap();
    let trail: String = rows
        .into_iter()
        .map(|(r,)| r)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(trail.contains(&tokens[0]), "the trail names tokens");
    let mut secrets: Vec<(&str, String)> = pans.iter().map(|p| ("PAN", p.clone())).collect();
    secrets.extend([
        ("PAN middle", pans[0][6..12].to_owned()),
        ("grant JWT", jwt.clone()),
        (
            "grant JWT signature",
            jwt.rsplit('.').next().unwrap().to_owned(),
        ),
        ("support JWT", support_jwt.clone()),
        ("TOTP code", format!("\"{code}\"")),
        ("TOTP code", format!("\"{approver_code}\"")),
        (
            "TOTP secret",
            app.keys.requester.totp.to_base32().to_string(),
        ),
    ]);
    for key in [
        &app.keys.tokenizer,
        &app.keys.detokenizer,
        &app.keys.auditor,
        &app.keys.requester.key,
        &app.keys.approver.key,
    ] {
        secrets.push(("API key", key.clone()));
    }
    for (what, secret) in &secrets {
        assert!(
            !trail.contains(secret.as_str()),
            "{what} in the audit trail"
        );
    }
}

#[tokio::test]
async fn auditors_filter_and_page_and_nobody_else_reads_the_trail() {
    let app = spawn_app().await;
    let tokens = some_traffic(&app, 3).await;
    let _ = app
        .tokenize(
            &app.keys.other_tenant_tokenizer,
            &json!({"value": random_pan("4", 16)}),
        )
        .await;

    for key in [
        &app.keys.tokenizer,
        &app.keys.detokenizer,
        &app.keys.admin,
        &app.keys.approver.key,
    ] {
        assert_problem(app.audit(key, "").await, StatusCode::FORBIDDEN, "forbidden").await;
    }
    let lookups = events(&app, "?action=token.lookup").await;
    assert_eq!(lookups.len(), 3);
    assert!(lookups.iter().all(|e| e["action"] == "token.lookup"));
    // Newest first.
    assert!(lookups[0]["id"].as_i64() > lookups[1]["id"].as_i64());
    let mine = events(&app, &format!("?token={}", tokens[1])).await;
    assert_eq!(
        mine.len(),
        2,
        "tokenize and lookup of that token: {mine:#?}"
    );
    let actor = lookups[0]["actor"].as_str().unwrap();
    let by_actor = events(&app, &format!("?actor={actor}&outcome=success")).await;
    assert_eq!(by_actor.len(), 6);
    assert!(events(&app, "?outcome=error").await.is_empty());
    assert!(events(&app, "?since=2999-01-01T00:00:00Z").await.is_empty());
    assert_eq!(
        events(&app, "?until=2999-01-01T00:00:00Z&action=token.tokenize")
            .await
            .len(),
        3,
        "the other tenant's records are not shown"
    );

    // Pages of two, following the cursor, cover the same records once each.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = app
            .audit(
                &app.keys.auditor,
                &format!("?actor={actor}&outcome=success&limit=2{cursor}"),
            )
            .await;
        let body: Value = r.json().await.unwrap();
        for e in body["events"].as_array().unwrap() {
            seen.push(e["id"].as_i64().unwrap());
        }
        match body["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    let all: Vec<i64> = by_actor.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert_eq!(seen, all);

    for (query, field) in [
        ("?since=yesterday", "since"),
        ("?until=2030-13-01T00:00:00Z", "until"),
        (
            "?since=2030-01-02T00:00:00Z&until=2030-01-01T00:00:00Z",
            "until",
        ),
        ("?actor=bob", "actor"),
        ("?action=token.steal", "action"),
        ("?outcome=maybe", "outcome"),
        ("?token=4111111111111111", "token"),
        ("?limit=0", "limit"),
        ("?cursor=abc", "cursor"),
    ] {
        let body = assert_problem(
            app.audit(&app.keys.auditor, query).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        )
        .await;
        assert!(
            body["detail"].as_str().unwrap().contains(field),
            "{query}: {body}"
        );
        assert!(!body.to_string().contains("4111111111111111"));
    }
    assert_problem(
        app.audit(&app.keys.auditor, "?colour=red").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_field",
    )
    .await;
}

#[tokio::test]
async fn the_trail_holds_what_an_assessor_asks_for() {
    let clock = manual_clock();
    let app = spawn_app_with(Options {
        clock: clock.clone(),
        configure: Box::new(|c| c.purge_interval = Duration::from_millis(50)),
        ..Options::default()
    })
    .await;
    // The instance's start and its policies, readable in the system scope only.
    let system = events(&app, "?scope=system&limit=500").await;
    assert!(system.iter().all(|e| e["tenant"].is_null()));
    let started = system
        .iter()
        .find(|e| e["action"] == "service.start")
        .expect("service.start");
    let instance = started["subject"].as_str().unwrap().to_owned();
    assert!(
        started["detail"]
            .as_str()
            .unwrap()
            .starts_with(&format!("version={}", env!("CARGO_PKG_VERSION")))
    );
    let loaded = system
        .iter()
        .find(|e| e["action"] == "policy.load")
        .expect("policy.load");
    let detail = loaded["detail"].as_str().unwrap();
    let digest = hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        TEST_POLICIES.as_bytes(),
    ));
    assert_eq!(
        detail,
        format!("sha256={digest} policies=checkout,support-chargeback,fraud-two-person")
    );
    assert!(
        events(&app, "?limit=500")
            .await
            .iter()
            .all(|e| e["action"] != "service.start"),
        "not in the tenant's scope"
    );
    let r = app.audit(&app.keys.auditor, "?scope=everything").await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;

    // An approval names the tokens it opens, so filtering by a token finds who approved it.
    let token = app.token_for(&random_pan("4", 16)).await;
    let r = app
        .create_request(
            &app.keys.requester.key,
            &json!({"tokens": [token], "purpose": "dispute", "reason": "case 12",
                    "duration_seconds": 60, "totp": app.code(&app.keys.requester)}),
        )
        .await;
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob = &app.keys.approver;
    let r = app
        .decide(
            &bob.key,
            &id,
            "approve",
            Some(&json!({"totp": app.code(bob)})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let by_token = events(
        &app,
        &format!("?token={token}&action=access_request.approve"),
    )
    .await;
    assert_eq!(by_token.len(), 1);
    assert_eq!(by_token[0]["actor"], json!(bob.id));

    // Each expired token the housekeeping destroys is recorded under its tenant.
    let expiring: Value = app
        .tokenize(
            &app.keys.tokenizer,
            &json!({"value": random_pan("4", 16), "expires_at": "2030-01-01T00:01:00Z"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let expiring = expiring["token"].as_str().unwrap().to_owned();
    clock.advance(chrono::Duration::minutes(2));
    let purged = events_eventually(&app, "?action=token.purge").await;
    let e = purged.first().expect("the purge is recorded");
    assert_eq!(e["tokens"], json!([expiring]));
    assert!(e["actor"].is_null() && e["tenant"].is_string());

    // The stop is recorded too, once the connections have drained.
    let (db, master_key, keys) = (
        Arc::clone(&app.db),
        app.master_key.clone(),
        app.keys.clone(),
    );
    app.stop().await;
    let again = start(db, master_key, keys, Options::default()).await;
    let system = events(&again, "?scope=system&limit=500").await;
    let stopped = system
        .iter()
        .find(|e| e["action"] == "service.stop")
        .expect("service.stop");
    assert_eq!(stopped["subject"], instance.as_str());
}
