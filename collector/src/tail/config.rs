//! `tail:` as written and validated: which files are read, how they are framed, how often
//! they are looked at and how long a rotated file is kept open.

use std::time::Duration;

use meshtrail_parsers::frame::Framing;
use serde::Deserialize;

use crate::config_error::{ConfigError, invalid};

/// `tail:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TailConfig {
    /// Glob patterns of files to read. Default `["/var/log/containers/*.log"]`; symlinks are
    /// followed to the kubelet's `/var/log/pods` files, whose rotations are then tracked.
    pub include: Option<Vec<String>>,
    /// Glob patterns of files never to read, matched against the pattern's path and its
    /// symlink target. Default: meshtrail's own container logs.
    pub exclude: Option<Vec<String>>,
    /// Container-log framing: `auto`, `cri`, `docker`, `kubectl` or `none`. Default `auto`.
    pub framing: Option<String>,
    /// Where to start in a file found at first start that has no checkpoint: `beginning`
    /// (default) or `end`. Files that appear later are always read from the beginning.
    pub start_at: Option<String>,
    /// How often to look for new lines in files whose directory inotify cannot watch (no
    /// inotify, or `fs.inotify.max_user_watches` reached), in milliseconds. Default 250.
    pub poll_interval_ms: Option<u64>,
    /// How often to look for new and rotated files (a listing of the directories and a look
    /// at every file matched), and at every file for new lines whatever inotify said, in
    /// milliseconds; a file created or renamed in a watched directory is looked for at once.
    /// Default 10 s when every include pattern's directory has no wildcard (inotify watches
    /// it, so the scan is only the safety net), else four poll intervals.
    pub scan_interval_ms: Option<u64>,
    /// How much to read from one file before turning to the next, in bytes. Default 256 KiB.
    pub read_block_bytes: Option<usize>,
    /// Longest line after joining partial records, in bytes; the rest is dropped, counted
    /// and flagged (`log.flags: truncated`). Default 1 MiB.
    pub max_line_bytes: Option<usize>,
    /// How long a rotated or deleted file stays open after its last growth, in seconds, so
    /// that late writes are read. Default 10.
    pub rotate_wait_secs: Option<u64>,
}

/// Where to start in a file without a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// Its first byte.
    Beginning,
    /// Its end at the time it is found.
    End,
}

/// The validated `tail:` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TailSettings {
    /// Include globs.
    pub include: Vec<String>,
    /// Exclude globs.
    pub exclude: Vec<String>,
    /// Framing.
    pub framing: Framing,
    /// Start position for pre-existing files without a checkpoint.
    pub start_at: StartAt,
    /// How often the files being read are looked at.
    pub poll_interval: Duration,
    /// How often new and rotated files are looked for.
    pub scan_interval: Duration,
    /// Fair-share read size.
    pub read_block_bytes: usize,
    /// Line cap.
    pub max_line_bytes: usize,
    /// Rotated-file linger.
    pub rotate_wait: Duration,
}

impl TailConfig {
    /// Applies the defaults and checks every value.
    pub fn validate(self) -> Result<TailSettings, ConfigError> {
        let t = self;
        let include = t
            .include
            .unwrap_or_else(|| vec!["/var/log/containers/*.log".to_owned()]);
        if include.is_empty() {
            return Err(invalid(
                "tail.include",
                &include,
                "give at least one glob pattern, e.g. /var/log/containers/*.log",
            ));
        }
        for p in &include {
            if !p.starts_with('/') {
                return Err(invalid(
                    "tail.include",
                    p,
                    "patterns must be absolute paths",
                ));
            }
        }
        let exclude = t.exclude.unwrap_or_else(|| {
            vec!["/var/log/containers/meshtrail-*_kube-system_*.log".to_owned()]
        });
        let framing = match t.framing {
            Some(f) => f
                .parse::<Framing>()
                .map_err(|why| invalid("tail.framing", &f, why))?,
            None => Framing::Auto,
        };
        let start_at = match t.start_at.as_deref() {
            None | Some("beginning") => StartAt::Beginning,
            Some("end") => StartAt::End,
            Some(other) => {
                return Err(invalid("tail.start_at", other, "expected beginning or end"));
            }
        };
        let poll_ms = t.poll_interval_ms.unwrap_or(250);
        if !(10..=60_000).contains(&poll_ms) {
            return Err(invalid(
                "tail.poll_interval_ms",
                poll_ms,
                "expected 10 to 60000 milliseconds",
            ));
        }
        // Files appearing under a wildcard directory (`/var/log/pods/*/*/*.log`) are found
        // only by scanning; elsewhere inotify finds them and the scan is the safety net.
        let watchable = include
            .iter()
            .all(|p| super::watch::pattern_dir(p).is_some());
        let default_scan_ms = if watchable {
            (4 * poll_ms).max(10_000)
        } else {
            4 * poll_ms
        };
        let scan_ms = t.scan_interval_ms.unwrap_or(default_scan_ms);
        if !(poll_ms..=600_000).contains(&scan_ms) {
            return Err(invalid(
                "tail.scan_interval_ms",
                scan_ms,
                "expected tail.poll_interval_ms to 600000 milliseconds",
            ));
        }
        let read_block_bytes = t.read_block_bytes.unwrap_or(256 << 10);
        if !(4096..=(64 << 20)).contains(&read_block_bytes) {
            return Err(invalid(
                "tail.read_block_bytes",
                read_block_bytes,
                "expected 4096 to 67108864 bytes",
            ));
        }
        let max_line_bytes = t.max_line_bytes.unwrap_or(1 << 20);
        if !(1024..=(64 << 20)).contains(&max_line_bytes) {
            return Err(invalid(
                "tail.max_line_bytes",
                max_line_bytes,
                "expected 1024 to 67108864 bytes",
            ));
        }
        let rotate_wait = t.rotate_wait_secs.unwrap_or(10);
        if rotate_wait > 3600 {
            return Err(invalid(
                "tail.rotate_wait_secs",
                rotate_wait,
                "expected at most 3600 seconds",
            ));
        }
        Ok(TailSettings {
            include,
            exclude,
            framing,
            start_at,
            poll_interval: Duration::from_millis(poll_ms),
            scan_interval: Duration::from_millis(scan_ms),
            read_block_bytes,
            max_line_bytes,
            rotate_wait: Duration::from_secs(rotate_wait),
        })
    }
}
