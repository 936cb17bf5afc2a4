//! The hash chain over audit records: linking, checkpoints of chain heads, and verification
//! that names the first changed, missing, moved or cut-off record.
//!
//! No I/O, no clock. Pure functions of the records and checkpoints handed in.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, Utc};
use ring::digest;
use uuid::Uuid;

use super::AuditEvent;

/// Bytes of a link hash (SHA-256).
pub const HASH_LEN: usize = 32;

/// A link hash.
pub type LinkHash = [u8; HASH_LEN];

/// The hash before the first record of every chain.
pub const GENESIS: LinkHash = [0; HASH_LEN];

/// The hash of a record: SHA-256 over the previous hash and the record's canonical encoding.
pub fn link_hash(prev: &LinkHash, canonical: &[u8]) -> LinkHash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(prev);
    ctx.update(canonical);
    let mut out = [0u8; HASH_LEN];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// An event chained: its place and hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainedEvent {
    /// The chain (one per writer).
    pub chain: Uuid,
    /// Its place in the chain, from 1.
    pub seq: u64,
    /// The previous record's hash ([`GENESIS`] for the first).
    pub prev_hash: LinkHash,
    /// This record's hash.
    pub hash: LinkHash,
    /// The event.
    pub event: AuditEvent,
}

/// The head of one writer's chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    /// The chain.
    pub chain: Uuid,
    /// The last record's place (0 before the first).
    pub seq: u64,
    /// The last record's hash.
    pub hash: LinkHash,
}

impl ChainHead {
    /// A new, empty chain.
    pub fn new(chain: Uuid) -> ChainHead {
        ChainHead {
            chain,
            seq: 0,
            hash: GENESIS,
        }
    }

    /// Chains `event` after this head and moves the head to it.
    pub fn append(&mut self, event: AuditEvent) -> ChainedEvent {
        let seq = self.seq + 1;
        let hash = link_hash(&self.hash, &event.canonical(self.chain, seq));
        let chained = ChainedEvent {
            chain: self.chain,
            seq,
            prev_hash: self.hash,
            hash,
            event,
        };
        self.seq = seq;
        self.hash = hash;
        chained
    }
}

/// A chain head vouched for outside the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// The chain.
    pub chain: Uuid,
    /// The head's place.
    pub seq: u64,
    /// The head's hash.
    pub hash: LinkHash,
    /// When it was written.
    pub at: DateTime<Utc>,
}

impl Checkpoint {
    /// The bytes its MAC covers.
    pub fn canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(80);
        out.extend_from_slice(b"strongroom-audit-checkpoint-v1");
        out.extend_from_slice(self.chain.as_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.hash);
        out.extend_from_slice(&self.at.timestamp_micros().to_be_bytes());
        out
    }
}

/// A record as read back for verification.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    /// The database's id of the row, to name it.
    pub id: i64,
    /// The chained event as stored.
    pub chained: ChainedEvent,
}

/// Where and how the chain is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainBreak {
    /// The record's contents do not give its stored hash: it was changed.
    Changed {
        /// Row id.
        id: i64,
        /// Chain.
        chain: Uuid,
        /// Place.
        seq: u64,
    },
    /// The record does not link to the one before it: records were reordered or replaced.
    Unlinked {
        /// Row id.
        id: i64,
        /// Chain.
        chain: Uuid,
        /// Place.
        seq: u64,
    },
    /// Records before this one are missing.
    Gap {
        /// Row id.
        id: i64,
        /// Chain.
        chain: Uuid,
        /// Place.
        seq: u64,
        /// The place that was expected.
        expected: u64,
    },
    /// A checkpoint names a record the chain no longer reaches: the tail was cut off (or the
    /// whole chain deleted).
    Truncated {
        /// Chain.
        chain: Uuid,
        /// The checkpoint's place.
        checkpoint_seq: u64,
        /// The last place the table holds (0: none).
        last_seq: u64,
    },
    /// A record differs from the checkpoint that vouched for it.
    CheckpointMismatch {
        /// Row id.
        id: i64,
        /// Chain.
        chain: Uuid,
        /// Place.
        seq: u64,
    },
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainBreak::Changed { id, chain, seq } => write!(
                f,
                "record {id} (chain {chain}, seq {seq}) was changed: its contents do not match its hash"
            ),
            ChainBreak::Unlinked { id, chain, seq } => write!(
                f,
                "record {id} (chain {chain}, seq {seq}) does not link to the record before it: records were reordered or replaced"
            ),
            ChainBreak::Gap {
                id,
                chain,
                seq,
                expected,
            } => write!(
                f,
                "record {id} (chain {chain}, seq {seq}) follows a gap: record seq {expected} was deleted"
            ),
            ChainBreak::Truncated {
                chain,
                checkpoint_seq,
                last_seq,
            } => write!(
                f,
                "chain {chain} ends at seq {last_seq} but a checkpoint vouches for seq {checkpoint_seq}: records were cut off"
            ),
            ChainBreak::CheckpointMismatch { id, chain, seq } => write!(
                f,
                "record {id} (chain {chain}, seq {seq}) differs from its checkpoint: the chain was rewritten"
            ),
        }
    }
}

/// What a verification found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Verified {
    /// Records checked.
    pub records: u64,
    /// Chains seen.
    pub chains: u64,
    /// Checkpoints matched.
    pub checkpoints: u64,
}

/// Verifies records fed in chain order (by chain, then seq), against checkpoints.
#[derive(Debug)]
pub struct ChainVerifier {
    head: Option<ChainHead>,
    checkpoints: HashMap<(Uuid, u64), LinkHash>,
    newest_checkpoint: HashMap<Uuid, u64>,
    last_seq: HashMap<Uuid, u64>,
    verified: Verified,
}

impl ChainVerifier {
    /// A verifier holding these checkpoints (any order, any number per chain).
    pub fn new(checkpoints: impl IntoIterator<Item = Checkpoint>) -> ChainVerifier {
        let mut map = HashMap::new();
        let mut newest: HashMap<Uuid, u64> = HashMap::new();
        for c in checkpoints {
            map.insert((c.chain, c.seq), c.hash);
            let n = newest.entry(c.chain).or_default();
            *n = (*n).max(c.seq);
        }
        ChainVerifier {
            head: None,
            checkpoints: map,
            newest_checkpoint: newest,
            last_seq: HashMap::new(),
            verified: Verified::default(),
        }
    }

    /// Checks the next record.
    pub fn push(&mut self, record: &StoredRecord) -> Result<(), ChainBreak> {
        let c = &record.chained;
        let (id, chain, seq) = (record.id, c.chain, c.seq);
        let head = match self.head {
            Some(h) if h.chain == chain => h,
            _ => {
                self.verified.chains += 1;
                ChainHead::new(chain)
            }
        };
        if seq != head.seq + 1 {
            return Err(ChainBreak::Gap {
                id,
                chain,
                seq,
                expected: head.seq + 1,
            });
        }
        if c.prev_hash != head.hash {
            return Err(ChainBreak::Unlinked { id, chain, seq });
        }
        if link_hash(&c.prev_hash, &c.event.canonical(chain, seq)) != c.hash {
            return Err(ChainBreak::Changed { id, chain, seq });
        }
        if let Some(expected) = self.checkpoints.get(&(chain, seq)) {
            if *expected != c.hash {
                return Err(ChainBreak::CheckpointMismatch { id, chain, seq });
            }
            self.verified.checkpoints += 1;
        }
        self.head = Some(ChainHead {
            chain,
            seq,
            hash: c.hash,
        });
        self.last_seq.insert(chain, seq);
        self.verified.records += 1;
        Ok(())
    }

    /// Ends the run: every checkpoint must have been reached.
    pub fn finish(self) -> Result<Verified, ChainBreak> {
        let mut cut: Vec<ChainBreak> = self
            .newest_checkpoint
            .iter()
            .filter_map(|(chain, &newest)| {
                let last = self.last_seq.get(chain).copied().unwrap_or(0);
                (last < newest).then_some(ChainBreak::Truncated {
                    chain: *chain,
                    checkpoint_seq: newest,
                    last_seq: last,
                })
            })
            .collect();
        // Deterministic: name the same chain on every run.
        cut.sort_by_key(|b| match b {
            ChainBreak::Truncated { chain, .. } => *chain,
            _ => Uuid::nil(),
        });
        match cut.into_iter().next() {
            Some(b) => Err(b),
            None => Ok(self.verified),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::audit::{Action, Outcome};
    use crate::domain::{PrincipalId, TenantId};
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn event(i: u32) -> AuditEvent {
        let at = Utc
            .timestamp_opt(1_800_000_000 + i64::from(i), 123_456_789)
            .unwrap();
        let mut e = AuditEvent::new(Action::Detokenize, at);
        e.tenant = Some(TenantId(Uuid::from_u128(7)));
        e.actor = Some(PrincipalId(Uuid::from_u128(9)));
        e.tokens = vec![format!("411111000000{i:04}")];
        e.purpose = Some("dispute".into());
        e.request_id = Some(format!("req-{i}"));
        e
    }

    fn chain(n: u32) -> Vec<StoredRecord> {
        let mut head = ChainHead::new(Uuid::from_u128(1));
        (1..=n)
            .map(|i| StoredRecord {
                id: i64::from(i),
                chained: head.append(event(i)),
            })
            .collect()
    }

    fn verify(
        records: &[StoredRecord],
        checkpoints: &[Checkpoint],
    ) -> Result<Verified, ChainBreak> {
        let mut v = ChainVerifier::new(checkpoints.iter().copied());
        for r in records {
            v.push(r)?;
        }
        v.finish()
    }

    fn checkpoint_of(r: &StoredRecord) -> Checkpoint {
        Checkpoint {
            chain: r.chained.chain,
            seq: r.chained.seq,
            hash: r.chained.hash,
            at: r.chained.event.at,
        }
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let records = chain(5);
        let last = checkpoint_of(&records[4]);
        assert_eq!(
            verify(&records, &[last]),
            Ok(Verified {
                records: 5,
                chains: 1,
                checkpoints: 1
            })
        );
    }

    #[test]
    fn a_changed_field_is_named() {
        let mut records = chain(5);
        records[2].chained.event.outcome = Outcome::Denied;
        assert!(matches!(
            verify(&records, &[]),
            Err(ChainBreak::Changed { seq: 3, .. })
        ));
    }

    #[test]
    fn a_deleted_record_is_a_gap() {
        let mut records = chain(5);
        records.remove(1);
        assert!(matches!(
            verify(&records, &[]),
            Err(ChainBreak::Gap {
                seq: 3,
                expected: 2,
                ..
            })
        ));
    }

    #[test]
    fn swapped_records_do_not_link() {
        let mut records = chain(5);
        // Swap contents but keep places: as an UPDATE of every column but seq would.
        let (a, b) = (records[1].chained.clone(), records[2].chained.clone());
        records[1].chained = ChainedEvent { seq: 2, ..b };
        records[2].chained = ChainedEvent { seq: 3, ..a };
        assert!(matches!(
            verify(&records, &[]),
            Err(ChainBreak::Unlinked { seq: 2, .. })
        ));
    }

    #[test]
    fn a_cut_tail_is_caught_only_by_a_checkpoint() {
        let mut records = chain(5);
        let last = checkpoint_of(&records[4]);
        records.truncate(3);
        assert!(verify(&records, &[]).is_ok());
        assert_eq!(
            verify(&records, &[last]),
            Err(ChainBreak::Truncated {
                chain: Uuid::from_u128(1),
                checkpoint_seq: 5,
                last_seq: 3
            })
        );
    }

    #[test]
    fn a_rewritten_chain_is_caught_by_its_checkpoint() {
        let records = chain(4);
        let checkpoint = checkpoint_of(&records[3]);
        // Whoever rewrites a record and recomputes every hash after it keeps the chain whole.
        let mut head = ChainHead::new(Uuid::from_u128(1));
        let forged: Vec<StoredRecord> = records
            .iter()
            .map(|r| {
                let mut e = r.chained.event.clone();
                if r.chained.seq == 2 {
                    e.outcome = Outcome::Denied;
                }
                StoredRecord {
                    id: r.id,
                    chained: head.append(e),
                }
            })
            .collect();
        assert!(verify(&forged, &[]).is_ok());
        assert!(matches!(
            verify(&forged, &[checkpoint]),
            Err(ChainBreak::CheckpointMismatch { seq: 4, .. })
        ));
    }

    #[test]
    fn a_deleted_chain_is_caught_by_its_checkpoint() {
        let records = chain(2);
        let checkpoint = checkpoint_of(&records[1]);
        assert!(matches!(
            verify(&[], &[checkpoint]),
            Err(ChainBreak::Truncated { last_seq: 0, .. })
        ));
    }

    proptest! {
        /// Chain verification catches any changed bit of a hashed text field.
        #[test]
        fn any_changed_byte_breaks_the_chain(which in 0usize..4, field in 0usize..2, pos in 0usize..32, bit in 0u8..7) {
            let mut records = chain(4);
            let e = &mut records[which].chained.event;
            let text = if field == 0 { &mut e.tokens[0] } else { e.request_id.get_or_insert_with(String::new) };
            let mut bytes = std::mem::take(text).into_bytes();
            let i = pos % bytes.len();
            bytes[i] ^= 1 << bit;
            *text = String::from_utf8(bytes).unwrap();
            prop_assert!(verify(&records, &[]).is_err());
        }
    }
}
