//! `spawn_app()` and friends: a fresh database, the real `Application` on port 0, seeded
//! principals per role, a typed method per endpoint, and captured logs.
//!
//! `spawn_app()` runs on the embedded store (SQLite, a file of its own), so most HTTP tests
//! need no database server; `spawn_pg_app()` runs on a fresh PostgreSQL database, for the
//! concurrency tests (several instances, races on one row) and those that read rows with SQL.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, Utc};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use sqlx::postgres::PgPool;
use sqlx::{Connection, Executor, PgConnection};
use strongroom::clock::{Clock, ManualClock, SystemClock};
use strongroom::config::ServeConfig;
use strongroom::crypto::keys::MasterKey;
use strongroom::crypto::totp::TotpSecret;
use strongroom::domain::Role;
use strongroom::metrics::Metrics;
use strongroom::random::{Csprng, SystemRandom};
use strongroom::service::principals::{self, NewPrincipalRequest};
use strongroom::service::{AuditTrail, KeyService, KeySettings};
use strongroom::startup::Application;
use strongroom::store::{PgStore, Store};
use tokio::sync::oneshot;
use tracing_subscriber::fmt::MakeWriter;
use uuid::Uuid;

/// The server URL of the admin database tests create their own databases from.
pub fn admin_url() -> String {
    std::env::var("STRONGROOM_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Which engine a test server stores in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// A fresh PostgreSQL database.
    Postgres,
    /// A fresh SQLite file.
    Sqlite,
}

/// A uniquely named database, dropped (forcibly) when this is dropped.
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub engine: Engine,
}

impl TestDb {
    /// A fresh database of `engine`, migrated.
    pub async fn of(engine: Engine) -> TestDb {
        match engine {
            Engine::Postgres => TestDb::create(true).await,
            Engine::Sqlite => TestDb::create_sqlite().await,
        }
    }

    /// A migrated SQLite file of its own in the temporary directory, removed on drop.
    pub async fn create_sqlite() -> TestDb {
        let name = std::env::temp_dir()
            .join(format!("strongroom_test_{}.db", Uuid::new_v4().simple()))
            .display()
            .to_string();
        let url = format!("sqlite://{name}");
        let store = strongroom::store::SqliteStore::connect(&url, 1)
            .await
            .unwrap();
        store.migrate().await.unwrap();
        TestDb {
            name,
            url,
            engine: Engine::Sqlite,
        }
    }

    /// The store at this database, as the server opens it.
    pub async fn store(&self, connections: u32) -> Arc<dyn Store> {
        strongroom::store::open(&self.url.parse().unwrap(), connections)
            .await
            .unwrap()
    }

    /// Creates an empty database; `migrate` applies the schema.
    pub async fn create(migrate: bool) -> TestDb {
        let admin = admin_url();
        let mut conn = PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL is required for these tests ({admin}): {e}"));
        let name = format!("strongroom_test_{}", Uuid::new_v4().simple());
        conn.execute(sqlx::AssertSqlSafe(format!("create database {name}")))
            .await
            .unwrap();
        let url = with_database(&admin, &name);
        if migrate {
            let store = PgStore::connect(&url, 2).await.unwrap();
            store.migrate().await.unwrap();
            store.pool().close().await;
        }
        TestDb {
            name,
            url,
            engine: Engine::Postgres,
        }
    }

    /// A fresh pool on this database, for inspecting rows.
    pub async fn pool(&self) -> PgPool {
        assert_eq!(
            self.engine,
            Engine::Postgres,
            "this test reads rows with PostgreSQL's SQL: start it with spawn_pg_app()"
        );
        PgPool::connect(&self.url).await.unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.engine == Engine::Sqlite {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", self.name));
            }
            return;
        }
        let name = self.name.clone();
        // Drop runs inside the test's runtime; do the async work on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect(&admin_url()).await {
                    let _ = conn
                        .execute(sqlx::AssertSqlSafe(format!(
                            "drop database if exists {name} with (force)"
                        )))
                        .await;
                }
            });
        })
        .join();
    }
}

fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// Everything the server logged during this process, shared by all tests.
#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for CapturedLogs {
    type Writer = CapturedLogs;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

static LOGS: OnceLock<CapturedLogs> = OnceLock::new();

/// Installs the log capture once per process (JSON, as in production, at debug level).
pub fn logs() -> &'static CapturedLogs {
    LOGS.get_or_init(|| {
        let logs = CapturedLogs::default();
        let _ = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(logs.clone())
            .try_init();
        logs
    })
}

/// The captured log text so far.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&logs().0.lock().unwrap()).into_owned()
}

/// A freshly generated master key, base64.
pub fn new_master_key() -> String {
    MasterKey::generate_base64(&SystemRandom::new())
        .unwrap()
        .to_string()
}

/// The policies every test server runs with unless a test gives its own.
pub const TEST_POLICIES: &str = r#"
[[policy]]
name = "checkout"
roles = ["detokenizer"]
purposes = ["payment_authorization", "recurring_billing"]
approvals = 0
max_duration_seconds = 300
max_uses = 1000
any_token = true

[[policy]]
name = "support-chargeback"
roles = ["requester"]
purposes = ["chargeback", "dispute"]
approvals = 1
max_duration_seconds = 3600
max_uses = 5
max_tokens = 5
source_cidrs = ["127.0.0.0/8", "::1/128"]

[[policy]]
name = "fraud-two-person"
roles = ["requester"]
purposes = ["fraud_investigation"]
approvals = 2
max_duration_seconds = 600
max_uses = 1
max_tokens = 3
"#;

/// Knobs for a test server.
pub struct Options {
    pub clock: Arc<dyn Clock>,
    pub rng: Arc<dyn Csprng>,
    /// The policy file's text; `None` runs without one.
    pub policies: Option<String>,
    pub configure: Box<dyn FnOnce(&mut ServeConfig) + Send>,
    /// Where the server stores.
    pub engine: Engine,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            clock: Arc::new(SystemClock),
            rng: Arc::new(SystemRandom::new()),
            policies: Some(TEST_POLICIES.to_owned()),
            configure: Box::new(|_| {}),
            engine: Engine::Sqlite,
        }
    }
}

/// A person: an API key and a TOTP second factor.
#[derive(Clone)]
pub struct Person {
    pub id: Uuid,
    pub key: String,
    pub totp: Arc<TotpSecret>,
}

/// API keys of the seeded principals.
#[derive(Clone)]
pub struct Keys {
    pub tokenizer: String,
    pub other_tenant_tokenizer: String,
    pub detokenizer: String,
    pub detokenizer_id: Uuid,
    pub other_tenant_detokenizer: String,
    pub auditor: String,
    pub admin: String,
    pub requester: Person,
    pub approver: Person,
    pub approver2: Person,
    /// Holds both requester and approver: for self-approval.
    pub requester_approver: Person,
}

impl Keys {
    /// Every role played by one key (for servers on a database seeded another way).
    pub fn only(key: &str) -> Keys {
        let person = Person {
            id: Uuid::nil(),
            key: key.to_owned(),
            totp: Arc::new(TotpSecret::generate(&SystemRandom::new()).unwrap()),
        };
        Keys {
            tokenizer: key.to_owned(),
            other_tenant_tokenizer: key.to_owned(),
            detokenizer: key.to_owned(),
            detokenizer_id: Uuid::nil(),
            other_tenant_detokenizer: key.to_owned(),
            auditor: key.to_owned(),
            admin: key.to_owned(),
            requester: person.clone(),
            approver: person.clone(),
            approver2: person.clone(),
            requester_approver: person,
        }
    }
}

/// A running server and the means to talk to it.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub keys: Keys,
    pub master_key: String,
    pub db: Arc<TestDb>,
    pub clock: Arc<dyn Clock>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<strongroom::startup::Stopped>>>,
    policy_file: Option<std::path::PathBuf>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(path) = self.policy_file.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Writes a policy file for one server; returns its path.
pub fn write_policy_file(text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("strongroom-policies-{}.toml", Uuid::new_v4()));
    std::fs::write(&path, text).unwrap();
    path
}

/// A server on a fresh embedded store with default options.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

/// A server on a fresh PostgreSQL database with default options.
pub async fn spawn_pg_app() -> TestApp {
    spawn_app_with(Options {
        engine: Engine::Postgres,
        ..Options::default()
    })
    .await
}

/// A server on a fresh embedded store whose clock the test moves.
pub async fn spawn_app_at(clock: Arc<ManualClock>) -> TestApp {
    spawn_app_with(Options {
        clock,
        ..Options::default()
    })
    .await
}

/// A server on a fresh database of `options.engine`.
pub async fn spawn_app_with(options: Options) -> TestApp {
    logs();
    let db = Arc::new(TestDb::of(options.engine).await);
    let master_key = new_master_key();
    let keys = seed_principals(&db.url, &master_key, Arc::clone(&options.clock)).await;
    start(db, master_key, keys, options).await
}

/// Starts a server on an existing database.
pub async fn start(db: Arc<TestDb>, master_key: String, keys: Keys, options: Options) -> TestApp {
    let mut config = ServeConfig::new(db.url.clone(), MasterKey::from_base64(&master_key).unwrap());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.db_pool_size = 4;
    let policy_file = options.policies.as_deref().map(write_policy_file);
    config.policy_file = policy_file.clone();
    (options.configure)(&mut config);
    let clock = Arc::clone(&options.clock);
    let app = Application::build_with(config, options.clock, options.rng)
        .await
        .unwrap();
    let scheme = if app.is_tls() { "https" } else { "http" };
    let address = format!("{scheme}://127.0.0.1:{}", app.port());
    let (tx, rx) = oneshot::channel();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    TestApp {
        address,
        client: reqwest::Client::new(),
        keys,
        master_key,
        db,
        clock,
        shutdown: Some(tx),
        server: Some(server),
        policy_file,
    }
}

pub async fn seed_principals(url: &str, master_key: &str, clock: Arc<dyn Clock>) -> Keys {
    let store: Arc<dyn Store> = strongroom::store::open(&url.parse().unwrap(), 2)
        .await
        .unwrap();
    let rng = Arc::new(SystemRandom::new());
    let audit = AuditTrail::spawn(store.clone(), None, Arc::clone(&clock), Metrics::new());
    let keys = KeyService::load(
        store.clone(),
        MasterKey::from_base64(master_key).unwrap(),
        rng.clone(),
        Arc::clone(&clock),
        KeySettings::default(),
        audit,
    )
    .await
    .unwrap();
    let create = async |tenant: &str, name: &str, roles: Vec<Role>, totp: bool| {
        principals::create(
            store.as_ref(),
            rng.as_ref(),
            clock.as_ref(),
            Some(&keys),
            NewPrincipalRequest {
                tenant: tenant.into(),
                name: name.into(),
                roles,
                expires_at: None,
                totp,
            },
        )
        .await
        .unwrap()
    };
    let key = |c: &principals::CreatedPrincipal| c.key.expose().to_owned();
    let person = |c: principals::CreatedPrincipal| Person {
        id: c.record.principal.id.0,
        key: c.key.expose().to_owned(),
        totp: Arc::new(c.totp.unwrap()),
    };
    let detokenizer = create("acme", "payments", vec![Role::Detokenizer], false).await;
    Keys {
        tokenizer: key(&create("acme", "checkout", vec![Role::Tokenizer], false).await),
        other_tenant_tokenizer: key(
            &create("globex", "checkout", vec![Role::Tokenizer], false).await
        ),
        detokenizer: key(&detokenizer),
        detokenizer_id: detokenizer.record.principal.id.0,
        other_tenant_detokenizer: key(&create(
            "globex",
            "payments",
            vec![Role::Detokenizer],
            false,
        )
        .await),
        auditor: key(&create("acme", "compliance", vec![Role::Auditor], false).await),
        admin: key(&create("acme", "ops", vec![Role::Admin], false).await),
        requester: person(create("acme", "alice", vec![Role::Requester], true).await),
        approver: person(create("acme", "bob", vec![Role::Approver], true).await),
        approver2: person(create("acme", "carol", vec![Role::Approver], true).await),
        requester_approver: person(
            create("acme", "dave", vec![Role::Requester, Role::Approver], true).await,
        ),
    }
}

/// A clock for expiry tests, stopped at a round time.
pub fn manual_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc),
    ))
}

impl TestApp {
    /// Another instance on the same database (as behind a load balancer).
    pub async fn another_instance(&self) -> TestApp {
        start(
            Arc::clone(&self.db),
            self.master_key.clone(),
            self.keys.clone(),
            Options::default(),
        )
        .await
    }

    /// A new principal without a second factor; its API key and id.
    pub async fn create_principal(
        &self,
        tenant: &str,
        name: &str,
        roles: Vec<Role>,
    ) -> (String, Uuid) {
        let store = self.db.store(1).await;
        let created = principals::create(
            store.as_ref(),
            &SystemRandom::new(),
            &SystemClock,
            None,
            NewPrincipalRequest {
                tenant: tenant.into(),
                name: name.into(),
                roles,
                expires_at: None,
                totp: false,
            },
        )
        .await
        .unwrap();
        (
            created.key.expose().to_owned(),
            created.record.principal.id.0,
        )
    }

    /// Shuts the server down gracefully and waits until it has (its last audit checkpoint
    /// written).
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }

    /// `GET /v1/audit` with `query` (e.g. `?action=detokenize`).
    pub async fn audit(&self, key: &str, query: &str) -> Response {
        self.client
            .get(self.url(&format!("/v1/audit{query}")))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
    }

    /// The TOTP code of `person` at the server's time now.
    pub fn code(&self, person: &Person) -> String {
        person
            .totp
            .code_at(u64::try_from(self.clock.now().timestamp()).unwrap())
    }

    pub async fn create_request(&self, key: &str, body: &Value) -> Response {
        self.client
            .post(self.url("/v1/access-requests"))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_request(&self, key: &str, id: &str) -> Response {
        self.client
            .get(self.url(&format!("/v1/access-requests/{id}")))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
    }

    pub async fn list_requests(&self, key: &str, query: &str) -> Response {
        self.client
            .get(self.url(&format!("/v1/access-requests{query}")))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
    }

    /// Approves (or, with `deny`, denies) a request, with `body` as given.
    pub async fn decide(&self, key: &str, id: &str, verb: &str, body: Option<&Value>) -> Response {
        let mut request = self
            .client
            .post(self.url(&format!("/v1/access-requests/{id}/{verb}")))
            .bearer_auth(key);
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.unwrap()
    }

    /// Approves as `person`, with their current TOTP code.
    pub async fn approve(&self, person: &Person, id: &str) -> Response {
        let body = json!({"totp": self.code(person)});
        self.decide(&person.key, id, "approve", Some(&body)).await
    }

    pub async fn detokenize(&self, key: &str, grant: Option<&str>, tokens: &[&str]) -> Response {
        let mut request = self
            .client
            .post(self.url("/v1/detokenize"))
            .bearer_auth(key)
            .json(&json!({ "tokens": tokens }));
        if let Some(grant) = grant {
            request = request.header("x-access-grant", grant);
        }
        request.send().await.unwrap()
    }

    pub async fn list_grants(&self, key: &str, query: &str) -> Response {
        self.client
            .get(self.url(&format!("/v1/grants{query}")))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
    }

    pub async fn revoke(&self, key: &str, jti: &str) -> Response {
        self.client
            .post(self.url(&format!("/v1/grants/{jti}/revoke")))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
    }

    pub async fn revoke_all(&self, key: &str, body: Option<&Value>) -> Response {
        let mut request = self
            .client
            .post(self.url("/v1/grants/revoke-all"))
            .bearer_auth(key);
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.unwrap()
    }

    /// The payment service's auto-approved grant for any token; returns the request body.
    pub async fn checkout_grant(&self, max_uses: u32) -> Value {
        let response = self
            .create_request(
                &self.keys.detokenizer,
                &json!({
                    "any_token": true,
                    "purpose": "payment_authorization",
                    "reason": "authorize order 1001",
                    "duration_seconds": 60,
                    "max_uses": max_uses,
                }),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn tokenize(&self, key: &str, body: &Value) -> Response {
        self.client
            .post(self.url("/v1/tokens"))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn tokenize_batch(&self, key: &str, body: &Value) -> Response {
        self.client
            .post(self.url("/v1/tokens/batch"))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_token(&self, key: &str, token: &str) -> Response {
        self.client
            .get(self.url(&format!("/v1/tokens/{token}")))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete_token(&self, key: &str, token: &str) -> Response {
        self.client
            .delete(self.url(&format!("/v1/tokens/{token}")))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
    }

    /// Posts raw bytes with a chosen content type.
    pub async fn post_raw(
        &self,
        path: &str,
        key: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(key)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Tokenizes `pan` with the acme tokenizer and returns the token value.
    pub async fn token_for(&self, pan: &str) -> String {
        let response = self
            .tokenize(&self.keys.tokenizer, &json!({"value": pan}))
            .await;
        assert!(
            response.status().is_success(),
            "tokenize failed: {}",
            response.status()
        );
        response.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// The PAN of `token`, read through a fresh grant of the `checkout` policy from the vault at
/// `base` (another process, say) by the detokenizer whose key is `payments`.
pub async fn detokenize_at(base: &str, payments: &str, token: &str) -> String {
    let client = reqwest::Client::new();
    let grant: Value = client
        .post(format!("{base}/v1/access-requests"))
        .bearer_auth(payments)
        .json(
            &json!({"any_token": true, "purpose": "payment_authorization",
                      "reason": "order 5", "duration_seconds": 60, "max_uses": 1}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = client
        .post(format!("{base}/v1/detokenize"))
        .bearer_auth(payments)
        .header("x-access-grant", grant["grant"].as_str().unwrap())
        .json(&json!({"tokens": [token]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    body["data"][0]["value"].as_str().unwrap().to_owned()
}

/// The `detail` of each record of `action` in the trail's system scope (no tenant), newest
/// first, as the auditor whose key is `auditor` reads them from the vault at `base`.
pub async fn system_details(base: &str, auditor: &str, action: &str) -> Vec<String> {
    let records: Value = reqwest::Client::new()
        .get(format!("{base}/v1/audit?scope=system&action={action}"))
        .bearer_auth(auditor)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    records["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["detail"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Asserts a problem+json answer with `status` and `code`; returns the body.
pub async fn assert_problem(response: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let request_id = response
        .headers()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "code in {body}");
    assert_eq!(body["status"], status.as_u16());
    assert_eq!(body["request_id"], request_id.as_str());
    assert!(body["title"].is_string() && body["detail"].is_string() && body["type"].is_string());
    body
}

/// A Luhn-valid PAN of `len` digits starting with `prefix`, the rest random.
pub fn random_pan(prefix: &str, len: usize) -> String {
    let mut digits: Vec<u8> = prefix.bytes().map(|b| b - b'0').collect();
    let random = Uuid::new_v4();
    let mut bytes = random.as_bytes().iter().cycle();
    while digits.len() < len - 1 {
        digits.push(bytes.next().unwrap() % 10);
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    digits.push(u8::try_from((10 - sum % 10) % 10).unwrap());
    digits.iter().map(|d| char::from(b'0' + d)).collect()
}

/// Whether a string of digits passes Luhn.
pub fn luhn_valid(digits: &str) -> bool {
    strongroom::domain::luhn::is_valid(digits.as_bytes())
}

/// The `n`-th (0..100,000) Luhn-valid 16-digit PAN with these first six and last four digits:
/// the candidates an attacker holding a `six_four` token would try.
pub fn pan_in_bucket(first6: &str, last4: &str, n: u32) -> String {
    assert!(n < 100_000 && first6.len() == 6 && last4.len() == 4);
    // Positions 6..11 are the five digits of n; position 11 is chosen to satisfy Luhn. Counted
    // from the right it is the fifth digit (index 4), which Luhn does not double.
    for check in 0..10 {
        let pan = format!("{first6}{n:05}{check}{last4}");
        if luhn_valid(&pan) {
            return pan;
        }
    }
    unreachable!("one of ten digits completes a Luhn sum")
}

/// The problem body without what differs per request.
pub fn without_request_id(mut body: Value) -> Value {
    if let Some(map) = body.as_object_mut() {
        map.remove("request_id");
    }
    body
}

/// A value shaped like a six_four token (16 digits that fail the Luhn check) that no token
/// of the test has: a guess at a token.
pub fn unknown_token() -> String {
    loop {
        let guess = random_pan("4", 16).replace('4', "9");
        if !strongroom::domain::luhn::is_valid(guess.as_bytes()) {
            return guess;
        }
    }
}
