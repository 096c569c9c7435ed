//! The agent's own counters, kept from the start and exposed on `/metrics` by the metrics
//! stage. Atomics: every stage updates them without locks.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Pipeline counters.
        #[derive(Debug, Default)]
        pub struct Counters { $($(#[$doc])* pub $name: AtomicU64),* }

        impl Counters {
            /// Every counter with its name, for logs and exposition.
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name.load(Ordering::Relaxed))),*]
            }
        }
    };
}

counters! {
    /// Complete lines read (after joining partial records).
    lines_read,
    /// Bytes read from files.
    bytes_read,
    /// Access logs parsed.
    events_access,
    /// Other lines.
    events_container,
    /// Lines that looked like access logs but no format read.
    parse_failures,
    /// Lines cut at `max_line_bytes`.
    lines_truncated,
    /// Events the sink acknowledged.
    events_acked,
    /// Files tracked now.
    files_tracked,
    /// Rotations seen (rename or deletion of a tracked file).
    rotations,
    /// Truncations seen (copytruncate).
    truncations,
    /// Bytes that rotated away before they were read.
    bytes_lost_to_rotation,
    /// Sum of unread bytes over all files.
    lag_bytes,
    /// The largest unread byte count of one file.
    lag_bytes_max_file,
    /// Checkpoint writes that failed.
    checkpoint_errors,
    /// Files that could not be opened or read.
    read_errors,
    /// Sink writes retried after a failure.
    sink_retries,
    /// `_bulk` requests sent.
    bulk_requests,
    /// `_bulk` requests followed by a retry (of all or some documents).
    bulk_retries,
    /// Straggling `_bulk` requests sent again (hedged) while the first copy was out.
    bulk_hedges,
    /// Documents written to the dead-letter file.
    dead_letters,
}

/// Adds `n` to a counter.
pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Sets a gauge.
pub fn set(c: &AtomicU64, n: u64) {
    c.store(n, Ordering::Relaxed);
}
