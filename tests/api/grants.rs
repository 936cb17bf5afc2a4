//! Detokenize under a grant, the grant's lifecycle, and forged grants, through the real API.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Duration;
use reqwest::StatusCode;
use ring::signature::Ed25519KeyPair;
use serde_json::{Value, json};
use strongroom::clock::Clock;
use strongroom::crypto::grant::{AUDIENCE, GRANT_TYP, ISSUER};
use strongroom::crypto::keys::MasterKey;

use crate::helpers::*;

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// The JWT's header and claims, decoded without checking anything.
fn parts(jwt: &str) -> (Value, Value, String) {
    let mut it = jwt.split('.');
    let decode = |p: &str| serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap();
    let header = decode(it.next().unwrap());
    let claims = decode(it.next().unwrap());
    (header, claims, it.next().unwrap().to_owned())
}

/// The vault's real signing key, as an attacker holding the database and the master key
/// would have it.
async fn real_signing_key(app: &TestApp) -> (String, Ed25519KeyPair) {
    let pool = app.db.pool().await;
    let (kid, wrapped): (String, Vec<u8>) = sqlx::query_as("select kid, wrapped from signing_keys")
        .fetch_one(&pool)
        .await
        .unwrap();
    let pkcs8 = MasterKey::from_base64(&app.master_key)
        .unwrap()
        .unwrap_bytes(&format!("grant-signing:{kid}"), &wrapped)
        .unwrap();
    (kid, Ed25519KeyPair::from_pkcs8(&pkcs8).unwrap())
}

fn sign(key: &Ed25519KeyPair, header: &Value, claims: &Value) -> String {
    let input = format!("{}.{}", b64(header), b64(claims));
    format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(key.sign(input.as_bytes()))
    )
}

#[tokio::test]
async fn every_grant_refusal_has_its_code() {
    let clock = manual_clock();
    let app = spawn_app_with(Options {
        clock: clock.clone(),
        ..Options::default()
    })
    .await;
    let pan = random_pan("4", 16);
    let token = app.token_for(&pan).await;
    let detok = app.keys.detokenizer.clone();

    let r = app.detokenize(&detok, None, &[&token]).await;
    assert_problem(r, StatusCode::FORBIDDEN, "grant_missing").await;
    let r = app.detokenize(&detok, Some("not.a.jwt"), &[&token]).await;
    assert_problem(r, StatusCode::FORBIDDEN, "grant_invalid").await;
    let r = app
        .detokenize(&app.keys.tokenizer, Some("x"), &[&token])
        .await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;

    // A support agent's grant names two tokens; others are out of scope.
    let other = app.token_for(&random_pan("4", 16)).await;
    let request = app
        .create_request(
            &app.keys.requester.key,
            &json!({"tokens": [token], "purpose": "dispute", "reason": "case 1",
                    "duration_seconds": 600, "max_uses": 2, "totp": app.code(&app.keys.requester)}),
        )
        .await;
    let id = request.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.approve(&app.keys.approver, &id).await;
    let alice_grant = app
        .get_request(&app.keys.requester.key, &id)
        .await
        .json::<Value>()
        .await
        .unwrap()["grant"]
        .as_str()
        .unwrap()
        .to_owned();
    let alice = app.keys.requester.key.clone();
    let r = app.detokenize(&alice, Some(&alice_grant), &[&other]).await;
    assert_problem(r, StatusCode::FORBIDDEN, "grant_scope").await;
    let r = app
        .detokenize(&alice, Some(&alice_grant), &[&token, &other])
        .await;
    assert_problem(r, StatusCode::FORBIDDEN, "grant_scope").await;
    // In someone else's hands a grant is worthless.
    let r = app.detokenize(&detok, Some(&alice_grant), &[&token]).await;
    assert_problem(r, StatusCode::FORBIDDEN, "grant_invalid").await;
    // Two uses, then none.
    for _ in 0..2 {
        let r = app.detokenize(&alice, Some(&alice_grant), &[&token]).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = app.detokenize(&alice, Some(&alice_grant), &[&token]).await;
    assert_problem(r, StatusCode::FORBIDDEN, "grant_exhausted").await;

    // Tokens: another tenant's or deleted → 404, expired → 410.
    let grant = app.checkout_grant(100).await["grant"]
        .as_str()
        .unwrap()
        .to_owned();
    let theirs = app
        .tokenize(
            &app.keys.other_tenant_tokenizer,
            &json!({"value": random_pan("4", 16)}),
        )
        .await
        .json::<Value>()
        .await
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app.detokenize(&detok, Some(&grant), &[&theirs]).await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    let gone = app.token_for(&random_pan("4", 16)).await;
    app.delete_token(&app.keys.tokenizer, &gone).await;
    let r = app.detokenize(&detok, Some(&grant), &[&token, &gone]).await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    let expiring = app
        .tokenize(
            &app.keys.tokenizer,
            &json!({"value": random_pan("4", 16), "expires_at": (clock.now() + Duration::seconds(10)).to_rfc3339()}),
        )
        .await
        .json::<Value>()
        .await
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    clock.advance(Duration::seconds(11));
    let r = app.detokenize(&detok, Some(&grant), &[&expiring]).await;
    assert_problem(r, StatusCode::GONE, "token_expired").await;
    let r = app.detokenize(&detok, Some(&grant), &[&token]).await;
    assert_eq!(r.status(), StatusCode::OK);

    // The grant ends at approval time + duration (60 s).
    clock.advance(Duration::seconds(50));
    let r = app.detokenize(&detok, Some(&grant), &[&token]).await;
    assert_problem(r, StatusCode::FORBIDDEN, "grant_expired").await;

    // Bodies are checked: 1-100 tokens, each shaped like a token.
    let r = app.detokenize(&detok, Some(&grant), &[]).await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    let r = app.detokenize(&detok, Some(&grant), &[&pan]).await;
    let body = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert!(!body.to_string().contains(&pan));
}

#[tokio::test]
async fn a_single_use_grant_used_24_times_at_once_succeeds_exactly_once() {
    let app = spawn_pg_app().await;
    let token = app.token_for(&random_pan("4", 16)).await;
    let grant = app.checkout_grant(1).await["grant"]
        .as_str()
        .unwrap()
        .to_owned();
    let statuses = detokenize_at_once(&app, &grant, &token, 24).await;
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!(ok, 1, "{statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::FORBIDDEN)
    );
    let grants: Value = app
        .list_grants(&app.keys.detokenizer, "")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(grants["grants"][0]["uses"], 1);
}

/// `n` detokenize calls of `token` under `grant` at once, by the acme detokenizer.
async fn detokenize_at_once(app: &TestApp, grant: &str, token: &str, n: usize) -> Vec<StatusCode> {
    let calls = (0..n).map(|_| {
        let request = app
            .client
            .post(app.url("/v1/detokenize"))
            .bearer_auth(&app.keys.detokenizer)
            .header("x-access-grant", grant)
            .json(&json!({ "tokens": [token] }));
        async move { request.send().await.unwrap() }
    });
    join_all(calls).await
}

/// Runs the calls concurrently and returns their statuses in order.
pub async fn join_all<F>(calls: impl Iterator<Item = F>) -> Vec<StatusCode>
where
    F: std::future::Future<Output = reqwest::Response> + Send + 'static,
{
    let handles: Vec<_> = calls.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap().status());
    }
    out
}

#[tokio::test]
async fn grants_are_listed_without_their_jwt_and_revoked_at_once_everywhere() {
    let app = spawn_pg_app().await;
    let token = app.token_for(&random_pan("4", 16)).await;
    let first = app.checkout_grant(10).await;
    let second = app.checkout_grant(10).await;
    let (jwt1, jti1) = (
        first["grant"].as_str().unwrap().to_owned(),
        first["grant_jti"].as_str().unwrap().to_owned(),
    );
    let jwt2 = second["grant"].as_str().unwrap().to_owned();

    let mine = app.list_grants(&app.keys.detokenizer, "?active=true").await;
    assert_eq!(mine.status(), StatusCode::OK);
    let text = mine.text().await.unwrap();
    assert!(
        !text.contains(&jwt1) && !text.contains("eyJ"),
        "no JWT in lists"
    );
    let mine: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(mine["grants"].as_array().unwrap().len(), 2);
    // Approvers see the tenant's; other grantees see only their own.
    let all: Value = app
        .list_grants(&app.keys.approver.key, "?active=true")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all["grants"].as_array().unwrap().len(), 2);
    let none: Value = app
        .list_grants(&app.keys.requester.key, "")
        .await
        .json()
        .await
        .unwrap();
    assert!(none["grants"].as_array().unwrap().is_empty());

    // Someone who neither holds nor oversees it cannot revoke it, nor learn it exists.
    let r = app.revoke(&app.keys.requester.key, &jti1).await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    let r = app.revoke(&app.keys.tokenizer, &jti1).await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;

    // The grantee releases it; another instance refuses it at once.
    let other = app.another_instance().await;
    assert_eq!(
        app.revoke(&app.keys.detokenizer, &jti1).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.revoke(&app.keys.detokenizer, &jti1).await.status(),
        StatusCode::NO_CONTENT
    );
    let r = other
        .detokenize(&app.keys.detokenizer, Some(&jwt1), &[&token])
        .await;
    assert_problem(r, StatusCode::FORBIDDEN, "grant_revoked").await;
    let active: Value = app
        .list_grants(&app.keys.detokenizer, "?active=true")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(active["grants"].as_array().unwrap().len(), 1);
    let everything: Value = app
        .list_grants(&app.keys.detokenizer, "?active=false")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        everything["grants"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["jti"] == jti1.as_str() && g["revoked_at"].is_string())
    );

    // revoke-all: admins only, for one principal or the whole tenant.
    let r = app.revoke_all(&app.keys.approver.key, None).await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r = app
        .revoke_all(
            &app.keys.admin,
            Some(&json!({"principal": app.keys.requester.id})),
        )
        .await;
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"revoked": 0}));
    let r = app
        .revoke_all(
            &app.keys.admin,
            Some(&json!({"principal": app.keys.detokenizer_id})),
        )
        .await;
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"revoked": 1}));
    let r = other
        .detokenize(&app.keys.detokenizer, Some(&jwt2), &[&token])
        .await;
    assert_problem(r, StatusCode::FORBIDDEN, "grant_revoked").await;
    app.checkout_grant(1).await;
    let r = app.revoke_all(&app.keys.admin, None).await;
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"revoked": 1}));
    let r = app
        .list_grants(&app.keys.detokenizer, "?active=maybe")
        .await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
}

#[tokio::test]
async fn the_jwks_publishes_the_signing_key_and_nothing_private() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let jwks: Value = r.json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let jwk = keys[0].as_object().unwrap();
    assert_eq!(jwk["kty"], "OKP");
    assert_eq!(jwk["crv"], "Ed25519");
    assert_eq!(jwk["alg"], "EdDSA");
    assert!(!jwk.contains_key("d"));
    let grant = app.checkout_grant(1).await;
    let (header, claims, _) = parts(grant["grant"].as_str().unwrap());
    assert_eq!(header["kid"], jwk["kid"]);
    assert_eq!(header["typ"], GRANT_TYP);
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], AUDIENCE);
    assert_eq!(claims["sub"], app.keys.detokenizer_id.to_string());
    assert_eq!(claims["jti"], grant["grant_jti"]);
    assert_eq!(claims["request_id"], grant["id"]);
    assert_eq!(claims["purpose"], "payment_authorization");
    assert_eq!(claims["any_token"], true);
    assert_eq!(claims["max_uses"], 1);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["nbf"].as_i64().unwrap(),
        60
    );
    assert_eq!(claims["iat"], claims["nbf"]);
    assert!(claims["tenant"].is_string());
}

#[tokio::test]
async fn forged_grants_are_refused() {
    let app = spawn_app().await;
    let token = app.token_for(&random_pan("4", 16)).await;
    let detok = app.keys.detokenizer.clone();
    let grant = app.checkout_grant(100).await["grant"]
        .as_str()
        .unwrap()
        .to_owned();
    let (header, claims, signature) = parts(&grant);
    let jwks: Value = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let x = jwks["keys"][0]["x"].as_str().unwrap().to_owned();

    let mut forgeries: Vec<(String, String)> = Vec::new();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let mut h = header.clone();
        h["alg"] = json!(alg);
        forgeries.push((
            format!("alg {alg}"),
            format!("{}.{}.", b64(&h), b64(&claims)),
        ));
        forgeries.push((
            format!("alg {alg} with the signature"),
            format!("{}.{}.{signature}", b64(&h), b64(&claims)),
        ));
    }
    // HS256 keyed with the published public key, raw and as its text.
    for (name, secret) in [
        ("raw", URL_SAFE_NO_PAD.decode(&x).unwrap()),
        ("text", x.clone().into_bytes()),
    ] {
        let mut h = header.clone();
        h["alg"] = json!("HS256");
        let input = format!("{}.{}", b64(&h), b64(&claims));
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
        let tag = ring::hmac::sign(&key, input.as_bytes());
        forgeries.push((
            format!("HS256 keyed with the public key ({name})"),
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref())),
        ));
    }
    // Our kid, another key.
    let rng = ring::rand::SystemRandom::new();
    let other =
        Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref()).unwrap();
    forgeries.push((
        "our kid, another key".into(),
        sign(&other, &header, &claims),
    ));
    // Changed claims under the original signature.
    for (field, value) in [
        ("max_uses", json!(1_000_000)),
        ("exp", json!(claims["exp"].as_i64().unwrap() + 86_400)),
        ("any_token", json!(false)),
    ] {
        let mut c = claims.clone();
        c[field] = value;
        forgeries.push((
            format!("changed {field}"),
            format!("{}.{}.{signature}", b64(&header), b64(&c)),
        ));
    }
    // A truncated signature.
    forgeries.push(("truncated".into(), grant[..grant.len() - 6].to_owned()));
    forgeries.push((
        "no signature".into(),
        format!("{}.{}.", b64(&header), b64(&claims)),
    ));

    for (name, forged) in &forgeries {
        let r = app.detokenize(&detok, Some(forged), &[&token]).await;
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("grant_invalid")),
            "{name}"
        );
    }
    // None of that used the grant up; the real one still works.
    let r = app.detokenize(&detok, Some(&grant), &[&token]).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn grants_signed_with_the_real_key_but_wrong_in_any_other_way_are_refused() {
    let app = spawn_pg_app().await;
    let token = app.token_for(&random_pan("4", 16)).await;
    let detok = app.keys.detokenizer.clone();
    let grant = app.checkout_grant(100).await["grant"]
        .as_str()
        .unwrap()
        .to_owned();
    let (header, claims, _) = parts(&grant);
    let (kid, key) = real_signing_key(&app).await;
    assert_eq!(header["kid"], kid.as_str());
    // The harness is right: re-signing the genuine header and claims gives a working grant
    // (checked last, after the forgeries, so that it cannot have been used up).
    let resigned = sign(&key, &header, &claims);
    assert_ne!(resigned, grant, "re-encoded, so not byte-identical");

    let with_header = |name: &str, value: Value| {
        let mut h = header.clone();
        h[name] = value;
        sign(&key, &h, &claims)
    };
    let with_claim = |name: &str, value: Value| {
        let mut c = claims.clone();
        c[name] = value;
        sign(&key, &header, &c)
    };
    let other_tenant = uuid::Uuid::new_v4().to_string();
    let cases = [
        ("iss", with_claim("iss", json!("urn:attacker"))),
        ("aud", with_claim("aud", json!("urn:strongroom:other"))),
        ("typ JWT", with_header("typ", json!("JWT"))),
        ("no typ", {
            let mut h = header.clone();
            h.as_object_mut().unwrap().remove("typ");
            sign(&key, &h, &claims)
        }),
        (
            "jku",
            with_header("jku", json!("https://attacker.example/jwks.json")),
        ),
        (
            "x5u",
            with_header("x5u", json!("https://attacker.example/cert.pem")),
        ),
        (
            "jwk",
            with_header("jwk", json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"})),
        ),
        ("unknown kid", with_header("kid", json!("grant-attacker"))),
        ("other tenant", with_claim("tenant", json!(other_tenant))),
        (
            "other subject",
            with_claim("sub", json!(app.keys.requester.id)),
        ),
        (
            "unknown jti",
            with_claim("jti", json!(uuid::Uuid::new_v4())),
        ),
    ];
    for (name, forged) in cases {
        let r = app.detokenize(&detok, Some(&forged), &[&token]).await;
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "grant_invalid", "{name}: {body}");
    }
    let r = app.detokenize(&detok, Some(&resigned), &[&token]).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn concurrent_uses_taken_together_get_distinct_numbers_up_to_the_limit() {
    for engine in [
        crate::helpers::Engine::Postgres,
        crate::helpers::Engine::Sqlite,
    ] {
        let app = spawn_app_with(Options {
            engine,
            ..Options::default()
        })
        .await;
        let token = app.token_for(&random_pan("4", 16)).await;
        let grant = app.checkout_grant(10).await["grant"]
            .as_str()
            .unwrap()
            .to_owned();
        let statuses = detokenize_at_once(&app, &grant, &token, 16).await;
        let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
        assert_eq!(ok, 10, "{engine:?}: {statuses:?}");
        // Each success recorded with its own use number, 1 to 10; the rest as exhausted.
        let events = crate::audit::events(&app, "?action=detokenize&limit=100").await;
        let mut numbers: Vec<u32> = events
            .iter()
            .filter(|e| e["outcome"] == "success")
            .map(|e| {
                e["detail"].as_str().unwrap()["use ".len()..]
                    .parse()
                    .unwrap()
            })
            .collect();
        numbers.sort_unstable();
        assert_eq!(numbers, (1..=10).collect::<Vec<u32>>(), "{engine:?}");
        assert_eq!(
            events
                .iter()
                .filter(|e| e["code"] == "grant_exhausted")
                .count(),
            6
        );
        let grants: Value = app
            .list_grants(&app.keys.detokenizer, "")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(grants["grants"][0]["uses"], 10);
    }
}
