//! Master key shares for custodians: Shamir's secret sharing over GF(2^8) (the `blahaj`
//! crate), so that any M of N shares rebuild the key and M-1 say nothing about it (PCI DSS
//! 3.6.1.2: split knowledge, never a key cut in pieces).
//!
//! A share is written `srs1-SSSSSSSS-M-II-YYYY…YYYY-CCCCCCCC`: the format's version, the id
//! of the split it came from (8 hex digits, random per split), the threshold M, the share's
//! index, its 32 bytes as 64 hex digits, and a checksum over all of that (8 hex digits of
//! SHA-256). A share mistyped by one character fails its checksum and is named at once,
//! before it is combined with anything; shares of two different splits are refused together.
//! No I/O. Shares are wiped on drop and never printed by Debug.

use std::fmt;

use zeroize::Zeroizing;

use crate::random::{self, Csprng, RandomError};

/// The text every share starts with (the format's version).
pub const PREFIX: &str = "srs1";
/// The most shares a split makes.
pub const MAX_SHARES: u8 = 16;
/// The fewest shares a threshold may ask for: one share alone would be the key.
pub const MIN_THRESHOLD: u8 = 2;

/// Why shares could not be made or used. None carries share material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    /// Not of the share format at all.
    #[error("is not a Strongroom key share (srs1-…)")]
    Malformed,
    /// Of the format, but a character is wrong.
    #[error("does not check out: a character is mistyped or missing")]
    Checksum,
    /// A threshold or count out of range.
    #[error("a split needs 2 to 16 shares and a threshold from 2 up to the number of shares")]
    Counts,
    /// Shares of two different splits.
    #[error("comes from another split than the shares before it (split {0})")]
    OtherSplit(String),
    /// The same share twice.
    #[error("was given already (share {0})")]
    Duplicate(u8),
    /// Not enough shares yet.
    #[error("{have} of the {need} shares needed")]
    TooFew {
        /// Shares given.
        have: usize,
        /// Shares needed.
        need: u8,
    },
    /// The random number generator failed.
    #[error("the system random number generator failed")]
    Random,
}

impl From<RandomError> for ShareError {
    fn from(_: RandomError) -> Self {
        ShareError::Random
    }
}

/// One custodian's share of a master key.
#[derive(Clone)]
pub struct KeyShare {
    split: [u8; 4],
    threshold: u8,
    index: u8,
    y: Zeroizing<[u8; 32]>,
}

impl KeyShare {
    /// Parses a share as a custodian types or pastes it (surrounding spaces ignored, hex in
    /// either case).
    pub fn parse(text: &str) -> Result<KeyShare, ShareError> {
        let text = Zeroizing::new(text.trim().to_ascii_lowercase());
        let parts: Vec<&str> = text.split('-').collect();
        let [prefix, split, threshold, index, y, check] = parts.as_slice() else {
            return Err(ShareError::Malformed);
        };
        if *prefix != PREFIX || split.len() != 8 || y.len() != 64 || check.len() != 8 {
            return Err(ShareError::Malformed);
        }
        let split: [u8; 4] = hex_array(split)?;
        let threshold: u8 = threshold.parse().map_err(|_| ShareError::Malformed)?;
        let index: u8 = index.parse().map_err(|_| ShareError::Malformed)?;
        let y = Zeroizing::new(hex_array::<32>(y)?);
        let check: [u8; 4] = hex_array(check)?;
        let share = KeyShare {
            split,
            threshold,
            index,
            y,
        };
        if share.checksum() != check {
            return Err(ShareError::Checksum);
        }
        if !(MIN_THRESHOLD..=MAX_SHARES).contains(&threshold) || index == 0 || index > MAX_SHARES {
            return Err(ShareError::Malformed);
        }
        Ok(share)
    }

    /// The share as its custodian keeps it.
    pub fn to_text(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "{PREFIX}-{}-{}-{:02}-{}-{}",
            hex::encode(self.split),
            self.threshold,
            self.index,
            hex::encode(self.y.as_slice()),
            hex::encode(self.checksum()),
        ))
    }

    /// Its index (1 to N): which custodian's it is.
    pub fn index(&self) -> u8 {
        self.index
    }

    /// How many shares rebuild the key.
    pub fn threshold(&self) -> u8 {
        self.threshold
    }

    /// The id of the split it came from (8 hex digits): public, names the set of shares.
    pub fn split_id(&self) -> String {
        hex::encode(self.split)
    }

    fn checksum(&self) -> [u8; 4] {
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        context.update(b"strongroom:key-share:v1");
        context.update(&self.split);
        context.update(&[self.threshold, self.index]);
        context.update(self.y.as_slice());
        let digest = context.finish();
        let mut out = [0u8; 4];
        out.copy_from_slice(digest.as_ref().get(..4).unwrap_or(&[0; 4]));
        out
    }
}

impl fmt::Debug for KeyShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "KeyShare(split {}, {} of threshold {}, <redacted>)",
            self.split_id(),
            self.index,
            self.threshold
        )
    }
}

fn hex_array<const N: usize>(text: &str) -> Result<[u8; N], ShareError> {
    let bytes = Zeroizing::new(hex::decode(text).map_err(|_| ShareError::Malformed)?);
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| ShareError::Malformed)
}

/// Splits a 32-byte key into `shares` shares of which any `threshold` rebuild it. The split's
/// id is drawn from `rng`; the polynomials' coefficients from the operating system's
/// generator (through `blahaj`).
pub fn split(
    key: &[u8; 32],
    shares: u8,
    threshold: u8,
    rng: &dyn Csprng,
) -> Result<Vec<KeyShare>, ShareError> {
    if !(MIN_THRESHOLD..=MAX_SHARES).contains(&shares)
        || !(MIN_THRESHOLD..=shares).contains(&threshold)
    {
        return Err(ShareError::Counts);
    }
    let split_id = random::bytes::<4>(rng)?;
    let dealer = blahaj::Sharks(threshold).dealer(key);
    dealer
        .take(usize::from(shares))
        .map(|share| {
            let bytes = Zeroizing::new(Vec::<u8>::from(&share));
            let (index, y) = bytes.split_first().ok_or(ShareError::Random)?;
            Ok(KeyShare {
                split: split_id,
                threshold,
                index: *index,
                y: Zeroizing::new(y.try_into().map_err(|_| ShareError::Random)?),
            })
        })
        .collect()
}

/// Checks that `share` may join `shares` (same split and threshold, not there yet).
pub fn admit(shares: &[KeyShare], share: &KeyShare) -> Result<(), ShareError> {
    if let Some(first) = shares.first()
        && (first.split != share.split || first.threshold != share.threshold)
    {
        return Err(ShareError::OtherSplit(share.split_id()));
    }
    if shares.iter().any(|s| s.index == share.index) {
        return Err(ShareError::Duplicate(share.index));
    }
    Ok(())
}

/// Rebuilds the key from at least a threshold of one split's shares.
pub fn combine(shares: &[KeyShare]) -> Result<Zeroizing<[u8; 32]>, ShareError> {
    let Some(first) = shares.first() else {
        return Err(ShareError::TooFew { have: 0, need: 0 });
    };
    for (i, share) in shares.iter().enumerate() {
        admit(shares.get(..i).unwrap_or_default(), share)?;
    }
    if shares.len() < usize::from(first.threshold) {
        return Err(ShareError::TooFew {
            have: shares.len(),
            need: first.threshold,
        });
    }
    let parts: Vec<blahaj::Share> = shares
        .iter()
        .filter_map(|s| {
            let mut bytes = Zeroizing::new(Vec::with_capacity(33));
            bytes.push(s.index);
            bytes.extend_from_slice(s.y.as_slice());
            blahaj::Share::try_from(bytes.as_slice()).ok()
        })
        .collect();
    let key = Zeroizing::new(
        blahaj::Sharks(first.threshold)
            .recover(parts.iter())
            .map_err(|_| ShareError::TooFew {
                have: shares.len(),
                need: first.threshold,
            })?,
    );
    key.as_slice()
        .try_into()
        .map(Zeroizing::new)
        .map_err(|_| ShareError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SystemRandom;

    fn key() -> [u8; 32] {
        random::bytes::<32>(&SystemRandom::new()).unwrap()
    }

    /// Every subset of `0..n` with `k` members.
    fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
        (0u32..(1 << n))
            .filter(|m| m.count_ones() as usize == k)
            .map(|m| (0..n).filter(|i| m & (1 << i) != 0).collect())
            .collect()
    }

    #[test]
    fn any_three_of_five_rebuild_the_key_and_two_do_not() {
        let key = key();
        let shares = split(&key, 5, 3, &SystemRandom::new()).unwrap();
        assert_eq!(shares.len(), 5);
        let texts: Vec<_> = shares.iter().map(|s| s.to_text()).collect();
        for subset in subsets(5, 3)
            .into_iter()
            .chain(subsets(5, 4))
            .chain(subsets(5, 5))
        {
            let picked: Vec<KeyShare> = subset
                .iter()
                .map(|&i| KeyShare::parse(&texts[i]).unwrap())
                .collect();
            assert_eq!(*combine(&picked).unwrap(), key, "{subset:?}");
        }
        for subset in subsets(5, 2) {
            let picked: Vec<KeyShare> = subset.iter().map(|&i| shares[i].clone()).collect();
            assert_eq!(
                combine(&picked).unwrap_err(),
                ShareError::TooFew { have: 2, need: 3 }
            );
        }
    }

    #[test]
    fn two_shares_of_a_threshold_of_three_are_consistent_with_any_key() {
        // With M-1 shares, every key is as likely: for any candidate key there is a third
        // share that completes the two into it. Shown here for the first byte, all values.
        let shares = split(&key(), 3, 3, &SystemRandom::new()).unwrap();
        let mut firsts = std::collections::HashSet::new();
        for candidate in 0..=255u8 {
            let mut third = shares[2].clone();
            // Solve for the third share's first byte by trying all 256: some value rebuilds a
            // key starting with `candidate`.
            let found = (0..=255u8).any(|y0| {
                third.y[0] = y0;
                combine(&[shares[0].clone(), shares[1].clone(), third.clone()])
                    .is_ok_and(|k| k[0] == candidate)
            });
            if found {
                firsts.insert(candidate);
            }
        }
        assert_eq!(firsts.len(), 256);
    }

    #[test]
    fn a_mistyped_share_fails_its_checksum() {
        let shares = split(&key(), 3, 2, &SystemRandom::new()).unwrap();
        let text = shares[1].to_text();
        assert!(text.starts_with("srs1-"));
        assert_eq!(KeyShare::parse(&text).unwrap().index(), 2);
        assert_eq!(
            KeyShare::parse(&format!("  {}  ", text.to_uppercase()))
                .unwrap()
                .index(),
            2
        );
        // Every single-character change of the hex is caught.
        for at in 5..text.len() {
            let mut bytes = text.as_bytes().to_vec();
            let c = bytes[at];
            if c == b'-' {
                continue;
            }
            bytes[at] = if c == b'0' { b'1' } else { b'0' };
            let typo = String::from_utf8(bytes).unwrap();
            assert!(
                matches!(
                    KeyShare::parse(&typo),
                    Err(ShareError::Checksum | ShareError::Malformed)
                ),
                "{at}"
            );
        }
        for junk in [
            "",
            "srs1",
            "srs2-00000000-2-01-00-00000000",
            &text[..text.len() - 1],
        ] {
            assert!(KeyShare::parse(junk).is_err(), "{junk}");
        }
        assert!(!format!("{:?}", shares[1]).contains(&text[17..80]));
    }

    #[test]
    fn shares_of_two_splits_and_the_same_share_twice_are_refused() {
        let key = key();
        let a = split(&key, 3, 2, &SystemRandom::new()).unwrap();
        let b = split(&key, 3, 2, &SystemRandom::new()).unwrap();
        assert!(matches!(
            combine(&[a[0].clone(), b[1].clone()]),
            Err(ShareError::OtherSplit(_))
        ));
        assert_eq!(
            combine(&[a[0].clone(), a[0].clone()]).unwrap_err(),
            ShareError::Duplicate(1)
        );
        assert_eq!(*combine(&[a[2].clone(), a[0].clone()]).unwrap(), key);
    }

    #[test]
    fn counts_out_of_range_are_refused() {
        let rng = SystemRandom::new();
        for (n, m) in [(1, 1), (3, 1), (3, 4), (17, 3), (0, 0)] {
            assert_eq!(split(&key(), n, m, &rng).unwrap_err(), ShareError::Counts);
        }
        assert_eq!(split(&key(), 16, 16, &rng).unwrap().len(), 16);
        assert_eq!(split(&key(), 2, 2, &rng).unwrap().len(), 2);
    }
}
