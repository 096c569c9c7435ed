//! Support for meshtrail's end-to-end tests: a node-like log directory, a writer of
//! numbered container-log lines that rotates like the kubelet, and the real binary.
#![deny(missing_docs)]
#![allow(
    clippy::unwrap_used,
    reason = "test support: a panic is the failure report"
)]

pub mod agent;
pub mod es_server;
pub mod k8s_server;
pub mod node;

use std::time::{Duration, Instant};

/// Waits until `cond` holds, checking every 50 ms, for at most `limit`. Panics with `what`
/// when it does not.
pub fn eventually(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The sum of the series of `name` in a Prometheus exposition whose labels include every
/// `k="v"` of `labels`; 0 when none does.
pub fn metric_value(exposition: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    exposition
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}
