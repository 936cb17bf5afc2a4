//! `/v1/tokens`: formats, determinism, validation, batch, lookup, delete, expiry, isolation.

use std::sync::Arc;

use chrono::Duration;
use futures_free::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use strongroom::random::{Csprng, RandomError};

use crate::helpers::*;

/// `futures::future::join_all` without the dependency: spawn and await in order.
mod futures_free {
    pub async fn join_all<T: Send + 'static>(
        futures: Vec<impl std::future::Future<Output = T> + Send + 'static>,
    ) -> Vec<T> {
        let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
    }
}

#[tokio::test]
async fn tokenizing_a_pan_returns_a_six_four_token_that_fails_luhn() {
    let app = spawn_app().await;
    let response = app
        .tokenize(
            &app.keys.tokenizer,
            &json!({"value": "4111 1111-1111 1111"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();
    let token = body["token"].as_str().unwrap();
    assert_eq!(token.len(), 16);
    assert!(token.starts_with("411111") && token.ends_with("1111"));
    assert_ne!(token, "4111111111111111");
    assert!(!luhn_valid(token));
    assert_eq!(body["format"], "six_four");
    assert_eq!(body["masked"], "411111******1111");
    assert_eq!(body["created"], true);
    assert!(body["metadata"].is_null());
    assert!(body["expires_at"].is_null());
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn retokenizing_with_other_metadata_keeps_the_stored_one_and_says_so() {
    let app = spawn_app().await;
    let pan = random_pan("4", 16);
    let tokenize = |metadata: Option<Value>| {
        let mut body = json!({"value": pan});
        if let Some(metadata) = metadata {
            body["metadata"] = metadata;
        }
        let app = &app;
        async move {
            let r = app.tokenize(&app.keys.tokenizer, &body).await;
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, first) = tokenize(Some(json!({"customer": "c_42", "channel": "web"}))).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(first["metadata_ignored"], false, "{first}");
    // The same metadata (in another key order), or none at all: nothing is ignored.
    for metadata in [Some(json!({"channel": "web", "customer": "c_42"})), None] {
        let (status, again) = tokenize(metadata).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(again["token"], first["token"]);
        assert_eq!(again["metadata_ignored"], false, "{again}");
        assert_eq!(again["metadata"], first["metadata"]);
    }
    // Other metadata: the token and its stored metadata, flagged.
    let (status, other) = tokenize(Some(json!({"customer": "c_99"}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(other["token"], first["token"]);
    assert_eq!(other["metadata_ignored"], true, "{other}");
    assert_eq!(
        other["metadata"],
        json!({"customer": "c_42", "channel": "web"})
    );
    // The stored metadata did not change.
    let looked_up: Value = app
        .get_token(&app.keys.tokenizer, first["token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        looked_up["metadata"],
        json!({"customer": "c_42", "channel": "web"})
    );
    assert!(looked_up.get("metadata_ignored").is_none(), "{looked_up}");
    // Per item in a batch; a token first made without metadata counts too.
    let bare = random_pan("5", 16);
    let (status, _) = {
        let r = app
            .tokenize(&app.keys.tokenizer, &json!({"value": bare}))
            .await;
        (r.status(), ())
    };
    assert_eq!(status, StatusCode::CREATED);
    let batch: Value = app
        .tokenize_batch(
            &app.keys.tokenizer,
            &json!({"items": [
                {"value": pan, "metadata": {"customer": "c_42", "channel": "web"}},
                {"value": pan, "metadata": {"customer": "c_7"}},
                {"value": bare, "metadata": {"customer": "c_8"}},
            ]}),
        )
        .await
        .json()
        .await
        .unwrap();
    let flags: Vec<&Value> = (0..3)
        .map(|i| &batch["results"][i]["metadata_ignored"])
        .collect();
    assert_eq!(
        flags,
        [&json!(false), &json!(true), &json!(true)],
        "{batch}"
    );
    assert_eq!(batch["results"][2]["metadata"], Value::Null, "{batch}");
}

#[tokio::test]
async fn every_format_has_its_documented_shape() {
    let app = spawn_app().await;
    let pan = random_pan("5", 16);
    for (format, check) in [
        (
            "last_four",
            Box::new(|t: &str, p: &str| t.len() == p.len() && t[12..] == p[12..] && !luhn_valid(t))
                as Box<dyn Fn(&str, &str) -> bool>,
        ),
        (
            "length_preserving",
            Box::new(|t: &str, p: &str| {
                t.len() == p.len() && t.bytes().all(|b| b.is_ascii_digit()) && !luhn_valid(t)
            }),
        ),
        (
            "opaque",
            Box::new(|t: &str, _: &str| t.starts_with("tok_") && t.len() == 30),
        ),
        (
            "six_four",
            Box::new(|t: &str, p: &str| t[..6] == p[..6] && t[12..] == p[12..] && !luhn_valid(t)),
        ),
    ] {
        let response = app
            .tokenize(
                &app.keys.tokenizer,
                &json!({"value": pan, "format": format}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED, "{format}");
        let body: Value = response.json().await.unwrap();
        let token = body["token"].as_str().unwrap();
        assert!(check(token, &pan), "{format}: {token}");
        assert_ne!(token, pan);
        assert_eq!(body["format"], format);
    }
}

#[tokio::test]
async fn the_same_pan_in_the_same_format_returns_the_same_token_with_200() {
    let app = spawn_app().await;
    let pan = random_pan("4", 16);
    let first: Value = app
        .tokenize(&app.keys.tokenizer, &json!({"value": pan}))
        .await
        .json()
        .await
        .unwrap();
    let again = app
        .tokenize(
            &app.keys.tokenizer,
            &json!({"value": pan, "metadata": {"x": 1}}),
        )
        .await;
    assert_eq!(again.status(), StatusCode::OK);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["token"], first["token"]);
    assert_eq!(again["created"], false);
    assert_eq!(again["created_at"], first["created_at"]);
    let other_format: Value = app
        .tokenize(
            &app.keys.tokenizer,
            &json!({"value": pan, "format": "opaque"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(other_format["token"], first["token"]);
    // Another tenant gets its own token for the same PAN.
    let other_tenant: Value = app
        .tokenize(&app.keys.other_tenant_tokenizer, &json!({"value": pan}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(other_tenant["created"], true);
}

#[tokio::test]
async fn thirty_two_parallel_identical_calls_create_exactly_one_token() {
    let app = Arc::new(spawn_pg_app().await);
    let pan = random_pan("4", 16);
    let calls = (0..32)
        .map(|_| {
            let app = Arc::clone(&app);
            let pan = pan.clone();
            async move {
                let r = app
                    .tokenize(&app.keys.tokenizer, &json!({"value": pan}))
                    .await;
                let status = r.status();
                (status, r.json::<Value>().await.unwrap())
            }
        })
        .collect();
    let results = join_all(calls).await;
    let tokens: std::collections::HashSet<_> = results
        .iter()
        .map(|(_, b)| b["token"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(tokens.len(), 1, "one token for all calls");
    let created: Vec<_> = results
        .iter()
        .filter(|(_, b)| b["created"] == true)
        .collect();
    assert_eq!(created.len(), 1, "exactly one call created it");
    assert_eq!(created[0].0, StatusCode::CREATED);
    assert_eq!(
        results.iter().filter(|(s, _)| *s == StatusCode::OK).count(),
        31
    );
}

#[tokio::test]
async fn two_instances_on_one_database_agree_on_the_token() {
    let a = Arc::new(spawn_pg_app().await);
    let b = Arc::new(a.another_instance().await);
    let pan = random_pan("37", 16);
    let calls = (0..16)
        .map(|i| {
            let app = if i % 2 == 0 {
                Arc::clone(&a)
            } else {
                Arc::clone(&b)
            };
            let pan = pan.clone();
            async move {
                app.tokenize(&app.keys.tokenizer, &json!({"value": pan}))
                    .await
                    .json::<Value>()
                    .await
                    .unwrap()
            }
        })
        .collect();
    let results = join_all(calls).await;
    let tokens: std::collections::HashSet<_> =
        results.iter().map(|b| b["token"].to_string()).collect();
    assert_eq!(tokens.len(), 1);
    assert_eq!(results.iter().filter(|b| b["created"] == true).count(), 1);
}

#[tokio::test]
async fn six_four_is_refused_for_pans_shorter_than_sixteen_digits() {
    let app = spawn_app().await;
    let pan = random_pan("3", 15);
    let body = assert_problem(
        app.tokenize(&app.keys.tokenizer, &json!({"value": pan}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "format_not_allowed",
    )
    .await;
    assert!(!body.to_string().contains(&pan));
    let ok = app
        .tokenize(
            &app.keys.tokenizer,
            &json!({"value": pan, "format": "last_four"}),
        )
        .await;
    assert_eq!(ok.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn values_that_are_not_card_numbers_are_refused_without_being_echoed() {
    let app = spawn_app().await;
    for value in [
        json!("4111111111111112"),
        json!("4111x11111111111"),
        json!("٤١١١١١١١١١١١١١١١"),
        json!("４１１１１１１１１１１１１１１１"),
        json!("4111.1111.1111.1111"),
        json!("4111\t1111 1111 1111"),
        json!("42424242424"),
        json!("41111111111111111111"),
        json!(""),
        json!(" - "),
    ] {
        let body = assert_problem(
            app.tokenize(&app.keys.tokenizer, &json!({"value": value}))
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_pan",
        )
        .await;
        let text = without_request_id(body).to_string();
        assert!(
            !text.contains("4111") && !text.contains("4242"),
            "echoed: {text}"
        );
    }
    // A number instead of a string is the wrong type, and still not echoed.
    let body = assert_problem(
        app.tokenize(&app.keys.tokenizer, &json!({"value": 4111111111111111u64}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    )
    .await;
    // The request id is a random UUID and may hold "4111" by chance; the rest may not.
    assert!(!without_request_id(body).to_string().contains("4111"));
}

#[tokio::test]
async fn sensitive_authentication_data_is_refused_at_top_level_and_in_metadata() {
    let app = spawn_pg_app().await;
    let pan = random_pan("4", 16);
    for field in [
        "cvv",
        "cvc",
        "cvv2",
        "pin",
        "pin_block",
        "track1",
        "track2",
        "CVV",
    ] {
        assert_problem(
            app.tokenize(&app.keys.tokenizer, &json!({"value": pan, field: "123"}))
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "sensitive_data_refused",
        )
        .await;
        assert_problem(
            app.tokenize(
                &app.keys.tokenizer,
                &json!({"value": pan, "metadata": {"nested": {field: "123"}}}),
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "sensitive_data_refused",
        )
        .await;
    }
    // Nothing was stored along the way.
    let count: i64 = sqlx::query_scalar("select count(*) from tokens")
        .fetch_one(&app.db.pool().await)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[tokio::test]
async fn a_card_number_in_metadata_is_refused() {
    let app = spawn_app().await;
    let other = random_pan("5", 16);
    let body = assert_problem(
        app.tokenize(&app.keys.tokenizer, &json!({"value": random_pan("4", 16), "metadata": {"note": format!("old card {other}")}}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "sensitive_data_refused",
    )
    .await;
    assert!(!body.to_string().contains(&other));
}

#[tokio::test]
async fn unknown_and_duplicate_fields_are_refused() {
    let app = spawn_app().await;
    let pan = random_pan("4", 16);
    let body = assert_problem(
        app.tokenize(&app.keys.tokenizer, &json!({"value": pan, "colour": "red"}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_field",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("colour"));
    let raw = format!(r#"{{"value":"{pan}","value":"{pan}"}}"#);
    let body = assert_problem(
        app.post_raw("/v1/tokens", &app.keys.tokenizer, "application/json", raw)
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "duplicate_field",
    )
    .await;
    assert!(!body.to_string().contains(&pan));
    let raw = format!(r#"{{"value":"{pan}","metadata":{{"a":1,"a":2}}}}"#);
    assert_problem(
        app.post_raw("/v1/tokens", &app.keys.tokenizer, "application/json", raw)
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "duplicate_field",
    )
    .await;
    assert_problem(
        app.tokenize(
            &app.keys.tokenizer,
            &json!({"value": pan, "format": "rot13"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    )
    .await;
    assert_problem(
        app.tokenize(&app.keys.tokenizer, &json!({"format": "opaque"}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    )
    .await;
}

#[tokio::test]
async fn metadata_and_expiry_are_kept_and_shown_by_lookup() {
    let app = spawn_app().await;
    let pan = random_pan("4", 16);
    let created: Value = app
        .tokenize(
            &app.keys.tokenizer,
            &json!({"value": pan, "metadata": {"customer": "c_42", "tags": ["vip"]}, "expires_at": "2099-01-01T00:00:00Z"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let response = app
        .get_token(&app.keys.tokenizer, created["token"].as_str().unwrap())
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let looked_up: Value = response.json().await.unwrap();
    assert_eq!(
        looked_up["metadata"],
        json!({"customer": "c_42", "tags": ["vip"]})
    );
    assert_eq!(looked_up["expires_at"], "2099-01-01T00:00:00Z");
    assert_eq!(
        looked_up["masked"],
        format!("{}******{}", &pan[..6], &pan[12..])
    );
    assert_eq!(looked_up["created_at"], created["created_at"]);
    assert!(looked_up.get("created").is_none());
}

#[tokio::test]
async fn expired_tokens_answer_410_and_their_card_data_is_purged() {
    let clock = manual_clock();
    let app = spawn_app_with(Options {
        engine: Engine::Postgres,
        clock: clock.clone(),
        ..Options::default()
    })
    .await;
    let pan = random_pan("4", 16);
    assert_problem(
        app.tokenize(
            &app.keys.tokenizer,
            &json!({"value": pan, "expires_at": "2029-12-31T23:59:59Z"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    )
    .await;
    let token: Value = app
        .tokenize(
            &app.keys.tokenizer,
            &json!({"value": pan, "expires_at": "2030-01-01T00:01:00Z"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let token = token["token"].as_str().unwrap().to_owned();
    assert_eq!(
        app.get_token(&app.keys.tokenizer, &token).await.status(),
        StatusCode::OK
    );
    clock.advance(Duration::minutes(2));
    assert_problem(
        app.get_token(&app.keys.tokenizer, &token).await,
        StatusCode::GONE,
        "token_expired",
    )
    .await;
    // Tokenizing the PAN again issues a fresh token: the expired one no longer counts.
    let fresh = app
        .tokenize(&app.keys.tokenizer, &json!({"value": pan}))
        .await;
    assert_eq!(fresh.status(), StatusCode::CREATED);
    let fresh: Value = fresh.json().await.unwrap();
    assert_ne!(fresh["token"], token.as_str());
    let pool = app.db.pool().await;
    let (sealed, fingerprint): (Option<Vec<u8>>, Option<Vec<u8>>) =
        sqlx::query_as("select sealed_pan, fingerprint from tokens where token = $1")
            .bind(&token)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(
        sealed.is_none() && fingerprint.is_none(),
        "the expired token's card data is destroyed"
    );
    assert_problem(
        app.get_token(&app.keys.tokenizer, &token).await,
        StatusCode::GONE,
        "token_expired",
    )
    .await;
    // The destruction is recorded, in the transaction that issued the fresh token.
    let (purged, issued): (i64, i64) = sqlx::query_as(
        "select count(*) filter (where action = 'token.purge' and $1 = any(tokens)), \
                count(*) filter (where action = 'token.tokenize' and $2 = any(tokens) \
                                 and detail = 'created') from audit_events",
    )
    .bind(&token)
    .bind(fresh["token"].as_str().unwrap())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((purged, issued), (1, 1));
    let (ok, out) = crate::audit::verify(&app, None);
    assert!(ok, "audit verify after expired tokens replaced: {out}");
}

#[tokio::test]
async fn deleting_destroys_the_card_data_and_the_token_is_never_reissued() {
    let app = spawn_pg_app().await;
    let pan = random_pan("4", 16);
    let token = app.token_for(&pan).await;
    let response = app.delete_token(&app.keys.tokenizer, &token).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_problem(
        app.get_token(&app.keys.tokenizer, &token).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_problem(
        app.delete_token(&app.keys.tokenizer, &token).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let pool = app.db.pool().await;
    let row: (Option<Vec<u8>>, Option<String>, Option<Vec<u8>>) =
        sqlx::query_as("select sealed_pan, masked_pan, fingerprint from tokens where token = $1")
            .bind(&token)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(row, (None, None, None));
    let again = app
        .tokenize(&app.keys.tokenizer, &json!({"value": pan}))
        .await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_ne!(
        again.json::<Value>().await.unwrap()["token"],
        token.as_str()
    );
}

#[tokio::test]
async fn another_tenants_token_is_a_byte_identical_404() {
    let app = spawn_app().await;
    let token = app.token_for(&random_pan("4", 16)).await;
    // A token-shaped value nobody issued.
    let unknown = format!("{}{}", &token[..15], (token.as_bytes()[15] - b'0' + 5) % 10);
    let unknown = if luhn_valid(&unknown) {
        format!("{}{}", &token[..14], "00")
    } else {
        unknown
    };
    for method in ["GET", "DELETE"] {
        let mut bodies = Vec::new();
        for target in [&token, &unknown] {
            let request = app
                .client
                .request(
                    method.parse().unwrap(),
                    app.url(&format!("/v1/tokens/{target}")),
                )
                .bearer_auth(&app.keys.other_tenant_tokenizer)
                .header("x-request-id", "same-id")
                .send()
                .await
                .unwrap();
            assert_eq!(request.status(), StatusCode::NOT_FOUND);
            bodies.push(request.bytes().await.unwrap());
        }
        assert_eq!(
            bodies[0], bodies[1],
            "{method}: another tenant's token must look unknown"
        );
    }
    // And it is still there for its owner.
    assert_eq!(
        app.get_token(&app.keys.tokenizer, &token).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_card_number_in_the_path_is_answered_as_unknown_and_not_echoed() {
    let app = spawn_app().await;
    let pan = random_pan("4", 16);
    let body = assert_problem(
        app.get_token(&app.keys.tokenizer, &pan).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert!(!body.to_string().contains(&pan));
}

#[tokio::test]
async fn a_batch_answers_per_item_in_input_order() {
    let app = spawn_app().await;
    let a = random_pan("4", 16);
    let b = random_pan("5", 16);
    let response = app
        .tokenize_batch(
            &app.keys.tokenizer,
            &json!({"items": [
                {"value": a},
                {"value": "not a card"},
                {"value": b, "format": "opaque", "metadata": {"i": 2}},
                {"value": a},
                {"value": b, "cvv": "123"},
                {"value": random_pan("3", 15)},
                {"value": b, "colour": 1},
                [b],
            ]}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 8);
    assert_eq!(results[0]["created"], true);
    assert_eq!(results[1]["error"]["code"], "invalid_pan");
    assert_eq!(results[1]["error"]["status"], 422);
    assert!(results[2]["token"].as_str().unwrap().starts_with("tok_"));
    assert_eq!(results[2]["metadata"], json!({"i": 2}));
    assert_eq!(
        results[3]["token"], results[0]["token"],
        "the same PAN twice in a batch is one token"
    );
    assert_eq!(results[3]["created"], false);
    assert_eq!(results[4]["error"]["code"], "sensitive_data_refused");
    assert_eq!(results[5]["error"]["code"], "format_not_allowed");
    assert_eq!(results[6]["error"]["code"], "unknown_field");
    assert_eq!(
        results[7]["error"]["code"], "invalid_field",
        "an item must be an object"
    );
    let text = body.to_string();
    assert!(!text.contains(&a) && !text.contains(&b));
}

#[tokio::test]
async fn a_batch_must_hold_one_to_a_thousand_items() {
    let app = spawn_app().await;
    assert_problem(
        app.tokenize_batch(&app.keys.tokenizer, &json!({"items": []}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    )
    .await;
    let items: Vec<Value> = (0..1001)
        .map(|_| json!({"value": "4111111111111111"}))
        .collect();
    assert_problem(
        app.tokenize_batch(&app.keys.tokenizer, &json!({"items": items}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    )
    .await;
    let items: Vec<Value> = (0..1000)
        .map(|_| json!({"value": random_pan("4", 16)}))
        .collect();
    let response = app
        .tokenize_batch(&app.keys.tokenizer, &json!({"items": items}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["token"].is_string())
    );
}

/// Always the same bytes: every token drawn for a PAN length is the same.
struct StuckRandom;

impl Csprng for StuckRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError> {
        buf.fill(7);
        Ok(())
    }
}

#[tokio::test]
async fn an_exhausted_token_space_fails_with_a_clear_error_not_a_loop() {
    let app = spawn_app_with(Options {
        rng: Arc::new(StuckRandom),
        ..Options::default()
    })
    .await;
    let first = app
        .tokenize(
            &app.keys.tokenizer,
            &json!({"value": random_pan("4", 16), "format": "length_preserving"}),
        )
        .await;
    assert_eq!(first.status(), StatusCode::CREATED);
    assert_problem(
        app.tokenize(
            &app.keys.tokenizer,
            &json!({"value": random_pan("5", 16), "format": "length_preserving"}),
        )
        .await,
        StatusCode::CONFLICT,
        "token_space_exhausted",
    )
    .await;
}

#[tokio::test]
async fn a_batch_item_drawn_again_stores_the_others_once_with_one_record() {
    // Every draw is the same: a length_preserving token of 16 digits is taken after the first,
    // while the first opaque one is still free.
    let app = spawn_app_with(Options {
        rng: Arc::new(StuckRandom),
        engine: Engine::Postgres,
        ..Options::default()
    })
    .await;
    let first = app
        .tokenize(
            &app.keys.tokenizer,
            &json!({"value": random_pan("4", 16), "format": "length_preserving"}),
        )
        .await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let response = app
        .tokenize_batch(
            &app.keys.tokenizer,
            &json!({"items": [
                {"value": random_pan("5", 16), "format": "length_preserving"},
                {"value": random_pan("4", 16), "format": "opaque"},
            ]}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let results = body["results"].as_array().unwrap();
    assert_eq!(results[0]["error"]["code"], "token_space_exhausted");
    let opaque = results[1]["token"].as_str().unwrap();
    // The opaque row was stored and withdrawn in every round its neighbour was drawn again,
    // and committed once, in the round that settled the call, with the call's one record.
    let pool = app.db.pool().await;
    let (rows, records, named, detail): (i64, i64, i64, Option<String>) = sqlx::query_as(
        "select (select count(*) from tokens), \
                (select count(*) from audit_events where action = 'token.tokenize_batch'), \
                (select count(*) from audit_events where $1 = any(tokens)), \
                (select detail from audit_events where action = 'token.tokenize_batch')",
    )
    .bind(opaque)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((rows, records, named), (2, 1, 1));
    assert_eq!(detail.as_deref(), Some("items=2 refused=1"));
}
