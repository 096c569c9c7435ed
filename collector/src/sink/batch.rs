//! When to send: a batch closes at a byte bound, a count bound or an age bound, and at once
//! when no request is in flight. The flush interval is then a ceiling for a busy sink,
//! never a wait for a quiet one: a line is sent as soon as the sink is free.

use std::time::{Duration, Instant};

/// Bounds of a batch.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Close at this many bytes (before compression).
    pub max_bytes: usize,
    /// Close at this many documents.
    pub max_docs: usize,
    /// Close when the oldest document waited this long.
    pub max_age: Duration,
}

/// Accumulates documents and says when a batch should go.
#[derive(Debug)]
pub struct Batcher<T> {
    limits: Limits,
    items: Vec<T>,
    bytes: usize,
    since: Option<Instant>,
}

impl<T> Batcher<T> {
    /// An empty batcher.
    pub fn new(limits: Limits) -> Self {
        Batcher {
            limits,
            items: Vec::new(),
            bytes: 0,
            since: None,
        }
    }

    /// Adds a document of `bytes` bytes, received at `now`.
    pub fn push(&mut self, item: T, bytes: usize, now: Instant) {
        self.since.get_or_insert(now);
        self.items.push(item);
        self.bytes += bytes;
    }

    /// True when the batch should be sent now, `in_flight` requests being under way.
    pub fn ready(&self, now: Instant, in_flight: usize) -> bool {
        let Some(since) = self.since else {
            return false;
        };
        in_flight == 0
            || self.bytes >= self.limits.max_bytes
            || self.items.len() >= self.limits.max_docs
            || now.duration_since(since) >= self.limits.max_age
    }

    /// How long until the age bound closes the batch (for a timer); `None` when empty.
    pub fn deadline(&self) -> Option<Instant> {
        self.since.map(|s| s + self.limits.max_age)
    }

    /// Takes the batch.
    pub fn take(&mut self) -> Vec<T> {
        self.since = None;
        self.bytes = 0;
        std::mem::take(&mut self.items)
    }

    /// Documents waiting.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_bytes: 100,
            max_docs: 3,
            max_age: Duration::from_secs(5),
        }
    }

    #[test]
    fn sends_at_once_when_the_sink_is_free() {
        let t0 = Instant::now();
        let mut b = Batcher::new(limits());
        assert!(!b.ready(t0, 0), "empty");
        b.push(1, 10, t0);
        assert!(b.ready(t0, 0), "idle sink: no wait");
        assert!(!b.ready(t0, 1), "busy sink: fill the batch");
    }

    #[test]
    fn bounds_close_a_batch_while_busy() {
        let t0 = Instant::now();
        let mut b = Batcher::new(limits());
        b.push(1, 10, t0);
        b.push(2, 10, t0);
        assert!(!b.ready(t0, 1));
        b.push(3, 10, t0);
        assert!(b.ready(t0, 1), "count");
        assert_eq!(b.take(), [1, 2, 3]);
        b.push(4, 120, t0);
        assert!(b.ready(t0, 1), "bytes");
        b.take();
        b.push(5, 1, t0);
        assert!(!b.ready(t0 + Duration::from_secs(4), 1));
        assert!(b.ready(t0 + Duration::from_secs(5), 1), "age");
        assert_eq!(b.deadline(), Some(t0 + Duration::from_secs(5)));
        assert_eq!(
            (b.take(), b.is_empty(), b.deadline()),
            (vec![5], true, None)
        );
    }
}
