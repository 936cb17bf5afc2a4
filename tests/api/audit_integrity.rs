//! The audit trail's integrity: append-only (by trigger and by grants), tamper-evident
//! (verified by the real `strongroom audit verify`), fail-closed, and whole when two
//! instances write at once.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{Connection, Executor, PgConnection};
use strongroom::crypto::checkpoint::CheckpointKey;
use strongroom::domain::audit::{ChainHead, Outcome};
use strongroom::service::audit;
use strongroom::store::AuditStore;
use uuid::Uuid;

use crate::audit::{
    CheckpointFile, events, exec, some_traffic, spawn_checkpointed, tamperer, verify, verify_db,
};
use crate::helpers::*;

#[tokio::test]
async fn the_trail_refuses_update_delete_and_truncate() {
    let app = spawn_pg_app().await;
    some_traffic(&app, 1).await;
    let pool = app.db.pool().await;
    for sql in [
        "update audit_events set outcome = 'denied'",
        "delete from audit_events",
        "truncate audit_events",
    ] {
        let err = sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    let (count,): (i64,) = sqlx::query_as("select count(*) from audit_events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(count >= 2);
}

/// `url` with `user:password` in place of its credentials.
fn as_user(url: &str, user: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let host = rest.split_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{user}:{password}@{host}")
}

#[tokio::test]
async fn serve_runs_as_a_role_that_may_only_insert_and_read_audit_records() {
    // The README's recipe, followed to the letter.
    let owner = spawn_pg_app().await;
    let role = format!("strongroom_app_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&owner.db.url).await.unwrap();
    for sql in [
        format!("create role {role} login password 'app-secret'"),
        format!("grant select, insert, update, delete on all tables in schema public to {role}"),
        format!("grant usage on all sequences in schema public to {role}"),
        format!("revoke update, delete, truncate on audit_events from {role}"),
    ] {
        exec(&mut admin, &sql).await;
    }
    let url = as_user(&owner.db.url, &role, "app-secret");
    let app = start(
        Arc::clone(&owner.db),
        owner.master_key.clone(),
        owner.keys.clone(),
        Options {
            configure: Box::new(move |c| c.database_url = url.into()),
            ..Options::default()
        },
    )
    .await;
    let tokens = some_traffic(&app, 2).await;
    let grant = app.checkout_grant(1).await;
    let r = app
        .detokenize(
            &app.keys.detokenizer,
            grant["grant"].as_str(),
            &[&tokens[0]],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(events(&app, "?action=detokenize").await.len(), 1);

    let mut service = PgConnection::connect(&as_user(&owner.db.url, &role, "app-secret"))
        .await
        .unwrap();
    for sql in [
        "delete from audit_events",
        "update audit_events set reason = 'x'",
        "truncate audit_events",
        "set session_replication_role = replica",
    ] {
        let err = service
            .execute(sqlx::AssertSqlSafe(sql.to_owned()))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("permission denied"),
            "{sql}: {err}"
        );
    }
    drop(service);
    app.stop().await;
    exec(&mut admin, &format!("drop owned by {role}")).await;
    exec(&mut admin, &format!("drop role {role}")).await;
    owner.stop().await;
}

/// Makes the trail refuse every record, as a full disk would (a trigger that raises).
async fn refuse_audit_records(pool: &sqlx::PgPool) {
    for sql in [
        "create function refuse_audit() returns trigger language plpgsql as \
         $$ begin raise exception 'audit disk full'; end; $$",
        "create trigger refuse_audit before insert on audit_events \
         for each row execute function refuse_audit()",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(pool)
            .await
            .unwrap();
    }
}

/// Undoes [`refuse_audit_records`].
async fn take_audit_records_again(pool: &sqlx::PgPool) {
    sqlx::query("drop trigger refuse_audit on audit_events")
        .execute(pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn detokenize_fails_closed_when_the_audit_trail_cannot_be_written() {
    let file = CheckpointFile::new();
    let app = spawn_checkpointed(&file).await;
    let pan = random_pan("4", 16);
    let token = app.token_for(&pan).await;
    let grant = app.checkout_grant(10).await;
    let jwt = grant["grant"].as_str().unwrap().to_owned();
    let r = app
        .detokenize(&app.keys.detokenizer, Some(&jwt), &[&token])
        .await;
    assert_eq!(r.status(), StatusCode::OK);

    let pool = app.db.pool().await;
    refuse_audit_records(&pool).await;
    let r = app
        .detokenize(&app.keys.detokenizer, Some(&jwt), &[&token])
        .await;
    let retry = r.headers().get("retry-after").cloned();
    let body = r.text().await.unwrap();
    assert!(
        !body.contains(&pan),
        "the PAN left without its audit record"
    );
    let problem: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["status"], 503);
    assert_eq!(problem["code"], "audit_unavailable");
    assert!(retry.is_some());
    // Nothing else succeeds unrecorded either.
    let r = app.get_token(&app.keys.tokenizer, &token).await;
    assert_problem(r, StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable").await;
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("strongroom_audit_write_failures_total{target=\"database\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("strongroom_refusals_total{code=\"audit_unavailable\"} 2"));

    // Once the trail takes records again, so does the vault, and the chains still verify.
    take_audit_records_again(&pool).await;
    let r = app
        .detokenize(&app.keys.detokenizer, Some(&jwt), &[&token])
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let (ok, out) = verify(&app, Some(&file));
    assert!(ok, "{out}");
}

#[tokio::test]
async fn verify_names_each_kind_of_tampering_by_a_database_superuser() {
    let file = CheckpointFile::new();
    let app = spawn_checkpointed(&file).await;
    some_traffic(&app, 4).await;
    let (db, master_key) = (Arc::clone(&app.db), app.master_key.clone());
    // Stopped: its last checkpoint is written and nothing moves under the tampering.
    app.stop().await;
    let verify = |checkpoints| verify_db(&db, &master_key, checkpoints);
    let (ok, out) = verify(Some(&file));
    assert!(ok, "{out}");
    assert!(out.contains("verified"), "{out}");
    let pool = db.pool().await;
    let (chain, count): (Uuid, i64) = sqlx::query_as(
        "select chain_id, count(*) from audit_events group by chain_id order by 2 desc limit 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        count, 12,
        "service.start, policy.load, key.create (the tenant's key), 4 tokenize, 4 lookups, \
         service.stop"
    );
    let id_at = async |seq: i64| -> i64 {
        sqlx::query_scalar("select id from audit_events where chain_id = $1 and seq = $2")
            .bind(chain)
            .bind(seq)
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let (third, fourth) = (id_at(3).await, id_at(4).await);
    let mut conn = tamperer(&db).await;
    let broken = |expect: &str| {
        let (ok, out) = verify(Some(&file));
        assert!(!ok, "verify passed tampering: {expect}");
        assert!(out.contains(expect), "expected `{expect}` in: {out}");
    };
    let restored = || {
        let (ok, out) = verify(Some(&file));
        assert!(ok, "restored: {out}");
    };
    exec(
        &mut conn,
        "create table saved as select * from audit_events",
    )
    .await;

    // A changed field.
    exec(
        &mut conn,
        &format!("update audit_events set outcome = 'denied' where id = {third}"),
    )
    .await;
    broken(&format!(
        "record {third} (chain {chain}, seq 3) was changed"
    ));
    exec(
        &mut conn,
        &format!("update audit_events set outcome = 'success' where id = {third}"),
    )
    .await;
    restored();

    // A deleted record.
    exec(
        &mut conn,
        &format!("delete from audit_events where id = {third}"),
    )
    .await;
    broken(&format!(
        "record {fourth} (chain {chain}, seq 4) follows a gap"
    ));
    let put_back = "insert into audit_events overriding system value select * from saved s \
         where not exists (select 1 from audit_events a where a.id = s.id)";
    exec(&mut conn, put_back).await;
    restored();

    // Two records reordered: each moved to the other's place.
    exec(
        &mut conn,
        &format!("update audit_events set seq = seq + 1000000 where id in ({third}, {fourth})"),
    )
    .await;
    exec(
        &mut conn,
        &format!(
            "update audit_events set seq = case when seq = 1000003 then 4 else 3 end \
             where id in ({third}, {fourth})"
        ),
    )
    .await;
    broken(&format!(
        "record {fourth} (chain {chain}, seq 3) does not link"
    ));
    exec(
        &mut conn,
        &format!("delete from audit_events where id in ({third}, {fourth})"),
    )
    .await;
    exec(&mut conn, put_back).await;
    restored();

    // The tail cut off: only the checkpoint kept outside the database can tell.
    exec(
        &mut conn,
        &format!("delete from audit_events where chain_id = '{chain}' and seq > 5"),
    )
    .await;
    let (ok, out) = verify(None);
    assert!(ok, "without checkpoints a clean cut is invisible: {out}");
    assert!(out.contains("warning: no checkpoint file"), "{out}");
    broken(&format!(
        "chain {chain} ends at seq 5 but a checkpoint vouches for seq 12"
    ));
    exec(&mut conn, put_back).await;
    restored();

    // A record rewritten with every later hash recomputed: whole as a chain, but not what the
    // checkpoints vouched for.
    let store = strongroom::store::PgStore::from_pool(pool.clone());
    let records = store
        .audit_chain_page(Some((chain, 0)), 10_000)
        .await
        .unwrap();
    let mut head = ChainHead::new(chain);
    for r in records.iter().filter(|r| r.chained.chain == chain) {
        let mut event = r.chained.event.clone();
        if r.chained.seq == 2 {
            event.outcome = Outcome::Denied;
        }
        let forged = head.append(event);
        sqlx::query(
            "update audit_events set outcome = $1, prev_hash = $2, hash = $3 where id = $4",
        )
        .bind(forged.event.outcome.as_str())
        .bind(forged.prev_hash.to_vec())
        .bind(forged.hash.to_vec())
        .bind(r.id)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let (ok, out) = verify(None);
    assert!(ok, "a recomputed chain is whole on its own: {out}");
    broken("differs from its checkpoint: the chain was rewritten");

    // A checkpoint line changed to match is refused outright.
    let text = std::fs::read_to_string(&file.0).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut first: Value = serde_json::from_str(&lines[0]).unwrap();
    first["seq"] = json!(first["seq"].as_u64().unwrap() + 1);
    lines[0] = first.to_string();
    std::fs::write(&file.0, lines.join("\n")).unwrap();
    broken("checkpoint file line 1 is not a valid checkpoint of this vault");
}

#[tokio::test]
async fn two_instances_writing_at_once_keep_chains_that_verify() {
    let file = CheckpointFile::new();
    // Two lanes in each instance (the default on PostgreSQL): four chains written at once.
    let a = crate::audit::spawn_checkpointed_lanes(&file, 2).await;
    let path = file.0.clone();
    let b = start(
        Arc::clone(&a.db),
        a.master_key.clone(),
        a.keys.clone(),
        Options {
            configure: Box::new(move |c| {
                c.audit_checkpoint_file = Some(path);
                c.audit_checkpoint_interval = Duration::ZERO;
            }),
            ..Options::default()
        },
    )
    .await;
    let calls: Vec<_> = (0..60)
        .map(|i| {
            let (client, url, key) = (
                a.client.clone(),
                if i % 2 == 0 {
                    a.url("/v1/tokens")
                } else {
                    b.url("/v1/tokens")
                },
                a.keys.tokenizer.clone(),
            );
            tokio::spawn(async move {
                client
                    .post(url)
                    .bearer_auth(key)
                    .json(&json!({"value": random_pan("4", 16)}))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), StatusCode::CREATED);
    }
    let db = Arc::clone(&a.db);
    let master_key = a.master_key.clone();
    a.stop().await;
    b.stop().await;

    let pool = db.pool().await;
    let chains: Vec<(Uuid, i64)> = sqlx::query_as(
        "select chain_id, count(*) from audit_events where action = 'token.tokenize' group by 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        chains.len(),
        4,
        "one chain per lane of each instance: {chains:?}"
    );
    assert_eq!(chains.iter().map(|c| c.1).sum::<i64>(), 60);

    let store = strongroom::store::PgStore::from_pool(pool);
    let master = strongroom::crypto::keys::MasterKey::from_base64(&master_key).unwrap();
    let key: CheckpointKey = strongroom::service::keys::load_checkpoint_key(
        &store,
        &master,
        &strongroom::random::SystemRandom::new(),
        &strongroom::clock::SystemClock,
    )
    .await
    .unwrap();
    let checkpoints = audit::read_checkpoints(&file.0, &key).unwrap();
    for (chain, _) in &chains {
        assert!(checkpoints.iter().any(|c| c.chain == *chain));
    }
    let verified = audit::verify(&store, checkpoints).await.unwrap().unwrap();
    assert!(
        verified.records >= 60 && verified.chains >= 2,
        "{verified:?}"
    );
    assert!(verified.checkpoints >= 2);
}

#[tokio::test]
async fn shutdown_checkpoints_the_last_records() {
    let file = CheckpointFile::new();
    let path = file.0.clone();
    let app = spawn_app_with(Options {
        engine: Engine::Postgres,
        configure: Box::new(move |c| {
            c.audit_checkpoint_file = Some(path);
            c.audit_checkpoint_interval = Duration::from_secs(3600);
            // One chain, so that the stop's record follows the traffic's in it.
            c.audit_lanes = 1;
        }),
        ..Options::default()
    })
    .await;
    some_traffic(&app, 2).await;
    let db = Arc::clone(&app.db);
    let pool = db.pool().await;
    let (chain, seq): (Uuid, i64) = sqlx::query_as(
        "select chain_id, max(seq) from audit_events where action = 'token.lookup' group by 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    // With an hour between checkpoints none is due yet; stopping writes the last one.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = std::fs::read_to_string(&file.0).unwrap_or_default();
    app.stop().await;
    let after = std::fs::read_to_string(&file.0).unwrap();
    let last: Value = serde_json::from_str(after.lines().last().unwrap()).unwrap();
    assert_eq!(last["chain"], chain.to_string());
    // The last record is the stop itself, right after the traffic.
    let stop: String =
        sqlx::query_scalar("select action from audit_events where chain_id = $1 and seq = $2")
            .bind(chain)
            .bind(seq + 1)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(stop, "service.stop");
    assert_eq!(last["seq"], seq + 1);
    assert!(!before.contains(&format!("\"seq\":{seq},")), "{before}");
}

#[tokio::test]
async fn an_idle_head_is_checkpointed_within_the_interval() {
    let file = CheckpointFile::new();
    let path = file.0.clone();
    let app = spawn_app_with(Options {
        engine: Engine::Postgres,
        configure: Box::new(move |c| {
            c.audit_checkpoint_file = Some(path);
            c.audit_checkpoint_interval = Duration::from_millis(1200);
        }),
        ..Options::default()
    })
    .await;
    some_traffic(&app, 2).await;
    let db = Arc::clone(&app.db);
    let pool = db.pool().await;
    let (chain, seq): (Uuid, i64) = sqlx::query_as(
        "select chain_id, max(seq) from audit_events where action = 'token.lookup' group by 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let mut vouched = false;
    for _ in 0..40 {
        let text = std::fs::read_to_string(&file.0).unwrap_or_default();
        vouched = text.lines().any(|l| {
            let c: Value = serde_json::from_str(l).unwrap();
            c["chain"] == chain.to_string() && c["seq"] == seq
        });
        if vouched {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        vouched,
        "the newest record was not checkpointed while the vault was idle"
    );
}

#[tokio::test]
async fn readiness_is_503_while_the_trail_refuses_records_and_200_once_it_takes_them() {
    let file = CheckpointFile::new();
    let app = spawn_checkpointed(&file).await;
    let ready = || async { app.client.get(app.url("/readyz")).send().await.unwrap() };
    assert_eq!(ready().await.status(), StatusCode::OK);
    let pool = app.db.pool().await;
    refuse_audit_records(&pool).await;
    // No request has written since: readiness finds out for itself, and says why.
    let r = ready().await;
    assert!(r.headers().contains_key("retry-after"));
    let problem = assert_problem(r, StatusCode::SERVICE_UNAVAILABLE, "not_ready").await;
    assert_eq!(problem["reason"], "audit_trail");
    let r = app
        .tokenize(&app.keys.tokenizer, &json!({"value": random_pan("4", 16)}))
        .await;
    assert_problem(r, StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable").await;
    assert_eq!(
        ready().await.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "still refusing"
    );
    // Writable again: ready again, without a restart, and the chains verify.
    take_audit_records_again(&pool).await;
    assert_eq!(ready().await.status(), StatusCode::OK);
    let r = app
        .tokenize(&app.keys.tokenizer, &json!({"value": random_pan("4", 16)}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let probes: i64 =
        sqlx::query_scalar("select count(*) from audit_events where action = 'audit.probe'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(probes, 0, "a probe leaves nothing behind");
    let (ok, out) = verify(&app, Some(&file));
    assert!(ok, "{out}");
}

#[tokio::test]
async fn a_detokenize_spends_its_use_only_with_its_record_and_never_on_a_failed_reveal() {
    let file = CheckpointFile::new();
    let app = spawn_checkpointed(&file).await;
    let pan = random_pan("4", 16);
    let token = app.token_for(&pan).await;
    let jwt = app.checkout_grant(3).await["grant"]
        .as_str()
        .unwrap()
        .to_owned();
    let pool = app.db.pool().await;
    let uses = async || -> i32 {
        sqlx::query_scalar("select uses from grants")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    // A token that does not exist: refused, and no use spent.
    let unknown = unknown_token();
    let r = app
        .detokenize(&app.keys.detokenizer, Some(&jwt), &[&token, &unknown])
        .await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(uses().await, 0);
    // The trail refusing records: nothing is released, and the use is not taken either.
    refuse_audit_records(&pool).await;
    let r = app
        .detokenize(&app.keys.detokenizer, Some(&jwt), &[&token])
        .await;
    let body = r.text().await.unwrap();
    assert!(!body.contains(&pan));
    assert!(body.contains("audit_unavailable"), "{body}");
    assert_eq!(uses().await, 0, "no use without its record");
    take_audit_records_again(&pool).await;
    // Writable again: the use and its record commit together.
    let r = app
        .detokenize(&app.keys.detokenizer, Some(&jwt), &[&token])
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(uses().await, 1);
    let used: Vec<(String, Option<String>)> = sqlx::query_as(
        "select outcome, detail from audit_events where action = 'detokenize' order by id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        used,
        vec![
            ("denied".to_owned(), None),
            ("success".to_owned(), Some("use 1".to_owned()))
        ]
    );
    let (ok, out) = verify(&app, Some(&file));
    assert!(ok, "{out}");
}

#[tokio::test]
async fn a_change_whose_record_cannot_be_written_is_not_made() {
    let file = CheckpointFile::new();
    let app = spawn_checkpointed(&file).await;
    let token = app.token_for(&random_pan("4", 16)).await;
    let grant = app.checkout_grant(5).await;
    let jti = grant["grant_jti"].as_str().unwrap().to_owned();
    let jwt = grant["grant"].as_str().unwrap().to_owned();
    let pool = app.db.pool().await;
    let count = async |sql: &str| -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let grants_before = count("select count(*) from grants").await;
    let tokens_before = count("select count(*) from tokens").await;
    refuse_audit_records(&pool).await;
    // Each answered 503, and none of them happened.
    let r = app
        .tokenize(&app.keys.tokenizer, &json!({"value": random_pan("4", 16)}))
        .await;
    assert_problem(r, StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable").await;
    let items: Vec<Value> = (0..5)
        .map(|_| json!({"value": random_pan("5", 16)}))
        .collect();
    let r = app
        .tokenize_batch(&app.keys.tokenizer, &json!({"items": items}))
        .await;
    assert_problem(r, StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable").await;
    let r = app
        .client
        .post(app.url(&format!("/v1/grants/{jti}/revoke")))
        .bearer_auth(&app.keys.detokenizer)
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable").await;
    let r = app
        .client
        .delete(app.url(&format!("/v1/tokens/{token}")))
        .bearer_auth(&app.keys.tokenizer)
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable").await;
    let r = app
        .create_request(
            &app.keys.detokenizer,
            &json!({"any_token": true, "purpose": "payment_authorization", "reason": "r",
                    "duration_seconds": 60, "max_uses": 1}),
        )
        .await;
    assert_problem(r, StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable").await;
    assert_eq!(
        count("select count(*) from grants where revoked_at is not null").await,
        0
    );
    assert_eq!(
        count("select count(*) from tokens where destroyed_at is not null").await,
        0
    );
    assert_eq!(count("select count(*) from grants").await, grants_before);
    assert_eq!(count("select count(*) from access_requests").await, 1);
    assert_eq!(
        count("select count(*) from tokens").await,
        tokens_before,
        "no card number stored without its tokenize record"
    );
    take_audit_records_again(&pool).await;
    // The grant still works, the token is still there, and the chains verify.
    let r = app
        .detokenize(&app.keys.detokenizer, Some(&jwt), &[&token])
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let (ok, out) = verify(&app, Some(&file));
    assert!(ok, "{out}");
}
