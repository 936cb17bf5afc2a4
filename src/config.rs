//! What `serve` runs with. Built by the CLI from flags and `STRONGROOM_*` variables, or
//! directly by tests.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use crate::api::ApiSettings;
use crate::crypto::keys::MasterKey;
use crate::service::KeySettings;
use crate::store::DatabaseUrl;

/// A certificate chain and its private key, both PEM files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
}

/// The configuration of a serving instance.
pub struct ServeConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// TLS, or plain HTTP when absent.
    pub tls: Option<TlsFiles>,
    /// Plain HTTP on a non-loopback address (behind a TLS-terminating proxy). Off by default.
    pub force_plain_http: bool,
    /// The access policy file (used by just-in-time access).
    pub policy_file: Option<PathBuf>,
    /// How long ten wrong TOTP codes lock a second factor, in minutes (30 at the least).
    pub totp_lockout_minutes: u64,
    /// The PostgreSQL URL. May hold a password: never printed.
    pub database_url: DatabaseUrl,
    /// The master key.
    pub master_key: MasterKey,
    /// Most database connections.
    pub db_pool_size: u32,
    /// HTTP limits.
    pub api: ApiSettings,
    /// DEK encryption counting.
    pub keys: KeySettings,
    /// How often expired tokens are purged.
    pub purge_interval: Duration,
    /// Longest a client may take to send a request's headers (slowloris).
    pub header_read_timeout: Duration,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<IpNet>,
    /// How long an access request may stay pending.
    pub access_request_ttl: Duration,
    /// Where audit checkpoints are appended (they are always logged too).
    pub audit_checkpoint_file: Option<PathBuf>,
    /// Longest between two checkpoints while records are written.
    pub audit_checkpoint_interval: Duration,
    /// New PANs per card bucket per rolling 24 h before the bucket is locked.
    pub tokenize_bucket_budget: u32,
    /// Audit appenders, each with a chain of its own (the embedded store always has one).
    pub audit_lanes: usize,
    /// Rows a second `serve` re-encrypts in the background from retired data keys onto the
    /// active one; 0 (the default) leaves it to `strongroom keys reencrypt`.
    pub reencrypt_rows_per_second: u32,
}

impl ServeConfig {
    /// Defaults for everything but the database and the key.
    pub fn new(database_url: impl Into<DatabaseUrl>, master_key: MasterKey) -> ServeConfig {
        ServeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls: None,
            force_plain_http: false,
            policy_file: None,
            database_url: database_url.into(),
            totp_lockout_minutes: 30,
            master_key,
            db_pool_size: 10,
            api: ApiSettings {
                request_timeout: Duration::from_secs(10),
                max_body_bytes: crate::api::DEFAULT_MAX_BODY_BYTES,
                rate_limit_per_second: 1000,
                rate_limit_burst: 2000,
                max_in_flight: 512,
                secure_cookies: false,
            },
            keys: KeySettings::default(),
            purge_interval: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(10),
            trusted_proxies: Vec::new(),
            access_request_ttl: Duration::from_secs(3600),
            audit_checkpoint_file: None,
            audit_checkpoint_interval: Duration::from_secs(1),
            tokenize_bucket_budget: crate::domain::guard::DEFAULT_BUCKET_BUDGET,
            audit_lanes: 2,
            reencrypt_rows_per_second: 0,
        }
    }
}

impl fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeConfig")
            .field("listen", &self.listen)
            .field("tls", &self.tls)
            .field("force_plain_http", &self.force_plain_http)
            .field("policy_file", &self.policy_file)
            .field("database_url", &self.database_url)
            .field("master_key", &self.master_key)
            .field("db_pool_size", &self.db_pool_size)
            .field("api", &self.api)
            .field("keys", &self.keys)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("access_request_ttl", &self.access_request_ttl)
            .field("audit_checkpoint_file", &self.audit_checkpoint_file)
            .field("audit_checkpoint_interval", &self.audit_checkpoint_interval)
            .field("tokenize_bucket_budget", &self.tokenize_bucket_budget)
            .field("totp_lockout_minutes", &self.totp_lockout_minutes)
            .field("audit_lanes", &self.audit_lanes)
            .field("reencrypt_rows_per_second", &self.reencrypt_rows_per_second)
            .finish()
    }
}
