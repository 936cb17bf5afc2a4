//! `strongroom keys`: what an operator is shown of the vault's keys — the master key's source
//! and fingerprint, each data key's state and use, the grant-signing keys and the other
//! wrapped secrets — and the rotation of the data key or of the grant-signing key. Never key
//! material.

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use clap::Subcommand;
use serde_json::{Value, json};

use super::admin::{
    CheckpointArgs, CliError, DatabaseArgs, command_audit_trail, connect_current,
    master_key_from_env, master_key_from_env_of_any_kind,
};
use crate::clock::{Clock, SystemClock};
use crate::crypto::keys::{MasterKeyError, MasterKeyKind, dek_label};
use crate::domain::SigningKeyPhase;
use crate::random::SystemRandom;
use crate::service::keys::DEFAULT_SIGNING_KEY_LEAD_SECONDS;
use crate::service::keys::admin::KeyAdmin;
use crate::store::KeyInventory;

/// What `strongroom keys` does.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Show the keys: the master key's source and fingerprint (never the key) and whether it
    /// opens the stored keys; each data key's version, state, encryptions, rows under it and
    /// dates; each grant-signing key's kid, state (pending: published, not signing yet;
    /// active: signs; retired: signs no more), dates and whether it is published in the JWKS;
    /// the other wrapped secrets by name. Reads STRONGROOM_MASTER_KEY if set (a development key
    /// too); changes nothing.
    Status {
        #[command(flatten)]
        database: DatabaseArgs,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Make a new data key the active one: it seals every card number from now on, and the
    /// old ones retire (they open what they sealed, never seal again). With --signing-key,
    /// make a new grant-signing key instead (see there). Running instances pick either up at
    /// their next housekeeping pass (every minute), without a restart. Needs
    /// STRONGROOM_MASTER_KEY (a production key that opens the stored keys). Audited
    /// (`key.rotate`).
    Rotate {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        checkpoints: CheckpointArgs,
        /// Rotate the grant-signing key instead of the data key: a new key (a new kid) is
        /// published by every instance at its next housekeeping pass and signs new grants
        /// from --activate-after-seconds on; the old key then signs no more, and stays
        /// published (in /.well-known/jwks.json) and valid while a grant it signed is
        /// unexpired. Refused while an earlier rotation's key is still pending.
        #[arg(long)]
        signing_key: bool,
        /// With --signing-key: seconds between publishing the new key and signing with it.
        /// The default, two housekeeping passes, lets every instance load and publish it
        /// first; 0 signs at once (one instance, or tests). At most a day.
        #[arg(
            long,
            requires = "signing_key",
            default_value_t = DEFAULT_SIGNING_KEY_LEAD_SECONDS,
            value_parser = clap::value_parser!(u32).range(0..=86_400),
        )]
        activate_after_seconds: u32,
    },
}

/// Runs a keys command.
pub async fn run(command: KeysCommand) -> Result<(), CliError> {
    match command {
        KeysCommand::Rotate {
            database,
            checkpoints,
            signing_key,
            activate_after_seconds,
        } => {
            let store = connect_current(&database).await?;
            let master = master_key_from_env()?;
            let audit =
                command_audit_trail(&store, Some(&master), checkpoints.audit_checkpoint_file)
                    .await?;
            let admin = KeyAdmin::new(
                store,
                master,
                Arc::new(SystemRandom::new()),
                Arc::new(SystemClock),
                audit,
            );
            if signing_key {
                let lead = TimeDelta::seconds(i64::from(activate_after_seconds));
                let rotated = admin.rotate_signing_key(lead).await?;
                println!(
                    "signing key {} signs from {}; {} retires then and stays published while \
                     grants signed by it are unexpired",
                    rotated.kid,
                    rotated
                        .activates_at
                        .to_rfc3339_opts(SecondsFormat::Secs, true),
                    rotated.retired,
                );
                return Ok(());
            }
            let (version, retired) = admin.rotate_data_key().await?;
            let retired: Vec<String> = retired.iter().map(|v| format!("v{v}")).collect();
            println!(
                "data key v{version} is active; retired: {}",
                if retired.is_empty() {
                    "none".to_owned()
                } else {
                    retired.join(", ")
                }
            );
            Ok(())
        }
        KeysCommand::Status { database, json } => {
            let store = connect_current(&database).await?;
            let now = SystemClock.now();
            let inventory = store.key_inventory(now).await?;
            let master = match master_key_from_env_of_any_kind() {
                Ok((key, kind)) => {
                    let wrapped = store.data_keys().await?;
                    let opens = wrapped
                        .iter()
                        .all(|k| key.unwrap(&dek_label(k.version), &k.wrapped).is_ok());
                    json!({
                        "source": "environment (STRONGROOM_MASTER_KEY)",
                        "kind": match kind {
                            MasterKeyKind::Production => "production",
                            MasterKeyKind::Development => "development",
                        },
                        "fingerprint": key.fingerprint(),
                        "opens_stored_keys": opens,
                    })
                }
                Err(MasterKeyError::Missing) => json!({"source": "not set"}),
                Err(e) => return Err(e.into()),
            };
            let status = status(master, &inventory, now);
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print_text(&status);
            }
            Ok(())
        }
    }
}

/// The status as one JSON object (the `--json` form; the text form prints the same fields).
fn status(master: Value, inventory: &KeyInventory, now: DateTime<Utc>) -> Value {
    // Only the newest unretired data key seals; every other one only opens.
    let active = inventory
        .data_keys
        .iter()
        .filter(|k| k.retired_at.is_none())
        .map(|k| k.version)
        .max();
    let data_keys: Vec<Value> = inventory
        .data_keys
        .iter()
        .map(|k| {
            json!({
                "version": k.version,
                "state": if Some(k.version) == active { "active" } else { "retired" },
                "encryptions": k.encryptions,
                "rows": k.rows,
                "created_at": k.created_at,
                "retired_at": k.retired_at,
            })
        })
        .collect();
    let signing_keys: Vec<Value> = inventory
        .signing_keys
        .iter()
        .map(|k| {
            json!({
                "kid": k.kid,
                "state": SigningKeyPhase::at(k.activates_at, k.retired_at, now).as_str(),
                "created_at": k.created_at,
                "activates_at": k.activates_at,
                "retired_at": k.retired_at,
                "published": k.published,
            })
        })
        .collect();
    let secrets: Vec<Value> = inventory
        .secrets
        .iter()
        .map(|(name, created_at)| json!({"name": name, "created_at": created_at}))
        .collect();
    json!({
        "master_key": master,
        "data_keys": data_keys,
        "signing_keys": signing_keys,
        "secrets": secrets,
    })
}

fn print_text(status: &Value) {
    let field = |v: &Value, name: &str| match &v[name] {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    let master = &status["master_key"];
    match master.get("fingerprint") {
        Some(_) => println!(
            "master key: {} ({}), fingerprint {}, opens the stored keys: {}",
            field(master, "source"),
            field(master, "kind"),
            field(master, "fingerprint"),
            if master["opens_stored_keys"] == true {
                "yes"
            } else {
                "NO"
            },
        ),
        None => println!("master key: not set (STRONGROOM_MASTER_KEY)"),
    }
    for k in status["data_keys"].as_array().into_iter().flatten() {
        println!(
            "data key v{}: {}, {} encryptions, {} rows, created {}, retired {}",
            field(k, "version"),
            field(k, "state"),
            field(k, "encryptions"),
            field(k, "rows"),
            field(k, "created_at"),
            field(k, "retired_at"),
        );
    }
    for k in status["signing_keys"].as_array().into_iter().flatten() {
        println!(
            "signing key {}: {}, {}, created {}, activates {}, retired {}",
            field(k, "kid"),
            field(k, "state"),
            if k["published"] == true {
                "published"
            } else {
                "not published"
            },
            field(k, "created_at"),
            field(k, "activates_at"),
            field(k, "retired_at"),
        );
    }
    for s in status["secrets"].as_array().into_iter().flatten() {
        println!(
            "secret {}: created {}",
            field(s, "name"),
            field(s, "created_at")
        );
    }
}
