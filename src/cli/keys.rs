//! `strongroom keys`: what an operator is shown of the vault's keys — the master key's source
//! and fingerprint, each data key's state and use, the grant-signing keys and the other
//! wrapped secrets — the rotation of the data key or of the grant-signing key, the
//! re-encryption of rows onto the active data key, the destruction of a retired one, the rewrap
//! under a new master key. Never key material.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use super::admin::{
    CheckpointArgs, CliError, DatabaseArgs, command_audit_trail, connect_current,
    master_key_from_env, master_key_from_env_of_any_kind,
};
use crate::clock::{Clock, SystemClock};
use crate::crypto::keys::{MasterKey, MasterKeyError, MasterKeyKind};
use crate::crypto::shares::KeyShare;
use crate::domain::SigningKeyPhase;
use crate::domain::audit::{Action, AuditEvent, Outcome};
use crate::random::SystemRandom;
use crate::service::keys::DEFAULT_SIGNING_KEY_LEAD_SECONDS;
use crate::service::keys::admin::{KeyAdmin, opens_every_key};
use crate::service::keys::reencrypt::{DEFAULT_REENCRYPT_BATCH, Reencryption};
use crate::service::keys::{KeyService, KeySettings};
use crate::store::{KeyDestruction, KeyInventory};

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
    /// Seal every card number still under a retired data key again under the active one, in
    /// batches, each committed with its `key.reencrypt` record. Safe while `serve` runs
    /// (a delete or tokenize meanwhile loses nothing; detokenize reads either form). Killed
    /// halfway, it has lost nothing and the next run goes on with what is left. Shows a
    /// progress bar on a terminal, a line every few seconds otherwise, and the count at the
    /// end. Needs STRONGROOM_MASTER_KEY.
    Reencrypt {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        checkpoints: CheckpointArgs,
        /// Rows per transaction (1 to 10000).
        #[arg(long, default_value_t = DEFAULT_REENCRYPT_BATCH,
              value_parser = clap::value_parser!(u32).range(1..=10_000))]
        batch_size: u32,
    },
    /// Wrap every key and secret again under a new master key, in one transaction (audited,
    /// `key.rewrap`): afterwards the current key opens nothing and the new one opens
    /// everything. Reads STRONGROOM_MASTER_KEY (current) and STRONGROOM_NEW_MASTER_KEY (from
    /// `strongroom keygen`). Stop every serving instance first and start them with the new
    /// key after; a key made meanwhile fails it with nothing changed.
    Rewrap {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        checkpoints: CheckpointArgs,
        /// Take the current key from custodians' shares instead of the environment: asked one
        /// by one without echo (or one a line on standard input) until the threshold.
        #[arg(long)]
        from_shares: bool,
        /// Make the new key here and print only its custodians' shares, this many (2 to 16),
        /// instead of reading STRONGROOM_NEW_MASTER_KEY(_PKCS11). The shares are printed
        /// before the rewrap commits: if it fails, they are void.
        #[arg(long, requires = "to_threshold", value_parser = clap::value_parser!(u8).range(2..=16))]
        to_shares: Option<u8>,
        /// With --to-shares: how many of them rebuild the new key.
        #[arg(long, requires = "to_shares", value_parser = clap::value_parser!(u8).range(2..=16))]
        to_threshold: Option<u8>,
        /// With --to-shares: print {"shares": [...], "threshold": M}.
        #[arg(long, requires = "to_shares")]
        json: bool,
    },
    /// Split the current master key (STRONGROOM_MASTER_KEY, which must open the stored keys)
    /// into custodians' shares: any --threshold of the --shares rebuild it, fewer reveal
    /// nothing (Shamir's scheme over GF(2^8); each share names its split and index and carries
    /// a checksum). Start the vault with `serve --sealed` and the custodians unseal it; then
    /// remove the key from the environment. Splitting again makes a new set: shares of
    /// different splits do not combine. Audited (`key.split`: counts, split id, never a share).
    Split {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        checkpoints: CheckpointArgs,
        #[command(flatten)]
        split: SplitCounts,
        /// Take the key from custodians' shares instead of the environment (to replace a
        /// custodian without anyone holding the whole key): asked one by one without echo, or
        /// one a line on standard input.
        #[arg(long)]
        from_shares: bool,
    },
    /// Destroy a retired data key: its wrapped key is deleted, so nothing it sealed can be
    /// opened again, by this vault or from a later backup. Refused while any live row is
    /// still sealed under it (run `keys reencrypt` first), for the active key, and for two
    /// minutes after it retired (serving instances may still seal under it until then). Audited
    /// (`key.destroy`), refusals too. Needs STRONGROOM_MASTER_KEY.
    Destroy {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        checkpoints: CheckpointArgs,
        /// The version to destroy (as `keys status` shows it).
        #[arg(long, value_name = "VERSION")]
        data_key: u32,
    },
}

/// How many shares, how many rebuild (both required for `keys split`).
#[derive(Debug, clap::Args)]
pub struct SplitCounts {
    /// How many shares to make, one per custodian (2 to 16).
    #[arg(long, value_parser = clap::value_parser!(u8).range(2..=16))]
    shares: u8,
    /// How many shares rebuild the key (2 up to --shares).
    #[arg(long, value_parser = clap::value_parser!(u8).range(2..=16))]
    threshold: u8,
    /// Print {"shares": [...], "threshold": M} instead of one share a line.
    #[arg(long)]
    json: bool,
}

/// Prints a key's shares on standard output (one a line, or JSON) and what they are on
/// standard error, so that the output holds the shares only.
pub(super) fn print_shares(
    key: &[u8; 32],
    fingerprint: &str,
    shares: u8,
    threshold: u8,
    json: bool,
) -> Result<String, CliError> {
    let made = crate::crypto::shares::split(key, shares, threshold, &SystemRandom::new())?;
    let split = made.first().map(|s| s.split_id()).unwrap_or_default();
    eprintln!(
        "master key {fingerprint}, split {split}: any {threshold} of these {shares} shares \
         rebuild it, fewer reveal nothing. Give each custodian one share, and keep no copy \
         together with another."
    );
    let texts: Vec<zeroize::Zeroizing<String>> = made.iter().map(|s| s.to_text()).collect();
    if json {
        let list: Vec<&str> = texts.iter().map(|t| t.as_str()).collect();
        let out = zeroize::Zeroizing::new(serde_json::to_string(
            &json!({"shares": list, "threshold": threshold}),
        )?);
        println!("{}", out.as_str());
    } else {
        for text in &texts {
            println!("{}", text.as_str());
        }
    }
    Ok(split)
}

/// The master key's bytes rebuilt from custodians' shares, read one by one: at a prompt that
/// does not echo (a mistyped share is named and asked again), or one a line from standard input
/// (a mistyped share ends the command), until the first share's threshold is reached.
fn key_bytes_from_shares() -> Result<zeroize::Zeroizing<[u8; 32]>, CliError> {
    use std::io::BufRead;
    let terminal = std::io::stdin().is_terminal();
    let mut lines = std::io::stdin().lock().lines();
    let mut given: Vec<KeyShare> = Vec::new();
    loop {
        let need = given.first().map(KeyShare::threshold);
        if need.is_some_and(|m| given.len() >= usize::from(m)) {
            break;
        }
        let text = zeroize::Zeroizing::new(if terminal {
            rpassword::prompt_password(format!(
                "Share {} (typing is not shown): ",
                given.len() + 1
            ))?
        } else {
            match lines.next() {
                Some(line) => line?,
                None => {
                    return Err(CliError(format!(
                        "standard input ended after {} share(s); {} needed",
                        given.len(),
                        need.map_or("more".to_owned(), |m| m.to_string())
                    )));
                }
            }
        });
        if text.trim().is_empty() {
            continue;
        }
        let admitted = KeyShare::parse(&text)
            .and_then(|share| crate::crypto::shares::admit(&given, &share).map(|()| share));
        match admitted {
            Ok(share) => given.push(share),
            Err(e) if terminal => eprintln!("that share {e}: give it again"),
            Err(e) => {
                return Err(CliError(format!(
                    "share {} {e}; nothing was done",
                    given.len() + 1
                )));
            }
        }
    }
    Ok(crate::crypto::shares::combine(&given)?)
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
            let admin = key_admin(&database, &checkpoints).await?;
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
        KeysCommand::Reencrypt {
            database,
            checkpoints,
            batch_size,
        } => reencrypt(database, checkpoints, batch_size).await,
        KeysCommand::Split {
            database,
            checkpoints,
            split,
            from_shares,
        } => {
            let (master, bytes) = if from_shares {
                let bytes = key_bytes_from_shares()?;
                (MasterKey::from_bytes(&bytes)?.with_origin("shares"), bytes)
            } else {
                let text = super::admin::master_key_text()?;
                let master = master_key_from_env()?;
                if master.is_external() {
                    return Err(CliError(
                        "the master key is in an HSM and never leaves it: it cannot be split"
                            .into(),
                    ));
                }
                (master, MasterKey::production_bytes(&text)?)
            };
            let store = connect_current(&database).await?;
            if !opens_every_key(store.as_ref(), &master).await? {
                return Err(CliError(
                    "STRONGROOM_MASTER_KEY does not open this vault's stored keys: it is not \
                     the key to split; nothing was done"
                        .into(),
                ));
            }
            if !(2..=split.shares).contains(&split.threshold) {
                return Err(CliError(
                    "--threshold must be from 2 up to --shares; nothing was done".into(),
                ));
            }
            let audit =
                command_audit_trail(&store, Some(&master), checkpoints.audit_checkpoint_file)
                    .await?;
            let id = print_shares(
                &bytes,
                &master.fingerprint(),
                split.shares,
                split.threshold,
                split.json,
            )?;
            let mut event = AuditEvent::new(Action::KeySplit, SystemClock.now());
            event.outcome = Outcome::Success;
            event.subject = Some(format!("split:{id}"));
            event.detail = Some(format!(
                "shares={} threshold={} master={} by=operator",
                split.shares,
                split.threshold,
                master.fingerprint()
            ));
            audit.record_change(event).await?;
            Ok(())
        }
        KeysCommand::Rewrap {
            database,
            checkpoints,
            from_shares,
            to_shares,
            to_threshold,
            json,
        } => {
            let current = if from_shares {
                MasterKey::from_bytes(&*key_bytes_from_shares()?)?.with_origin("shares")
            } else {
                master_key_from_env()?
            };
            let new = match (to_shares, to_threshold) {
                (Some(shares), Some(threshold)) => {
                    let text = MasterKey::generate_base64(&SystemRandom::new())?;
                    let new = MasterKey::from_base64(&text)?.with_origin("shares");
                    // Printed before anything commits: shares lost after the commit would lose
                    // every card.
                    print_shares(
                        &*MasterKey::production_bytes(&text)?,
                        &new.fingerprint(),
                        shares,
                        threshold,
                        json,
                    )?;
                    new
                }
                _ => new_master_key_from_env()?,
            };
            let admin = key_admin_with(current, &database, &checkpoints).await?;
            let counts = admin.rewrap(&new).await.inspect_err(|_| {
                if to_shares.is_some() {
                    eprintln!("the rewrap failed: the shares printed above are void");
                }
            })?;
            let summary = format!(
                "rewrapped {} data keys, {} secrets, {} signing keys and {} tenant keys under the \
                 master key with fingerprint {}; the old master key opens nothing now: start the \
                 vault with the new one",
                counts.data_keys,
                counts.secrets,
                counts.signing_keys,
                counts.tenant_keys,
                new.fingerprint()
            );
            // With --to-shares, standard output holds the shares only.
            if to_shares.is_some() {
                eprintln!("{summary} (sealed start: `serve --sealed`, then unseal)");
            } else {
                println!("{summary}");
            }
            Ok(())
        }
        KeysCommand::Destroy {
            database,
            checkpoints,
            data_key,
        } => {
            let admin = key_admin(&database, &checkpoints).await?;
            match admin.destroy_data_key(data_key).await? {
                KeyDestruction::Destroyed => {
                    println!("data key v{data_key} is destroyed: nothing it sealed opens again");
                    Ok(())
                }
                KeyDestruction::RowsRemain(rows) => Err(CliError(format!(
                    "data key v{data_key} still seals {rows} live rows: run `strongroom keys \
                     reencrypt` first; nothing was changed"
                ))),
                KeyDestruction::StillActive => Err(CliError(format!(
                    "data key v{data_key} is the active (newest) key: rotate first \
                     (`strongroom keys rotate`); nothing was changed"
                ))),
                KeyDestruction::RecentlyRetired(at) => Err(CliError(format!(
                    "data key v{data_key} retired at {} and serving instances may still seal \
                     under it until their next housekeeping pass: destroy it two minutes after \
                     it retired; nothing was changed",
                    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ))),
                KeyDestruction::NotFound => Err(CliError(format!(
                    "there is no data key v{data_key} to destroy (see `strongroom keys status`)"
                ))),
            }
        }
        KeysCommand::Status { database, json } => {
            let store = connect_current(&database).await?;
            let now = SystemClock.now();
            let inventory = store.key_inventory(now).await?;
            let master = match master_key_from_env_of_any_kind() {
                Ok((key, kind)) => {
                    let opens = opens_every_key(store.as_ref(), &key).await?;
                    json!({
                        "source": if key.is_external() {
                            "pkcs11 (STRONGROOM_MASTER_KEY_PKCS11)"
                        } else if super::admin::key_file_named().is_some() {
                            "file (STRONGROOM_MASTER_KEY_FILE)"
                        } else {
                            "environment (STRONGROOM_MASTER_KEY)"
                        },
                        "extractable": key.extractable(),
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

/// The new production master key of a rewrap, from STRONGROOM_NEW_MASTER_KEY; refused as the
/// current one would be (missing, malformed, weak, development).
fn new_master_key_from_env() -> Result<MasterKey, CliError> {
    const NEW: &str = "STRONGROOM_NEW_MASTER_KEY";
    const NEW_PKCS11: &str = "STRONGROOM_NEW_MASTER_KEY_PKCS11";
    let text = zeroize::Zeroizing::new(std::env::var(NEW).unwrap_or_default());
    let spec = std::env::var(NEW_PKCS11).unwrap_or_default();
    if !spec.trim().is_empty() {
        if !text.trim().is_empty() {
            return Err(CliError(format!(
                "both {NEW} and {NEW_PKCS11} are set: keep one"
            )));
        }
        return Ok(super::admin::hsm_master_key(&spec)?);
    }
    if text.trim().is_empty() {
        return Err(CliError(format!(
            "{NEW} is not set (generate one with `strongroom keygen`)"
        )));
    }
    MasterKey::from_base64(&text).map_err(|e| CliError(e.describe_as(NEW)))
}

/// The key commands under the production master key from the environment, recorded in the
/// command's own chain.
pub(super) async fn key_admin(
    database: &DatabaseArgs,
    checkpoints: &CheckpointArgs,
) -> Result<KeyAdmin, CliError> {
    // The key first: a refused key is a configuration error, reported before the database
    // is reached.
    key_admin_with(master_key_from_env()?, database, checkpoints).await
}

/// The key commands under `master`, recorded in the command's own chain.
async fn key_admin_with(
    master: MasterKey,
    database: &DatabaseArgs,
    checkpoints: &CheckpointArgs,
) -> Result<KeyAdmin, CliError> {
    let store = connect_current(database).await?;
    let audit = command_audit_trail(
        &store,
        Some(&master),
        checkpoints.audit_checkpoint_file.clone(),
    )
    .await?;
    Ok(KeyAdmin::new(
        store,
        master,
        Arc::new(SystemRandom::new()),
        Arc::new(SystemClock),
        audit,
    ))
}

/// `keys reencrypt`: batches until nothing is left, with progress on standard error.
async fn reencrypt(
    database: DatabaseArgs,
    checkpoints: CheckpointArgs,
    batch_size: u32,
) -> Result<(), CliError> {
    let master = master_key_from_env()?;
    let store = connect_current(&database).await?;
    if store.data_keys().await?.is_empty() {
        return Err(CliError(
            "this database has no data keys: no vault has been served on it".into(),
        ));
    }
    let audit =
        command_audit_trail(&store, Some(&master), checkpoints.audit_checkpoint_file).await?;
    let keys = KeyService::load(
        store,
        master,
        Arc::new(SystemRandom::new()),
        Arc::new(SystemClock),
        KeySettings::default(),
        audit.clone(),
    )
    .await?;
    let total = keys.rows_to_reencrypt().await?;
    eprintln!(
        "{total} rows to re-encrypt onto data key v{}",
        keys.active_version().unwrap_or(0)
    );
    let progress = Progress::new(total);
    let started = Instant::now();
    let mut run = Reencryption::default();
    while !run.finished {
        keys.reencrypt_batch(&mut run, batch_size, "operator")
            .await?;
        progress.show(run.moved + run.passed + run.unreadable);
    }
    progress.finish();
    audit.checkpoint().await;
    let seconds = started.elapsed().as_secs_f64();
    let left = keys.rows_to_reencrypt().await?;
    println!(
        "re-encrypted {} rows onto data key v{} in {seconds:.1} s ({:.0} rows/s); {} passed \
         (deleted or moved meanwhile); {left} left under retired keys",
        run.moved,
        keys.active_version().unwrap_or(0),
        run.moved as f64 / seconds.max(0.001),
        run.passed,
    );
    if run.unreadable > 0 {
        return Err(CliError(format!(
            "{} rows failed their integrity check and were left as they are: they cannot be \
             read under any key (see the vault's log and `strongroom audit verify`)",
            run.unreadable
        )));
    }
    Ok(())
}

/// Progress of a long command on standard error: a bar on a terminal, a plain line every few
/// seconds otherwise (a log, a pipe).
struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    started: Instant,
    last_line: std::sync::Mutex<Instant>,
}

impl Progress {
    fn new(total: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template(
                "{bar:40} {human_pos}/{human_len} rows  {per_sec}  eta {eta}",
            ) {
                bar.set_style(style);
            }
            bar
        });
        let now = Instant::now();
        Progress {
            bar,
            total,
            started: now,
            last_line: std::sync::Mutex::new(now),
        }
    }

    fn show(&self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            return;
        }
        let Ok(mut last) = self.last_line.lock() else {
            return;
        };
        if last.elapsed() < Duration::from_secs(2) {
            return;
        }
        *last = Instant::now();
        let seconds = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = done as f64 / seconds;
        let left = self.total.saturating_sub(done) as f64 / rate.max(1.0);
        eprintln!(
            "{done}/{} rows, {rate:.0} rows/s, about {left:.0} s left",
            self.total
        );
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

/// The status as one JSON object (the `--json` form; the text form prints the same fields).
fn status(master: Value, inventory: &KeyInventory, now: DateTime<Utc>) -> Value {
    // Only the newest unretired data key seals; every other one only opens, until destroyed.
    let active = inventory
        .data_keys
        .iter()
        .filter(|k| k.retired_at.is_none() && k.destroyed_at.is_none())
        .map(|k| k.version)
        .max();
    let data_keys: Vec<Value> = inventory
        .data_keys
        .iter()
        .map(|k| {
            json!({
                "version": k.version,
                "state": if k.destroyed_at.is_some() {
                    "destroyed"
                } else if Some(k.version) == active {
                    "active"
                } else {
                    "retired"
                },
                "encryptions": k.encryptions,
                "rows": k.rows,
                "created_at": k.created_at,
                "retired_at": k.retired_at,
                "destroyed_at": k.destroyed_at,
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
    let tenant_keys: Vec<Value> = inventory
        .tenant_keys
        .iter()
        .map(|k| {
            json!({
                "tenant": k.tenant.0,
                "name": k.name,
                "state": if k.destroyed_at.is_some() { "destroyed" } else { "active" },
                "created_at": k.created_at,
                "destroyed_at": k.destroyed_at,
            })
        })
        .collect();
    json!({
        "master_key": master,
        "data_keys": data_keys,
        "signing_keys": signing_keys,
        "secrets": secrets,
        "tenant_keys": tenant_keys,
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
            "data key v{}: {}, {} encryptions, {} rows, created {}, retired {}{}",
            field(k, "version"),
            field(k, "state"),
            field(k, "encryptions"),
            field(k, "rows"),
            field(k, "created_at"),
            field(k, "retired_at"),
            if k["destroyed_at"].is_null() {
                String::new()
            } else {
                format!(", destroyed {}", field(k, "destroyed_at"))
            },
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
    for k in status["tenant_keys"].as_array().into_iter().flatten() {
        println!(
            "tenant key {} ({}): {}, created {}{}",
            field(k, "name"),
            field(k, "tenant"),
            field(k, "state"),
            field(k, "created_at"),
            if k["destroyed_at"].is_null() {
                String::new()
            } else {
                format!(", destroyed {}", field(k, "destroyed_at"))
            },
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
