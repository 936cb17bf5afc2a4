//! The command line's arguments: every command, flag and variable, with its `--help` text.

use std::net::SocketAddr;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use ipnet::IpNet;
use uuid::Uuid;

use super::admin::{CheckpointArgs, DatabaseArgs};
use super::guard::GuardCommand;
use super::keys::KeysCommand;
use super::tenant::TenantCommand;
use crate::domain::Role;

/// Strongroom: a card-data tokenization vault with just-in-time access.
///
/// Merchants tokenize card numbers over HTTPS; the numbers are stored encrypted (AES-256-GCM)
/// and nobody reads one back without a short-lived grant that an approval workflow minted for
/// them, for named tokens, a purpose and a time. Every change is in a hash-chained audit trail.
#[derive(Debug, Parser)]
#[command(name = "strongroom", version, about, after_help = TOUR)]
pub struct Cli {
    #[command(subcommand)]
    pub(super) command: Command,
}

/// Where to go from `strongroom --help`: the way the README walks.
const TOUR: &str = "\
Start here:
  strongroom dev                   a local vault in one command: embedded store, demo keys and
                                   policies, ready-to-paste calls; plain HTTP on loopback
  strongroom totp code bob         a demo person's one-time code (alice asks, bob approves)
  http://127.0.0.1:8080/console    the people's console: ask, approve, reveal, audit

Then production (README, \"Production\"):
  strongroom keygen --out FILE     a master key in a file only you can read; back it up
  strongroom migrate               DATABASE_URL=postgres://... (or sqlite:///... for one node)
  strongroom principal create      API keys for services and people; `principal list` shows them
  strongroom serve                 --tls-cert, --tls-key, --policy-file; `health` checks it

Keys (docs/keys.md): keygen --shares, keys status|rotate|split|rewrap, serve --sealed, unseal.

Roles: tokenizer, detokenizer, requester, approver, auditor, admin.
Engines: postgres://USER:PASSWORD@HOST:5432/DB (production), sqlite:///PATH (one node).
Environment: DATABASE_URL; STRONGROOM_MASTER_KEY or STRONGROOM_MASTER_KEY_FILE (or
STRONGROOM_MASTER_KEY_PKCS11); a STRONGROOM_* variable for every flag of `serve`;
STRONGROOM_LOG, the log filter (default info; e.g. warn, or strongroom=debug): JSON lines on
stdout. `strongroom COMMAND --help` explains each command.";

#[derive(Debug, Subcommand)]
pub(super) enum Command {
    /// Run a local vault in one command: the embedded store, a generated master key, demo
    /// principals and policies, plain HTTP on loopback. Not for real card data.
    Dev {
        /// Address to listen on (loopback only): an IP address and port, or localhost:PORT.
        #[arg(long, default_value = "127.0.0.1:8080", value_parser = parse_listen)]
        listen: SocketAddr,
        /// Where the database, master key, credentials and checkpoints live.
        #[arg(long, default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
    /// One-time codes of the dev vault's demo people.
    #[command(subcommand)]
    Totp(TotpCommand),
    /// Print a new random master key (base64) for STRONGROOM_MASTER_KEY, or, with --shares and
    /// --threshold, only custodians' shares of a new key (the key itself is never shown): any
    /// M of the N shares rebuild it (`serve --sealed`), fewer reveal nothing.
    Keygen(ShareArgs),
    /// Apply the database migrations. Refuses a development or weak STRONGROOM_MASTER_KEY if
    /// one is set (it is not needed).
    Migrate(DatabaseArgs),
    /// Manage principals (API callers).
    #[command(subcommand)]
    Principal(PrincipalCommand),
    /// Serve the API and the console (reads STRONGROOM_MASTER_KEY or
    /// STRONGROOM_MASTER_KEY_FILE; refuses a development or weak key). Logs JSON lines on
    /// stdout, filtered by STRONGROOM_LOG (default info).
    Serve(ServeArgs),
    /// Work with the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Review the enumeration guard: locked card buckets and import windows.
    #[command(subcommand)]
    Guard(GuardCommand),
    /// The vault's keys: status (never their material), rotation, re-encryption, rewrap,
    /// destruction.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Act on a whole tenant: crypto-shred it.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Hand your custodian's share to a sealed instance (`serve --sealed`): asks for it without
    /// showing what you type (or reads one line from standard input), names a mistyped share
    /// before sending anything, and says how many shares are still needed. Each instance is
    /// unsealed on its own.
    Unseal {
        /// The instance, e.g. https://vault-1.internal:8443 (plain http only on loopback).
        #[arg(long)]
        url: String,
        /// The CA certificate (PEM) that signed the instance's TLS certificate.
        #[arg(long)]
        cacert: Option<PathBuf>,
    },
    /// Ask a running vault whether it is up: GET /healthz, exit 0 on 200 and 1 otherwise
    /// (for a container's HEALTHCHECK or a load balancer's script). A sealed vault is up (it
    /// waits for its custodians; restarting it would lose their shares): --ready asks /readyz
    /// instead, which is 503 while sealed, or while the database or audit trail is unusable.
    Health {
        /// Ask /readyz (ready to serve card data) instead of /healthz (the process is up).
        #[arg(long)]
        ready: bool,
        /// The vault, e.g. https://localhost:8443.
        #[arg(
            long,
            env = "STRONGROOM_HEALTH_URL",
            default_value = "http://127.0.0.1:8080"
        )]
        url: String,
        /// The CA certificate (PEM) that signed the vault's TLS certificate.
        #[arg(long, env = "STRONGROOM_HEALTH_CACERT")]
        cacert: Option<PathBuf>,
        /// Longest to wait for the answer, in milliseconds.
        #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
        timeout_ms: u64,
    },
}

/// How to split a master key into custodians' shares (Shamir's scheme over GF(2^8)).
#[derive(Debug, Args)]
pub(super) struct ShareArgs {
    /// How many shares to make, one per custodian (2 to 16).
    #[arg(long, requires = "threshold", value_parser = clap::value_parser!(u8).range(2..=16))]
    pub(super) shares: Option<u8>,
    /// How many shares rebuild the key (2 up to --shares).
    #[arg(long, requires = "shares", value_parser = clap::value_parser!(u8).range(2..=16))]
    pub(super) threshold: Option<u8>,
    /// Print {"shares": [...], "threshold": M} instead of one share a line.
    #[arg(long, requires = "shares")]
    pub(super) json: bool,
    /// Make the key inside an HSM instead (PKCS#11, `module=PATH;token=TOKEN;label=KEY-LABEL`,
    /// the PIN from STRONGROOM_PKCS11_PIN): a non-extractable AES-256 key that never leaves it.
    /// Prints its fingerprint.
    #[arg(long, conflicts_with = "shares")]
    pub(super) pkcs11: Option<String>,
    /// Write the key to this new file, readable by you only (mode 0600), instead of printing
    /// it; serve with STRONGROOM_MASTER_KEY_FILE=FILE. An existing file is never overwritten.
    /// Back the file up offline: without the key no stored card can be read.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["shares", "pkcs11"])]
    pub(super) out: Option<PathBuf>,
    /// With --out: when the file already holds a valid key, keep it and succeed (for a
    /// container's first-start step that runs on every start).
    #[arg(long, requires = "out")]
    pub(super) keep_existing: bool,
}

/// Where `strongroom dev` keeps its vault unless told otherwise.
pub(super) const DEFAULT_DATA_DIR: &str = ".strongroom-dev";

/// One-time codes.
#[derive(Debug, Subcommand)]
pub(super) enum TotpCommand {
    /// Print the current one-time code of a demo person of `strongroom dev` (alice, the
    /// requester; bob, the approver), to ask, approve or sign in to the console with. The code
    /// goes to standard output alone (for `$(...)`), how long it stays valid to standard error.
    /// Only for the demo people of a dev data directory, which keeps their secrets on purpose:
    /// a real person's code comes from their authenticator app.
    Code {
        /// The demo person's name (alice or bob).
        name: String,
        /// The dev vault's data directory.
        #[arg(long, default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum AuditCommand {
    /// Verify every hash chain, and every checkpoint in the checkpoint file, naming the first
    /// broken record. Checking checkpoints needs STRONGROOM_MASTER_KEY.
    Verify {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        checkpoints: CheckpointArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum PrincipalCommand {
    /// Create a principal (and its tenant if new) and print its API key once.
    Create {
        #[command(flatten)]
        database: DatabaseArgs,
        /// The tenant (merchant) name.
        #[arg(long)]
        tenant: String,
        /// The principal's name, unique in the tenant.
        #[arg(long)]
        name: String,
        /// A role; repeat for several: tokenizer (tokenize, look up, delete), detokenizer (a
        /// payment service: detokenize under a grant), requester (a person who asks for
        /// access), approver (decides others' requests), auditor (reads the trail and
        /// reports), admin (revokes grants; cannot be combined with a card-data role).
        #[arg(long = "role", required = true, value_parser = parse_role)]
        roles: Vec<Role>,
        /// When the key stops working (RFC 3339).
        #[arg(long)]
        expires_at: Option<DateTime<Utc>>,
        /// Enrol a TOTP second factor (for people); the secret is shown once and stored
        /// encrypted, which needs STRONGROOM_MASTER_KEY.
        #[arg(long)]
        totp: bool,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        checkpoints: CheckpointArgs,
    },
    /// Lift the lock of a principal's second factor (ten wrong TOTP codes in a row lock it for
    /// `--totp-lockout-minutes`) once its owner is known to hold it. Audited.
    UnlockTotp {
        #[command(flatten)]
        database: DatabaseArgs,
        /// The principal's id.
        #[arg(long)]
        id: Uuid,
        #[command(flatten)]
        checkpoints: CheckpointArgs,
    },
    /// List principals (all tenants, or one): id, tenant, name, roles, second factor, when
    /// created, when the key expires, when it was disabled. Never a key or a secret.
    List {
        #[command(flatten)]
        database: DatabaseArgs,
        /// Only this tenant's (by name).
        #[arg(long)]
        tenant: Option<String>,
        /// Print {"principals": [...]} instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one principal, by id or by tenant and name.
    Show {
        #[command(flatten)]
        database: DatabaseArgs,
        /// The principal's id.
        #[arg(long, conflicts_with_all = ["tenant", "name"], required_unless_present = "name")]
        id: Option<Uuid>,
        /// Its tenant's name (with --name).
        #[arg(long, requires = "name")]
        tenant: Option<String>,
        /// Its name in the tenant (with --tenant).
        #[arg(long, requires = "tenant")]
        name: Option<String>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Disable a principal's key at once.
    Disable {
        #[command(flatten)]
        database: DatabaseArgs,
        /// The principal's id.
        #[arg(long)]
        id: Uuid,
        #[command(flatten)]
        checkpoints: CheckpointArgs,
    },
}

#[derive(Debug, Clone, Args)]
pub(super) struct ServeArgs {
    #[command(flatten)]
    pub(super) database: DatabaseArgs,
    /// Address to listen on: an IP address and port, or localhost:PORT. Plain HTTP only on
    /// loopback unless forced.
    #[arg(long, env = "STRONGROOM_LISTEN", default_value = "127.0.0.1:8080", value_parser = parse_listen)]
    pub(super) listen: SocketAddr,
    /// TLS certificate chain (PEM).
    #[arg(long, env = "STRONGROOM_TLS_CERT", requires = "tls_key")]
    pub(super) tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "STRONGROOM_TLS_KEY", requires = "tls_cert")]
    pub(super) tls_key: Option<PathBuf>,
    /// Access policy file (TOML, `[[policy]]` tables: README, Policies). Without one every
    /// access request is refused and nobody can detokenize (a warning says so at start).
    #[arg(long, env = "STRONGROOM_POLICY_FILE")]
    pub(super) policy_file: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address (only behind a TLS-terminating proxy).
    #[arg(long, env = "STRONGROOM_FORCE_PLAIN_HTTP")]
    pub(super) force_plain_http: bool,
    /// The master key held in an HSM instead of STRONGROOM_MASTER_KEY, through PKCS#11:
    /// `module=PATH;token=TOKEN-LABEL;label=KEY-LABEL` (a non-extractable AES-256 key, made by
    /// `strongroom keygen --pkcs11`); the user PIN from STRONGROOM_PKCS11_PIN. Every wrap and
    /// unwrap of the vault's keys happens in the device.
    #[arg(long, env = "STRONGROOM_MASTER_KEY_PKCS11")]
    pub(super) master_key_pkcs11: Option<String>,
    /// Start sealed, without STRONGROOM_MASTER_KEY: only /healthz, /readyz (503, reason
    /// `sealed`) and POST /v1/sys/unseal answer until custodians' shares (`keygen --shares`,
    /// `keys split`) rebuild the master key; then the vault serves. POST /v1/sys/seal (an
    /// admin) seals it again.
    #[arg(long, env = "STRONGROOM_SEALED")]
    pub(super) sealed: bool,
    /// With no STRONGROOM_MASTER_KEY set: start sealed, and take only shares of a split with
    /// this threshold.
    #[arg(long, env = "STRONGROOM_UNSEAL_THRESHOLD",
          value_parser = clap::value_parser!(u8).range(2..=16))]
    pub(super) unseal_threshold: Option<u8>,
    /// Most database connections.
    #[arg(long, env = "STRONGROOM_DB_POOL_SIZE", default_value_t = 10)]
    pub(super) db_pool_size: u32,
    /// Longest a request may run, in seconds.
    #[arg(long, env = "STRONGROOM_REQUEST_TIMEOUT_SECS", default_value_t = 10)]
    pub(super) request_timeout_secs: u64,
    /// Largest request body, in bytes.
    #[arg(long, env = "STRONGROOM_MAX_BODY_BYTES", default_value_t = crate::api::DEFAULT_MAX_BODY_BYTES)]
    pub(super) max_body_bytes: usize,
    /// Sustained requests per second per principal, per instance (0: no limit).
    #[arg(long, env = "STRONGROOM_RATE_LIMIT_PER_SECOND", default_value_t = 1000)]
    pub(super) rate_limit_per_second: u32,
    /// Requests a principal may burst above its rate.
    #[arg(long, env = "STRONGROOM_RATE_LIMIT_BURST", default_value_t = 2000)]
    pub(super) rate_limit_burst: u32,
    /// API requests served at once by this instance; past it a request is answered `503
    /// overloaded` at once rather than queued.
    #[arg(long, env = "STRONGROOM_MAX_IN_FLIGHT", default_value_t = 512,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub(super) max_in_flight: u64,
    /// A proxy (CIDR) whose X-Forwarded-For names the client; repeat, or comma-separate in the
    /// variable.
    #[arg(
        long = "trusted-proxy",
        env = "STRONGROOM_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub(super) trusted_proxies: Vec<IpNet>,
    /// How long an access request may stay pending, in seconds (1 to 30 days' worth).
    #[arg(
        long,
        env = "STRONGROOM_ACCESS_REQUEST_TTL_SECS",
        default_value_t = 3600,
        value_parser = clap::value_parser!(u64).range(1..=2_592_000)
    )]
    pub(super) access_request_ttl_secs: u64,
    #[command(flatten)]
    pub(super) checkpoints: CheckpointArgs,
    /// Longest between two audit checkpoints while records are written, in milliseconds.
    #[arg(
        long,
        env = "STRONGROOM_AUDIT_CHECKPOINT_INTERVAL_MS",
        default_value_t = 1000
    )]
    pub(super) audit_checkpoint_interval_ms: u64,
    /// The data key's cryptoperiod, in days: an active data key older than this retires and a
    /// new one takes over (recorded as `key.rotate`, by age), checked every minute. 1 to 3650.
    #[arg(
        long,
        env = "STRONGROOM_DATA_KEY_MAX_AGE_DAYS",
        default_value_t = 365,
        value_parser = clap::value_parser!(u32).range(1..=3650)
    )]
    pub(super) data_key_max_age_days: u32,
    /// Re-encrypt rows still sealed under retired data keys onto the active one in the
    /// background, at most this many rows a second (each batch committed with its
    /// `key.reencrypt` record; progress in the metrics
    /// `strongroom_reencrypt_rows_remaining` and `strongroom_reencrypted_rows_total`).
    /// 0, the default, leaves it to `strongroom keys reencrypt`. Up to 100000.
    #[arg(
        long,
        env = "STRONGROOM_REENCRYPT_ROWS_PER_SECOND",
        default_value_t = 0,
        value_parser = clap::value_parser!(u32).range(0..=100_000)
    )]
    pub(super) reencrypt_rows_per_second: u32,
    /// Audit appenders ("lanes"), each with a hash chain of its own: while one commits its
    /// batch of writes and records, the next runs its transaction. 1 to 8; the embedded
    /// store always uses one.
    #[arg(
        long,
        env = "STRONGROOM_AUDIT_LANES",
        default_value_t = 2,
        value_parser = clap::value_parser!(u64).range(1..=8)
    )]
    pub(super) audit_lanes: u64,
    /// How long ten wrong TOTP codes in a row lock a person's second factor, in minutes: at
    /// least 30 (PCI DSS 8.3.4), at most 10080 (7 days). `strongroom principal unlock-totp`
    /// lifts a lock early.
    #[arg(
        long,
        env = "STRONGROOM_TOTP_LOCKOUT_MINUTES",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(30..=10_080)
    )]
    pub(super) totp_lockout_minutes: u64,
    /// New card numbers per card bucket (tenant, first six, last four, length) per rolling
    /// 24 hours before every tokenize in the bucket is refused as enumeration: an attacker's
    /// chance of finding one card from its token is budget / 100,000 per day.
    #[arg(
        long,
        env = "STRONGROOM_TOKENIZE_BUCKET_BUDGET",
        default_value_t = crate::domain::guard::DEFAULT_BUCKET_BUDGET,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub(super) tokenize_bucket_budget: u32,
}

/// `--listen`: an IP address and port, or `localhost:PORT` (this machine only). Other host
/// names are refused rather than resolved: which interfaces a vault listens on must be
/// what the operator wrote, not what a resolver answers.
pub(super) fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let hint = "give an IP address and port, e.g. 127.0.0.1:8080 (this machine only), \
                0.0.0.0:8443 (every interface), [::1]:8080, or localhost:PORT";
    match s.rsplit_once(':') {
        Some((host, port)) if host.eq_ignore_ascii_case("localhost") => port
            .parse::<u16>()
            .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
            .map_err(|_| format!("{port:?} is not a port (0 to 65535)")),
        Some(_) => Err(format!("{s:?} is not an address to listen on: {hint}")),
        None => Err(format!("{s:?} has no port: {hint}")),
    }
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse::<Role>().map_err(|e| e.to_string())
}
