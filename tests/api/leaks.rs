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
    let app = spawn_app().await;
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

    let pool = app.db.pool().await;
    let tables: Vec<String> =
        sqlx::query_scalar("select tablename::text from pg_tables where schemaname = 'public'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(tables.contains(&"tokens".to_owned()));
    for table in tables {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "select row_to_json(t)::text as r from {table} t"
        )))
        .fetch_all(&pool)
        .await
        .unwrap();
        for row in rows {
            let text: String = row.get("r");
            for pan in &all_pans {
                assert!(!text.contains(pan.as_str()), "table {table} holds a PAN");
                assert!(
                    !text.contains(&hex(pan)),
                    "table {table} holds a PAN's bytes"
                );
            }
        }
    }
}
