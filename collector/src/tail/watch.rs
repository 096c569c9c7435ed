//! inotify wake-ups: a change in a watched directory wakes the tailer at once and names the
//! files that changed, so only those are read. Polling stays the safety net (an overflowed
//! event queue, a directory that cannot be watched), so a missed event only costs latency,
//! never a line.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tracing::warn;

/// What woke the tailer, in rising order of what it asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Wake {
    /// Nothing happened.
    Timeout,
    /// Files were written to; their paths were added to the caller's set.
    Data,
    /// Events were lost (a full queue, an inotify error): look at every file now.
    Missed,
    /// A file was created, renamed or removed: look for new files now.
    Rescan,
}

/// Watches directories for changes; polling only when inotify is unavailable.
pub struct Watch {
    watcher: Option<RecommendedWatcher>,
    events: Receiver<notify::Event>,
    /// Set when an event could not be queued or inotify reported an error.
    missed: Arc<AtomicBool>,
    dirs: HashSet<PathBuf>,
}

impl Default for Watch {
    fn default() -> Self {
        Watch::new()
    }
}

impl Watch {
    /// A watcher, or a polling stand-in when inotify cannot be used.
    pub fn new() -> Watch {
        // Bounded: when the tailer falls behind, the rest are dropped and flagged, and the
        // tailer then looks at every file once; a burst of writes cannot grow it.
        let (tx, events) = sync_channel(1024);
        let missed = Arc::new(AtomicBool::new(false));
        let flag = missed.clone();
        let watcher =
            notify::recommended_watcher(move |e: notify::Result<notify::Event>| match e {
                Ok(e) if !e.need_rescan() => {
                    if tx.try_send(e).is_err() {
                        flag.store(true, Ordering::Relaxed);
                    }
                }
                _ => flag.store(true, Ordering::Relaxed),
            });
        let watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                warn!(error = %e, "inotify unavailable; discovering files by polling only");
                None
            }
        };
        Watch {
            watcher,
            events,
            missed,
            dirs: HashSet::new(),
        }
    }

    /// Watches `dir` (not its subdirectories), once. True when changes in `dir` wake the
    /// tailer; false when it has to be polled.
    pub fn dir(&mut self, dir: &Path) -> bool {
        let Some(w) = &mut self.watcher else {
            return false;
        };
        if self.dirs.contains(dir) {
            return true;
        }
        match w.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                self.dirs.insert(dir.to_owned());
                true
            }
            // Out of watches (fs.inotify.max_user_watches) or gone: polling covers it.
            Err(e) => {
                warn!(dir = %dir.display(), error = %e, "cannot watch directory; it is polled");
                false
            }
        }
    }

    /// Waits up to `timeout` for a change; the paths of files written to go into `touched`.
    pub fn wait(&mut self, timeout: Duration, touched: &mut HashSet<PathBuf>) -> Wake {
        match self.events.recv_timeout(timeout) {
            Ok(e) => self.take(e, touched).max(self.drain(touched)),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => self.drain(touched),
        }
    }

    /// What happened since the last look, without waiting.
    pub fn drain(&mut self, touched: &mut HashSet<PathBuf>) -> Wake {
        let mut wake = Wake::Timeout;
        while let Ok(e) = self.events.try_recv() {
            wake = wake.max(self.take(e, touched));
        }
        if self.missed.swap(false, Ordering::Relaxed) {
            wake = wake.max(Wake::Missed);
        }
        wake
    }

    fn take(&mut self, e: notify::Event, touched: &mut HashSet<PathBuf>) -> Wake {
        match e.kind {
            EventKind::Create(_)
            | EventKind::Remove(_)
            | EventKind::Modify(notify::event::ModifyKind::Name(_)) => {
                // A watched directory removed takes its watch with it: watch it again if
                // it comes back.
                for p in &e.paths {
                    self.dirs.remove(p);
                }
                Wake::Rescan
            }
            _ => {
                touched.extend(e.paths);
                Wake::Data
            }
        }
    }
}

/// The directory a glob pattern's matches live in, when it has no wildcard:
/// `/var/log/containers/*.log` → `/var/log/containers`.
pub fn pattern_dir(pattern: &str) -> Option<PathBuf> {
    let dir = Path::new(pattern).parent()?;
    let s = dir.to_str()?;
    (!s.contains(['*', '?', '['])).then(|| dir.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_on_changes_and_names_the_files_written() {
        let dir = std::env::temp_dir().join(format!("meshtrail-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut w = Watch::new();
        let mut touched = HashSet::new();
        assert!(w.dir(&dir));
        assert_eq!(
            w.wait(Duration::from_millis(20), &mut touched),
            Wake::Timeout
        );
        let file = dir.join("new.log");
        std::fs::write(&file, "x\n").unwrap();
        assert_eq!(w.wait(Duration::from_secs(5), &mut touched), Wake::Rescan);
        // The creation's own write may come in a later wake-up: let it pass.
        for _ in 0..10 {
            if w.wait(Duration::from_millis(100), &mut touched) == Wake::Timeout {
                break;
            }
        }
        touched.clear();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .unwrap();
        std::io::Write::write_all(&mut f, b"y\n").unwrap();
        assert_eq!(w.wait(Duration::from_secs(5), &mut touched), Wake::Data);
        assert_eq!(touched, HashSet::from([file.clone()]));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(!w.dir(Path::new("/nonexistent/meshtrail-watch")));
        assert_eq!(
            pattern_dir("/var/log/containers/*.log"),
            Some(PathBuf::from("/var/log/containers"))
        );
        assert_eq!(pattern_dir("/var/log/pods/*/*/*.log"), None);
    }
}
