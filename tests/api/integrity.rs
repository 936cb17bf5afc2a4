//! Integrity failures are named: a sealed card number that does not open under the key its
//! row names answers `500 integrity_error`, never the value and never a word about the master
//! key, is recorded with that code, and is counted for alerting.

use reqwest::StatusCode;
use serde_json::Value;

use crate::audit::events;
use crate::helpers::*;

#[tokio::test]
async fn a_swapped_corrupted_or_rekeyed_ciphertext_answers_integrity_error_and_is_recorded() {
    // Two encryptions a key: the five cards are sealed under three key versions.
    let app = spawn_app_with(Options {
        engine: Engine::Postgres,
        configure: Box::new(|c| {
            c.keys.encryption_limit = 2;
            c.keys.reservation_block = 1;
        }),
        ..Options::default()
    })
    .await;
    let pans: Vec<String> = (0..5).map(|_| random_pan("4", 16)).collect();
    let mut tokens = Vec::new();
    for pan in &pans {
        tokens.push(app.token_for(pan).await);
    }
    let grant = app.checkout_grant(100).await["grant"]
        .as_str()
        .unwrap()
        .to_owned();
    let pool = app.db.pool().await;
    // Swapped between two rows (ATK-53), one byte flipped, a key version changed.
    sqlx::query(
        "update tokens t set sealed_pan = o.sealed_pan from tokens o \
         where (t.token, o.token) in (($1, $2), ($2, $1))",
    )
    .bind(&tokens[0])
    .bind(&tokens[1])
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("update tokens set sealed_pan = set_byte(sealed_pan, 20, get_byte(sealed_pan, 20) # 1) where token = $1")
        .bind(&tokens[2])
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "update tokens set dek_version = (select min(version) from data_keys \
         where version <> tokens.dek_version) where token = $1",
    )
    .bind(&tokens[3])
    .execute(&pool)
    .await
    .unwrap();
    for token in &tokens[..4] {
        let r = app
            .detokenize(&app.keys.detokenizer, Some(&grant), &[token])
            .await;
        let body = assert_problem(r, StatusCode::INTERNAL_SERVER_ERROR, "integrity_error").await;
        let text = body.to_string();
        assert!(pans.iter().all(|p| !text.contains(p.as_str())), "{text}");
        assert!(!text.to_lowercase().contains("master key"), "{text}");
    }
    // An untouched row still opens, alone or next to nothing broken.
    let r = app
        .detokenize(&app.keys.detokenizer, Some(&grant), &[&tokens[4]])
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["data"][0]["value"], pans[4].as_str());
    // Recorded with the code, and counted for alerting.
    let failures: Vec<Value> = events(&app, "?action=detokenize&outcome=error").await;
    assert_eq!(failures.len(), 4);
    assert!(failures.iter().all(|e| e["code"] == "integrity_error"));
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
        metrics.contains("strongroom_integrity_failures_total 4"),
        "{metrics}"
    );
    // Nothing of it in the logs either.
    let logs = captured_logs();
    assert!(pans.iter().all(|p| !logs.contains(p.as_str())));
    let (ok, out) = crate::audit::verify(&app, None);
    assert!(ok, "audit verify after integrity failures: {out}");
}
