//! When to try again. Whole requests that fail pause sending by an exponential backoff
//! ([`Backoff`]); documents refused one by one are scheduled on their own ([`Schedule`]),
//! each by its own attempt count ([`delay`]), while new documents keep flowing. Both use
//! equal jitter, so agents do not retry in step, and honour a `Retry-After` when a server (or
//! a proxy in front of Elasticsearch, which itself sends none) gives one. There is no retry
//! limit that drops data: the sink keeps trying and backpressure pauses reading.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use meshtrail_parsers::timestamp::Timestamp;

/// A `Retry-After` is honoured up to this long.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Cheap seeded randomness for jitter (xorshift64).
#[derive(Clone, Debug)]
pub struct Jitter(u64);

impl Jitter {
    /// Seeded by `seed` (any value).
    pub fn new(seed: u64) -> Jitter {
        Jitter(seed | 1)
    }

    /// Uniform in `[0, n)`; 0 when `n` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        if n == 0 { 0 } else { self.0 % n }
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

struct Entry<T> {
    due: Instant,
    /// Insertion order: ties leave in the order they came.
    n: u64,
    since: Instant,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.n) == (other.due, other.n)
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.n).cmp(&(other.due, other.n))
    }
}

/// Items waiting for their time, soonest first, each remembering when it first failed.
pub struct Schedule<T> {
    heap: BinaryHeap<Reverse<Entry<T>>>,
    n: u64,
}

impl<T> Default for Schedule<T> {
    fn default() -> Self {
        Schedule {
            heap: BinaryHeap::new(),
            n: 0,
        }
    }
}

impl<T> Schedule<T> {
    /// Waits `item` until `due`; `since` is when it first failed.
    pub fn push(&mut self, due: Instant, since: Instant, item: T) {
        self.n += 1;
        self.heap.push(Reverse(Entry {
            due,
            n: self.n,
            since,
            item,
        }));
    }

    /// The next item due by `now`, with when it first failed.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, T)> {
        if self.heap.peek().is_some_and(|Reverse(e)| e.due <= now) {
            return self.heap.pop().map(|Reverse(e)| (e.since, e.item));
        }
        None
    }

    /// When the soonest item is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(e)| e.due)
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Nothing waits.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// How long the item that first failed earliest has waited by `now`.
    pub fn oldest(&self, now: Instant) -> Duration {
        self.heap
            .iter()
            .map(|Reverse(e)| now.saturating_duration_since(e.since))
            .max()
            .unwrap_or_default()
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

    #[test]
    fn schedules_soonest_first_and_knows_the_oldest() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut s = Schedule::default();
        s.push(at(300), at(0), "c");
        s.push(at(100), at(50), "a");
        s.push(at(100), at(60), "b");
        assert_eq!(s.next_due(), Some(at(100)));
        assert_eq!(s.pop_due(at(99)), None);
        assert_eq!(s.pop_due(at(100)), Some((at(50), "a")));
        assert_eq!(s.pop_due(at(100)), Some((at(60), "b")));
        assert_eq!(s.len(), 1);
        assert_eq!(s.oldest(at(1000)), Duration::from_millis(1000));
        assert_eq!(s.pop_due(at(1000)), Some((at(0), "c")));
        assert!(s.is_empty());
        assert_eq!(s.oldest(at(1000)), Duration::ZERO);
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
