//! After a run of every route, no PAN appears in any response body, any log line or any
//! database column.

use serde_json::{Value, json};
use sqlx::Row;

use crate::helpers::*;

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn no_pan_appears_in_responses_logs_or_the_database() {
    let app = spawn_pg_app().await;
    let pans: Vec<String> = (0..6)
        .map(|i| random_pan(["4", "5", "37", "6011", "35", "2"][i], 16))
        .collect();
    let mut bodies = Vec::new();
    let mut push = async |r: reqwest::Response| bodies.push(r.text().await.unwrap());

    for pan in &pans {
        push(
            app.tokenize(
                &app.keys.tokenizer,
                &json!({"value": pan, "metadata": {"order": "o-1"}}),
            )
            .await,
        )
        .await;
        push(
            app.tokenize(
                &app.keys.tokenizer,
                &json!({"value": pan, "format": "opaque"}),
            )
            .await,
        )
        .await;
        push(
            app.tokenize(&app.keys.other_tenant_tokenizer, &json!({"value": pan}))
                .await,
        )
        .await;
    }
    let batch: Vec<Value> = pans
        .iter()
        .map(|p| json!({"value": p, "format": "last_four"}))
        .collect();
    push(
        app.tokenize_batch(&app.keys.tokenizer, &json!({"items": batch}))
            .await,
    )
    .await;
    // Refusals of every kind, each carrying a PAN somewhere.
    push(
        app.tokenize(
            &app.keys.tokenizer,
            &json!({"value": pans[0], "cvv": "123"}),
        )
        .await,
    )
    .await;
    push(
        app.tokenize(
            &app.keys.tokenizer,
            &json!({"value": pans[0], "metadata": {"n": pans[1]}}),
        )
        .await,
    )
    .await;
    push(
        app.tokenize(
            &app.keys.tokenizer,
            &json!({"value": pans[0], pans[1].as_str(): 1}),
        )
        .await,
    )
    .await;
    push(
        app.tokenize(
            &app.keys.tokenizer,
            &json!({"value": pans[0], "format": pans[1]}),
        )
        .await,
    )
    .await;
    push(
        app.tokenize(&app.keys.auditor, &json!({"value": pans[0]}))
            .await,
    )
    .await;
    push(
        app.tokenize(&format!("{}x", pans[0]), &json!({"value": pans[0]}))
            .await,
    )
    .await;
    push(
        app.post_raw(
            "/v1/tokens",
            &app.keys.tokenizer,
            "application/json",
            format!("{{\"value\":\"{}\"", pans[0]),
        )
        .await,
    )
    .await;
    push(
        app.post_raw(
            "/v1/tokens",
            &app.keys.tokenizer,
            "text/plain",
            pans[0].clone(),
        )
        .await,
    )
    .await;
    push(app.get_token(&app.keys.tokenizer, &pans[2]).await).await;
    push(app.delete_token(&app.keys.tokenizer, &pans[2]).await).await;
    let short = random_pan("4", 15);
    push(
        app.tokenize(&app.keys.tokenizer, &json!({"value": short}))
            .await,
    )
    .await;
    let first: Value = app
        .tokenize(&app.keys.tokenizer, &json!({"value": pans[3]}))
        .await
        .json()
        .await
        .unwrap();
    let token = first["token"].as_str().unwrap();
    push(app.get_token(&app.keys.tokenizer, token).await).await;
    push(app.delete_token(&app.keys.tokenizer, token).await).await;

    let mut all_pans = pans.clone();
    all_pans.push(short);
    for body in &bodies {
        for pan in &all_pans {
            assert!(
                !body.contains(pan.as_str()),
                "a response body holds a PAN: {body}"
            );
        }
    }

    let logs = captured_logs();
    assert!(!logs.is_empty());
    for pan in &all_pans {
        assert!(!logs.contains(pan.as_str()), "the logs hold a PAN");
    }

    let rows = every_row(&app).await;
    assert!(rows.iter().any(|(table, _)| table == "tokens"));
    for (table, text) in rows {
        for pan in &all_pans {
            assert!(!text.contains(pan.as_str()), "table {table} holds a PAN");
            assert!(
                !text.contains(&hex(pan)),
                "table {table} holds a PAN's bytes"
            );
        }
    }
}

#[tokio::test]
async fn after_detokenizing_no_pan_grant_code_or_secret_appears_in_logs_or_the_database() {
    let app = spawn_pg_app().await;
    let pan = random_pan("4", 16);
    let token = app.token_for(&pan).await;
    let alice = app.keys.requester.clone();
    let alice_code = app.code(&alice);
    let request: Value = app
        .create_request(
            &alice.key,
            &json!({"tokens": [token], "purpose": "dispute", "reason": "case 12",
                    "duration_seconds": 600, "totp": alice_code}),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = request["id"].as_str().unwrap();
    let bob_code = app.code(&app.keys.approver);
    let approved = app
        .decide(
            &app.keys.approver.key,
            id,
            "approve",
            Some(&json!({"totp": bob_code})),
        )
        .await
        .text()
        .await
        .unwrap();
    let mine: Value = app.get_request(&alice.key, id).await.json().await.unwrap();
    let alice_grant = mine["grant"].as_str().unwrap().to_owned();
    assert!(
        !approved.contains(&alice_grant),
        "the approver never sees the grant"
    );
    let revealed = app
        .detokenize(&alice.key, Some(&alice_grant), &[&token])
        .await
        .text()
        .await
        .unwrap();
    assert!(revealed.contains(&pan), "the grantee does get the PAN");
    let checkout = app.checkout_grant(2).await["grant"]
        .as_str()
        .unwrap()
        .to_owned();
    app.detokenize(&app.keys.detokenizer, Some(&checkout), &[&token])
        .await;
    // Refusals that carry a grant.
    app.detokenize(&app.keys.detokenizer, Some(&alice_grant), &[&token])
        .await;
    app.detokenize(&alice.key, Some(&format!("{alice_grant}x")), &[&token])
        .await;

    let secrets: Vec<String> = vec![
        pan.clone(),
        alice_grant.clone(),
        checkout.clone(),
        format!("\"{alice_code}\""),
        format!("\"{bob_code}\""),
        alice.totp.to_base32().to_string(),
        app.keys.approver.totp.to_base32().to_string(),
        alice.key.clone(),
        app.keys.detokenizer.clone(),
    ];
    let logs = captured_logs();
    for secret in &secrets {
        assert!(!logs.contains(secret.as_str()), "the logs hold a secret");
    }
    let raw_totp = hex_bytes(alice.totp.expose_bytes());
    for (table, text) in every_row(&app).await {
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "table {table} holds a secret"
            );
        }
        assert!(
            !text.contains(&hex(&pan)),
            "table {table} holds a PAN's bytes"
        );
        assert!(
            !text.contains(&raw_totp),
            "table {table} holds a TOTP secret"
        );
    }
}

/// Every row of every table, as (table, the row as JSON text).
pub async fn every_row(app: &TestApp) -> Vec<(String, String)> {
    let pool = app.db.pool().await;
    let tables: Vec<String> =
        sqlx::query_scalar("select tablename::text from pg_tables where schemaname = 'public'")
            .fetch_all(&pool)
            .await
            .unwrap();
    let mut out = Vec::new();
    for table in tables {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "select row_to_json(t)::text as r from {table} t"
        )))
        .fetch_all(&pool)
        .await
        .unwrap();
        out.extend(
            rows.into_iter()
                .map(|row| (table.clone(), row.get::<String, _>("r"))),
        );
    }
    out
}

fn hex_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
