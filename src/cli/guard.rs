//! `strongroom guard`: an admin's review of the enumeration guard — list locked card buckets,
//! release one, and open or close an import window for a migration.
//!
//! Every change is recorded in the audit trail before the command reports it done. Buckets are
//! shown by their keyed id (as the `tokenize.enumeration_suspected` record names them), never
//! by digits.

use std::sync::Arc;

use chrono::TimeDelta;
use clap::Subcommand;
use uuid::Uuid;

use super::admin::{
    CheckpointArgs, CliError, DatabaseArgs, command_audit_trail, connect_current,
    optional_master_key,
};
use crate::clock::SystemClock;
use crate::domain::guard::DEFAULT_BUCKET_BUDGET;
use crate::domain::{BucketId, PrincipalId, TenantId};
use crate::service::Guard;
use crate::service::guard::GuardAdmin;

/// What `strongroom guard` does.
#[derive(Debug, Subcommand)]
pub enum GuardCommand {
    /// List locked card buckets and open import windows.
    List {
        #[command(flatten)]
        database: DatabaseArgs,
        /// Only this tenant's buckets (its id).
        #[arg(long)]
        tenant: Option<Uuid>,
    },
    /// Release a locked card bucket after review: tokenize in it works again, and its count of
    /// new card numbers starts from zero. Audited.
    Release {
        #[command(flatten)]
        database: DatabaseArgs,
        /// The bucket id, as `guard list` and the `tokenize.enumeration_suspected` audit record
        /// show it (32 hex digits).
        #[arg(long)]
        bucket: String,
        /// Why it is safe to release (recorded in the audit trail; no card numbers).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        checkpoints: CheckpointArgs,
    },
    /// Open a time-boxed import window: one tokenizer principal migrating cards from another
    /// vault tokenizes under a per-bucket budget of its own, counted over the whole window.
    /// Nobody else's budget changes. The window closes by itself. Audited.
    ImportOpen {
        #[command(flatten)]
        database: DatabaseArgs,
        /// The importing principal's id (it must hold the tokenizer role).
        #[arg(long)]
        principal: Uuid,
        /// New card numbers per bucket allowed over the window.
        #[arg(long, default_value_t = 1000)]
        bucket_budget: u32,
        /// How long the window stays open, in hours (1 to 168).
        #[arg(long, default_value_t = 24)]
        hours: u32,
        #[command(flatten)]
        checkpoints: CheckpointArgs,
    },
    /// Close an import window before its time. Audited.
    ImportClose {
        #[command(flatten)]
        database: DatabaseArgs,
        /// The window's id, as `guard import-open` printed it.
        #[arg(long)]
        id: Uuid,
        #[command(flatten)]
        checkpoints: CheckpointArgs,
    },
}

/// The guard's review under this command's audit chain, for a command that changes something.
async fn audited_guard(
    database: &DatabaseArgs,
    checkpoints: CheckpointArgs,
) -> Result<GuardAdmin, CliError> {
    let store = connect_current(database).await?;
    let master = optional_master_key()?;
    let audit =
        command_audit_trail(&store, master.as_ref(), checkpoints.audit_checkpoint_file).await?;
    Ok(GuardAdmin::new(
        Guard::new(store, Arc::new(SystemClock), DEFAULT_BUCKET_BUDGET),
        audit,
    ))
}

/// Runs a guard command.
pub async fn run(command: GuardCommand) -> Result<(), CliError> {
    match command {
        GuardCommand::List { database, tenant } => {
            let store = connect_current(&database).await?;
            let guard = Guard::new(store, Arc::new(SystemClock), DEFAULT_BUCKET_BUDGET);
            let locks = guard.locked_buckets(tenant.map(TenantId)).await?;
            if locks.is_empty() {
                println!("no locked buckets");
            }
            for l in &locks {
                println!(
                    "locked bucket {} tenant {} since {} until {} ({} new card numbers counted)",
                    l.bucket,
                    l.tenant.0,
                    l.locked_at.to_rfc3339(),
                    l.locked_until.to_rfc3339(),
                    l.counted
                );
            }
            for w in guard.open_imports().await? {
                println!(
                    "import window {} principal {} tenant {} budget {} per bucket, open until {}",
                    w.id,
                    w.principal,
                    w.tenant,
                    w.bucket_budget,
                    w.closes_at.to_rfc3339()
                );
            }
            Ok(())
        }
        GuardCommand::Release {
            database,
            bucket,
            reason,
            checkpoints,
        } => {
            let bucket = BucketId::parse_hex(&bucket)
                .ok_or_else(|| CliError("--bucket must be 32 hex digits".into()))?;
            crate::domain::access::check_text(&reason)
                .map_err(|e| CliError(format!("--reason: {e}")))?;
            let admin = audited_guard(&database, checkpoints).await?;
            match admin.release(bucket, reason).await? {
                Some(tenant) => {
                    println!("released bucket {bucket} of tenant {}", tenant.0);
                    Ok(())
                }
                None => Err(CliError(format!("bucket {bucket} is not locked"))),
            }
        }
        GuardCommand::ImportOpen {
            database,
            principal,
            bucket_budget,
            hours,
            checkpoints,
        } => {
            let admin = audited_guard(&database, checkpoints).await?;
            let window = admin
                .open_import(
                    PrincipalId(principal),
                    bucket_budget,
                    TimeDelta::hours(i64::from(hours)),
                )
                .await?;
            println!(
                "opened import window {} for principal {}: {} new card numbers per bucket until {}",
                window.id,
                window.principal,
                window.bucket_budget,
                window.closes_at.to_rfc3339()
            );
            Ok(())
        }
        GuardCommand::ImportClose {
            database,
            id,
            checkpoints,
        } => {
            let admin = audited_guard(&database, checkpoints).await?;
            match admin.close_import(id).await? {
                Some(_) => {
                    println!("closed import window {id}");
                    Ok(())
                }
                None => Err(CliError(format!("no open import window {id}"))),
            }
        }
    }
}
