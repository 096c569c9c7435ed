//! inotify wake-ups: a change in a watched directory wakes the tailer at once instead of
//! at its next poll. Polling stays the safety net (an overflowed event queue, a file
//! system without inotify), so a missed event only costs latency, never a line.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tracing::warn;

/// What woke the tailer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// The time ran out.
    Timeout,
    /// A file grew.
    Data,
    /// A file was created, renamed or removed: look for new files now.
    Rescan,
}

/// Watches directories for changes; polling only when inotify is unavailable.
pub struct Watch {
    watcher: Option<RecommendedWatcher>,
    events: Receiver<EventKind>,
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
        // Bounded: a wake-up is idempotent, so when the tailer is busy the rest are dropped
        // (the periodic scan covers a dropped rescan), and a burst of writes cannot grow it.
        let (tx, events) = sync_channel(64);
        let watcher = notify::recommended_watcher(move |e: notify::Result<notify::Event>| {
            if let Ok(e) = e {
                let _ = tx.try_send(e.kind);
            }
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
            dirs: HashSet::new(),
        }
    }

    /// Watches `dir` (not its subdirectories), once.
    pub fn dir(&mut self, dir: &Path) {
        let Some(w) = &mut self.watcher else { return };
        if self.dirs.contains(dir) {
            return;
        }
        match w.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                self.dirs.insert(dir.to_owned());
            }
            // Out of watches (fs.inotify.max_user_watches) or gone: polling covers it.
            Err(e) => {
                warn!(dir = %dir.display(), error = %e, "cannot watch directory; it is polled")
            }
        }
    }

    /// Waits up to `timeout` for a change.
    pub fn wait(&self, timeout: Duration) -> Wake {
        let first = match self.events.recv_timeout(timeout) {
            Ok(kind) => kind,
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                return Wake::Timeout;
            }
        };
        let mut wake = classify(first);
        while let Ok(kind) = self.events.try_recv() {
            if classify(kind) == Wake::Rescan {
                wake = Wake::Rescan;
            }
        }
        wake
    }
}

fn classify(kind: EventKind) -> Wake {
    match kind {
        EventKind::Create(_)
        | EventKind::Remove(_)
        | EventKind::Modify(notify::event::ModifyKind::Name(_)) => Wake::Rescan,
        _ => Wake::Data,
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
    fn wakes_on_changes() {
        let dir = std::env::temp_dir().join(format!("meshtrail-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut w = Watch::new();
        w.dir(&dir);
        assert_eq!(w.wait(Duration::from_millis(20)), Wake::Timeout);
        std::fs::write(dir.join("new.log"), "x\n").unwrap();
        assert_eq!(w.wait(Duration::from_secs(5)), Wake::Rescan);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            pattern_dir("/var/log/containers/*.log"),
            Some(PathBuf::from("/var/log/containers"))
        );
        assert_eq!(pattern_dir("/var/log/pods/*/*/*.log"), None);
    }
}
