//! The side doors: deterministic tokenization as an oracle, guessed lookups, failed-auth floods
//! and batches that dodge the rate limit — each tried as an attacker would, against the real
//! server.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use strongroom::domain::Role;

use crate::cli::{run, strongroom};
use crate::helpers::*;

async fn tokenize_problem(app: &TestApp, key: &str, pan: &str) -> (Value, u64) {
    let r = app.tokenize(key, &json!({"value": pan})).await;
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = assert_problem(r, StatusCode::TOO_MANY_REQUESTS, "enumeration_suspected").await;
    (without_request_id(body), retry)
}

async fn metrics_text(app: &TestApp) -> String {
    let r = app.client.get(app.url("/metrics")).send().await.unwrap();
    r.text().await.unwrap()
}

async fn scalar(app: &TestApp, sql: &str) -> i64 {
    let mut conn = PgConnection::connect(&app.db.url).await.unwrap();
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_second_tokenizer_key_cannot_recover_a_pan_from_its_six_four_token() {
    let app = spawn_pg_app().await;
    let victim_pan = pan_in_bucket("453201", "0366", 250);
    let victim = app
        .tokenize(&app.keys.tokenizer, &json!({"value": victim_pan}))
        .await;
    assert_eq!(victim.status(), StatusCode::CREATED);
    let victim: Value = victim.json().await.unwrap();
    let victim_token = victim["token"].as_str().unwrap().to_owned();
    let masked = victim["masked"].as_str().unwrap();
    let (first6, last4) = (&masked[..6], &masked[12..]);
    assert_eq!((first6, last4), ("453201", "0366"));

    // The attacker: another tokenizer key of the tenant, trying the bucket's candidates in
    // order — one at a time while that works, then 100 a batch — with the victim's PAN among
    // the first 300.
    let (attacker, _) = app
        .create_principal("acme", "mallory", vec![Role::Tokenizer])
        .await;
    let mut created = 0;
    let mut refused = 0;
    let mut seen_tokens = HashSet::new();
    for n in 0..30 {
        let r = app
            .tokenize(
                &attacker,
                &json!({"value": pan_in_bucket(first6, last4, n)}),
            )
            .await;
        match r.status() {
            StatusCode::CREATED => {
                created += 1;
                let body: Value = r.json().await.unwrap();
                seen_tokens.insert(body["token"].as_str().unwrap().to_owned());
            }
            StatusCode::TOO_MANY_REQUESTS => refused += 1,
            other => panic!("{other}"),
        }
    }
    for start in (30..300).step_by(90) {
        let items: Vec<Value> = (start..start + 90)
            .map(|n| json!({"value": pan_in_bucket(first6, last4, n)}))
            .collect();
        let r = app
            .tokenize_batch(&attacker, &json!({"items": items}))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let body: Value = r.json().await.unwrap();
        for result in body["results"].as_array().unwrap() {
            if let Some(token) = result["token"].as_str() {
                seen_tokens.insert(token.to_owned());
                created += 1;
            } else {
                assert_eq!(result["error"]["code"], "enumeration_suspected", "{result}");
                assert!(result["error"]["retry_after"].as_u64().unwrap() > 0);
                refused += 1;
            }
        }
    }
    assert!(
        !seen_tokens.contains(&victim_token),
        "the victim's token came back"
    );
    // The victim's own card was the bucket's first new PAN: 19 guesses fit in the budget.
    assert_eq!(created, 19, "the budget less the victim's card");
    assert_eq!(refused, 281);
    // Nothing refused was stored: the victim's row and the 19 guesses.
    let in_bucket = scalar(
        &app,
        "select count(*) from tokens where masked_pan = '453201******0366'",
    )
    .await;
    assert_eq!(in_bucket, 20);

    // The refusal for the victim's PAN equals the refusal for a PAN never seen: same status,
    // code, detail and Retry-After (to the second) — it answers nothing.
    let (for_victim, retry_victim) = tokenize_problem(&app, &attacker, &victim_pan).await;
    let (for_new, retry_new) =
        tokenize_problem(&app, &attacker, &pan_in_bucket(first6, last4, 99_999)).await;
    assert_eq!(for_victim, for_new);
    assert!(retry_victim.abs_diff(retry_new) <= 1 && retry_victim > 80_000);
    // Every tokenize in the bucket for the tenant is refused, the victim merchant's own too;
    // another tenant's bucket of the same digits is its own.
    tokenize_problem(&app, &app.keys.tokenizer, &victim_pan).await;
    let other = app
        .tokenize(
            &app.keys.other_tenant_tokenizer,
            &json!({"value": victim_pan}),
        )
        .await;
    assert_eq!(other.status(), StatusCode::CREATED);

    // The first refusal is audited once, by the attacker, naming the bucket by its keyed id;
    // and counted.
    let r = app
        .audit(&app.keys.auditor, "?action=tokenize.enumeration_suspected")
        .await;
    let events: Value = r.json().await.unwrap();
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    let detail = events[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("new_pans=21") && detail.contains("budget=20"),
        "{detail}"
    );
    assert!(!detail.contains(&victim_pan));
    let bucket = events[0]["subject"].as_str().unwrap().to_owned();
    assert_eq!(bucket.len(), 32);
    let metrics = metrics_text(&app).await;
    assert!(
        metrics.contains("strongroom_enumeration_suspected_total 1"),
        "{metrics}"
    );

    // An admin reviews and releases the bucket with the CLI; the release is audited and the
    // merchant tokenizes again.
    let (ok, out, err) = run(strongroom()
        .args(["guard", "list"])
        .env("DATABASE_URL", &app.db.url));
    assert!(ok, "{err}");
    assert!(out.contains(&bucket), "{out}");
    let (ok, out, err) = run(strongroom()
        .args([
            "guard",
            "release",
            "--bucket",
            &bucket,
            "--reason",
            "ticket SEC-12: red team",
        ])
        .env("DATABASE_URL", &app.db.url));
    assert!(ok, "{err}");
    assert!(out.contains("released"), "{out}");
    let again = app
        .tokenize(&app.keys.tokenizer, &json!({"value": victim_pan}))
        .await;
    assert_eq!(again.status(), StatusCode::OK);
    let released = scalar(
        &app,
        "select count(*) from audit_events where action = 'guard.release'",
    )
    .await;
    assert_eq!(released, 1);
    let (ok, _, err) = run(strongroom()
        .args(["guard", "release", "--bucket", &bucket, "--reason", "again"])
        .env("DATABASE_URL", &app.db.url));
    assert!(!ok && err.contains("not locked"), "{err}");
}

#[tokio::test]
async fn two_instances_racing_on_one_bucket_store_no_more_than_the_budget() {
    let a = spawn_pg_app().await;
    let b = a.another_instance().await;
    let calls: Vec<_> = (0..40)
        .map(|n| {
            let (client, url, key) = (
                a.client.clone(),
                if n % 2 == 0 {
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
                    .json(&json!({"value": pan_in_bucket("400000", "0002", n)}))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for call in calls {
        statuses.push(call.await.unwrap());
    }
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(created + refused, 40, "{statuses:?}");
    assert!(created <= 20 && refused >= 20, "{created} created");
    let stored = scalar(
        &a,
        "select count(*) from tokens where masked_pan = '400000******0002'",
    )
    .await;
    assert_eq!(stored, i64::try_from(created).unwrap());
    let locks = scalar(
        &a,
        "select count(*) from tokenize_buckets where locked_until is not null",
    )
    .await;
    assert_eq!(locks, 1);
    b.stop().await;
}

#[tokio::test]
async fn ordinary_traffic_is_never_refused() {
    // The rate limit is off: this is about the guard alone.
    let app = spawn_app_with(Options {
        configure: Box::new(|c| c.api.rate_limit_per_second = 0),
        ..Options::default()
    })
    .await;
    // Thousands of cards across buckets, in batches.
    for _ in 0..3 {
        let items: Vec<Value> = (0..1000)
            .map(|_| json!({"value": random_pan("4", 16)}))
            .collect();
        let r = app
            .tokenize_batch(&app.keys.tokenizer, &json!({"items": items}))
            .await;
        let body: Value = r.json().await.unwrap();
        assert!(
            body["results"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["token"].is_string())
        );
    }
    // The same card again and again.
    let pan = random_pan("5", 16);
    for _ in 0..60 {
        let r = app
            .tokenize(&app.keys.tokenizer, &json!({"value": pan}))
            .await;
        assert!(r.status().is_success(), "{}", r.status());
    }
    // A bucket filled to its budget exactly still answers.
    for n in 0..20 {
        let r = app
            .tokenize(
                &app.keys.tokenizer,
                &json!({"value": pan_in_bucket("555555", "4444", n)}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let r = app
        .tokenize(
            &app.keys.tokenizer,
            &json!({"value": pan_in_bucket("555555", "4444", 0)}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_import_window_lets_one_principal_migrate_a_popular_bucket_and_no_one_else() {
    let app = spawn_pg_app().await;
    let (importer, importer_id) = app
        .create_principal("acme", "migration", vec![Role::Tokenizer])
        .await;
    let (ok, out, err) = run(strongroom()
        .args([
            "guard",
            "import-open",
            "--principal",
            &importer_id.to_string(),
            "--bucket-budget",
            "100",
            "--hours",
            "2",
        ])
        .env("DATABASE_URL", &app.db.url));
    assert!(ok, "{err}");
    assert!(out.contains("opened import window"), "{out}");
    let items: Vec<Value> = (0..80)
        .map(|n| json!({"value": pan_in_bucket("411111", "1111", n)}))
        .collect();
    let r = app
        .tokenize_batch(&importer, &json!({"items": items}))
        .await;
    let body: Value = r.json().await.unwrap();
    let results = body["results"].as_array().unwrap();
    assert!(results.iter().all(|r| r["created"] == true), "{body}");
    // The ordinary tokenizer still has 20 new cards in that bucket, not 100 and not 0.
    let mut created = 0;
    for n in 1000..1025 {
        let r = app
            .tokenize(
                &app.keys.tokenizer,
                &json!({"value": pan_in_bucket("411111", "1111", n)}),
            )
            .await;
        if r.status() == StatusCode::CREATED {
            created += 1;
        }
    }
    assert_eq!(created, 20);
    let opened = scalar(
        &app,
        "select count(*) from audit_events where action = 'guard.import_open'",
    )
    .await;
    assert_eq!(opened, 1);
    // An auditor-only or unknown principal cannot be given a window.
    let (ok, _, err) = run(strongroom()
        .args([
            "guard",
            "import-open",
            "--principal",
            &uuid::Uuid::new_v4().to_string(),
        ])
        .env("DATABASE_URL", &app.db.url));
    assert!(!ok && err.contains("tokenizer"), "{err}");
}

#[tokio::test]
async fn a_batch_spends_one_unit_of_the_rate_per_item() {
    let app = spawn_app_with(Options {
        engine: Engine::Postgres,
        configure: Box::new(|c| {
            c.api.rate_limit_per_second = 1;
            c.api.rate_limit_burst = 50;
        }),
        ..Options::default()
    })
    .await;
    let items: Vec<Value> = (0..50)
        .map(|_| json!({"value": random_pan("4", 16)}))
        .collect();
    let r = app
        .tokenize_batch(&app.keys.tokenizer, &json!({"items": items}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // The batch emptied the bucket: the next call waits, batch or single.
    let r = app
        .tokenize(&app.keys.tokenizer, &json!({"value": random_pan("4", 16)}))
        .await;
    assert!(r.headers().contains_key("retry-after"));
    assert_problem(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Nothing of a rate-limited batch is stored.
    let before = scalar(&app, "select count(*) from tokens").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let items: Vec<Value> = (0..5)
        .map(|_| json!({"value": random_pan("4", 16)}))
        .collect();
    let r = app
        .tokenize_batch(&app.keys.tokenizer, &json!({"items": items}))
        .await;
    assert_problem(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    assert_eq!(scalar(&app, "select count(*) from tokens").await, before);
}

#[tokio::test]
async fn a_principal_guessing_tokens_is_throttled_on_every_instance_and_audited_once() {
    let app = spawn_pg_app().await;
    let real = app.token_for(&random_pan("4", 16)).await;
    for _ in 0..51 {
        let guess = unknown_token();
        let r = app.get_token(&app.keys.tokenizer, &guess).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
    // Throttled now: lookups, deletes, even of a real token, here and on another instance.
    let r = app.get_token(&app.keys.tokenizer, &real).await;
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 500 && retry <= 600, "{retry}");
    assert_problem(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    let r = app.delete_token(&app.keys.tokenizer, &real).await;
    assert_problem(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    let b = app.another_instance().await;
    let r = b.get_token(&app.keys.tokenizer, &real).await;
    assert_problem(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // The token was not deleted; other principals are not throttled.
    assert_eq!(
        scalar(&app, "select count(*) from tokens where deleted_at is null").await,
        1
    );
    // One audit record for the episode, and a metric.
    let r = app
        .audit(&app.keys.auditor, "?action=token.lookup_suspicious")
        .await;
    let events: Value = r.json().await.unwrap();
    assert_eq!(events["events"].as_array().unwrap().len(), 1, "{events}");
    let metrics = metrics_text(&app).await;
    assert!(
        metrics.contains("strongroom_lookup_suspicious_total 1"),
        "{metrics}"
    );
    b.stop().await;
}

#[tokio::test]
async fn failed_authentication_floods_are_throttled_per_source_and_aggregated_in_the_trail() {
    let clock = manual_clock();
    let app = spawn_app_with(Options {
        engine: Engine::Postgres,
        clock: clock.clone(),
        ..Options::default()
    })
    .await;
    let mut statuses = Vec::new();
    for i in 0..30 {
        let r = app
            .tokenize(
                &format!("sr_live_not_a_key_{i}"),
                &json!({"value": random_pan("4", 16)}),
            )
            .await;
        statuses.push(r.status());
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(r.headers().contains_key("retry-after"));
            assert_problem(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
        }
    }
    assert!(
        statuses[..20]
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    assert!(
        statuses[20..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    // A valid key from the same source still works.
    let r = app
        .tokenize(&app.keys.tokenizer, &json!({"value": random_pan("4", 16)}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let failures = "select count(*) from audit_events where action = 'auth.failure'";
    assert_eq!(
        scalar(&app, failures).await,
        1,
        "one record while the window is open"
    );
    // The window ends: the next failure is recorded, and the 29 others in one record.
    clock.advance(chrono::TimeDelta::seconds(61));
    let r = app
        .tokenize(
            "sr_live_still_wrong",
            &json!({"value": random_pan("4", 16)}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(scalar(&app, failures).await, 3);
    let mut conn = PgConnection::connect(&app.db.url).await.unwrap();
    let details: Vec<String> = sqlx::query_scalar(
        "select detail from audit_events where action = 'auth.failure' order by id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(details[1].starts_with("30 failures"), "{details:?}");
}

#[tokio::test]
async fn a_failure_with_a_disabled_key_is_recorded_under_its_principal_for_the_tenant_auditor() {
    let app = spawn_pg_app().await;
    let (key, id) = app
        .create_principal("acme", "retired", vec![Role::Tokenizer])
        .await;
    let mut conn = PgConnection::connect(&app.db.url).await.unwrap();
    sqlx::query("update principals set disabled_at = now() where id = $1")
        .bind(id)
        .execute(&mut conn)
        .await
        .unwrap();
    let r = app
        .tokenize(&key, &json!({"value": random_pan("4", 16)}))
        .await;
    assert_problem(r, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    let r = app.audit(&app.keys.auditor, "?action=auth.failure").await;
    let events: Value = r.json().await.unwrap();
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["actor"], id.to_string());
    assert_eq!(events[0]["detail"], "disabled");
    // Another tenant's auditor does not see it (none is seeded; the globex tokenizer cannot
    // read the trail at all).
    let r = app
        .audit(&app.keys.other_tenant_tokenizer, "?action=auth.failure")
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn detokenize_calls_for_tokens_that_do_not_exist_count_as_misses_too() {
    let app = spawn_pg_app().await;
    let real = app.token_for(&random_pan("4", 16)).await;
    let grant = app.checkout_grant(100).await;
    let grant = grant["grant"].as_str().unwrap().to_owned();
    for _ in 0..51 {
        let guess = unknown_token();
        let r = app
            .detokenize(&app.keys.detokenizer, Some(&grant), &[&guess])
            .await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
    // Throttled before the grant is even looked at: no use is spent, nothing is revealed.
    let uses = "select uses::bigint from grants";
    let before = scalar(&app, uses).await;
    let r = app
        .detokenize(&app.keys.detokenizer, Some(&grant), &[&real])
        .await;
    let body = assert_problem(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    assert!(!body.to_string().contains("value"));
    assert_eq!(scalar(&app, uses).await, before);
}
