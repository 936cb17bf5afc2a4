//! The card-data detector through the real API: card numbers however written, in metadata,
//! reasons, comments and request ids, and keys naming sensitive authentication data, are
//! refused with `sensitive_data_refused`, never echoed and never stored.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::leaks::every_row;

/// `pan` in 4-digit groups joined by `separator`.
fn grouped(pan: &str, separator: &str) -> String {
    pan.as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(separator)
}

/// Asserts that no response body, log line or database row holds `pan`, plain or dotted.
async fn stored_nowhere(app: &TestApp, pan: &str) {
    let dotted = grouped(pan, ".");
    let logs = captured_logs();
    assert!(
        !logs.contains(pan) && !logs.contains(&dotted),
        "the logs hold the PAN"
    );
    for (table, text) in every_row(app).await {
        assert!(
            !text.contains(pan) && !text.contains(&dotted),
            "table {table} holds the PAN"
        );
    }
}

/// Asserts a `sensitive_data_refused` whose detail names `field` and repeats none of `pan`.
async fn refused_naming(response: reqwest::Response, field: &str, pan: &str) {
    let problem = assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "sensitive_data_refused",
    )
    .await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains(field), "{problem}");
    for group in pan.as_bytes().chunks(4) {
        let group = std::str::from_utf8(group).unwrap();
        assert!(!detail.contains(group), "{problem}");
    }
    let text = problem.to_string();
    assert!(
        !text.contains(pan) && !text.contains(&grouped(pan, ".")),
        "{problem}"
    );
}

async fn token_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("select count(*) from tokens")
        .fetch_one(&app.db.pool().await)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_card_number_in_metadata_written_any_way_is_refused_and_nothing_is_stored() {
    let app = spawn_pg_app().await;
    let value = random_pan("4", 16);
    let pan = random_pan("5", 16);
    let forms: Vec<(&str, Value)> = vec![
        ("dotted", json!({"note": grouped(&pan, ".")})),
        ("underscored", json!({"note": grouped(&pan, "_")})),
        ("slashed", json!({"note": grouped(&pan, "/")})),
        ("with an expiry", json!({"note": format!("{pan} 1225")})),
        ("with a suffix", json!({"note": format!("{pan}-01")})),
        ("after a digit", json!({"note": format!("1 {pan}")})),
        ("glued to an expiry", json!({"note": format!("{pan}1225")})),
        (
            "in text",
            json!({"note": format!("card no. {} exp 12/25", grouped(&pan, "."))}),
        ),
        (
            "nested deep",
            json!({"a": {"b": [{"d": grouped(&pan, " - ")}]}}),
        ),
        (
            "nested deeper than allowed",
            json!({"a": {"b": {"c": [{"d": grouped(&pan, "_")}]}}}),
        ),
        ("as a key", json!({ grouped(&pan, "."): true })),
    ];
    for (form, metadata) in forms {
        let r = app
            .tokenize(
                &app.keys.tokenizer,
                &json!({"value": value, "metadata": metadata}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{form}");
        refused_naming(r, "metadata", &pan).await;
        let r = app
            .tokenize_batch(
                &app.keys.tokenizer,
                &json!({"items": [{"value": value, "metadata": metadata}]}),
            )
            .await;
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body["results"][0]["error"]["code"], "sensitive_data_refused",
            "{form}"
        );
        assert!(!body.to_string().contains(&pan), "{form}");
    }
    assert_eq!(token_count(&app).await, 0, "nothing was stored");
    stored_nowhere(&app, &pan).await;
    stored_nowhere(&app, &value).await;
}

#[tokio::test]
async fn keys_naming_sensitive_authentication_data_are_refused_in_metadata_and_at_top_level() {
    let app = spawn_pg_app().await;
    let pan = random_pan("4", 16);
    for key in ["cvcNumber", "trackData2", "pinCode", "card_cvv", "CID"] {
        for body in [
            json!({"value": pan, key: "123"}),
            json!({"value": pan, "metadata": {key: "123"}}),
            json!({"value": pan, "metadata": {"order": {"lines": [{key: "123"}]}}}),
        ] {
            assert_problem(
                app.tokenize(&app.keys.tokenizer, &body).await,
                StatusCode::UNPROCESSABLE_ENTITY,
                "sensitive_data_refused",
            )
            .await;
            let r = app
                .tokenize_batch(&app.keys.tokenizer, &json!({"items": [body]}))
                .await;
            let results: Value = r.json().await.unwrap();
            assert_eq!(
                results["results"][0]["error"]["code"],
                "sensitive_data_refused"
            );
        }
        assert_problem(
            app.tokenize_batch(&app.keys.tokenizer, &json!({"items": [], key: "1"}))
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "sensitive_data_refused",
        )
        .await;
    }
    assert_eq!(token_count(&app).await, 0, "nothing was stored");
}

#[tokio::test]
async fn ordinary_keys_and_values_that_only_look_numeric_are_kept() {
    let app = spawn_app().await;
    let metadata = json!({
        "tracking_number": "1Z 999 AA1 01 2345 6784",
        "shipping": {"phone": "+44 20 7946 0958", "at": "2026-12-01 08:34:25"},
        "order_id": "ORD-2026-000123",
        "amount": "EUR 12,345,678.90",
        "sent_ms": 1764578065123u64,
    });
    let r = app
        .tokenize(
            &app.keys.tokenizer,
            &json!({"value": random_pan("4", 16), "metadata": metadata}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["metadata"], metadata);
}

/// A pending support request for one token; returns its id.
async fn pending_request(app: &TestApp) -> String {
    let token = app.token_for(&random_pan("4", 16)).await;
    let r = app
        .create_request(
            &app.keys.requester.key,
            &json!({"tokens": [token], "purpose": "dispute", "reason": "chargeback CB-77",
                    "duration_seconds": 900, "totp": app.code(&app.keys.requester)}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "pending");
    body["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_dotted_card_number_in_a_reason_or_comment_is_refused_naming_the_field_and_stored_nowhere()
 {
    let app = spawn_pg_app().await;
    let pan = random_pan("4", 16);
    let text = format!("customer read out {} exp 12/25", grouped(&pan, "."));
    let token = app.token_for(&random_pan("4", 16)).await;
    let r = app
        .create_request(
            &app.keys.requester.key,
            &json!({"tokens": [token], "purpose": "dispute", "reason": text,
                    "duration_seconds": 900, "totp": app.code(&app.keys.requester)}),
        )
        .await;
    refused_naming(r, "reason", &pan).await;
    // Blank reasons are still a plain invalid field.
    let r = app
        .create_request(
            &app.keys.requester.key,
            &json!({"tokens": [token], "purpose": "dispute", "reason": " ",
                    "duration_seconds": 900}),
        )
        .await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;

    let id = pending_request(&app).await;
    let approver = &app.keys.approver;
    let body = json!({"comment": text, "totp": app.code(approver)});
    let r = app.decide(&approver.key, &id, "approve", Some(&body)).await;
    refused_naming(r, "comment", &pan).await;
    let r = app
        .decide(&approver.key, &id, "deny", Some(&json!({"comment": text})))
        .await;
    refused_naming(r, "comment", &pan).await;
    let r = app
        .decide(
            &approver.key,
            &id,
            "deny",
            Some(&json!({"comment": "x".repeat(1001)})),
        )
        .await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;

    // The refusals changed nothing: the request is still pending and can be decided.
    let r = app
        .decide(
            &approver.key,
            &id,
            "deny",
            Some(&json!({"comment": "not covered, see 2026-12-01 08:34:25"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    stored_nowhere(&app, &pan).await;
}

/// Looks up an unknown token (a 404 problem, which repeats the request id) sending `id`.
async fn lookup_with_id(app: &TestApp, id: &str) -> reqwest::Response {
    app.client
        .get(app.url("/v1/tokens/nope"))
        .bearer_auth(&app.keys.tokenizer)
        .header("x-request-id", id)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_request_id_holding_a_card_number_or_too_long_is_replaced_and_a_128_character_one_kept() {
    let app = spawn_pg_app().await;
    let pan = random_pan("4", 16);
    for id in [
        grouped(&pan, "."),
        format!("req:{}:1225", grouped(&pan, "_")),
        format!("{pan}-01"),
        "a".repeat(129),
    ] {
        let r = lookup_with_id(&app, &id).await;
        let echoed = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_ne!(echoed, id);
        assert!(uuid::Uuid::parse_str(&echoed).is_ok(), "a fresh UUID");
        let body = r.text().await.unwrap();
        assert!(!body.contains(&id) && !body.contains(&pan), "{body}");
    }
    let kept = format!("trace-{}", "a1".repeat(61));
    assert_eq!(kept.len(), 128);
    let r = lookup_with_id(&app, &kept).await;
    assert_eq!(r.headers()["x-request-id"], kept.as_str());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["request_id"], kept.as_str());
    stored_nowhere(&app, &pan).await;
}
