//! What each command does: connect, call the use case, print. The use cases record their own
//! changes (`service::principals::PrincipalAdmin`, `service::guard::GuardAdmin`).

use std::sync::Arc;
use std::time::Duration;

use super::admin::{
    CheckpointArgs, CliError, DatabaseArgs, command_audit_trail, connect_current,
    master_key_from_env, master_key_from_env_of_any_kind, optional_master_key, principal_admin,
};
use super::args::{AuditCommand, Cli, Command, DevCommand, PrincipalCommand, ServeArgs};
use super::{dev, guard, keys, tenant};
use crate::clock::SystemClock;
use crate::config::{ServeConfig, TlsFiles};
use crate::crypto::keys::MasterKey;
use crate::domain::PrincipalId;
use crate::random::SystemRandom;
use crate::service::audit;
use crate::service::keys::existing_checkpoint_key;
use crate::service::principals::NewPrincipalRequest;
use crate::service::{KeyService, KeySettings};
use crate::startup::{Application, shutdown_signal};
use crate::store::{self, SchemaStatus};

/// Runs the parsed command.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Keygen(args) => {
            let rng = SystemRandom::new();
            let key = MasterKey::generate_base64(&rng)?;
            match (args.shares, args.threshold) {
                (Some(shares), Some(threshold)) => {
                    let bytes = MasterKey::production_bytes(&key)?;
                    let fingerprint = MasterKey::from_base64(&key)?.fingerprint();
                    super::keys::print_shares(&bytes, &fingerprint, shares, threshold, args.json)?;
                    Ok(())
                }
                _ => {
                    println!("{}", key.as_str());
                    Ok(())
                }
            }
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
                        shared.clone(),
                        master,
                        Arc::new(SystemRandom::new()),
                        Arc::new(SystemClock),
                        KeySettings::default(),
                        audit.clone(),
                    )
                    .await
                    .map(Arc::new)?,
                ),
                _ => None,
            };
            let created = principal_admin(keys, audit)
                .create(NewPrincipalRequest {
                    tenant: tenant.clone(),
                    name,
                    roles,
                    expires_at,
                    totp,
                })
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
            let disabled = principal_admin(None, audit)
                .disable(PrincipalId(id))
                .await?;
            if disabled {
                println!("disabled principal {id}");
                Ok(())
            } else {
                Err(CliError(format!("no enabled principal {id}")))
            }
        }
        Command::Principal(PrincipalCommand::UnlockTotp {
            database,
            id,
            checkpoints,
        }) => {
            let master = optional_master_key()?;
            let shared = connect_current(&database).await?;
            let audit =
                command_audit_trail(&shared, master.as_ref(), checkpoints.audit_checkpoint_file)
                    .await?;
            if principal_admin(None, audit)
                .unlock_totp(PrincipalId(id))
                .await?
            {
                println!("unlocked the second factor of principal {id}");
                Ok(())
            } else {
                Err(CliError(format!("principal {id} has no second factor")))
            }
        }
        Command::Audit(AuditCommand::Verify {
            database,
            checkpoints,
        }) => verify_audit(&database, &checkpoints).await,
        Command::Serve(args) => serve(args).await,
        Command::Guard(command) => guard::run(command).await,
        Command::Keys(command) => keys::run(command).await,
        Command::Tenant(command) => tenant::run(command).await,
        Command::Dev {
            command: Some(DevCommand::Totp { name, data_dir }),
            ..
        } => dev::totp(&data_dir, &name),
        Command::Dev {
            command: None,
            listen,
            data_dir,
        } => {
            crate::telemetry::init_with_default("warn");
            dev::run(listen, &data_dir).await
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
    config.api.max_in_flight = usize::try_from(args.max_in_flight).unwrap_or(usize::MAX);
    config.trusted_proxies = args.trusted_proxies;
    config.access_request_ttl = Duration::from_secs(args.access_request_ttl_secs.max(1));
    config.audit_checkpoint_file = args.checkpoints.audit_checkpoint_file;
    config.audit_checkpoint_interval = Duration::from_millis(args.audit_checkpoint_interval_ms);
    config.tokenize_bucket_budget = args.tokenize_bucket_budget;
    config.totp_lockout_minutes = args.totp_lockout_minutes;
    config.audit_lanes = usize::try_from(args.audit_lanes).unwrap_or(1);
    config.keys.max_age = chrono::TimeDelta::days(i64::from(args.data_key_max_age_days));
    config.reencrypt_rows_per_second = args.reencrypt_rows_per_second;
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
