//! The store and key service against a real PostgreSQL: constraints, determinism, DEK counts
//! and rotation, ciphertexts bound to their row, a wrong master key.

use std::sync::Arc;

use strongroom::clock::{Clock, SystemClock};
use strongroom::crypto::keys::MasterKey;
use strongroom::crypto::{Csprng, SystemRandom};
use strongroom::domain::{Metadata, Pan, TenantId};
use strongroom::metrics::Metrics;
use strongroom::service::{
    AuditTrail, KeyError, KeyService, KeySettings, TokenService, TokenizeItem,
};
use strongroom::store::{PgStore, Store};

use crate::helpers::*;

struct Fixture {
    db: TestDb,
    store: Arc<dyn Store>,
    pg: PgStore,
    master: String,
    tenant: TenantId,
}

async fn fixture() -> Fixture {
    let db = TestDb::create(true).await;
    let pg = PgStore::connect(&db.url, 4).await.unwrap();
    let tenant = uuid::Uuid::new_v4();
    sqlx::query("insert into tenants (id, name, created_at) values ($1, 'acme', now())")
        .bind(tenant)
        .execute(pg.pool())
        .await
        .unwrap();
    Fixture {
        store: Arc::new(pg.clone()),
        pg,
        db,
        master: new_master_key(),
        tenant: TenantId(tenant),
    }
}

async fn keys(f: &Fixture, settings: KeySettings) -> Result<KeyService, KeyError> {
    let rng: Arc<dyn Csprng> = Arc::new(SystemRandom::new());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let audit = AuditTrail::spawn(Arc::clone(&f.store), None, clock.clone(), Metrics::new());
    KeyService::load(
        Arc::clone(&f.store),
        MasterKey::from_base64(&f.master).unwrap(),
        rng,
        clock,
        settings,
        audit,
    )
    .await
}

fn tokens(f: &Fixture, keys: &Arc<KeyService>) -> TokenService {
    TokenService::new(
        Arc::clone(&f.store),
        Arc::clone(keys),
        Arc::new(SystemRandom::new()),
        Arc::new(SystemClock),
    )
}

fn item(pan: &str) -> TokenizeItem {
    TokenizeItem {
        pan: Pan::parse(pan).unwrap(),
        format: Default::default(),
        metadata: None,
        expires_at: None,
    }
}

#[tokio::test]
async fn instances_starting_together_create_one_of_each_key_and_agree_on_them() {
    let f = fixture().await;
    let (a, b, c) = tokio::join!(
        keys(&f, KeySettings::default()),
        keys(&f, KeySettings::default()),
        keys(&f, KeySettings::default())
    );
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    assert_eq!(
        (a.active_version(), b.active_version(), c.active_version()),
        (Some(1), Some(1), Some(1))
    );
    let (keys, secrets, signing): (i64, i64, i64) = sqlx::query_as(
        "select (select count(*) from data_keys), (select count(*) from vault_secrets), \
                (select count(*) from signing_keys)",
    )
    .fetch_one(f.pg.pool())
    .await
    .unwrap();
    // One DEK; the fingerprint root and the TOTP key; one grant-signing key.
    assert_eq!((keys, secrets, signing), (1, 2, 1));
    // They sign grants with the same key.
    let kids: Vec<String> = [&a, &b, &c]
        .iter()
        .map(|k| k.signing_key().unwrap().kid().to_owned())
        .collect();
    assert!(kids.iter().all(|k| k == &kids[0]));
    // They share the fingerprint root, so they agree on fingerprints.
    let pan = Pan::parse("4111111111111111").unwrap();
    assert!(
        a.fingerprint_key(f.tenant).fingerprint(&pan)
            == c.fingerprint_key(f.tenant).fingerprint(&pan)
    );
    drop(f.db);
}

#[tokio::test]
async fn a_different_master_key_is_refused_at_load() {
    let mut f = fixture().await;
    keys(&f, KeySettings::default()).await.unwrap();
    f.master = new_master_key();
    assert!(matches!(
        keys(&f, KeySettings::default()).await,
        Err(KeyError::MasterKeyMismatch)
    ));
}

#[tokio::test]
async fn encryptions_are_counted_in_the_database_and_the_key_rotates_at_its_limit() {
    let f = fixture().await;
    let settings = KeySettings {
        encryption_limit: 4,
        reservation_block: 2,
    };
    let keys = Arc::new(keys(&f, settings).await.unwrap());
    let service = tokens(&f, &keys);
    for _ in 0..5 {
        let results = service
            .tokenize(f.tenant, &[item(&random_pan("4", 16))])
            .await
            .unwrap();
        assert!(results[0].is_ok());
    }
    assert_eq!(
        keys.active_version(),
        Some(2),
        "the first key retired at 4 encryptions"
    );
    let rows: Vec<(i32, i64, bool)> = sqlx::query_as(
        "select version, encryptions, retired_at is not null from data_keys order by version",
    )
    .fetch_all(f.pg.pool())
    .await
    .unwrap();
    assert_eq!(rows[0], (1, 4, true));
    assert_eq!(rows[1].0, 2);
    assert!(rows[1].1 >= 1 && !rows[1].2);
    let per_version: Vec<(i32, i64)> = sqlx::query_as(
        "select dek_version, count(*) from tokens group by dek_version order by dek_version",
    )
    .fetch_all(f.pg.pool())
    .await
    .unwrap();
    assert_eq!(per_version, vec![(1, 4), (2, 1)]);
    // Both versions still decrypt their rows.
    for (token,) in sqlx::query_as::<_, (String,)>("select token from tokens")
        .fetch_all(f.pg.pool())
        .await
        .unwrap()
    {
        let token = strongroom::domain::Token::parse(&token).unwrap();
        let record = f.store.get_token(f.tenant, &token).await.unwrap().unwrap();
        keys.open_pan(f.tenant, &token, record.sealed.as_ref().unwrap())
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_ciphertext_moved_to_another_row_fails_to_decrypt() {
    let f = fixture().await;
    let keys = Arc::new(keys(&f, KeySettings::default()).await.unwrap());
    let service = tokens(&f, &keys);
    let (pan_a, pan_b) = (random_pan("4", 16), random_pan("5", 16));
    let results = service
        .tokenize(f.tenant, &[item(&pan_a), item(&pan_b)])
        .await
        .unwrap();
    let a = results[0].as_ref().unwrap().token.clone();
    let b = results[1].as_ref().unwrap().token.clone();
    let record_a = f.store.get_token(f.tenant, &a).await.unwrap().unwrap();
    let opened = keys
        .open_pan(f.tenant, &a, record_a.sealed.as_ref().unwrap())
        .await
        .unwrap();
    assert_eq!(opened.expose_digits(), pan_a.as_bytes());
    sqlx::query("update tokens set sealed_pan = (select sealed_pan from tokens where token = $1) where token = $2")
        .bind(a.as_str())
        .bind(b.as_str())
        .execute(f.pg.pool())
        .await
        .unwrap();
    let moved = f.store.get_token(f.tenant, &b).await.unwrap().unwrap();
    assert!(
        keys.open_pan(f.tenant, &b, moved.sealed.as_ref().unwrap())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn fingerprints_find_existing_tokens_only_within_the_tenant_and_format() {
    let f = fixture().await;
    let keys = Arc::new(keys(&f, KeySettings::default()).await.unwrap());
    let service = tokens(&f, &keys);
    let pan = random_pan("4", 16);
    let mut with_meta = item(&pan);
    with_meta.metadata = Some(Metadata::parse(serde_json::json!({"k": "v"})).unwrap());
    let first = service
        .tokenize(f.tenant, &[with_meta])
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    assert!(first.created);
    let second = service
        .tokenize(f.tenant, &[item(&pan)])
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    assert!(!second.created);
    assert_eq!(second.token, first.token);
    assert_eq!(second.metadata, first.metadata);
    let fingerprint = keys
        .fingerprint_key(f.tenant)
        .fingerprint(&Pan::parse(&pan).unwrap());
    let found = f
        .store
        .find_by_fingerprints(
            f.tenant,
            &[
                (Default::default(), fingerprint.clone()),
                (strongroom::domain::TokenFormat::Opaque, fingerprint),
            ],
        )
        .await
        .unwrap();
    assert!(found[0].is_some() && found[1].is_none());
    let stored_fingerprint: Vec<u8> = sqlx::query_scalar("select fingerprint from tokens")
        .fetch_one(f.pg.pool())
        .await
        .unwrap();
    let plain = ring::digest::digest(&ring::digest::SHA256, pan.as_bytes());
    assert_ne!(
        stored_fingerprint.as_slice(),
        plain.as_ref(),
        "a keyed fingerprint, not a plain hash"
    );
}

#[tokio::test]
async fn tokens_are_read_and_revealed_in_the_order_asked_and_only_within_the_tenant() {
    let f = fixture().await;
    let keys = Arc::new(keys(&f, KeySettings::default()).await.unwrap());
    let service = tokens(&f, &keys);
    let pans = [
        random_pan("4", 16),
        random_pan("5", 16),
        random_pan("6", 16),
    ];
    let issued: Vec<_> = service
        .tokenize(f.tenant, &pans.iter().map(|p| item(p)).collect::<Vec<_>>())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap().token)
        .collect();
    let asked = vec![issued[2].clone(), issued[0].clone(), issued[2].clone()];
    let revealed = service.reveal(f.tenant, &asked).await.unwrap();
    let digits: Vec<&[u8]> = revealed.iter().map(|p| p.expose_digits()).collect();
    assert_eq!(
        digits,
        vec![pans[2].as_bytes(), pans[0].as_bytes(), pans[2].as_bytes()]
    );
    // Another tenant reads nothing; an unknown token reads as absent.
    let other = TenantId(uuid::Uuid::new_v4());
    let found = f.store.get_tokens(other, &asked).await.unwrap();
    assert!(found.iter().all(Option::is_none));
    let unknown = strongroom::domain::Token::parse("4111111111111112").unwrap();
    let found = f
        .store
        .get_tokens(f.tenant, &[issued[1].clone(), unknown.clone()])
        .await
        .unwrap();
    assert!(found[0].is_some() && found[1].is_none());
    assert!(
        service
            .reveal(f.tenant, &[issued[1].clone(), unknown])
            .await
            .is_err()
    );
}
