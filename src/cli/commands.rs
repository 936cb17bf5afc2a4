//! What each command does: connect, call the use case, print. The use cases record their own
//! changes (`service::principals::PrincipalAdmin`, `service::guard::GuardAdmin`).

use std::sync::Arc;
use std::time::Duration;

use super::admin::{
    CheckpointArgs, CliError, DatabaseArgs, command_audit_trail, connect_current,
    master_key_from_env, master_key_from_env_of_any_kind, optional_master_key, principal_admin,
};
use super::args::{
    AuditCommand, Cli, Command, PrincipalCommand, ServeArgs, ShareArgs, TotpCommand,
};
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
use crate::startup::{Application, SealedConfig, Stopped, run_sealed, shutdown_signal};
use crate::store::{self, SchemaStatus};

/// Runs the parsed command.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Keygen(args) if args.pkcs11.is_some() => {
            let text = args.pkcs11.unwrap_or_default();
            let spec: crate::hsm::Pkcs11Spec = text.parse()?;
            crate::hsm::generate(&spec)?;
            let key = super::admin::hsm_master_key(&text)?;
            println!(
                "made a non-extractable AES-256 key labelled {} in token {}; fingerprint {}: \
                 serve with --master-key-pkcs11 '{text}'",
                spec.label,
                spec.token,
                key.fingerprint()
            );
            Ok(())
        }
        Command::Keygen(ShareArgs {
            out: Some(path),
            keep_existing,
            ..
        }) => keygen_to_file(&path, keep_existing),
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
            let named = |e| super::admin::as_user(e, &db.database_url);
            let before = store.schema_status().await.map_err(named)?;
            store.migrate().await.map_err(named)?;
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
        Command::Principal(PrincipalCommand::List {
            database,
            tenant,
            json,
        }) => {
            let store = connect_current(&database).await?;
            let listed = store.list_principals(tenant.as_deref()).await?;
            if let (Some(tenant), true) = (&tenant, listed.is_empty()) {
                return Err(CliError(format!(
                    "no tenant named {tenant:?} has principals"
                )));
            }
            super::principals::print_list(&listed, json);
            Ok(())
        }
        Command::Principal(PrincipalCommand::Show {
            database,
            id,
            tenant,
            name,
            json,
        }) => {
            let store = connect_current(&database).await?;
            let listed = store.list_principals(tenant.as_deref()).await?;
            let found = listed.iter().find(|p| {
                let principal = &p.record.principal;
                id.is_some_and(|id| principal.id.0 == id)
                    || name.as_deref().is_some_and(|n| principal.name == n)
            });
            match found {
                Some(listing) => {
                    super::principals::print_one(listing, json);
                    Ok(())
                }
                None => Err(CliError(match (id, tenant, name) {
                    (Some(id), _, _) => format!("no principal {id}"),
                    (_, Some(tenant), Some(name)) => {
                        format!("no principal named {name:?} in tenant {tenant:?}")
                    }
                    _ => "no such principal".into(),
                })),
            }
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
        Command::Unseal { url, cacert } => super::unseal::run(&url, cacert).await,
        Command::Tenant(command) => tenant::run(command).await,
        Command::Totp(TotpCommand::Code { name, data_dir }) => dev::totp(&data_dir, &name),
        Command::Health {
            ready,
            url,
            cacert,
            timeout_ms,
        } => {
            let path = if ready { "/readyz" } else { "/healthz" };
            super::client::health(&url, path, cacert, Duration::from_millis(timeout_ms)).await
        }
        Command::Dev { listen, data_dir } => {
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

/// `keygen --out FILE`: a new production key in a new file only its owner can read; with
/// `keep_existing`, a file that already holds a valid key is left as it is.
fn keygen_to_file(path: &std::path::Path, keep_existing: bool) -> Result<(), CliError> {
    let shown = path.display();
    if keep_existing && path.exists() {
        let text = super::admin::read_key_file(path)?;
        let key = MasterKey::from_base64(&text).map_err(|e| {
            CliError(format!(
                "{shown} holds no usable master key: {}",
                e.describe_as("the key")
            ))
        })?;
        println!(
            "kept the master key already in {shown} (fingerprint {})",
            key.fingerprint()
        );
        return Ok(());
    }
    let key = MasterKey::generate_base64(&SystemRandom::new())?;
    let fingerprint = MasterKey::from_base64(&key)?.fingerprint();
    // Sized up front, so that adding the newline moves no copy of the key in memory.
    let mut text = zeroize::Zeroizing::new(String::with_capacity(key.len() + 1));
    text.push_str(key.as_str());
    text.push('\n');
    super::admin::write_private(path, text.as_bytes()).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            CliError(format!(
                "{shown} exists and is not overwritten (a key in it may be the only copy)"
            ))
        } else {
            CliError(format!("cannot write {shown}: {e}"))
        }
    })?;
    println!(
        "wrote a new master key to {shown} (mode 0600, fingerprint {fingerprint}); serve with \
         STRONGROOM_MASTER_KEY_FILE={shown}. Back the file up offline now: without it no \
         stored card can be read again."
    );
    Ok(())
}

async fn serve(mut args: ServeArgs) -> Result<(), CliError> {
    crate::telemetry::init();
    // A variable set to nothing names no HSM key.
    args.master_key_pkcs11 = args
        .master_key_pkcs11
        .filter(|spec| !spec.trim().is_empty());
    // Sealed: asked for, or no key in the environment and a threshold to unseal with.
    let key_text_set = !super::admin::master_key_text()?.trim().is_empty();
    let key_set = key_text_set || args.master_key_pkcs11.is_some();
    if args.sealed && key_set {
        return Err(CliError(
            "--sealed with STRONGROOM_MASTER_KEY, STRONGROOM_MASTER_KEY_FILE or \
             STRONGROOM_MASTER_KEY_PKCS11 set: a sealed instance holds no key until its \
             custodians unseal it, so remove the key from the environment"
                .into(),
        ));
    }
    let mut master = if args.sealed || (!key_set && args.unseal_threshold.is_some()) {
        None
    } else if let Some(spec) = &args.master_key_pkcs11 {
        if key_text_set {
            return Err(crate::crypto::keys::MasterKeyError::Both.into());
        }
        Some(super::admin::hsm_master_key(spec)?)
    } else {
        Some(master_key_from_env()?)
    };
    if args.force_plain_http && !args.listen.ip().is_loopback() && args.tls_cert.is_none() {
        tracing::warn!(listen = %args.listen, "serving plain HTTP on a non-loopback address (forced)");
    }
    // One listening socket for the whole run: sealed and unsealed phases take turns on it,
    // so the address never changes and no connection is refused in between.
    let socket = std::net::TcpListener::bind(args.listen)
        .map_err(|e| CliError(format!("cannot listen on {}: {e}", args.listen)))?;
    socket.set_nonblocking(true)?;
    let listener = || -> Result<tokio::net::TcpListener, CliError> {
        Ok(tokio::net::TcpListener::from_std(socket.try_clone()?)?)
    };
    // One signal listener for the whole run: a SIGTERM that comes between a sealed and an
    // unsealed phase is not lost.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let shutdown = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    loop {
        let key = match master.take() {
            Some(key) => key,
            None => {
                tracing::info!(
                    listen = %socket.local_addr()?,
                    version = env!("CARGO_PKG_VERSION"),
                    "strongroom sealed: waiting for custodians' shares (POST /v1/sys/unseal)"
                );
                let sealed = SealedConfig {
                    database_url: args.database.database_url.clone(),
                    listen: args.listen,
                    tls: tls_files(&args),
                    force_plain_http: args.force_plain_http,
                    threshold: args.unseal_threshold,
                    header_read_timeout: Duration::from_secs(10),
                };
                match run_sealed(sealed, &listener()?, shutdown()).await? {
                    Some(key) => key,
                    None => return Ok(()),
                }
            }
        };
        let app = Application::build_on(
            serve_config(&args, key),
            Some(listener()?),
            Arc::new(SystemClock),
            Arc::new(SystemRandom::new()),
        )
        .await?;
        tracing::info!(
            listen = %app.local_addr(),
            tls = app.is_tls(),
            version = env!("CARGO_PKG_VERSION"),
            "strongroom serving"
        );
        match app.run_until_stopped(shutdown()).await? {
            Stopped::Shutdown => return Ok(()),
            // The instance and its keys are gone; wait for the custodians again.
            Stopped::Sealed => tracing::info!("strongroom sealed by an admin"),
        }
    }
}

fn tls_files(args: &ServeArgs) -> Option<TlsFiles> {
    match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    }
}

/// The configuration of an unsealed instance from `serve`'s arguments and its master key.
fn serve_config(args: &ServeArgs, master_key: MasterKey) -> ServeConfig {
    let tls = tls_files(args);
    let args = args.clone();
    let mut config = ServeConfig::new(args.database.database_url, master_key);
    config.listen = args.listen;
    config.tls = tls;
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
    config
}
