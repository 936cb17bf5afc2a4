//! `strongroom keys rotate --signing-key` against a served instance: the new kid is published
//! before it signs, grants signed by the old key keep working, new grants carry the new kid,
//! and `keys status` shows each key's state.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::Value;

use crate::cli::{run, strongroom};
use crate::helpers::*;

/// The `kid` in a grant's JWT header.
fn kid_of(grant: &Value) -> String {
    let jwt = grant["grant"].as_str().unwrap();
    let header = URL_SAFE_NO_PAD
        .decode(jwt.split('.').next().unwrap())
        .unwrap();
    let header: Value = serde_json::from_slice(&header).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

/// The kids the instance publishes, sorted.
async fn jwks_kids(app: &TestApp) -> Vec<String> {
    let jwks: Value = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut kids: Vec<String> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    kids.sort();
    kids
}

/// Waits (up to five seconds) until the instance publishes exactly `kids`.
async fn until_published(app: &TestApp, kids: &[&str]) {
    let mut want: Vec<String> = kids.iter().map(|k| (*k).to_owned()).collect();
    want.sort();
    let mut seen = Vec::new();
    for _ in 0..50 {
        seen = jwks_kids(app).await;
        if seen == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the instance publishes {seen:?}, not {want:?}");
}

fn keys_command(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let (ok, out, err) = run(strongroom()
        .arg("keys")
        .args(args)
        .env("DATABASE_URL", &app.db.url)
        .env("STRONGROOM_MASTER_KEY", &app.master_key));
    assert!(
        !out.contains(app.master_key.trim()) && !err.contains(app.master_key.trim()),
        "the master key was printed"
    );
    (ok, out, err)
}

/// Each signing key of `keys status --json` as (kid, state, published).
fn signing_states(app: &TestApp) -> Vec<(String, String, bool)> {
    let (ok, out, err) = keys_command(app, &["status", "--json"]);
    assert!(ok, "{err}");
    let status: Value = serde_json::from_str(&out).unwrap();
    status["signing_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["kid"].as_str().unwrap().to_owned(),
                k["state"].as_str().unwrap().to_owned(),
                k["published"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// The kid a rotation's output names as the new key.
fn rotated_kid(out: &str) -> String {
    out.strip_prefix("signing key ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("{out}"))
        .to_owned()
}

#[tokio::test]
async fn a_signing_key_rotation_reaches_a_running_instance_and_old_grants_keep_working() {
    let app = spawn_app_with(Options {
        engine: Engine::Postgres,
        configure: Box::new(|c| c.purge_interval = Duration::from_millis(200)),
        ..Options::default()
    })
    .await;
    let pan = random_pan("4", 16);
    let token = app.token_for(&pan).await;
    let old_grant = app.checkout_grant(10).await;
    let old = kid_of(&old_grant);
    assert_eq!(
        signing_states(&app),
        vec![(old.clone(), "active".to_owned(), true)]
    );
    let detokenizes = |grant: Value| {
        let (app, token, pan) = (&app, token.clone(), pan.clone());
        async move {
            let r = app
                .detokenize(
                    &app.keys.detokenizer,
                    Some(grant["grant"].as_str().unwrap()),
                    &[&token],
                )
                .await;
            assert_eq!(r.status(), StatusCode::OK);
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["data"][0]["value"], pan.as_str());
        }
    };
    // The lead needs --signing-key.
    let (ok, _, err) = keys_command(&app, &["rotate", "--activate-after-seconds", "0"]);
    assert!(!ok && err.contains("--signing-key"), "{err}");

    let (ok, out, err) = keys_command(
        &app,
        &["rotate", "--signing-key", "--activate-after-seconds", "0"],
    );
    assert!(ok, "{err}");
    let new = rotated_kid(&out);
    assert!(
        out.contains(&format!(
            "; {old} retires then and stays published while grants signed by it are unexpired"
        )),
        "{out}"
    );
    // The running instance picks it up at its next housekeeping pass, without a restart, and
    // keeps publishing the old key while the grant it signed is unexpired.
    until_published(&app, &[&old, &new]).await;
    detokenizes(old_grant.clone()).await;
    let new_grant = app.checkout_grant(10).await;
    assert_eq!(kid_of(&new_grant), new);
    detokenizes(new_grant).await;
    // Fetching the old grant again signs it again with the key it was minted with.
    let id = old_grant["id"].as_str().unwrap();
    let again: Value = app
        .get_request(&app.keys.detokenizer, id)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["grant"], old_grant["grant"]);
    assert_eq!(
        signing_states(&app),
        vec![
            (old.clone(), "retired".to_owned(), true),
            (new.clone(), "active".to_owned(), true)
        ]
    );

    // With a lead, the next key is published at once and signs only from then on; a third
    // rotation meanwhile is refused.
    let (ok, out, err) = keys_command(&app, &["rotate", "--signing-key"]);
    assert!(ok, "{err}");
    let next = rotated_kid(&out);
    until_published(&app, &[&old, &new, &next]).await;
    assert_eq!(kid_of(&app.checkout_grant(1).await), new);
    assert_eq!(
        signing_states(&app),
        vec![
            (old.clone(), "retired".to_owned(), true),
            (new.clone(), "active".to_owned(), true),
            (next.clone(), "pending".to_owned(), true)
        ]
    );
    let (ok, _, err) = keys_command(&app, &["rotate", "--signing-key"]);
    assert!(!ok && err.contains("is pending already"), "{err}");
    let (ok, out, _) = keys_command(&app, &["status"]);
    assert!(ok);
    assert!(
        out.contains(&format!("signing key {next}: pending, published, created ")),
        "{out}"
    );

    // Each rotation is recorded with the operator and the kids; the chain verifies.
    let pool = app.db.pool().await;
    let records: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
        "select outcome, subject, detail from audit_events where action = 'key.rotate' \
         order by at, id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(records.len(), 3, "{records:?}");
    assert_eq!(
        records[0].1.as_deref(),
        Some(&*format!("signing_key:{new}"))
    );
    let detail = records[0].2.as_deref().unwrap();
    assert!(
        detail.starts_with(&format!("retired={old} activates_at="))
            && detail.ends_with(" by=operator"),
        "{detail}"
    );
    assert_eq!(records[1].0, "success");
    assert_eq!(records[2].0, "denied");
    let (ok, out) = crate::audit::verify(&app, None);
    assert!(ok, "{out}");
}
