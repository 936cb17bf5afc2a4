//! Many tokenize calls' rows as one guarded insert, and each call's share of what came of it.
//!
//! A call commits its rows in one round or not at all: when one of its rows must be drawn
//! again (its value was taken, or its PAN's old token had expired), the rows it did store are
//! withdrawn before the commit, so the call's record, written in the round that settles it,
//! names every row the call stored and no row is ever stored without it.

use std::collections::HashSet;

use crate::domain::{TenantId, Token};
use crate::store::{NewToken, RowOutcome, TokenInsert};

/// The rows of several calls as one insert.
pub(in crate::store) struct Merged {
    /// The rows, each value once per tenant.
    pub(in crate::store) rows: Vec<NewToken>,
    /// Per call, per row: its place in `rows`, or `None` when it sat the insert out.
    places: Vec<Vec<Option<usize>>>,
}

/// Merges the calls' rows. Rows of different calls may draw the same value in one tenant by
/// chance: the later ones sit the insert out and are answered `Collided`, so that their
/// caller draws again (one statement must never carry a value twice).
///
/// The rows go in ordered by tenant, format and fingerprint, so that two transactions storing
/// the same cards (the appender's lanes, other instances) meet them in the same order and wait
/// for each other instead of deadlocking.
pub(in crate::store) fn merge(calls: &[&[NewToken]]) -> Merged {
    let mut seen: HashSet<(TenantId, &Token)> = HashSet::new();
    let mut taken: Vec<&NewToken> = Vec::with_capacity(calls.iter().map(|c| c.len()).sum());
    let mut places = Vec::with_capacity(calls.len());
    for call in calls {
        let mut own = Vec::with_capacity(call.len());
        for row in call.iter() {
            if seen.insert((row.tenant, &row.token)) {
                own.push(Some(taken.len()));
                taken.push(row);
            } else {
                own.push(None);
            }
        }
        places.push(own);
    }
    let mut order: Vec<usize> = (0..taken.len()).collect();
    order.sort_by(|a, b| {
        let key = |i: &usize| {
            taken
                .get(*i)
                .map(|r| (r.tenant.0, r.format.as_str(), r.fingerprint.0))
        };
        key(a).cmp(&key(b))
    });
    let mut moved_to = vec![0; order.len()];
    for (to, from) in order.iter().enumerate() {
        if let Some(slot) = moved_to.get_mut(*from) {
            *slot = to;
        }
    }
    for own in &mut places {
        for place in own.iter_mut().flatten() {
            *place = moved_to.get(*place).copied().unwrap_or(*place);
        }
    }
    let rows = order
        .iter()
        .filter_map(|i| taken.get(*i).map(|r| (*r).clone()))
        .collect();
    Merged { rows, places }
}

impl Merged {
    /// Each call's share of `insert` (the outcome of inserting [`Merged::rows`]), with the
    /// expired tokens destroyed for its rows (`purged`, by row), and the rows the caller must
    /// delete again before committing: those of calls that go again (see
    /// [`Merged::going_again`]), answered `Withdrawn`.
    pub(in crate::store) fn split(
        &self,
        insert: TokenInsert,
        mut purged: Vec<Option<Token>>,
    ) -> (Vec<TokenInsert>, Vec<(TenantId, Token)>) {
        let TokenInsert {
            rows: mut outcomes,
            mut locked,
            ..
        } = insert;
        let again = self.going_again(&mut outcomes);
        let mut outcomes: Vec<Option<RowOutcome>> = outcomes.into_iter().map(Some).collect();
        let mut shares = Vec::with_capacity(self.places.len());
        let mut withdrawn = Vec::new();
        for (places, again) in self.places.iter().zip(again) {
            let mut rows: Vec<RowOutcome> = places
                .iter()
                .map(|p| {
                    p.and_then(|i| outcomes.get_mut(i).and_then(Option::take))
                        .unwrap_or(RowOutcome::Collided)
                })
                .collect();
            if again {
                for (outcome, place) in rows.iter_mut().zip(places) {
                    if let (RowOutcome::Inserted, Some(row)) =
                        (&outcome, place.and_then(|i| self.rows.get(i)))
                    {
                        *outcome = RowOutcome::Withdrawn;
                        withdrawn.push((row.tenant, row.token.clone()));
                    }
                }
            }
            let own_rows = || places.iter().flatten().filter_map(|i| self.rows.get(*i));
            // A new lock is the first call's with a row in its bucket: it is audited once.
            let (own, rest): (Vec<_>, Vec<_>) = locked
                .into_iter()
                .partition(|l| own_rows().any(|r| (r.tenant, r.bucket) == (l.tenant, l.bucket)));
            locked = rest;
            let destroyed = places
                .iter()
                .flatten()
                .filter_map(|i| {
                    let token = purged.get_mut(*i).and_then(Option::take)?;
                    Some((self.rows.get(*i)?.tenant, token))
                })
                .collect();
            shares.push(TokenInsert {
                rows,
                locked: own,
                purged: destroyed,
            });
        }
        (shares, withdrawn)
    }

    /// Which calls go again: those with a row to draw again (or one that sat out). A row that
    /// found its PAN's token in a row this same insert stored is only as good as that row: if
    /// the row's call goes again (and its rows are taken back), so does the finder's call.
    fn going_again(&self, outcomes: &mut [RowOutcome]) -> Vec<bool> {
        let mut again = vec![false; self.places.len()];
        loop {
            for (places, again) in self.places.iter().zip(again.iter_mut()) {
                *again = *again
                    || places.iter().any(|p| {
                        p.is_none_or(|i| matches!(outcomes.get(i), Some(RowOutcome::Collided)))
                    });
            }
            let taken_back: HashSet<(TenantId, &Token)> = self
                .places
                .iter()
                .zip(&again)
                .filter(|(_, again)| **again)
                .flat_map(|(places, _)| places.iter().flatten())
                .filter(|i| matches!(outcomes.get(**i), Some(RowOutcome::Inserted)))
                .filter_map(|i| self.rows.get(*i))
                .map(|r| (r.tenant, &r.token))
                .collect();
            let mut changed = false;
            for outcome in outcomes.iter_mut() {
                if let RowOutcome::Existing(found) = outcome
                    && taken_back.contains(&(found.tenant, &found.token))
                {
                    *outcome = RowOutcome::Collided;
                    changed = true;
                }
            }
            if !changed {
                return again;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;
    use crate::crypto::fingerprint::Fingerprint;
    use crate::crypto::keys::SealedPan;
    use crate::domain::{Allowance, BucketId, Pan, TokenFormat};
    use crate::store::BucketLocked;

    fn row(tenant: u128, token: &str, bucket: u8) -> NewToken {
        NewToken {
            tenant: TenantId(uuid::Uuid::from_u128(tenant)),
            token: Token::from_stored(token.to_owned()),
            format: TokenFormat::Opaque,
            fingerprint: Fingerprint([0; 32]),
            sealed: SealedPan {
                version: 1,
                bytes: vec![0; 8],
            },
            masked: Pan::parse("4111111111111111").unwrap().masked(),
            metadata: None,
            created_at: DateTime::<Utc>::UNIX_EPOCH,
            expires_at: None,
            bucket: BucketId([bucket; 16]),
            allowance: Allowance {
                budget: 20,
                window: None,
            },
        }
    }

    fn lock(tenant: u128, bucket: u8) -> BucketLocked {
        BucketLocked {
            tenant: TenantId(uuid::Uuid::from_u128(tenant)),
            bucket: BucketId([bucket; 16]),
            counted: 21,
            budget: 20,
            window: None,
            until: DateTime::<Utc>::UNIX_EPOCH,
        }
    }

    #[test]
    fn a_value_drawn_twice_in_a_tenant_sits_out_and_is_collided() {
        let a = [row(1, "tok_a", 1), row(1, "tok_b", 1)];
        let b = [row(1, "tok_b", 2), row(2, "tok_b", 2)];
        let merged = merge(&[&a, &b]);
        assert_eq!(
            merged.rows.len(),
            3,
            "the same value in another tenant goes in"
        );
        let insert = TokenInsert {
            rows: vec![RowOutcome::Inserted; 3],
            ..TokenInsert::default()
        };
        let (shares, withdrawn) = merged.split(insert, vec![None; 3]);
        assert!(matches!(
            shares[0].rows[..],
            [RowOutcome::Inserted, RowOutcome::Inserted]
        ));
        // The second call's first row sat out: it draws again, so its other row is withdrawn.
        assert!(matches!(
            shares[1].rows[..],
            [RowOutcome::Collided, RowOutcome::Withdrawn]
        ));
        assert_eq!(withdrawn.len(), 1);
        assert_eq!(withdrawn[0].0, TenantId(uuid::Uuid::from_u128(2)));
        assert_eq!(withdrawn[0].1.as_str(), "tok_b");
    }

    #[test]
    fn a_call_that_settles_keeps_its_rows_and_a_lock_goes_to_the_first_call_in_its_bucket() {
        let a = [row(1, "tok_a", 1)];
        let b = [row(1, "tok_b", 2), row(1, "tok_c", 1)];
        let merged = merge(&[&a, &b]);
        let insert = TokenInsert {
            rows: vec![
                RowOutcome::Inserted,
                RowOutcome::Inserted,
                RowOutcome::Refused {
                    until: DateTime::<Utc>::UNIX_EPOCH,
                },
            ],
            locked: vec![lock(1, 2), lock(1, 1)],
            purged: Vec::new(),
        };
        let (shares, withdrawn) = merged.split(insert, vec![None, None, None]);
        assert!(
            withdrawn.is_empty(),
            "refused rows are settled: nothing to draw again"
        );
        assert_eq!(shares[0].locked, vec![lock(1, 1)]);
        assert_eq!(shares[1].locked, vec![lock(1, 2)]);
    }

    #[test]
    fn a_call_that_found_its_token_in_a_row_taken_back_goes_again_too() {
        // Call a stores the PAN's row and has a row to draw again; call b, the same PAN, found
        // a's row. a's row is taken back, so b must not answer with it.
        let a = [row(1, "tok_a", 1), row(1, "tok_x", 1)];
        let b = [row(1, "tok_b", 1)];
        let c = [row(1, "tok_c", 2)];
        let merged = merge(&[&a, &b, &c]);
        let found = crate::store::TokenRecord {
            tenant: TenantId(uuid::Uuid::from_u128(1)),
            token: Token::from_stored("tok_a".to_owned()),
            format: TokenFormat::Opaque,
            sealed: None,
            masked: None,
            metadata: None,
            created_at: DateTime::<Utc>::UNIX_EPOCH,
            expires_at: None,
            deleted_at: None,
            destroyed_at: None,
        };
        let insert = TokenInsert {
            rows: vec![
                RowOutcome::Inserted,
                RowOutcome::Collided,
                RowOutcome::Existing(Box::new(found)),
                RowOutcome::Inserted,
            ],
            ..TokenInsert::default()
        };
        let (shares, withdrawn) = merged.split(insert, vec![None; 4]);
        assert!(matches!(
            shares[0].rows[..],
            [RowOutcome::Withdrawn, RowOutcome::Collided]
        ));
        assert!(matches!(shares[1].rows[..], [RowOutcome::Collided]));
        assert!(matches!(shares[2].rows[..], [RowOutcome::Inserted]));
        assert_eq!(withdrawn.len(), 1);
        assert_eq!(withdrawn[0].1.as_str(), "tok_a");
    }

    #[test]
    fn an_expired_token_destroyed_for_a_row_is_reported_to_its_call() {
        let a = [row(1, "tok_a", 1)];
        let b = [row(1, "tok_b", 1)];
        let merged = merge(&[&a, &b]);
        let insert = TokenInsert {
            rows: vec![RowOutcome::Inserted, RowOutcome::Collided],
            ..TokenInsert::default()
        };
        let old = Token::from_stored("tok_old".to_owned());
        let (shares, _) = merged.split(insert, vec![None, Some(old.clone())]);
        assert!(shares[0].purged.is_empty());
        assert_eq!(
            shares[1].purged,
            vec![(TenantId(uuid::Uuid::from_u128(1)), old)]
        );
    }
}
