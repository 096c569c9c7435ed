//! Acknowledgements: per file, the low-water mark below which every byte has been
//! delivered, from ranges that may be acknowledged in any order; and the in-flight byte
//! budget that pauses reading while the sink is behind.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// A tracked file, for as long as meshtrail reads it.
pub type FileId = u64;

#[derive(Debug)]
struct FileAcks {
    watermark: u64,
    /// Acknowledged ranges past the watermark: start → end.
    ahead: BTreeMap<u64, u64>,
}

/// Per-file watermarks.
#[derive(Debug, Default)]
pub struct Acks {
    files: Mutex<HashMap<FileId, FileAcks>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking holder leaves consistent data (every update is a single insert/assign).
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Acks {
    /// Starts tracking `file`, whose bytes before `offset` need no delivery.
    pub fn register(&self, file: FileId, offset: u64) {
        lock(&self.files).insert(
            file,
            FileAcks {
                watermark: offset,
                ahead: BTreeMap::new(),
            },
        );
    }

    /// Stops tracking `file`.
    pub fn forget(&self, file: FileId) {
        lock(&self.files).remove(&file);
    }

    /// Marks `start..end` of `file` delivered.
    pub fn ack(&self, file: FileId, start: u64, end: u64) {
        let mut files = lock(&self.files);
        let Some(f) = files.get_mut(&file) else {
            return;
        };
        if start > f.watermark {
            f.ahead.insert(start, end);
            return;
        }
        f.watermark = f.watermark.max(end);
        while let Some(entry) = f.ahead.first_entry() {
            if *entry.key() > f.watermark {
                break;
            }
            let end = entry.remove();
            f.watermark = f.watermark.max(end);
        }
    }

    /// The offset of the first byte of `file` not yet delivered.
    pub fn watermark(&self, file: FileId) -> Option<u64> {
        lock(&self.files).get(&file).map(|f| f.watermark)
    }
}

/// Memory held by lines read but not yet acknowledged (the lines, then their documents),
/// bounded.
#[derive(Debug)]
pub struct Budget {
    used: Mutex<usize>,
    freed: Condvar,
    max: usize,
    /// Document bytes per line byte, per mille, as last seen: what a batch read now will
    /// hold once rendered, so that reading stops before, not after, the bound.
    expansion: AtomicUsize,
}

impl Budget {
    /// A budget of `max` bytes.
    pub fn new(max: usize) -> Budget {
        Budget {
            used: Mutex::new(0),
            freed: Condvar::new(),
            max,
            expansion: AtomicUsize::new(1000),
        }
    }

    /// What `raw` bytes of lines will hold once rendered, by the last ratio seen (at least
    /// the lines themselves).
    pub fn estimate(&self, raw: usize) -> usize {
        raw.saturating_mul(self.expansion.load(Ordering::Relaxed).max(1000)) / 1000
    }

    /// Records that `raw` bytes of lines became `rendered` bytes.
    pub fn observe(&self, raw: usize, rendered: usize) {
        if let Some(ratio) = rendered.saturating_mul(1000).checked_div(raw) {
            self.expansion.store(ratio, Ordering::Relaxed);
        }
    }

    /// Takes `n` bytes, waiting up to `wait` for room; `false` when there was none. A request
    /// larger than the whole budget is granted when nothing else is in flight.
    pub fn acquire(&self, n: usize, wait: Duration) -> bool {
        let used = lock(&self.used);
        let (mut used, _) = self
            .freed
            .wait_timeout_while(used, wait, |u| *u > 0 && *u + n > self.max)
            .unwrap_or_else(PoisonError::into_inner);
        if *used > 0 && *used + n > self.max {
            return false;
        }
        *used += n;
        true
    }

    /// Returns `n` bytes.
    pub fn release(&self, n: usize) {
        let mut used = lock(&self.used);
        *used = used.saturating_sub(n);
        self.freed.notify_all();
    }

    /// Trades `from` bytes taken for `to`, without waiting: a worker that turned a line
    /// batch into documents holds the documents now. Over the bound, reading waits until
    /// acknowledgements bring it back under.
    pub fn exchange(&self, from: usize, to: usize) {
        let mut used = lock(&self.used);
        *used = used.saturating_sub(from) + to;
        if to < from {
            self.freed.notify_all();
        }
    }

    /// Bytes in flight now.
    pub fn used(&self) -> usize {
        *lock(&self.used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_moves_over_contiguous_acks_only() {
        let a = Acks::default();
        a.register(1, 100);
        a.ack(1, 200, 300);
        assert_eq!(a.watermark(1), Some(100), "a gap before 200");
        a.ack(1, 300, 350);
        a.ack(1, 100, 150);
        assert_eq!(a.watermark(1), Some(150));
        a.ack(1, 150, 200);
        assert_eq!(a.watermark(1), Some(350));
        a.ack(1, 350, 350);
        assert_eq!(a.watermark(1), Some(350), "empty ranges are fine");
        a.ack(2, 0, 10);
        assert_eq!(a.watermark(2), None);
    }

    #[test]
    fn budget_reserves_what_lines_become() {
        let b = Budget::new(1000);
        // Before any batch is rendered, lines count as themselves.
        assert_eq!(b.estimate(100), 100);
        b.observe(100, 450);
        assert_eq!(b.estimate(100), 450);
        // Lines that become nothing (the blackhole) still hold their own bytes meanwhile.
        b.observe(100, 0);
        assert_eq!(b.estimate(100), 100);
        b.observe(0, 10);
        assert_eq!(b.estimate(100), 100);
        // A worker trades a batch's estimate for its documents' size.
        assert!(b.acquire(450, Duration::ZERO));
        b.exchange(450, 900);
        assert_eq!(b.used(), 900);
        assert!(
            !b.acquire(200, Duration::ZERO),
            "over the bound, reading waits"
        );
        b.exchange(900, 100);
        assert!(b.acquire(200, Duration::ZERO));
    }

    #[test]
    fn budget_blocks_until_released() {
        let b = std::sync::Arc::new(Budget::new(100));
        assert!(b.acquire(60, Duration::ZERO));
        assert!(!b.acquire(60, Duration::from_millis(10)));
        let b2 = b.clone();
        let t = std::thread::spawn(move || b2.acquire(60, Duration::from_secs(5)));
        std::thread::sleep(Duration::from_millis(20));
        b.release(60);
        assert!(t.join().unwrap());
        assert_eq!(b.used(), 60);
        b.release(60);
        assert!(
            b.acquire(500, Duration::ZERO),
            "an oversized request passes alone"
        );
    }
}
