//! Recognises master keys that no random generator would produce: one byte over and over, a
//! short pattern repeated, a handful of distinct byte values, a counting sequence.
//!
//! Pure: no I/O, no clock. It judges the shape of 32 bytes only; it cannot tell a key that is
//! random from one that was merely made to look random (a hash of a password passes). Its
//! verdicts name a rule, never a byte of the key.
//!
//! Every rule is one that a key from `strongroom keygen` (32 bytes from the operating system's
//! CSPRNG) fails with a probability far below 1e-12, so a real key is never refused:
//!
//! | rule | a uniformly random key fails it with probability |
//! |---|---|
//! | repeats a pattern of 1 to 16 bytes | at most about 256^-16 ≈ 3e-39 |
//! | fewer than [`MIN_DISTINCT_BYTES`] (16) distinct byte values | 3.2e-17 (exact occupancy count: 32 draws from 256 values; the mean is 30.1 distinct) |
//! | step from byte to byte repeats with a period of 1 to 8 (`0,1,2,…`, `31,30,…`, `0,2,4,…`) | at most about 256^-23 |
//! | never decreases, or never increases | 2 · C(287, 32) / 256^32 ≈ 5e-35 |

use std::fmt;

use zeroize::Zeroizing;

/// A key with fewer distinct byte values than this is refused. A random 32-byte key has 30.1
/// on average and fewer than 16 with probability 3.2e-17; fewer than 17 would still be under
/// 1e-12 (2.2e-15), but 16 leaves a wide margin and still catches text such as `"ab" * 16`,
/// hex digits or a short word.
pub const MIN_DISTINCT_BYTES: usize = 16;

/// The longest repeated pattern refused: a key that is two copies of its first half (or more
/// copies of something shorter) carries at most 128 bits.
const MAX_PATTERN: usize = 16;

/// The longest period of the byte-to-byte step refused.
const MAX_STEP_PATTERN: usize = 8;

/// Why a key was judged weak. Names a rule only; carries nothing of the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weakness {
    /// The key is a pattern of 1 to 16 bytes repeated (all one byte included).
    Repeats,
    /// The key uses fewer than [`MIN_DISTINCT_BYTES`] distinct byte values.
    FewDistinctBytes,
    /// Each byte follows from the one before by a repeating step, like `0, 1, 2, …`.
    Sequence,
    /// The bytes only ever rise, or only ever fall.
    Monotone,
}

impl fmt::Display for Weakness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Weakness::Repeats => "it repeats a short pattern of bytes",
            Weakness::FewDistinctBytes => "it uses too few distinct byte values",
            Weakness::Sequence => "its bytes form a regular sequence",
            Weakness::Monotone => "its bytes only rise or only fall",
        })
    }
}

/// The first rule a 32-byte key breaks, or `None` when it looks like random bytes.
pub fn weakness(key: &[u8; 32]) -> Option<Weakness> {
    if (1..=MAX_PATTERN).any(|period| has_period(key, period)) {
        return Some(Weakness::Repeats);
    }
    // Both tables say much about the key (the steps give it all but its first byte), so they
    // are wiped like the key itself.
    let mut seen = Zeroizing::new([0u8; 256]);
    for &b in key {
        if let Some(slot) = seen.get_mut(usize::from(b)) {
            *slot = 1;
        }
    }
    if seen.iter().filter(|&&s| s != 0).count() < MIN_DISTINCT_BYTES {
        return Some(Weakness::FewDistinctBytes);
    }
    // The step from each byte to the next, modulo 256, so that a counter that wraps
    // (`0xf0, …, 0xff, 0x00, …`) is still a counter.
    let mut steps = Zeroizing::new([0u8; 31]);
    for (slot, window) in steps.iter_mut().zip(key.windows(2)) {
        *slot = step(window);
    }
    if (1..=MAX_STEP_PATTERN).any(|period| has_period(steps.as_slice(), period)) {
        return Some(Weakness::Sequence);
    }
    let rises = key.windows(2).all(|w| w.first() <= w.last());
    let falls = key.windows(2).all(|w| w.first() >= w.last());
    if rises || falls {
        return Some(Weakness::Monotone);
    }
    None
}

/// The wrapping difference between the two bytes of a window.
fn step(window: &[u8]) -> u8 {
    match window {
        [a, b] => b.wrapping_sub(*a),
        _ => 0,
    }
}

/// Whether every byte equals the one `period` places before it.
fn has_period(bytes: &[u8], period: usize) -> bool {
    bytes
        .iter()
        .zip(bytes.iter().skip(period))
        .all(|(a, b)| a == b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::{self, SystemRandom};

    fn key(bytes: &[u8]) -> [u8; 32] {
        bytes.try_into().unwrap()
    }

    fn cycle(pattern: &[u8]) -> [u8; 32] {
        key(&pattern.iter().copied().cycle().take(32).collect::<Vec<_>>())
    }

    #[test]
    fn ten_thousand_keys_from_the_csprng_all_pass() {
        let rng = SystemRandom::new();
        for _ in 0..10_000 {
            let k = random::bytes::<32>(&rng).unwrap();
            assert_eq!(weakness(&k), None);
        }
    }

    #[test]
    fn one_byte_over_and_over_is_a_repeat() {
        assert_eq!(weakness(&[0x00; 32]), Some(Weakness::Repeats));
        assert_eq!(weakness(&[0x41; 32]), Some(Weakness::Repeats));
        assert_eq!(weakness(&[0xff; 32]), Some(Weakness::Repeats));
    }

    #[test]
    fn a_pattern_of_up_to_sixteen_bytes_repeated_is_a_repeat() {
        assert_eq!(weakness(&cycle(b"ab")), Some(Weakness::Repeats));
        assert_eq!(
            weakness(&cycle(b"0123456789abcdef")),
            Some(Weakness::Repeats)
        );
        assert_eq!(
            weakness(&cycle(&[0xde, 0xad, 0xbe, 0xef, 0x13, 0x37, 0x42])),
            Some(Weakness::Repeats),
            "a period that does not divide 32"
        );
        // Sixteen random-looking bytes twice: half the key is the other half.
        let rng = SystemRandom::new();
        let half = random::bytes::<16>(&rng).unwrap();
        assert_eq!(weakness(&cycle(&half)), Some(Weakness::Repeats));
    }

    #[test]
    fn few_distinct_bytes_are_refused_and_the_threshold_is_sixteen() {
        // A password: no pattern, no sequence, just fourteen letters.
        let text = b"secretpasswordsecretpasswordxyzq";
        let distinct = |k: &[u8]| {
            let mut v = k.to_vec();
            v.sort_unstable();
            v.dedup();
            v.len()
        };
        assert_eq!(distinct(text), 14);
        assert_eq!(weakness(&key(text)), Some(Weakness::FewDistinctBytes));
        // Sixteen distinct values, shuffled by a fixed permutation: passes.
        let mut sixteen = [0u8; 32];
        for (i, b) in sixteen.iter_mut().enumerate() {
            *b = u8::try_from((i * 7 + i / 16) % 16).unwrap() * 13;
        }
        assert_eq!(distinct(&sixteen), 16);
        assert_eq!(weakness(&sixteen), None);
        let mut fifteen = sixteen;
        for b in fifteen.iter_mut().filter(|b| **b == 0) {
            *b = 13;
        }
        assert_eq!(distinct(&fifteen), 15);
        assert_eq!(weakness(&fifteen), Some(Weakness::FewDistinctBytes));
    }

    #[test]
    fn counting_sequences_are_refused_even_when_they_wrap() {
        let up: Vec<u8> = (0..32).collect();
        assert_eq!(weakness(&key(&up)), Some(Weakness::Sequence));
        let down: Vec<u8> = (0..32).rev().collect();
        assert_eq!(weakness(&key(&down)), Some(Weakness::Sequence));
        let wrapping: Vec<u8> = (0..32u8)
            .map(|i| i.wrapping_mul(3).wrapping_add(0xf0))
            .collect();
        assert_eq!(weakness(&key(&wrapping)), Some(Weakness::Sequence));
        // Steps of +1, +5, +1, +5, …
        let mut b = 0u8;
        let zigzag: Vec<u8> = (0..32)
            .map(|i| {
                let v = b;
                b = b.wrapping_add(if i % 2 == 0 { 1 } else { 5 });
                v
            })
            .collect();
        assert_eq!(weakness(&key(&zigzag)), Some(Weakness::Sequence));
    }

    #[test]
    fn bytes_that_only_rise_or_only_fall_are_refused() {
        // Irregular steps (i² mod 11: a period of 11, longer than the sequence rule looks
        // for), but never falling.
        let mut b = 0u8;
        let rising: Vec<u8> = (0..32u32)
            .map(|i| {
                b = b.wrapping_add(u8::try_from(i * i % 11).unwrap());
                b
            })
            .collect();
        assert_eq!(weakness(&key(&rising)), Some(Weakness::Monotone));
        let mut falling = rising.clone();
        falling.reverse();
        assert_eq!(weakness(&key(&falling)), Some(Weakness::Monotone));
        // Sorted random bytes break it too (or an earlier rule, if they repeat a lot).
        let rng = SystemRandom::new();
        let mut sorted = random::bytes::<32>(&rng).unwrap();
        sorted.sort_unstable();
        assert!(weakness(&sorted).is_some());
    }
}
