//! What the demo shows while it runs: throughput and security outcomes from the agent's own
//! `/metrics`, and from the events it wrote, the top denied sources and blocked egress
//! destinations.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use meshtrail_parsers::classify::Outcome;

/// `GET /metrics` of the agent's admin listener.
pub fn scrape(addr: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
}

/// The sum of the series of `name` whose labels include `label="value"` (any when `None`).
pub fn sum(exposition: &str, name: &str, label: Option<(&str, &str)>) -> f64 {
    exposition
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| label.is_none_or(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Counts read from the events file as it grows.
#[derive(Default)]
pub struct Events {
    path: Option<PathBuf>,
    offset: u64,
    carry: Vec<u8>,
    /// Denied requests (authn, authz, rate limit) by client IP.
    pub denied: HashMap<String, u64>,
    /// Blocked egress by destination.
    pub blocked: HashMap<String, u64>,
}

impl Events {
    /// Follows `path` (the file sink's output), if any.
    pub fn new(path: Option<PathBuf>) -> Events {
        Events {
            path,
            ..Events::default()
        }
    }

    /// Reads what was appended since the last call.
    pub fn update(&mut self) {
        let Some(path) = &self.path else { return };
        let Ok(mut f) = std::fs::File::open(path) else {
            return;
        };
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut buf = std::mem::take(&mut self.carry);
        let Ok(n) = f.read_to_end(&mut buf) else {
            return;
        };
        self.offset += n as u64;
        let complete = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        for line in buf[..complete].split(|b| *b == b'\n') {
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
                continue;
            };
            let sec = &v["meshtrail"]["security"];
            if matches!(
                sec["outcome"].as_str(),
                Some("authn_denied" | "authz_denied" | "rate_limited")
            ) {
                let ip = v["client"]["ip"].as_str().unwrap_or("-");
                *self.denied.entry(ip.to_owned()).or_default() += 1;
            }
            if sec["egress"] == "blocked" {
                let dest = v["url"]["domain"].as_str().unwrap_or("-");
                *self.blocked.entry(dest.to_owned()).or_default() += 1;
            }
        }
        self.carry = buf[complete..].to_vec();
    }
}

/// The `n` largest entries.
pub fn top(map: &HashMap<String, u64>, n: usize) -> Vec<(&str, u64)> {
    let mut v: Vec<_> = map.iter().map(|(k, c)| (k.as_str(), *c)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    v.truncate(n);
    v
}

/// The summary as text.
pub fn render(exposition: &str, events: &Events, rate: f64, spinner: char) -> String {
    let mut out = String::new();
    let read = sum(exposition, "meshtrail_lines_read_total", None);
    let acked = sum(exposition, "meshtrail_events_acknowledged_total", None);
    out.push_str(&format!(
        "{spinner} meshtrail demo: {read:.0} lines read, {acked:.0} events delivered, {rate:.0} events/s\n\n  security outcome     events\n"
    ));
    for o in Outcome::ALL {
        let n = sum(
            exposition,
            "meshtrail_requests_total",
            Some(("outcome", o.as_str())),
        );
        out.push_str(&format!("  {:<20} {n:>8.0}\n", o.as_str()));
    }
    if events.path.is_some() {
        out.push_str("\n  top denied sources (authn, authz, rate limit)\n");
        for (src, n) in top(&events.denied, 5) {
            out.push_str(&format!("  {src:<20} {n:>8}\n"));
        }
        out.push_str("\n  blocked egress destinations\n");
        for (dst, n) in top(&events.blocked, 5) {
            out.push_str(&format!("  {dst:<28} {n:>8}\n"));
        }
    }
    out
}
