//! Re-encryption: card numbers sealed under retired data keys are opened and sealed again under
//! the active one, a batch at a time, each batch committed with its `key.reencrypt` record.
//!
//! Safe beside serving instances: a row is replaced only if it is still live and still under
//! the version it was read under, so a delete (or another re-encryption) that came first wins,
//! and a detokenize meanwhile opens either form (the retired key still opens). A run killed
//! halfway has committed whole batches; the next run starts over and meets only what is left.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{KeyError, KeyService};
use crate::domain::audit::{Action, AuditEvent};
use crate::domain::{TenantId, Token};
use crate::metrics::Metrics;
use crate::store::{AuditedWrite, ResealedRow, WriteOutcome};

/// Rows read and sealed again per transaction unless told otherwise.
pub const DEFAULT_REENCRYPT_BATCH: u32 = 500;

/// Where a re-encryption stands: what it has met, and where it goes on from.
#[derive(Debug, Default, Clone)]
pub struct Reencryption {
    /// Rows sealed again under the active key and committed.
    pub moved: u64,
    /// Rows read but left as they were: deleted or re-encrypted by someone else meanwhile.
    pub passed: u64,
    /// Rows whose sealed card number failed its integrity check: left as they are, and
    /// counted (and logged without the row's data) for an operator to look into.
    pub unreadable: u64,
    /// The last row met; the next batch starts after it.
    after: Option<(TenantId, Token)>,
    /// Nothing is left to meet.
    pub finished: bool,
}

impl KeyService {
    /// Re-encrypts the next batch of up to `limit` rows of a run (`by` says whose, for the
    /// record: `operator` or `background`). Reloads the keyring first when the run starts, so
    /// rows move onto the key that is active now.
    pub async fn reencrypt_batch(
        &self,
        run: &mut Reencryption,
        limit: u32,
        by: &'static str,
    ) -> Result<(), KeyError> {
        if run.finished {
            return Ok(());
        }
        if run.after.is_none() && run.moved == 0 {
            self.reload().await?;
        }
        let active = self.active_key()?.version();
        let rows = self
            .store
            .rows_under_older_keys(active, run.after.as_ref(), limit)
            .await?;
        let Some(last) = rows.last() else {
            run.finished = true;
            return Ok(());
        };
        let next = (last.tenant, last.token.clone());
        let count = u32::try_from(rows.len()).unwrap_or(u32::MAX);
        let key = self.reserve(count).await?;
        let mut resealed = Vec::with_capacity(rows.len());
        let mut from: Vec<u32> = Vec::new();
        for row in rows {
            // The key reserved may be newer than the one the walk started under, never older:
            // a row already under it (or a newer one) stays.
            if row.sealed.version >= key.version() {
                run.passed += 1;
                continue;
            }
            let pan = match self.open_pan(row.tenant, &row.token, &row.sealed).await {
                Ok(pan) => pan,
                // Destroyed with its tenant since it was read.
                Err(KeyError::TenantShredded) => {
                    run.passed += 1;
                    continue;
                }
                Err(KeyError::Integrity) => {
                    tracing::warn!(
                        version = row.sealed.version,
                        "a sealed card number failed its integrity check; left as it is"
                    );
                    run.unreadable += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let sealer = self.sealer(row.tenant, &key).await?;
            let sealed = sealer.seal_pan(self.rng.as_ref(), row.tenant, &row.token, &pan)?;
            if !from.contains(&row.sealed.version) {
                from.push(row.sealed.version);
            }
            resealed.push(ResealedRow {
                tenant: row.tenant,
                token: row.token,
                from: row.sealed.version,
                sealed,
            });
        }
        let read = resealed.len() as u64;
        if read > 0 {
            from.sort_unstable();
            let from: Vec<String> = from.iter().map(u32::to_string).collect();
            let (to, now) = (key.version(), self.clock.now());
            let outcome = self
                .audit
                .write_records(AuditedWrite::Reencrypt { rows: resealed }, move |outcome| {
                    let WriteOutcome::Reencrypted(moved) = outcome else {
                        return Vec::new();
                    };
                    if *moved == 0 {
                        return Vec::new();
                    }
                    let mut event = AuditEvent::new(Action::KeyReencrypt, now);
                    event.subject = Some(format!("data_key:{to}"));
                    event.detail = Some(format!("moved={moved} from={} by={by}", from.join(",")));
                    vec![event]
                })
                .await
                .map_err(|_| KeyError::AuditUnavailable)?;
            let WriteOutcome::Reencrypted(moved) = outcome else {
                return Err(KeyError::AuditUnavailable);
            };
            run.moved += moved;
            run.passed += read - moved.min(read);
        }
        run.after = Some(next);
        Ok(())
    }

    /// How many live rows are sealed under another key than the active one.
    pub async fn rows_to_reencrypt(&self) -> Result<u64, KeyError> {
        let active = self.active_key()?.version();
        Ok(self.store.rows_to_reencrypt(active).await?)
    }
}

/// `serve`'s background re-encryption: at most `rows_per_second` rows a second, in batches
/// of at most [`DEFAULT_REENCRYPT_BATCH`], looking again each minute once nothing is left (a
/// rotation gives it new work). Several instances doing it at once waste reads, nothing more:
/// each row is replaced once. Progress is in the metrics.
pub async fn reencrypt_in_background(
    keys: Arc<KeyService>,
    rows_per_second: u32,
    metrics: Metrics,
) {
    let rate = f64::from(rows_per_second.max(1));
    let batch = rows_per_second.clamp(1, DEFAULT_REENCRYPT_BATCH);
    loop {
        let mut run = Reencryption::default();
        let total = match keys.rows_to_reencrypt().await {
            Ok(total) => total,
            Err(e) => {
                tracing::warn!(error = %e, "counting rows to re-encrypt failed");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        metrics.set_rows_to_reencrypt(total);
        while !run.finished && total > 0 {
            let started = Instant::now();
            let before = run.moved;
            if let Err(e) = keys.reencrypt_batch(&mut run, batch, "background").await {
                tracing::warn!(error = %e, "re-encrypting a batch failed; trying again");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
            metrics.reencrypted(run.moved - before);
            let met = run.moved + run.passed + run.unreadable;
            metrics.set_rows_to_reencrypt(total.saturating_sub(met));
            let spent = started.elapsed();
            let allowed = Duration::from_secs_f64(f64::from(batch) / rate);
            tokio::time::sleep(allowed.saturating_sub(spent)).await;
        }
        if run.moved > 0 {
            tracing::info!(
                moved = run.moved,
                unreadable = run.unreadable,
                "re-encrypted rows onto the active data key"
            );
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}
