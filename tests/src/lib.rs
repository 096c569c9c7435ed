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
pub mod listener;
pub mod node;
pub mod tls;

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

/// Runs `promtool check metrics` (Debian package `prometheus`) on an exposition and fails
/// on any complaint.
pub fn promtool_check_metrics(exposition: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/test.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let check = child.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&check.stdout).into_owned()
        + &String::from_utf8_lossy(&check.stderr);
    assert!(
        check.status.success() && report.trim().is_empty(),
        "promtool check metrics: {report}"
    );
}
