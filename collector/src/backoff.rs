//! Exponential backoff with equal jitter, the one retry policy of the agent: whole
//! Elasticsearch requests that fail ([`Backoff`]), documents refused one by one (each by its
//! own attempt count, [`delay`]) and a failing file or blackhole sink write. Equal jitter
//! (uniform in the upper half of the doubled wait) spreads agents that failed together
//! without ever retrying at once. A leaf: it knows nothing of what is retried.

use std::time::Duration;

/// A `Retry-After` is honoured up to this long.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Cheap seeded randomness for jitter.
#[derive(Clone, Debug)]
pub struct Jitter(fastrand::Rng);

impl Jitter {
    /// Seeded by `seed` (any value).
    pub fn new(seed: u64) -> Jitter {
        Jitter(fastrand::Rng::with_seed(seed))
    }

    /// Uniform in `[0, n)`; 0 when `n` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.0.u64(0..n) }
    }
}

/// The wait before attempt `attempt + 1` after `attempt` failures (1-based):
/// `base·2^(attempt-1)` up to `max`, uniform in its upper half (equal jitter: never a
/// hammering zero), and never less than `retry_after`.
pub fn delay(
    attempt: u32,
    base: Duration,
    max: Duration,
    retry_after: Option<Duration>,
    jitter: &mut Jitter,
) -> Duration {
    let ceiling = base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
        .min(max);
    let half = u64::try_from(ceiling.as_nanos() / 2).unwrap_or(u64::MAX);
    let d = Duration::from_nanos(half + jitter.below(half + 1));
    d.max(retry_after.unwrap_or_default().min(MAX_RETRY_AFTER))
}

/// Consecutive failures of whole requests and the pause each one asks for.
#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
    jitter: Jitter,
}

impl Backoff {
    /// Starts at `base`, doubles per failure up to `max`; `seed` varies the jitter.
    pub fn new(base: Duration, max: Duration, seed: u64) -> Backoff {
        Backoff {
            base,
            max,
            attempt: 0,
            jitter: Jitter::new(seed),
        }
    }

    /// The pause after one more failure ([`delay`]), never less than `retry_after`.
    pub fn next(&mut self, retry_after: Option<Duration>) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        delay(
            self.attempt,
            self.base,
            self.max,
            retry_after,
            &mut self.jitter,
        )
    }

    /// After a success: start again from `base`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The jitter source, for callers that schedule on their own.
    pub fn jitter(&mut self) -> &mut Jitter {
        &mut self.jitter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_equal_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10), 42);
        let ceilings = [100u64, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000];
        let mut delays = Vec::new();
        for ceiling in ceilings {
            let d = b.next(None);
            assert!(
                d <= Duration::from_millis(ceiling) && d >= Duration::from_millis(ceiling / 2),
                "{d:?} outside [{}, {ceiling}] ms",
                ceiling / 2
            );
            delays.push(d);
        }
        assert!(delays.windows(2).any(|w| w[0] != w[1]), "jittered");
        b.reset();
        assert!(b.next(None) <= Duration::from_millis(100));
    }
}
