//! The Elasticsearch sink end to end: the real binary, the test server and its faults;
//! every line exactly once in the index (counted by sequence number and `_id`), refused
//! documents in the dead-letter file.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::collections::HashMap;
use std::time::Duration;

use meshtrail_tests::agent::Agent;
use meshtrail_tests::es_server::{EsServer, Faults};
use meshtrail_tests::node::{Node, Writer};

const WAIT: Duration = Duration::from_secs(60);

/// How often each `seq-<writer>-<n>` is stored.
fn stored(es: &EsServer) -> HashMap<String, u32> {
    es.request_ids("logs-meshtrail")
}

fn wait_for(es: &EsServer, n: usize) {
    let start = std::time::Instant::now();
    while stored(es).len() < n {
        assert!(
            start.elapsed() < WAIT,
            "timed out: {} of {n} lines in Elasticsearch",
            stored(es).len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn exactly_once(es: &EsServer, writer: &str, n: u64) {
    let counts = stored(es);
    let lost: Vec<u64> = (0..n)
        .filter(|i| !counts.contains_key(&format!("seq-{writer}-{i}")))
        .collect();
    let dup: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(
        lost.is_empty() && dup.is_empty(),
        "lost {} (first {:?}), duplicated {}",
        lost.len(),
        lost.first(),
        dup.len()
    );
}

/// A sidecar's log with `lines` numbered lines written.
fn write(node: &Node, name: &str, lines: u64) -> Writer {
    let log = node.container("shop", "web-5c9f8d7b6-abcde", "istio-proxy");
    let mut w = Writer::new(name, &log);
    for _ in 0..lines {
        w.line();
    }
    w.flush();
    w
}

#[test]
fn every_line_once_through_item_and_request_faults() {
    let es = EsServer::start(None);
    let node = Node::new("es-faults");
    // Some items refused for a while, then whole requests, then answers lost after storing.
    es.set_faults(Faults {
        item_every: Some((7, 503)),
        ..Faults::default()
    });
    let mut w = write(&node, "f", 3000);
    let agent = Agent::start(&node.config_es(&es.url, "  max_batch_docs: 500\n"));
    std::thread::sleep(Duration::from_millis(700));
    es.set_faults(Faults {
        reject_all: Some(429),
        ..Faults::default()
    });
    for _ in 0..2000 {
        w.line();
    }
    w.flush();
    std::thread::sleep(Duration::from_millis(700));
    es.set_faults(Faults {
        drop_after_store: true,
        ..Faults::default()
    });
    std::thread::sleep(Duration::from_millis(500));
    es.set_faults(Faults::default());
    wait_for(&es, 5000);
    // The sink's own metrics saw the requests and the retries.
    let text = meshtrail_tests::agent::http_get(&agent.admin_address(), "/metrics").1;
    let value = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    assert!(
        value("meshtrail_bulk_retries_total ").is_some_and(|v| v >= 1.0),
        "{text}"
    );
    assert!(
        value("meshtrail_bulk_request_duration_seconds_count ").is_some_and(|v| v >= 2.0),
        "{text}"
    );
    assert_eq!(agent.terminate(), 0);
    exactly_once(&es, "f", 5000);
    // One document per line, stored under its event id.
    assert!(
        es.docs("logs-meshtrail.access-default")
            .values()
            .all(|d| d["event"]["id"].is_string())
    );
}

/// `sink.gzip_writer` switches between the agent's deflate writer and zlib-rs; the test
/// server inflates what either sends (a body it cannot read is refused with 400).
#[test]
fn either_gzip_writer_stores_every_line_once() {
    for writer in ["meshtrail", "zlib"] {
        let es = EsServer::start(None);
        let node = Node::new(&format!("es-gzip-{writer}"));
        let _w = write(&node, "g", 3000);
        let agent = Agent::start(&node.config_es(
            &es.url,
            &format!("  gzip_writer: {writer}\n  max_batch_docs: 700\n"),
        ));
        wait_for(&es, 3000);
        assert_eq!(agent.terminate(), 0, "{writer}");
        exactly_once(&es, "g", 3000);
    }
}

#[test]
fn mapping_errors_go_to_the_dead_letter_file() {
    let es = EsServer::start(None);
    let node = Node::new("es-dlq");
    // Lines 10..=19 carry a value the index refuses.
    es.set_faults(Faults {
        mapping_error_on: Some("\"/api/1".into()),
        ..Faults::default()
    });
    let _w = write(&node, "d", 100);
    let agent = Agent::start(&node.config_es(&es.url, ""));
    let dlq = node.root.join("out/dead-letters.ndjson");
    meshtrail_tests::eventually(WAIT, "89 stored and 11 dead letters", || {
        stored(&es).len() == 89
            && std::fs::read_to_string(&dlq)
                .unwrap_or_default()
                .lines()
                .count()
                == 11
    });
    assert_eq!(agent.terminate(), 0);
    let text = std::fs::read_to_string(&dlq).unwrap();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["error"]["type"], "document_parsing_exception");
        assert!(
            v["document"]["url"]["original"]
                .as_str()
                .unwrap()
                .starts_with("/api/1")
        );
    }
}

#[test]
fn kill_9_during_a_slow_bulk_then_restart() {
    let es = EsServer::start(None);
    let node = Node::new("es-kill");
    es.set_faults(Faults {
        delay: Some(Duration::from_millis(800)),
        ..Faults::default()
    });
    let _w = write(&node, "k", 4000);
    let config = node.config_es(&es.url, "  max_batch_docs: 1000\n");
    let agent = Agent::start(&config);
    std::thread::sleep(Duration::from_millis(1200));
    agent.kill();
    es.set_faults(Faults::default());
    let agent = Agent::start(&config);
    wait_for(&es, 4000);
    assert_eq!(agent.terminate(), 0);
    exactly_once(&es, "k", 4000);
}

#[test]
fn wrong_credentials_are_refused_clearly_and_lose_nothing() {
    let es = EsServer::start(Some("Basic ZWxhc3RpYzpyaWdodA=="));
    let node = Node::new("es-auth");
    let _w = write(&node, "a", 50);
    std::fs::write(node.root.join("password"), "wrong").unwrap();
    let extra = format!(
        "  username: elastic\n  password_file: {}\n",
        node.root.join("password").display()
    );
    let agent = Agent::start(&node.config_es(&es.url, &extra));
    meshtrail_tests::eventually(WAIT, "the 401 in the log", || {
        agent.log().contains("security_exception")
            && agent.log().contains("check the Elasticsearch credentials")
    });
    assert_eq!(agent.terminate(), 0);
    assert!(stored(&es).is_empty());
    std::fs::write(node.root.join("password"), "right").unwrap();
    let agent = Agent::start(&node.config_es(&es.url, &extra));
    wait_for(&es, 50);
    assert_eq!(agent.terminate(), 0);
    exactly_once(&es, "a", 50);
}

#[test]
fn bulk_requests_go_concurrently_up_to_the_bound() {
    let es = EsServer::start(None);
    // Slow answers: with one request in flight the next waits; the bound lets three go.
    es.set_faults(Faults {
        delay: Some(Duration::from_millis(300)),
        ..Faults::default()
    });
    let node = Node::new("es-concurrent");
    let _w = write(&node, "c", 2000);
    let agent = Agent::start(&node.config_es(
        &es.url,
        "  max_batch_docs: 100\n  max_concurrent_requests: 3\n",
    ));
    wait_for(&es, 2000);
    assert_eq!(agent.terminate(), 0);
    exactly_once(&es, "c", 2000);
    let most = es
        .max_bulk_in_flight
        .load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(most, 3, "most bulk requests in flight at once");
}
