//! How hard the sink pushes: adaptive request concurrency (after Vector's ARC) and the
//! request size. Additive increase while Elasticsearch answers fast and clean, multiplicative
//! decrease when it pushes back (requests refused whole, many items refused for pressure,
//! answers slower than usual). Decisions are taken once per window of about one answer
//! time, so one answer never moves the limit twice. `sink.max_concurrent_requests` and
//! `sink.max_batch_bytes` are the ceilings.

use std::time::{Duration, Instant};

/// What one answer says about Elasticsearch's load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Every item taken, or refused only for reasons that are not load (a mapping error, a
    /// few pressure refusals below [`PRESSURE_SHARE`]).
    Clean,
    /// Slow down: many items refused for pressure, 5xx, no answer.
    Backpressure,
    /// The request itself was refused for pressure (429: indexing pressure is counted in
    /// bytes): fewer and smaller requests.
    Overloaded,
    /// Says nothing about load (401/403).
    Neutral,
}

/// The share of an answer's items refused for pressure (429, 503,
/// `es_rejected_execution_exception`) from which it counts as backpressure. Below it the
/// refused items are retried on their own and the pace holds: a busy cluster refuses a few
/// items of nearly every bulk, and shedding concurrency for each would starve it of work.
pub const PRESSURE_SHARE: f64 = 0.05;

/// The limit kept after a decrease, as a share of the limit before (Vector's default).
const DECREASE: f64 = 0.9;
/// Weight of a new window in the moving average of answer times.
const ALPHA: f64 = 0.4;
/// An answer time above the mean by this many deviations is "slower than usual".
const DEVIATION_SCALE: f64 = 2.5;
/// Requests never shrink below this share of the ceiling: every request costs a round trip
/// and a place in flight.
const MIN_SHARE: usize = 4;

#[derive(Clone, Copy, Debug)]
struct Rtt {
    mean: f64,
    deviation: f64,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    /// Answer times (seconds) of the answers with items.
    rtts: Vec<f64>,
    backpressure: bool,
    overloaded: bool,
    /// A request was held back by the limit: more could have been sent.
    saturated: bool,
}

impl Window {
    fn new(now: Instant) -> Window {
        Window {
            started: now,
            rtts: Vec::new(),
            backpressure: false,
            overloaded: false,
            saturated: false,
        }
    }
}

/// The concurrency limit and request size in force.
#[derive(Debug)]
pub struct Pace {
    limit: usize,
    ceiling: usize,
    max_bytes: usize,
    ceiling_bytes: usize,
    past: Option<Rtt>,
    window: Window,
}

impl Pace {
    /// Starts at one request in flight (the limit grows within a few answers when there is
    /// more to send) and at full-size requests.
    pub fn new(ceiling: usize, ceiling_bytes: usize, now: Instant) -> Pace {
        Pace {
            limit: 1,
            ceiling: ceiling.max(1),
            max_bytes: ceiling_bytes,
            ceiling_bytes,
            past: None,
            window: Window::new(now),
        }
    }

    /// Bulk requests allowed in flight now.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Uncompressed bytes allowed in one request now.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// A request could have been sent but the limit held it back.
    pub fn held_back(&mut self) {
        self.window.saturated = true;
    }

    /// 413: Elasticsearch's `http.max_content_length` is below the request size; the ceiling
    /// comes down for the rest of the run.
    pub fn too_large(&mut self) -> usize {
        self.ceiling_bytes = (self.max_bytes / 2).max(64 << 10);
        self.max_bytes = self.ceiling_bytes;
        self.max_bytes
    }

    /// How long a request may be out before it stops counting against the limit: one slow
    /// answer must not stall the rest (Elasticsearch answers requests independently).
    pub fn straggler_after(&self) -> Duration {
        let mean = self.past.map_or(0.0, |p| p.mean);
        Duration::from_secs_f64((4.0 * mean).max(0.5))
    }

    /// One answer, `rtt` from sending to its last byte.
    pub fn observe(&mut self, rtt: Duration, signal: Signal, now: Instant) {
        match signal {
            Signal::Clean => self.window.rtts.push(rtt.as_secs_f64()),
            Signal::Backpressure => self.window.backpressure = true,
            Signal::Overloaded => {
                self.window.backpressure = true;
                self.window.overloaded = true;
            }
            Signal::Neutral => {}
        }
        let length = self.past.map_or(0.0, |p| p.mean).max(0.02);
        if now.duration_since(self.window.started).as_secs_f64() >= length {
            self.adjust();
            self.window = Window::new(now);
        }
    }

    fn adjust(&mut self) {
        let w = &mut self.window;
        let median = if w.rtts.is_empty() {
            None
        } else {
            w.rtts.sort_unstable_by(f64::total_cmp);
            Some(w.rtts[w.rtts.len() / 2])
        };
        // The median: one straggler among quick answers is not a slower cluster.
        let slower = match (self.past, median) {
            (Some(p), Some(m)) => m > p.mean + DEVIATION_SCALE * p.deviation,
            _ => false,
        };
        if w.backpressure || slower {
            self.limit = ((self.limit as f64 * DECREASE) as usize).max(1);
            if w.overloaded {
                self.max_bytes = (self.max_bytes / 2).max(self.ceiling_bytes / MIN_SHARE);
            }
        } else if median.is_some() {
            if w.saturated {
                self.limit = (self.limit + 1).min(self.ceiling);
            }
            self.max_bytes = (self.max_bytes + self.ceiling_bytes / 8).min(self.ceiling_bytes);
        }
        if let Some(m) = median {
            self.past = Some(match self.past {
                None => Rtt {
                    mean: m,
                    deviation: m / 2.0,
                },
                Some(p) => Rtt {
                    mean: p.mean + ALPHA * (m - p.mean),
                    deviation: p.deviation + ALPHA * ((m - p.mean).abs() - p.deviation),
                },
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: usize = 1 << 20;

    /// Feeds `n` windows of one answer each, `rtt` long, with `signal`, saturated or not.
    fn windows(p: &mut Pace, now: &mut Instant, n: usize, rtt: f64, signal: Signal, busy: bool) {
        for _ in 0..n {
            if busy {
                p.held_back();
            }
            *now += Duration::from_secs_f64(rtt.max(0.02));
            p.observe(Duration::from_secs_f64(rtt), signal, *now);
        }
    }

    #[test]
    fn grows_one_at_a_time_while_answers_are_clean_and_there_is_more_to_send() {
        let mut now = Instant::now();
        let mut p = Pace::new(8, 5 * MB, now);
        assert_eq!(p.limit(), 1);
        windows(&mut p, &mut now, 3, 0.05, Signal::Clean, true);
        assert_eq!(p.limit(), 4);
        windows(&mut p, &mut now, 20, 0.05, Signal::Clean, true);
        assert_eq!(p.limit(), 8, "the ceiling holds");
        // Not held back: no reason to grow.
        let mut q = Pace::new(8, 5 * MB, now);
        windows(&mut q, &mut now, 10, 0.05, Signal::Clean, false);
        assert_eq!(q.limit(), 1);
    }

    #[test]
    fn shrinks_by_a_tenth_on_backpressure_and_never_below_one() {
        let mut now = Instant::now();
        let mut p = Pace::new(32, 5 * MB, now);
        windows(&mut p, &mut now, 31, 0.05, Signal::Clean, true);
        assert_eq!(p.limit(), 32);
        windows(&mut p, &mut now, 1, 0.05, Signal::Backpressure, true);
        assert_eq!(p.limit(), 28);
        assert_eq!(p.max_bytes(), 5 * MB, "items refused: the size holds");
        windows(&mut p, &mut now, 100, 0.05, Signal::Backpressure, true);
        assert_eq!(p.limit(), 1);
    }

    #[test]
    fn requests_refused_whole_shrink_the_size_too_and_clean_answers_restore_it() {
        let mut now = Instant::now();
        let mut p = Pace::new(4, 4 * MB, now);
        windows(&mut p, &mut now, 1, 0.05, Signal::Clean, true);
        windows(&mut p, &mut now, 1, 0.05, Signal::Overloaded, true);
        assert_eq!(p.max_bytes(), 2 * MB);
        windows(&mut p, &mut now, 10, 0.05, Signal::Overloaded, true);
        assert_eq!(p.max_bytes(), MB, "a floor");
        windows(&mut p, &mut now, 8, 0.05, Signal::Clean, false);
        assert_eq!(p.max_bytes(), 4 * MB);
    }

    #[test]
    fn slower_answers_shrink_one_straggler_does_not() {
        let mut now = Instant::now();
        let mut p = Pace::new(8, 5 * MB, now);
        windows(&mut p, &mut now, 20, 0.05, Signal::Clean, true);
        assert_eq!(p.limit(), 8);
        // Three quick answers and a 3 s one in one window: the median is quick.
        for rtt in [0.05, 3.0, 0.05, 0.05] {
            p.held_back();
            now += Duration::from_millis(10);
            p.observe(Duration::from_secs_f64(rtt), Signal::Clean, now);
        }
        windows(&mut p, &mut now, 1, 0.05, Signal::Clean, true);
        assert_eq!(p.limit(), 8);
        // Every answer four times slower: the cluster is busier.
        windows(&mut p, &mut now, 1, 0.2, Signal::Clean, true);
        assert_eq!(p.limit(), 7);
        assert!(p.straggler_after() >= Duration::from_millis(500));
    }

    #[test]
    fn a_413_lowers_the_ceiling_for_good() {
        let now = Instant::now();
        let mut p = Pace::new(2, 4 * MB, now);
        assert_eq!(p.too_large(), 2 * MB);
        let mut now = now;
        windows(&mut p, &mut now, 20, 0.05, Signal::Clean, true);
        assert_eq!(p.max_bytes(), 2 * MB);
    }
}
