//! How hard the sink pushes: adaptive request concurrency (after Vector's ARC) and the
//! request size. Additive increase while Elasticsearch answers fast and clean, multiplicative
//! decrease when it pushes back (requests refused whole, a share of items refused for
//! pressure rising over its usual level, answers slower than usual). Decisions are taken once per window of about one answer
//! time, so one answer never moves the limit twice. `sink.max_concurrent_requests` and
//! `sink.max_batch_bytes` are the ceilings.

use std::time::{Duration, Instant};

/// What one answer says about Elasticsearch's load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// An answer with items, whatever they say: refused items are counted apart
    /// ([`Pace::items`]).
    Clean,
    /// Slow down: the request refused whole with 5xx.
    Backpressure,
    /// The request itself was refused for pressure (429: indexing pressure is counted in
    /// bytes): fewer and smaller requests.
    Overloaded,
    /// Says nothing about load (401/403).
    Neutral,
}

/// The share of a window's items refused for pressure (429, 503,
/// `es_rejected_execution_exception`) below which it never counts as backpressure, and the
/// least rise over the usual share that does. Refused items are retried on their own: a
/// busy cluster refuses a few items of nearly every bulk, and a share that holds steady
/// whatever the pace does not come down by shedding concurrency (that only starves the
/// cluster of work); a share that rises as the pace grows does.
const PRESSURE_SHARE: f64 = 0.05;

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
    /// Answer times of answers that came after a straggler's time: kept out of `rtts`, so
    /// that a few 3 s answers among 50 ms ones neither move the mean (which sets the window
    /// and the straggler time) nor read as a slower cluster. Most answers late is one, and
    /// then they are what the mean learns.
    late: Vec<f64>,
    /// Items answered, and of those refused for pressure.
    items: usize,
    refused: usize,
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
            late: Vec::new(),
            items: 0,
            refused: 0,
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
    /// The usual share of items refused for pressure, per window.
    refusals: Option<Rtt>,
    /// Most answers of the last window came late.
    late_before: bool,
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
            refusals: None,
            late_before: false,
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

    /// An answer's items: `items` in all, `refused` of them for pressure. Called before
    /// [`Pace::observe`] for the same answer.
    pub fn items(&mut self, items: usize, refused: usize) {
        self.window.items += items;
        self.window.refused += refused;
    }

    /// One answer, `rtt` from sending to its last byte.
    pub fn observe(&mut self, rtt: Duration, signal: Signal, now: Instant) {
        match signal {
            Signal::Clean if rtt >= self.straggler_after() => {
                self.window.late.push(rtt.as_secs_f64());
            }
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
        // One late answer alone in its window is a straggler still; late again in the next
        // window is a slower cluster.
        let late = w.late.len() > w.rtts.len();
        let most_late = late && (w.late.len() > 1 || self.late_before);
        self.late_before = late;
        if most_late {
            w.rtts.append(&mut w.late);
        }
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
        } || most_late;
        let share = (w.items > 0).then(|| w.refused as f64 / w.items as f64);
        let refusing = match (self.refusals, share) {
            (_, Some(s)) if s < PRESSURE_SHARE => false,
            (Some(r), Some(s)) => s > r.mean + (DEVIATION_SCALE * r.deviation).max(PRESSURE_SHARE),
            (None, Some(_)) => true,
            (_, None) => false,
        };
        if let Some(s) = share {
            self.refusals = Some(average(self.refusals, s));
        }
        if w.backpressure || slower || refusing {
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
            self.past = Some(average(self.past, m));
        }
    }
}

/// `past` moved towards `sample`.
fn average(past: Option<Rtt>, sample: f64) -> Rtt {
    match past {
        None => Rtt {
            mean: sample,
            deviation: sample / 2.0,
        },
        Some(p) => Rtt {
            mean: p.mean + ALPHA * (sample - p.mean),
            deviation: p.deviation + ALPHA * ((sample - p.mean).abs() - p.deviation),
        },
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

    /// Windows of one answer of 1,000 items, `refused` of them refused for pressure.
    fn refusing(p: &mut Pace, now: &mut Instant, n: usize, refused: usize) {
        for _ in 0..n {
            p.held_back();
            p.items(1000, refused);
            *now += Duration::from_millis(50);
            p.observe(Duration::from_millis(50), Signal::Clean, *now);
        }
    }

    #[test]
    fn a_steady_share_of_refused_items_holds_the_pace_a_rising_one_shrinks_it() {
        let mut now = Instant::now();
        let mut p = Pace::new(8, 5 * MB, now);
        refusing(&mut p, &mut now, 20, 30);
        assert_eq!(p.limit(), 8, "3 %: below the share that counts");
        // 20 % from the start: the first window says so, the next ones hold steady.
        let mut q = Pace::new(8, 5 * MB, now);
        windows(&mut q, &mut now, 7, 0.05, Signal::Clean, true);
        assert_eq!(q.limit(), 8);
        refusing(&mut q, &mut now, 1, 200);
        assert_eq!(q.limit(), 7);
        refusing(&mut q, &mut now, 20, 200);
        assert_eq!(
            q.limit(),
            8,
            "a share that does not move is no reason to shrink"
        );
        // The share rises well over the usual: the cluster is busier.
        refusing(&mut q, &mut now, 1, 500);
        assert_eq!(q.limit(), 7);
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
        // A straggler alone in its window: the limit and the mean hold.
        windows(&mut p, &mut now, 1, 3.0, Signal::Clean, true);
        assert_eq!(p.limit(), 8);
        assert_eq!(p.straggler_after(), Duration::from_millis(500));
        windows(&mut p, &mut now, 1, 0.05, Signal::Clean, true);
        // Answers late window after window: the cluster is slower, and the straggler time
        // learns it.
        windows(&mut p, &mut now, 2, 2.0, Signal::Clean, true);
        assert_eq!(p.limit(), 7);
        assert!(p.straggler_after() > Duration::from_secs(2));
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
