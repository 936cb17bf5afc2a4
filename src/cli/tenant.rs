//! `strongroom tenant`: what an operator does to a whole tenant. Today, shredding it.

use clap::Subcommand;

use super::admin::{CheckpointArgs, CliError, DatabaseArgs};
use super::keys::key_admin;

/// What `strongroom tenant` does.
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Crypto-shred a tenant: its key is destroyed, so nothing sealed or fingerprinted for it
    /// opens again; its tokens answer 410 token_destroyed, its unexpired grants are revoked,
    /// its principals disabled and its pending access requests expired. Other tenants are
    /// untouched; the audit trail keeps the tenant's records (`tenant.shred`). Irreversible:
    /// `--confirm` must repeat the tenant's name. Needs STRONGROOM_MASTER_KEY.
    Shred {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        checkpoints: CheckpointArgs,
        /// The tenant's name.
        #[arg(long)]
        tenant: String,
        /// The tenant's name again: nothing is done unless it matches.
        #[arg(long)]
        confirm: String,
    },
}

/// Runs a tenant command.
pub async fn run(command: TenantCommand) -> Result<(), CliError> {
    match command {
        TenantCommand::Shred {
            database,
            checkpoints,
            tenant,
            confirm,
        } => {
            if confirm != tenant {
                return Err(CliError(
                    "--confirm does not repeat --tenant: nothing was shredded".into(),
                ));
            }
            let admin = key_admin(&database, &checkpoints).await?;
            match admin.shred_tenant(&tenant).await? {
                Some(shredded) => {
                    println!(
                        "tenant {tenant} is shredded: its keys are destroyed; {} tokens destroyed, \
                         {} grants revoked, {} principals disabled, {} pending requests expired",
                        shredded.tokens, shredded.grants, shredded.principals, shredded.requests
                    );
                    Ok(())
                }
                None => Err(CliError(
                    "there is no such tenant, or it was shredded already; nothing was changed"
                        .into(),
                )),
            }
        }
    }
}
