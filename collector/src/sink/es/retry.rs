//! When to try again. Whole requests that fail pause sending by an exponential backoff
//! ([`crate::backoff::Backoff`]); documents refused one by one are scheduled on their own
//! ([`Schedule`]), each by its own attempt count ([`crate::backoff::delay`]), while new
//! documents keep flowing; both honour a `Retry-After` ([`parse_retry_after`]) when a server
//! (or a proxy in front of Elasticsearch, which itself sends none) gives one. There is no
//! retry limit that drops data: the sink keeps trying and backpressure pauses reading.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant, SystemTime};

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

/// A `Retry-After` value: seconds (`120`) or an HTTP date (`Wed, 21 Oct 2015 07:28:00 GMT`,
/// and the two obsolete forms HTTP allows); a date past is no wait.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backoff::Backoff;
    use std::time::UNIX_EPOCH;

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
