//! The source of randomness for keys, nonces and tokens, passed in so tests can fix it.
//!
//! No I/O beyond the operating system's CSPRNG. Nothing here logs.

use ring::rand::SecureRandom;

/// The operating system's random source failed; nothing random can be produced.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the system random number generator failed")]
pub struct RandomError;

/// A cryptographically secure random byte source.
pub trait Csprng: Send + Sync {
    /// Fills `buf` with random bytes.
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError>;
}

/// The operating system's CSPRNG (getrandom), through ring.
#[derive(Debug)]
pub struct SystemRandom(ring::rand::SystemRandom);

impl Default for SystemRandom {
    fn default() -> Self {
        SystemRandom::new()
    }
}

impl SystemRandom {
    /// A handle on the system CSPRNG.
    pub fn new() -> SystemRandom {
        SystemRandom(ring::rand::SystemRandom::new())
    }
}

impl Csprng for SystemRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError> {
        self.0.fill(buf).map_err(|_| RandomError)
    }
}

/// Random bytes of a fixed size.
pub fn bytes<const N: usize>(rng: &dyn Csprng) -> Result<[u8; N], RandomError> {
    let mut buf = [0u8; N];
    rng.fill(&mut buf)?;
    Ok(buf)
}

/// A uniformly distributed integer in `0..bound` (bound ≤ 256), by rejection sampling so that no
/// value is more likely than another.
pub fn below(rng: &dyn Csprng, bound: u8) -> Result<u8, RandomError> {
    debug_assert!(bound > 0);
    let bound = u16::from(bound.max(1));
    // The largest multiple of `bound` that fits in a byte's 256 values.
    let limit = 256 - (256 % bound);
    let mut buf = [0u8; 16];
    loop {
        rng.fill(&mut buf)?;
        for &b in &buf {
            if u16::from(b) < limit {
                return Ok(u8::try_from(u16::from(b) % bound).unwrap_or(0));
            }
        }
    }
}

#[cfg(test)]
pub mod testing {
    //! Deterministic sources for unit tests.
    use super::*;
    use std::sync::Mutex;

    /// Repeats a fixed byte sequence forever.
    pub struct Cycle {
        bytes: Vec<u8>,
        pos: Mutex<usize>,
    }

    impl Cycle {
        pub fn new(bytes: &[u8]) -> Cycle {
            Cycle {
                bytes: bytes.to_vec(),
                pos: Mutex::new(0),
            }
        }
    }

    impl Csprng for Cycle {
        fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError> {
            let mut pos = self.pos.lock().unwrap();
            for b in buf.iter_mut() {
                *b = self.bytes[*pos % self.bytes.len()];
                *pos += 1;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_stays_in_range_and_skips_biased_bytes() {
        // 255 is at or above the largest multiple of 10 (250), so it must be skipped.
        let rng = testing::Cycle::new(&[255, 7]);
        assert_eq!(below(&rng, 10).unwrap(), 7);
        let sys = SystemRandom::new();
        for _ in 0..1000 {
            assert!(below(&sys, 9).unwrap() < 9);
        }
    }
}
