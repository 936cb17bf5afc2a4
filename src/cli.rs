//! The `strongroom` command line: parse, dispatch, print.
//!
//! Every flag of `serve` has a `STRONGROOM_*` variable. The master key is read from
//! `STRONGROOM_MASTER_KEY` only (never a flag, so it stays out of `ps` and shell history),
//! and no message ever prints it or the database URL.
//!
//! Which master keys a command takes: a weak one (see `crypto::key_strength`) nowhere; a
//! development one (made by `strongroom dev`) only where it can be the only key there is and
//! nothing is served: `dev` itself and `audit verify`, which checks a dev vault's trail too.
//! `serve`, `migrate` and the `principal` commands refuse it, so that a key from a laptop's
//! data directory never protects, prepares or administers a real vault.

pub mod admin;
mod guard;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use ipnet::IpNet;
use uuid::Uuid;

use crate::clock::{Clock, SystemClock};
use crate::config::{ServeConfig, TlsFiles};
use crate::crypto::keys::MasterKey;
use crate::domain::audit::{Action, AuditEvent, Outcome};
use crate::domain::{PrincipalId, Role};
use crate::random::SystemRandom;
use crate::service::audit;
use crate::service::keys::existing_checkpoint_key;
use crate::service::principals::{self, NewPrincipalRequest};
use crate::service::{KeyService, KeySettings};
use crate::startup::{Application, shutdown_signal};
use crate::store::{self, SchemaStatus};
use admin::{
    CheckpointArgs, CliError, DatabaseArgs, command_audit_trail, connect_current,
    create_principal_audited, master_key_from_env, master_key_from_env_of_any_kind,
    optional_master_key, record_or_fail,
};

/// Strongroom: a card-data tokenization vault with just-in-time access.
#[derive(Debug, Parser)]
#[command(name = "strongroom", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a new random master key (base64) for STRONGROOM_MASTER_KEY.
    Keygen,
    /// Apply the database migrations. Refuses a development or weak STRONGROOM_MASTER_KEY if
    /// one is set (it is not needed).
    Migrate(DatabaseArgs),
    /// Manage principals (API callers).
    #[command(subcommand)]
    Principal(PrincipalCommand),
    /// Serve the API (reads STRONGROOM_MASTER_KEY; refuses a development or weak one).
    Serve(ServeArgs),
    /// Work with the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Review the enumeration guard: locked card buckets and import windows.
    #[command(subcommand)]
    Guard(guard::GuardCommand),
    /// Run a local vault in one command: the embedded store, a generated master key, demo
    /// principals and policies, plain HTTP on loopback. Not for real card data.
    Dev {
        /// Address to listen on (loopback only).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Where the database, master key, credentials and checkpoints live.
        #[arg(long, default_value = ".strongroom-dev")]
        data_dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
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
enum PrincipalCommand {
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
        /// A role; repeat for several. admin cannot be combined with a card-data role.
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

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    /// Address to listen on. Plain HTTP only on loopback unless forced.
    #[arg(long, env = "STRONGROOM_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// TLS certificate chain (PEM).
    #[arg(long, env = "STRONGROOM_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "STRONGROOM_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Access policy file (TOML).
    #[arg(long, env = "STRONGROOM_POLICY_FILE")]
    policy_file: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address (only behind a TLS-terminating proxy).
    #[arg(long, env = "STRONGROOM_FORCE_PLAIN_HTTP")]
    force_plain_http: bool,
    /// Most database connections.
    #[arg(long, env = "STRONGROOM_DB_POOL_SIZE", default_value_t = 10)]
    db_pool_size: u32,
    /// Longest a request may run, in seconds.
    #[arg(long, env = "STRONGROOM_REQUEST_TIMEOUT_SECS", default_value_t = 10)]
    request_timeout_secs: u64,
    /// Largest request body, in bytes.
    #[arg(long, env = "STRONGROOM_MAX_BODY_BYTES", default_value_t = 4 << 20)]
    max_body_bytes: usize,
    /// Sustained requests per second per principal, per instance (0: no limit).
    #[arg(long, env = "STRONGROOM_RATE_LIMIT_PER_SECOND", default_value_t = 1000)]
    rate_limit_per_second: u32,
    /// Requests a principal may burst above its rate.
    #[arg(long, env = "STRONGROOM_RATE_LIMIT_BURST", default_value_t = 2000)]
    rate_limit_burst: u32,
    /// A proxy (CIDR) whose X-Forwarded-For names the client; repeat, or comma-separate in the
    /// variable.
    #[arg(
        long = "trusted-proxy",
        env = "STRONGROOM_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    trusted_proxies: Vec<IpNet>,
    /// How long an access request may stay pending, in seconds (1 to 30 days' worth).
    #[arg(
        long,
        env = "STRONGROOM_ACCESS_REQUEST_TTL_SECS",
        default_value_t = 3600,
        value_parser = clap::value_parser!(u64).range(1..=2_592_000)
    )]
    access_request_ttl_secs: u64,
    #[command(flatten)]
    checkpoints: CheckpointArgs,
    /// Longest between two audit checkpoints while records are written, in milliseconds.
    #[arg(
        long,
        env = "STRONGROOM_AUDIT_CHECKPOINT_INTERVAL_MS",
        default_value_t = 1000
    )]
    audit_checkpoint_interval_ms: u64,
    /// New card numbers per card bucket (tenant, first six, last four, length) per rolling
    /// 24 hours before every tokenize in the bucket is refused as enumeration: an attacker's
    /// chance of finding one card from its token is budget / 100,000 per day.
    #[arg(
        long,
        env = "STRONGROOM_TOKENIZE_BUCKET_BUDGET",
        default_value_t = crate::domain::guard::DEFAULT_BUCKET_BUDGET,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    tokenize_bucket_budget: u32,
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse::<Role>().map_err(|e| e.to_string())
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Keygen => {
            let key = MasterKey::generate_base64(&SystemRandom::new())?;
            println!("{}", key.as_str());
            Ok(())
        }
        Command::Migrate(db) => {
            // Migrate does not use the key, but it is the first step of a deployment: an
            // environment that would serve under a development or weak key stops here, before
            // the schema is touched.
            optional_master_key()?;
            let store = store::open(&db.database_url, 2).await?;
            let before = store.schema_status().await?;
            store.migrate().await?;
            match before {
                SchemaStatus::Behind { pending } => {
                    println!("applied {pending} migration(s); schema is current")
                }
                _ => println!("schema is current"),
            }
            Ok(())
        }
        Command::Principal(PrincipalCommand::Create {
            database,
            tenant,
            name,
            roles,
            expires_at,
            totp,
            json,
            checkpoints,
        }) => {
            // The key first: a refused key is a configuration error, reported before the
            // database is reached.
            let master = if totp {
                Some(master_key_from_env()?)
            } else {
                optional_master_key()?
            };
            let shared = connect_current(&database).await?;
            let audit =
                command_audit_trail(&shared, master.as_ref(), checkpoints.audit_checkpoint_file)
                    .await?;
            let keys = match master {
                Some(master) if totp => Some(
                    KeyService::load(
                        Arc::clone(&shared),
                        master,
                        Arc::new(SystemRandom::new()),
                        Arc::new(SystemClock),
                        KeySettings::default(),
                        audit.clone(),
                    )
                    .await?,
                ),
                _ => None,
            };
            let created = create_principal_audited(
                shared.as_ref(),
                keys.as_ref(),
                &audit,
                NewPrincipalRequest {
                    tenant: tenant.clone(),
                    name,
                    roles,
                    expires_at,
                    totp,
                },
            )
            .await?;
            let (record, key) = (&created.record, &created.key);
            let p = &record.principal;
            let roles: Vec<&str> = p.roles.iter().map(|r| r.as_str()).collect();
            let account = format!("{tenant}/{}", record.principal.name);
            let totp_secret = created.totp.as_ref().map(|t| t.to_base32());
            let otpauth = created
                .totp
                .as_ref()
                .map(|t| t.otpauth_uri("Strongroom", &account));
            if json {
                let out = serde_json::json!({
                    "id": p.id,
                    "tenant": tenant,
                    "tenant_id": p.tenant,
                    "name": p.name,
                    "roles": p.roles,
                    "key": key.expose(),
                    "expires_at": record.expires_at,
                });
                let mut out = out;
                if let (Some(secret), Some(uri), Some(map)) =
                    (&totp_secret, &otpauth, out.as_object_mut())
                {
                    map.insert("totp_secret".into(), secret.as_str().into());
                    map.insert("otpauth_uri".into(), uri.as_str().into());
                }
                println!("{out}");
            } else {
                println!(
                    "created principal {} ({}) in tenant {tenant} with roles {}",
                    p.id,
                    p.name,
                    roles.join(", ")
                );
                println!("API key (shown once, store it now): {}", key.expose());
                if let (Some(secret), Some(uri)) = (&totp_secret, &otpauth) {
                    println!(
                        "TOTP secret (shown once, add it to an authenticator app): {}",
                        secret.as_str()
                    );
                    println!("TOTP URI: {}", uri.as_str());
                }
            }
            Ok(())
        }
        Command::Principal(PrincipalCommand::Disable {
            database,
            id,
            checkpoints,
        }) => {
            let master = optional_master_key()?;
            let shared = connect_current(&database).await?;
            let audit =
                command_audit_trail(&shared, master.as_ref(), checkpoints.audit_checkpoint_file)
                    .await?;
            let disabled =
                principals::disable(shared.as_ref(), &SystemClock, PrincipalId(id)).await?;
            let mut event = AuditEvent::new(Action::PrincipalDisable, SystemClock.now());
            event.subject = Some(id.to_string());
            if !disabled {
                event.outcome = Outcome::Denied;
                event.code = Some("not_found".to_owned());
            }
            record_or_fail(&audit, event).await?;
            if disabled {
                println!("disabled principal {id}");
                Ok(())
            } else {
                Err(CliError(format!("no enabled principal {id}")))
            }
        }
        Command::Audit(AuditCommand::Verify {
            database,
            checkpoints,
        }) => verify_audit(&database, &checkpoints).await,
        Command::Serve(args) => serve(args).await,
        Command::Guard(command) => guard::run(command).await,
        Command::Dev { listen, data_dir } => {
            crate::telemetry::init_with_default("warn");
            crate::dev::run(listen, &data_dir).await
        }
    }
}

async fn verify_audit(
    database: &DatabaseArgs,
    checkpoints: &CheckpointArgs,
) -> Result<(), CliError> {
    let store = connect_current(database).await?;
    let anchored = match &checkpoints.audit_checkpoint_file {
        Some(path) => {
            // A dev vault's trail can only be checked with its dev key, and checking serves
            // nothing and creates no key.
            let (master, _) = master_key_from_env_of_any_kind()?;
            let key = existing_checkpoint_key(store.as_ref(), &master).await?;
            audit::read_checkpoints(path, &key)?
        }
        None => {
            eprintln!(
                "warning: no checkpoint file given: records cut off the end of a chain cannot be detected"
            );
            Vec::new()
        }
    };
    match audit::verify(store.as_ref(), anchored).await? {
        Ok(v) => {
            println!(
                "audit trail verified: {} records in {} chains; {} checkpoints matched",
                v.records, v.chains, v.checkpoints
            );
            Ok(())
        }
        Err(e) => Err(CliError(format!("audit trail broken: {e}"))),
    }
}

async fn serve(args: ServeArgs) -> Result<(), CliError> {
    crate::telemetry::init();
    let master_key = master_key_from_env()?;
    let mut config = ServeConfig::new(args.database.database_url, master_key);
    config.listen = args.listen;
    config.tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        _ => None,
    };
    config.force_plain_http = args.force_plain_http;
    config.policy_file = args.policy_file;
    config.db_pool_size = args.db_pool_size.max(1);
    config.api.request_timeout = Duration::from_secs(args.request_timeout_secs.max(1));
    config.api.max_body_bytes = args.max_body_bytes;
    config.api.rate_limit_per_second = args.rate_limit_per_second;
    config.api.rate_limit_burst = args.rate_limit_burst;
    config.trusted_proxies = args.trusted_proxies;
    config.access_request_ttl = Duration::from_secs(args.access_request_ttl_secs.max(1));
    config.audit_checkpoint_file = args.checkpoints.audit_checkpoint_file;
    config.audit_checkpoint_interval = Duration::from_millis(args.audit_checkpoint_interval_ms);
    config.tokenize_bucket_budget = args.tokenize_bucket_budget;
    if config.force_plain_http && !config.listen.ip().is_loopback() && config.tls.is_none() {
        tracing::warn!(listen = %config.listen, "serving plain HTTP on a non-loopback address (forced)");
    }
    let app = Application::build(config).await?;
    tracing::info!(
        listen = %app.local_addr(),
        tls = app.is_tls(),
        version = env!("CARGO_PKG_VERSION"),
        "strongroom serving"
    );
    app.run_until_stopped(shutdown_signal()).await?;
    Ok(())
}
