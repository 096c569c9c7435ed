//! Exponential backoff with full jitter, which honours a `Retry-After` when a server (or a
//! proxy in front of Elasticsearch, which itself sends none) gives one. There is no retry
//! limit that drops data: the sink keeps trying and backpressure pauses reading.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use meshtrail_parsers::timestamp::Timestamp;

/// Delays between attempts.
#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    /// Starts at `base`, doubles per attempt up to `max`; `seed` varies the jitter.
    pub fn new(base: Duration, max: Duration, seed: u64) -> Backoff {
        Backoff {
            base,
            max,
            attempt: 0,
            rng: seed | 1,
        }
    }

    fn random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// The delay before the next attempt: uniform in `[0, min(max, base·2^attempt)]` (full
    /// jitter, so many agents do not retry in step), and never less than `retry_after`.
    pub fn next(&mut self, retry_after: Option<Duration>) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        let jittered = Duration::from_nanos(if nanos == 0 { 0 } else { self.random() % nanos });
        jittered.max(
            retry_after
                .unwrap_or_default()
                .min(self.max.max(Duration::from_secs(300))),
        )
    }

    /// After a success: start again from `base`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A `Retry-After` value: seconds (`120`) or an HTTP date (`Wed, 21 Oct 2015 07:28:00 GMT`).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    // IMF-fixdate: `Day, DD Mon YYYY HH:MM:SS GMT`.
    let mut parts = value.split_whitespace();
    let (_, day, month, year, time, zone) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if zone != "GMT" {
        return None;
    }
    let month = MONTHS.iter().position(|m| *m == month)? + 1;
    let at = Timestamp::parse(&format!("{year}-{month:02}-{day:0>2}T{time}Z"))?;
    let now = i64::try_from(now.duration_since(UNIX_EPOCH).ok()?.as_secs()).ok()?;
    Some(Duration::from_secs(
        u64::try_from(at.unix_secs - now).unwrap_or(0),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_with_full_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10), 42);
        let ceilings = [100u64, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000];
        let mut delays = Vec::new();
        for ceiling in ceilings {
            let d = b.next(None);
            assert!(
                d <= Duration::from_millis(ceiling),
                "{d:?} over {ceiling} ms"
            );
            delays.push(d);
        }
        assert!(delays.windows(2).any(|w| w[0] != w[1]), "jittered");
        b.reset();
        assert!(b.next(None) <= Duration::from_millis(100));
    }

    #[test]
    fn honours_retry_after() {
        let mut b = Backoff::new(Duration::from_millis(1), Duration::from_secs(10), 7);
        assert!(b.next(Some(Duration::from_secs(3))) >= Duration::from_secs(3));
        let now = UNIX_EPOCH + Duration::from_secs(1_445_412_470); // 2015-10-21T07:27:50Z
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 PST", now),
            None
        );
    }
}
