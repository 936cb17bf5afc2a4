//! One conformance suite for both stores — PostgreSQL and the embedded SQLite store — so they
//! cannot drift: constraints, deterministic tokens under concurrency, DEK counts and rotation,
//! ciphertexts bound to their row, a wrong master key, exact grant use counts, decisions counted
//! once, an append-only audit trail that verifies, and grant-signing key rotation.

use std::sync::Arc;

use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{FromRow, PgPool, SqlitePool};
use strongroom::clock::{Clock, SystemClock};
use strongroom::crypto::api_key::ApiKey;
use strongroom::crypto::keys::MasterKey;
use strongroom::domain::access::{Decision, DecisionRefusal, GrantDraft, NewAccessRequest};
use strongroom::domain::audit::{Action, AuditEvent};
use strongroom::domain::{Metadata, Pan, PrincipalId, Role, TenantId};
use strongroom::metrics::Metrics;
use strongroom::random::{Csprng, SystemRandom};
use strongroom::service::{
    AuditTrail, KeyError, KeyService, KeySettings, TokenService, TokenizeItem, audit,
};
use strongroom::store::{DecideOutcome, NewPrincipal, PgStore, SqliteStore, Store, UseOutcome};
use uuid::Uuid;

use crate::helpers::*;

mod guard;
mod lifecycle;
mod principals;
mod signing;
use guard::*;
use lifecycle::*;
use principals::*;
use signing::*;

#[derive(Clone, Copy, Debug)]
enum Backend {
    Postgres,
    Sqlite,
}

/// The database under one test, and a raw handle on it for what the traits do not show.
enum Raw {
    Pg { pool: PgPool, _db: TestDb },
    Lite { pool: SqlitePool, _file: SqliteFile },
}

/// A SQLite file (and its WAL files) removed afterwards.
struct SqliteFile(std::path::PathBuf);

impl Drop for SqliteFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

struct Fixture {
    raw: Raw,
    store: Arc<dyn Store>,
    master: String,
    tenant: TenantId,
}

impl Fixture {
    /// Rows of a query written in SQL both databases read alike.
    async fn rows<T>(&self, sql: &str) -> Vec<T>
    where
        T: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin,
    {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match &self.raw {
            Raw::Pg { pool, .. } => sqlx::query_as(sql).fetch_all(pool).await.unwrap(),
            Raw::Lite { pool, .. } => sqlx::query_as(sql).fetch_all(pool).await.unwrap(),
        }
    }

    /// Runs a statement; the error, if it was refused.
    async fn exec(&self, sql: &str) -> Result<(), String> {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match &self.raw {
            Raw::Pg { pool, .. } => sqlx::query(sql).execute(pool).await.map(drop),
            Raw::Lite { pool, .. } => sqlx::query(sql).execute(pool).await.map(drop),
        }
        .map_err(|e| e.to_string())
    }

    /// A principal of the fixture's tenant.
    async fn principal(&self, name: &str, role: Role) -> PrincipalId {
        let record = self
            .store
            .create_principal(&new_principal(name, role))
            .await
            .unwrap();
        record.principal.id
    }
}

fn new_principal(name: &str, role: Role) -> NewPrincipal {
    NewPrincipal {
        id: PrincipalId(Uuid::new_v4()),
        tenant_name: "acme".into(),
        name: name.into(),
        roles: vec![role],
        key_hash: ApiKey::generate(&SystemRandom::new()).unwrap().hash(),
        expires_at: None,
        created_at: SystemClock.now(),
        sealed_totp: None,
    }
}

async fn fixture(backend: Backend) -> Fixture {
    let (raw, store): (Raw, Arc<dyn Store>) = match backend {
        Backend::Postgres => {
            let db = TestDb::create(true).await;
            let pg = PgStore::connect(&db.url, 4).await.unwrap();
            (
                Raw::Pg {
                    pool: pg.pool().clone(),
                    _db: db,
                },
                Arc::new(pg),
            )
        }
        Backend::Sqlite => {
            let file = SqliteFile(
                std::env::temp_dir()
                    .join(format!("strongroom-test-{}.db", Uuid::new_v4().simple())),
            );
            let lite = SqliteStore::connect(&format!("sqlite://{}", file.0.display()), 4)
                .await
                .unwrap();
            lite.migrate().await.unwrap();
            (
                Raw::Lite {
                    pool: lite.pool().clone(),
                    _file: file,
                },
                Arc::new(lite),
            )
        }
    };
    let tenant = store
        .create_principal(&new_principal("seed", Role::Tokenizer))
        .await
        .unwrap()
        .principal
        .tenant;
    Fixture {
        raw,
        store,
        master: new_master_key(),
        tenant,
    }
}

/// Tokenizes `n` new random card numbers in `tenant`; their numbers and tokens, in order.
async fn tokenize_new(
    service: &TokenService,
    tenant: TenantId,
    n: usize,
) -> (Vec<String>, Vec<strongroom::domain::Token>) {
    let pans: Vec<String> = (0..n).map(|_| random_pan("4", 16)).collect();
    let items: Vec<_> = pans.iter().map(|p| item(p)).collect();
    let issued = tokenize_in(service, tenant, &items)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap().token)
        .collect();
    (pans, issued)
}

/// The key commands over the fixture's store under `master`, recorded in a chain of their own.
fn key_admin(f: &Fixture, master: &str) -> strongroom::service::keys::admin::KeyAdmin {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    strongroom::service::keys::admin::KeyAdmin::new(
        f.store.clone(),
        MasterKey::from_base64(master).unwrap(),
        Arc::new(SystemRandom::new()),
        clock.clone(),
        AuditTrail::spawn(f.store.clone(), None, clock, Metrics::new()),
    )
}

async fn keys(f: &Fixture, settings: KeySettings) -> Result<KeyService, KeyError> {
    keys_with_clock(f, settings, Arc::new(SystemClock)).await
}

/// [`keys`] of an instance whose clock is `clock`.
async fn keys_with_clock(
    f: &Fixture,
    settings: KeySettings,
    clock: Arc<dyn Clock>,
) -> Result<KeyService, KeyError> {
    let rng: Arc<dyn Csprng> = Arc::new(SystemRandom::new());
    let audit = AuditTrail::spawn(f.store.clone(), None, clock.clone(), Metrics::new());
    KeyService::load(
        f.store.clone(),
        MasterKey::from_base64(&f.master).unwrap(),
        rng,
        clock,
        settings,
        audit,
    )
    .await
}

/// Runs each named test against both stores.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(#[tokio::test] async fn $name() { super::$name(super::Backend::Postgres).await })*
        }
        mod sqlite {
            $(#[tokio::test] async fn $name() { super::$name(super::Backend::Sqlite).await })*
        }
    };
}

conformance!(
    instances_starting_together_create_one_of_each_key_and_agree_on_them,
    a_different_master_key_is_refused_at_load,
    encryptions_are_counted_in_the_database_and_the_key_rotates_at_its_limit,
    an_operator_s_rotation_retires_every_older_data_key_with_its_record,
    a_data_key_past_its_cryptoperiod_is_rotated_by_the_vault,
    reencryption_moves_live_rows_once_and_a_key_is_destroyed_only_when_empty,
    a_rewrap_and_a_tenant_shred_each_commit_whole_with_their_record,
    a_ciphertext_moved_to_another_row_fails_to_decrypt,
    fingerprints_find_existing_tokens_only_within_the_tenant_and_format,
    tokens_are_read_and_revealed_in_the_order_asked_and_only_within_the_tenant,
    concurrent_tokenizations_of_one_pan_give_one_token,
    concurrent_tokenizations_in_two_tenants_are_written_together_and_apart,
    concurrent_uses_never_pass_a_grants_limit,
    concurrent_approvals_mint_exactly_one_grant,
    the_audit_trail_is_append_only_and_verifies,
    a_duplicate_principal_name_is_refused,
    a_bucket_past_its_budget_refuses_known_and_new_pans_alike_and_stores_nothing,
    an_import_window_has_its_own_budget_and_widens_no_one_elses,
    misses_throttle_a_principal_once_per_episode,
    a_principal_is_found_by_its_key_and_disabled_at_once,
    a_totp_step_is_accepted_once_and_failures_lock_the_factor,
    a_session_lives_until_idle_or_its_limit_or_sign_out_with_its_records,
    requests_are_listed_by_status_and_lapsed_ones_expire,
    grants_are_listed_and_revoked_one_or_all,
    deleted_and_purged_tokens_lose_their_card_data_but_keep_their_value,
    the_database_secrets_grants_and_expired_tokens_answer_alike,
    a_signing_key_is_published_before_it_signs_and_after_while_its_grants_live,
    two_signing_key_rotations_at_once_leave_one_pending_key,
);

fn tokens(f: &Fixture, keys: &Arc<KeyService>) -> TokenService {
    token_service(f, keys, 20)
}

/// A token service over the fixture's store, with a bucket budget of `budget`.
fn token_service(f: &Fixture, keys: &Arc<KeyService>, budget: u32) -> TokenService {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let trail = AuditTrail::spawn(f.store.clone(), None, clock.clone(), Metrics::new());
    let guard = Arc::new(strongroom::service::Guard::new(
        f.store.clone(),
        clock.clone(),
        budget,
    ));
    TokenService::new(
        f.store.clone(),
        Arc::clone(keys),
        strongroom::service::Alarms::new(guard, trail.clone(), Metrics::new()),
        trail,
        Arc::new(SystemRandom::new()),
        clock,
    )
}

/// Tokenizes for a tokenizer of `tenant` (the service takes the calling principal).
async fn tokenize_in(
    service: &TokenService,
    tenant: TenantId,
    items: &[TokenizeItem],
) -> Result<
    Vec<Result<strongroom::service::TokenView, strongroom::service::TokenError>>,
    strongroom::service::TokenError,
> {
    let principal = strongroom::domain::Principal {
        id: strongroom::domain::PrincipalId(uuid::Uuid::new_v4()),
        tenant,
        name: "tokenizer".into(),
        roles: vec![strongroom::domain::Role::Tokenizer],
        lookups_throttled_until: None,
    };
    service
        .tokenize_items(&context(&principal), items, batch_record())
        .await
}

/// A call of `principal`'s, under a request id of its own.
fn context(principal: &strongroom::domain::Principal) -> strongroom::service::RequestContext {
    strongroom::service::RequestContext {
        principal: principal.clone(),
        request_id: uuid::Uuid::new_v4().to_string(),
        source: None,
        session: None,
    }
}

/// A tokenize call's record, as the batch use case writes it (tokens issued, in order).
fn batch_record() -> strongroom::service::TokenizeRecord {
    Arc::new(|notes: &[strongroom::service::ItemNote]| {
        let mut event = strongroom::domain::audit::AuditEvent::new(
            strongroom::domain::audit::Action::TokenizeBatch,
            SystemClock.now(),
        );
        for note in notes {
            if let strongroom::service::ItemNote::Issued { token, .. } = note {
                event.tokens.push(token.as_str().to_owned());
            }
        }
        event
    })
}

/// What one tokenize call did, as a test reads it: its answers, and the records of the buckets
/// it locked (subject, detail), read back from the trail it committed them to.
struct Called {
    results: Vec<Result<strongroom::service::TokenView, strongroom::service::TokenError>>,
    locked: Vec<(String, String)>,
}

/// Tokenizes for `principal` and reads back what the call recorded.
async fn tokenize_as(
    f: &Fixture,
    service: &TokenService,
    principal: &strongroom::domain::Principal,
    items: &[TokenizeItem],
) -> Result<Called, strongroom::service::TokenError> {
    let ctx = context(principal);
    let results = service.tokenize_items(&ctx, items, batch_record()).await?;
    let locked = f
        .rows::<(String, String)>(&format!(
            "select subject, detail from audit_events \
             where action = 'tokenize.enumeration_suspected' and request_id = '{}' order by id",
            ctx.request_id
        ))
        .await;
    Ok(Called { results, locked })
}

fn item(pan: &str) -> TokenizeItem {
    TokenizeItem {
        pan: Pan::parse(pan).unwrap(),
        format: Default::default(),
        metadata: None,
        expires_at: None,
    }
}

async fn instances_starting_together_create_one_of_each_key_and_agree_on_them(backend: Backend) {
    let f = fixture(backend).await;
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
    let (keys, secrets, signing): (i64, i64, i64) = f
        .rows(
            "select (select count(*) from data_keys), (select count(*) from vault_secrets), \
                    (select count(*) from signing_keys)",
        )
        .await[0];
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
        a.fingerprint_key(f.tenant).await.unwrap().fingerprint(&pan)
            == c.fingerprint_key(f.tenant).await.unwrap().fingerprint(&pan)
    );
}

async fn a_different_master_key_is_refused_at_load(backend: Backend) {
    let mut f = fixture(backend).await;
    keys(&f, KeySettings::default()).await.unwrap();
    f.master = new_master_key();
    assert!(matches!(
        keys(&f, KeySettings::default()).await,
        Err(KeyError::MasterKeyMismatch)
    ));
}

async fn an_operator_s_rotation_retires_every_older_data_key_with_its_record(backend: Backend) {
    let f = fixture(backend).await;
    let keys = Arc::new(keys(&f, KeySettings::default()).await.unwrap());
    let admin = key_admin(&f, &f.master);
    assert_eq!(admin.rotate_data_key().await.unwrap(), (2, vec![1]));
    assert_eq!(admin.rotate_data_key().await.unwrap(), (3, vec![2]));
    let inventory = strongroom::store::KeyStore::key_inventory(&*f.store, SystemClock.now())
        .await
        .unwrap();
    let states: Vec<(u32, bool)> = inventory
        .data_keys
        .iter()
        .map(|k| (k.version, k.retired_at.is_some()))
        .collect();
    assert_eq!(states, vec![(1, true), (2, true), (3, false)]);
    // This instance seals under the new key once it refreshes, and opens every version.
    keys.refresh().await.unwrap();
    assert_eq!(keys.active_version(), Some(3));
    let records: Vec<(String, String)> = f
        .rows("select subject, detail from audit_events where action = 'key.rotate' order by id")
        .await;
    assert_eq!(
        records,
        vec![
            ("data_key:2".to_owned(), "retired=1 by=operator".to_owned()),
            ("data_key:3".to_owned(), "retired=2 by=operator".to_owned())
        ]
    );
}

async fn reencryption_moves_live_rows_once_and_a_key_is_destroyed_only_when_empty(
    backend: Backend,
) {
    use strongroom::service::keys::reencrypt::Reencryption;
    use strongroom::store::KeyDestruction;
    let f = fixture(backend).await;
    let keys = Arc::new(keys(&f, KeySettings::default()).await.unwrap());
    let service = tokens(&f, &keys);
    let (pans, issued) = tokenize_new(&service, f.tenant, 25).await;
    let admin = key_admin(&f, &f.master);
    admin.rotate_data_key().await.unwrap();
    // A row deleted while the run is on its way is left deleted.
    let mut run = Reencryption::default();
    keys.reencrypt_batch(&mut run, 10, "operator")
        .await
        .unwrap();
    assert_eq!((run.moved, run.finished), (10, false));
    assert_eq!(
        admin.destroy_data_key(1).await.unwrap(),
        KeyDestruction::RowsRemain(15)
    );
    f.exec("update tokens set sealed_pan = null, dek_version = null, masked_pan = null, \
            fingerprint = null, destroyed_at = created_at, deleted_at = created_at \
            where dek_version = 1 and token = (select max(token) from tokens where dek_version = 1)")
        .await
        .unwrap();
    while !run.finished {
        keys.reencrypt_batch(&mut run, 10, "operator")
            .await
            .unwrap();
    }
    assert_eq!((run.moved, run.passed, run.unreadable), (24, 0, 0));
    assert_eq!(f.store.rows_to_reencrypt(2).await.unwrap(), 0);
    // Every live row opens under the new key.
    for (token, pan) in issued.iter().zip(&pans) {
        let record = f.store.get_token(f.tenant, token).await.unwrap().unwrap();
        if let Some(sealed) = record.sealed {
            assert_eq!(sealed.version, 2);
            let opened = keys.open_pan(f.tenant, token, &sealed).await.unwrap();
            assert_eq!(opened.expose_digits(), pan.as_bytes());
        }
    }
    assert_eq!(
        admin.destroy_data_key(2).await.unwrap(),
        KeyDestruction::StillActive
    );
    assert!(matches!(
        admin.destroy_data_key(1).await.unwrap(),
        KeyDestruction::RecentlyRetired(_)
    ));
    // Two housekeeping passes later (its retirement moved back), it can go.
    f.exec("update data_keys set retired_at = '2000-01-01T00:00:00+00:00' where version = 1")
        .await
        .unwrap();
    assert_eq!(
        admin.destroy_data_key(1).await.unwrap(),
        KeyDestruction::Destroyed
    );
    assert_eq!(
        admin.destroy_data_key(1).await.unwrap(),
        KeyDestruction::NotFound
    );
    let versions: Vec<u32> = f
        .store
        .data_keys()
        .await
        .unwrap()
        .iter()
        .map(|k| k.version)
        .collect();
    assert_eq!(versions, vec![2]);
    assert_eq!(f.store.newest_data_key_version().await.unwrap(), 2);
    let states: Vec<(u32, bool)> = f
        .store
        .key_inventory(SystemClock.now())
        .await
        .unwrap()
        .data_keys
        .iter()
        .map(|k| (k.version, k.destroyed_at.is_some()))
        .collect();
    assert_eq!(states, vec![(1, true), (2, false)]);
    let records: Vec<(String, String)> = f
        .rows(
            "select action, outcome from audit_events \
             where action in ('key.reencrypt', 'key.destroy') order by id",
        )
        .await;
    let reencrypts = records.iter().filter(|r| r.0 == "key.reencrypt").count();
    assert_eq!(reencrypts, 3, "{records:?}");
    assert_eq!(
        records.iter().filter(|r| r.0 == "key.destroy").count(),
        5,
        "refusals are recorded too: {records:?}"
    );
}

async fn a_rewrap_and_a_tenant_shred_each_commit_whole_with_their_record(backend: Backend) {
    let f = fixture(backend).await;
    let keys = Arc::new(keys(&f, KeySettings::default()).await.unwrap());
    let service = tokens(&f, &keys);
    let (pans, issued) = tokenize_new(&service, f.tenant, 5).await;
    let admin = |master: &str| key_admin(&f, master);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // A rewrap: every wrapped key moves; a key made behind its back fails it whole.
    let new = new_master_key();
    let counts = admin(&f.master)
        .rewrap(&MasterKey::from_base64(&new).unwrap())
        .await
        .unwrap();
    assert_eq!((counts.data_keys, counts.tenant_keys), (1, 1));
    assert!(matches!(
        admin(&f.master)
            .rewrap(&MasterKey::from_base64(&new_master_key()).unwrap())
            .await,
        Err(KeyError::MasterKeyMismatch)
    ));
    let moved = KeyService::load(
        f.store.clone(),
        MasterKey::from_base64(&new).unwrap(),
        Arc::new(SystemRandom::new()),
        clock.clone(),
        KeySettings::default(),
        AuditTrail::spawn(f.store.clone(), None, clock.clone(), Metrics::new()),
    )
    .await
    .unwrap();
    for (token, pan) in issued.iter().zip(&pans) {
        let record = f.store.get_token(f.tenant, token).await.unwrap().unwrap();
        let opened = moved
            .open_pan(f.tenant, token, record.sealed.as_ref().unwrap())
            .await
            .unwrap();
        assert_eq!(opened.expose_digits(), pan.as_bytes());
    }
    // A shred: the tenant's key, its card data and its principals go in one transaction.
    let shredded = admin(&new).shred_tenant("acme").await.unwrap().unwrap();
    assert_eq!((shredded.tenant, shredded.tokens), (f.tenant, 5));
    assert_eq!(shredded.principals, 1);
    assert_eq!(admin(&new).shred_tenant("acme").await.unwrap(), None);
    let record = f
        .store
        .get_token(f.tenant, &issued[0])
        .await
        .unwrap()
        .unwrap();
    assert!(record.sealed.is_none() && record.destroyed_at.is_some());
    let stored = f.store.tenant_key(f.tenant).await.unwrap().unwrap();
    assert!(stored.wrapped.is_none());
    assert_eq!(f.store.shredded_tenants().await.unwrap(), vec![f.tenant]);
    let records: Vec<(String, String)> = f
        .rows(
            "select action, outcome from audit_events \
             where action in ('key.rewrap', 'tenant.shred') order by id",
        )
        .await;
    assert_eq!(
        records,
        vec![
            ("key.rewrap".to_owned(), "success".to_owned()),
            ("tenant.shred".to_owned(), "success".to_owned()),
            ("tenant.shred".to_owned(), "denied".to_owned()),
        ]
    );
}

async fn a_data_key_past_its_cryptoperiod_is_rotated_by_the_vault(backend: Backend) {
    let f = fixture(backend).await;
    let young = keys(&f, KeySettings::default()).await.unwrap();
    assert_eq!(
        young.rotate_if_aged().await.unwrap(),
        None,
        "a new key is young"
    );
    let aged = KeySettings {
        max_age: chrono::TimeDelta::zero(),
        ..KeySettings::default()
    };
    let keys = keys(&f, aged).await.unwrap();
    assert_eq!(keys.rotate_if_aged().await.unwrap(), Some(2));
    assert_eq!(keys.active_version(), Some(2));
    let records: Vec<(String, String)> = f
        .rows("select subject, detail from audit_events where action = 'key.rotate'")
        .await;
    assert_eq!(
        records,
        vec![("data_key:2".to_owned(), "retired=1 by=age".to_owned())]
    );
    // The other instance picks it up at its next pass.
    young.refresh().await.unwrap();
    assert_eq!(young.active_version(), Some(2));
}

async fn encryptions_are_counted_in_the_database_and_the_key_rotates_at_its_limit(
    backend: Backend,
) {
    let f = fixture(backend).await;
    let settings = KeySettings {
        encryption_limit: 4,
        reservation_block: 2,
        ..KeySettings::default()
    };
    let keys = Arc::new(keys(&f, settings).await.unwrap());
    let service = tokens(&f, &keys);
    for _ in 0..5 {
        let results = tokenize_in(&service, f.tenant, &[item(&random_pan("4", 16))])
            .await
            .unwrap();
        assert!(results[0].is_ok());
    }
    assert_eq!(
        keys.active_version(),
        Some(2),
        "the first key retired at 4 encryptions"
    );
    let rows: Vec<(i32, i64, bool)> = f
        .rows("select version, encryptions, retired_at is not null from data_keys order by version")
        .await;
    assert_eq!(rows[0], (1, 4, true));
    assert_eq!(rows[1].0, 2);
    assert!(rows[1].1 >= 1 && !rows[1].2);
    let per_version: Vec<(i32, i64)> = f
        .rows("select dek_version, count(*) from tokens group by dek_version order by dek_version")
        .await;
    assert_eq!(per_version, vec![(1, 4), (2, 1)]);
    // The operator's inventory says the same, and names the other secrets.
    let inventory = strongroom::store::KeyStore::key_inventory(&*f.store, SystemClock.now())
        .await
        .unwrap();
    let seen: Vec<(u32, u64, u64, bool)> = inventory
        .data_keys
        .iter()
        .map(|k| (k.version, k.rows, k.encryptions, k.retired_at.is_some()))
        .collect();
    assert_eq!(seen[0], (1, 4, 4, true));
    assert_eq!((seen[1].0, seen[1].1, seen[1].3), (2, 1, false));
    assert!(
        inventory
            .secrets
            .iter()
            .any(|(n, _)| n == "fingerprint-root"),
        "{inventory:?}"
    );
    // Both versions still decrypt their rows.
    for (token,) in f.rows::<(String,)>("select token from tokens").await {
        let token = strongroom::domain::Token::parse(&token).unwrap();
        let record = f.store.get_token(f.tenant, &token).await.unwrap().unwrap();
        keys.open_pan(f.tenant, &token, record.sealed.as_ref().unwrap())
            .await
            .unwrap();
    }
}

async fn a_ciphertext_moved_to_another_row_fails_to_decrypt(backend: Backend) {
    let f = fixture(backend).await;
    let keys = Arc::new(keys(&f, KeySettings::default()).await.unwrap());
    let service = tokens(&f, &keys);
    let (pan_a, pan_b) = (random_pan("4", 16), random_pan("5", 16));
    let results = tokenize_in(&service, f.tenant, &[item(&pan_a), item(&pan_b)])
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
    f.exec(&format!(
        "update tokens set sealed_pan = (select sealed_pan from tokens where token = '{a}') \
         where token = '{b}'",
        a = a.as_str(),
        b = b.as_str()
    ))
    .await
    .unwrap();
    let moved = f.store.get_token(f.tenant, &b).await.unwrap().unwrap();
    assert!(
        keys.open_pan(f.tenant, &b, moved.sealed.as_ref().unwrap())
            .await
            .is_err()
    );
}

async fn fingerprints_find_existing_tokens_only_within_the_tenant_and_format(backend: Backend) {
    let f = fixture(backend).await;
    let keys = Arc::new(keys(&f, KeySettings::default()).await.unwrap());
    let service = tokens(&f, &keys);
    let pan = random_pan("4", 16);
    let mut with_meta = item(&pan);
    with_meta.metadata = Some(Metadata::parse(serde_json::json!({"k": "v"})).unwrap());
    let first = tokenize_in(&service, f.tenant, &[with_meta])
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    assert!(first.created);
    let second = tokenize_in(&service, f.tenant, &[item(&pan)])
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    assert!(!second.created);
    assert_eq!(second.token, first.token);
    assert_eq!(second.metadata, first.metadata);
    let fingerprint = keys
        .fingerprint_key(f.tenant)
        .await
        .unwrap()
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
    let (stored_fingerprint,) = f
        .rows::<(Vec<u8>,)>("select fingerprint from tokens")
        .await
        .remove(0);
    let plain = ring::digest::digest(&ring::digest::SHA256, pan.as_bytes());
    assert_ne!(
        stored_fingerprint.as_slice(),
        plain.as_ref(),
        "a keyed fingerprint, not a plain hash"
    );
}

async fn tokens_are_read_and_revealed_in_the_order_asked_and_only_within_the_tenant(
    backend: Backend,
) {
    let f = fixture(backend).await;
    let keys = Arc::new(keys(&f, KeySettings::default()).await.unwrap());
    let service = tokens(&f, &keys);
    let pans = [
        random_pan("4", 16),
        random_pan("5", 16),
        random_pan("6", 16),
    ];
    let issued: Vec<_> = tokenize_in(
        &service,
        f.tenant,
        &pans.iter().map(|p| item(p)).collect::<Vec<_>>(),
    )
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

async fn concurrent_tokenizations_of_one_pan_give_one_token(backend: Backend) {
    let f = fixture(backend).await;
    let keys = Arc::new(keys(&f, KeySettings::default()).await.unwrap());
    let pan = random_pan("4", 16);
    let calls: Vec<_> = (0..12)
        .map(|_| {
            let service = tokens(&f, &keys);
            let (tenant, pan) = (f.tenant, pan.clone());
            tokio::spawn(async move {
                tokenize_in(&service, tenant, &[item(&pan)])
                    .await
                    .unwrap()
                    .remove(0)
                    .unwrap()
            })
        })
        .collect();
    let mut issued = Vec::new();
    for call in calls {
        issued.push(call.await.unwrap());
    }
    assert_eq!(issued.iter().filter(|v| v.created).count(), 1);
    assert!(issued.iter().all(|v| v.token == issued[0].token));
    let count: Vec<(i64,)> = f.rows("select count(*) from tokens").await;
    assert_eq!(count[0].0, 1);
}

/// An approved request for `grantee` with its grant of `max_uses`; returns the grant's id.
async fn granted(f: &Fixture, keys: &KeyService, grantee: PrincipalId, max_uses: u32) -> Uuid {
    let now = SystemClock.now();
    let request = access_request(f, grantee, 0, max_uses);
    let draft = GrantDraft {
        jti: Uuid::new_v4(),
        kid: keys.signing_key().unwrap().kid().to_owned(),
        issued_at: now,
    };
    f.store
        .insert_access_request(&request, Some(&draft))
        .await
        .unwrap();
    draft.jti
}

fn access_request(
    f: &Fixture,
    requester: PrincipalId,
    approvals: u32,
    max_uses: u32,
) -> NewAccessRequest {
    let now = SystemClock.now();
    NewAccessRequest {
        id: Uuid::new_v4(),
        tenant: f.tenant,
        requester,
        policy: "test".into(),
        tokens: Vec::new(),
        any_token: true,
        purpose: strongroom::domain::Purpose::parse("dispute").unwrap(),
        reason: strongroom::domain::Reason::parse("case 1").unwrap(),
        duration_seconds: 600,
        max_uses,
        approvals_required: approvals,
        approver_mfa: false,
        source: None,
        created_at: now,
        expires_at: now + chrono::Duration::hours(1),
    }
}

async fn concurrent_uses_never_pass_a_grants_limit(backend: Backend) {
    let f = fixture(backend).await;
    let keys = keys(&f, KeySettings::default()).await.unwrap();
    let grantee = f.principal("payments", Role::Detokenizer).await;
    let jti = granted(&f, &keys, grantee, 5).await;
    let calls: Vec<_> = (0..24)
        .map(|_| {
            let (store, tenant) = (Arc::clone(&f.store), f.tenant);
            tokio::spawn(async move {
                store
                    .use_grant(tenant, jti, grantee, SystemClock.now())
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for call in calls {
        outcomes.push(call.await.unwrap());
    }
    let mut used: Vec<u32> = outcomes
        .iter()
        .filter_map(|o| match o {
            UseOutcome::Used(n) => Some(*n),
            _ => None,
        })
        .collect();
    used.sort_unstable();
    assert_eq!(used, vec![1, 2, 3, 4, 5], "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, UseOutcome::Used(_) | UseOutcome::Exhausted))
    );
    // Revoked: refused at once, and revoking again keeps the first revocation.
    let other = f.principal("ops", Role::Admin).await;
    let now = SystemClock.now();
    let revoked = f
        .store
        .revoke_grant(f.tenant, jti, other, now)
        .await
        .unwrap();
    assert!(revoked.unwrap().revoked_at.is_some());
    assert_eq!(
        f.store
            .use_grant(f.tenant, jti, grantee, now)
            .await
            .unwrap(),
        UseOutcome::Revoked
    );
    assert_eq!(
        f.store
            .use_grant(f.tenant, Uuid::new_v4(), grantee, now)
            .await
            .unwrap(),
        UseOutcome::NotFound
    );
}

async fn concurrent_approvals_mint_exactly_one_grant(backend: Backend) {
    let f = fixture(backend).await;
    let keys = keys(&f, KeySettings::default()).await.unwrap();
    let requester = f.principal("alice", Role::Requester).await;
    let approvers = [
        f.principal("bob", Role::Approver).await,
        f.principal("carol", Role::Approver).await,
        f.principal("dave", Role::Approver).await,
    ];
    let request = access_request(&f, requester, 2, 1);
    f.store.insert_access_request(&request, None).await.unwrap();
    let kid = keys.signing_key().unwrap().kid().to_owned();
    let calls: Vec<_> = approvers
        .iter()
        .map(|approver| {
            let (store, tenant, id, kid) =
                (Arc::clone(&f.store), f.tenant, request.id, kid.clone());
            let approver = *approver;
            tokio::spawn(async move {
                let now = SystemClock.now();
                let decision = Decision {
                    approver,
                    approve: true,
                    comment: None,
                    at: now,
                };
                let draft = GrantDraft {
                    jti: Uuid::new_v4(),
                    kid,
                    issued_at: now,
                };
                store
                    .decide_access_request(tenant, id, &decision, &draft)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for call in calls {
        outcomes.push(call.await.unwrap());
    }
    let recorded = outcomes
        .iter()
        .filter(|o| matches!(o, DecideOutcome::Recorded(_)))
        .count();
    assert_eq!(
        recorded, 2,
        "the two approvals needed, then closed: {outcomes:?}"
    );
    let grants: Vec<(i64,)> = f.rows("select count(*) from grants").await;
    assert_eq!(grants[0].0, 1);
    // The requester never decides their own; an approver counts once.
    let now = SystemClock.now();
    let second = access_request(&f, requester, 2, 1);
    f.store.insert_access_request(&second, None).await.unwrap();
    let draft = GrantDraft {
        jti: Uuid::new_v4(),
        kid,
        issued_at: now,
    };
    let decide = |approver| Decision {
        approver,
        approve: true,
        comment: None,
        at: now,
    };
    assert!(matches!(
        f.store
            .decide_access_request(f.tenant, second.id, &decide(requester), &draft)
            .await
            .unwrap(),
        DecideOutcome::Refused(DecisionRefusal::SelfApproval)
    ));
    for expected_recorded in [true, false] {
        let outcome = f
            .store
            .decide_access_request(f.tenant, second.id, &decide(approvers[0]), &draft)
            .await
            .unwrap();
        assert_eq!(
            matches!(outcome, DecideOutcome::Recorded(_)),
            expected_recorded
        );
    }
}

async fn the_audit_trail_is_append_only_and_verifies(backend: Backend) {
    let f = fixture(backend).await;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let trail = AuditTrail::spawn(f.store.clone(), None, clock, Metrics::new());
    let writes: Vec<_> = (0..40)
        .map(|i| {
            let trail = trail.clone();
            let tenant = f.tenant;
            tokio::spawn(async move {
                let mut event = AuditEvent::new(Action::Lookup, SystemClock.now());
                event.tenant = Some(tenant);
                event.tokens = vec![format!("411111{i:06}1111")];
                trail.record(event).await
            })
        })
        .collect();
    for w in writes {
        w.await.unwrap().unwrap();
    }
    let verified = audit::verify(f.store.as_ref(), Vec::new())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(verified.records, 40);
    for sql in [
        "update audit_events set outcome = 'denied'",
        "delete from audit_events",
    ] {
        let err = f.exec(sql).await.unwrap_err();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    let query = strongroom::store::AuditQuery {
        system: false,
        tenant: f.tenant,
        since: None,
        until: None,
        actor: None,
        action: Some(Action::Lookup),
        token: Some("4111110000071111".into()),
        outcome: None,
        before_id: None,
        limit: 10,
    };
    let found = f.store.query_audit(&query).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].chained.event.tokens, vec!["4111110000071111"]);
}

async fn a_duplicate_principal_name_is_refused(backend: Backend) {
    let f = fixture(backend).await;
    f.principal("alice", Role::Requester).await;
    let err = f
        .store
        .create_principal(&new_principal("alice", Role::Approver))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        strongroom::store::StoreError::PrincipalExists
    ));
    // Separation of duties holds in the database too.
    let mut both = new_principal("root", Role::Admin);
    both.roles.push(Role::Tokenizer);
    assert!(f.store.create_principal(&both).await.is_err());
    let key = f.store.principal_by_key_hash(&both.key_hash).await.unwrap();
    assert!(key.is_none());
}

async fn concurrent_tokenizations_in_two_tenants_are_written_together_and_apart(backend: Backend) {
    // Calls that arrive together share a statement (group commit); each still gets exactly its
    // own rows back, in its own tenant.
    let f = fixture(backend).await;
    let keys = Arc::new(keys(&f, KeySettings::default()).await.unwrap());
    let other = f
        .store
        .create_principal(&NewPrincipal {
            tenant_name: "globex".into(),
            ..new_principal("seed", Role::Tokenizer)
        })
        .await
        .unwrap()
        .principal
        .tenant;
    let service = Arc::new(tokens(&f, &keys));
    let pans: Vec<String> = (0..40).map(|_| random_pan("4", 16)).collect();
    let calls: Vec<_> = pans
        .iter()
        .enumerate()
        .map(|(i, pan)| {
            let (service, pan) = (Arc::clone(&service), pan.clone());
            let tenant = if i % 2 == 0 { f.tenant } else { other };
            tokio::spawn(async move {
                let view = tokenize_in(&service, tenant, &[item(&pan)])
                    .await
                    .unwrap()
                    .remove(0)
                    .unwrap();
                (tenant, pan, view)
            })
        })
        .collect();
    let mut issued = Vec::new();
    for call in calls {
        issued.push(call.await.unwrap());
    }
    assert!(issued.iter().all(|(_, _, v)| v.created));
    let count: Vec<(i64,)> = f.rows("select count(*) from tokens").await;
    assert_eq!(count[0].0, 40);
    for (tenant, pan, view) in &issued {
        let revealed = service
            .reveal(*tenant, std::slice::from_ref(&view.token))
            .await
            .unwrap();
        assert_eq!(revealed[0].expose_digits(), pan.as_bytes());
        let elsewhere = if *tenant == f.tenant { other } else { f.tenant };
        assert!(
            service
                .reveal(elsewhere, std::slice::from_ref(&view.token))
                .await
                .is_err()
        );
    }
}
