//! `strongroom keys`: what an operator is shown of the vault's keys — the master key's source
//! and fingerprint, each data key's state and use, the grant-signing keys and the other
//! wrapped secrets — and the rotation of the data key. Never key material.

use std::sync::Arc;

use clap::Subcommand;
use serde_json::{Value, json};

use super::admin::{
    CheckpointArgs, CliError, DatabaseArgs, command_audit_trail, connect_current,
    master_key_from_env, master_key_from_env_of_any_kind,
};
use crate::clock::SystemClock;
use crate::crypto::keys::{MasterKeyError, MasterKeyKind, dek_label};
use crate::random::SystemRandom;
use crate::service::keys::admin::KeyAdmin;
use crate::store::KeyInventory;

/// What `strongroom keys` does.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Show the keys: the master key's source and fingerprint (never the key) and whether it
    /// opens the stored keys; each data key's version, state, encryptions, rows under it and
    /// dates; the grant-signing keys; the other wrapped secrets by name. Reads
    /// STRONGROOM_MASTER_KEY if set (a development key too); changes nothing.
    Status {
        #[command(flatten)]
        database: DatabaseArgs,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Make a new data key the active one: it seals every card number from now on, and the
    /// old ones retire (they open what they sealed, never seal again). Running instances pick
    /// it up at their next housekeeping pass (every minute). Needs
    /// STRONGROOM_MASTER_KEY (a production key that opens the stored keys). Audited
    /// (`key.rotate`).
    Rotate {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        checkpoints: CheckpointArgs,
    },
}

/// Runs a keys command.
pub async fn run(command: KeysCommand) -> Result<(), CliError> {
    match command {
        KeysCommand::Rotate {
            database,
            checkpoints,
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
            let inventory = store.key_inventory().await?;
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
            let status = status(master, &inventory);
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
fn status(master: Value, inventory: &KeyInventory) -> Value {
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
                "state": if k.retired_at.is_none() { "active" } else { "retired" },
                "created_at": k.created_at,
                "retired_at": k.retired_at,
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
            "signing key {}: {}, created {}, retired {}",
            field(k, "kid"),
            field(k, "state"),
            field(k, "created_at"),
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
