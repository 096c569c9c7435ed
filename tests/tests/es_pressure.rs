//! The Elasticsearch sink against a cluster under write pressure, through the real binary
//! and the test server: a few (or many) items of every bulk refused, some requests refused
//! whole, slow and lost answers, an outage; lines written live with kubelet rotation. Every
//! line arrives exactly once, partial failures never stall sending, and sending resumes at
//! once after an outage. And the files the sink needs are opened before anything is read.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meshtrail_tests::agent::{Agent, binary, http_get};
use meshtrail_tests::es_server::{EsServer, Faults, Pressure};
use meshtrail_tests::metric_value;
use meshtrail_tests::node::{Node, Writer};

fn stored(es: &EsServer) -> HashMap<String, u32> {
    es.request_ids("logs-meshtrail")
}

fn exactly_once(es: &EsServer, writers: &[&Writer]) {
    let counts = stored(es);
    for w in writers {
        let lost: Vec<u64> = (0..w.written)
            .filter(|i| !counts.contains_key(&format!("seq-{}-{i}", w.name)))
            .collect();
        assert!(
            lost.is_empty(),
            "writer {}: lost {} of {} (first {:?})",
            w.name,
            lost.len(),
            w.written,
            lost.first()
        );
    }
    let dup: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(dup.is_empty(), "{} lines stored twice", dup.len());
}

fn pressure(items: f64) -> Faults {
    Faults {
        pressure: Some(Pressure {
            item_rejected: items,
            request_429: 0.05,
            slow: 0.03,
            slow_delay: Duration::from_millis(1500),
            lost: 0.03,
            seed: 7,
        }),
        ..Faults::default()
    }
}

/// Two sidecars write `rate` lines a second in all for `secs`, rotating at 1 MB (5 kept),
/// while the test server refuses `items` of the items and the rest of the pressure profile;
/// Elasticsearch is down for 2 s in the middle. Then every line must be stored once, within
/// a bound that a sink pausing on every partial failure (the backoff climbing to 30 s) misses.
fn under_pressure(name: &str, items: f64) {
    let es = EsServer::start(None);
    es.set_faults(pressure(items));
    let node = Node::new(name);
    let mut writers: Vec<Writer> = (0..2)
        .map(|i| {
            let log = node.container("shop", &format!("web-{i}-5c9f8d7b6-abcde"), "istio-proxy");
            Writer::new(&format!("{name}{i}"), &log)
        })
        .collect();
    let agent = Agent::start(&node.config_es(
        &es.url,
        "  max_batch_docs: 1000\n  max_concurrent_requests: 4\n",
    ));
    let (rate, secs) = (4000u64, 8u64);
    let started = Instant::now();
    let mut outage = None;
    for tick in 0..secs * 20 {
        for w in &mut writers {
            for _ in 0..rate / 40 {
                w.line();
            }
            w.flush();
            if w.size() > 1 << 20 {
                w.rotate(5);
            }
        }
        if tick == secs * 10 {
            es.set_faults(Faults {
                down: true,
                ..Faults::default()
            });
            outage = Some(Instant::now());
        }
        if outage.is_some_and(|t| t.elapsed() >= Duration::from_secs(2)) {
            es.set_faults(pressure(items));
            outage = None;
        }
        let next = started + Duration::from_millis(50 * (tick + 1));
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    es.set_faults(pressure(items));
    let total: u64 = writers.iter().map(|w| w.written).sum();
    // Written over 8 s; a sink that keeps shipping has it all well within 30 s more.
    meshtrail_tests::eventually(
        Duration::from_secs(30),
        &format!("{total} lines in Elasticsearch"),
        || stored(&es).len() as u64 >= total,
    );
    let metrics = http_get(&agent.admin_address(), "/metrics").1;
    for status in ["429", "503", "0"] {
        assert!(
            metric_value(
                &metrics,
                "meshtrail_bulk_retried_documents_total",
                &[("status", status)]
            ) > 0.0,
            "no retry with status {status}:\n{metrics}"
        );
    }
    let concurrency = metric_value(&metrics, "meshtrail_bulk_concurrency", &[]);
    assert!(
        (1.0..=4.0).contains(&concurrency),
        "concurrency {concurrency} outside 1..=max_concurrent_requests"
    );
    assert_eq!(agent.terminate(), 0);
    let refs: Vec<&Writer> = writers.iter().collect();
    exactly_once(&es, &refs);
}

#[test]
fn every_line_once_when_3_percent_of_items_are_refused() {
    under_pressure("p3", 0.03);
}

#[test]
fn every_line_once_when_20_percent_of_items_are_refused() {
    under_pressure("p20", 0.20);
}

fn write(w: &mut Writer, n: usize) {
    for _ in 0..n {
        w.line();
    }
    w.flush();
}

/// Elasticsearch down for 1 s while lines keep coming, and once for 8 s (as in the
/// operator's report): each time the first documents are stored within 2 s of it coming
/// back (a backoff grown over the outage, seconds long, misses it).
#[test]
fn sending_resumes_within_2_s_of_each_outage() {
    let es = EsServer::start(None);
    let node = Node::new("es-outage");
    let log = node.container("shop", "web-5c9f8d7b6-abcde", "istio-proxy");
    let mut w = Writer::new("o", &log);
    let agent = Agent::start(&node.config_es(&es.url, ""));
    write(&mut w, 100);
    meshtrail_tests::eventually(Duration::from_secs(20), "the first lines", || {
        stored(&es).len() == 100
    });
    for (round, secs) in [1, 1, 8, 1].into_iter().enumerate() {
        es.set_faults(Faults {
            down: true,
            ..Faults::default()
        });
        let down = Instant::now();
        while down.elapsed() < Duration::from_secs(secs) {
            write(&mut w, 20);
            std::thread::sleep(Duration::from_millis(50));
        }
        let before = stored(&es).len();
        es.set_faults(Faults::default());
        let up = Instant::now();
        while stored(&es).len() == before {
            assert!(
                up.elapsed() < Duration::from_secs(2),
                "round {round}: nothing stored 2 s after a {secs} s outage ended\n{}",
                agent.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let total = w.written as usize;
    meshtrail_tests::eventually(Duration::from_secs(20), "every line", || {
        stored(&es).len() == total
    });
    assert_eq!(agent.terminate(), 0);
    exactly_once(&es, &[&w]);
}

/// A busy cluster refuses a request now and then while it takes the others: that request
/// goes again on its own, and sending is not paused for it. Requests refused one after the
/// other, with nothing taken between, are what pauses sending (until the probe answers).
#[test]
fn one_refused_request_goes_again_alone_and_a_run_of_them_pauses() {
    let es = EsServer::start(None);
    let node = Node::new("es-refused");
    let log = node.container("shop", "web-5c9f8d7b6-abcde", "istio-proxy");
    let mut w = Writer::new("r", &log);
    let agent = Agent::start(&node.config_es(&es.url, ""));
    let mut expected = 0;
    for (round, refused) in [(0, 0), (1, 1), (2, 6)] {
        es.set_faults(Faults {
            refuse_next: refused,
            ..Faults::default()
        });
        write(&mut w, 100);
        expected += 100;
        meshtrail_tests::eventually(Duration::from_secs(20), "the lines of the round", || {
            stored(&es).len() == expected
        });
        assert_eq!(
            es.faults().refuse_next,
            0,
            "round {round}: not every refusal was met"
        );
        let paused = agent.log().contains("sending paused");
        assert_eq!(
            paused,
            round == 2,
            "round {round}, {refused} requests refused in a row\n{}",
            agent.log()
        );
    }
    assert_eq!(agent.terminate(), 0);
    exactly_once(&es, &[&w]);
}

/// `meshtrail validate` and `meshtrail run` on `config`: (exit code, stderr).
fn refused(config: &std::path::Path) -> Vec<(i32, String)> {
    ["validate", "run"]
        .iter()
        .map(|cmd| {
            let mut child = Command::new(binary())
                .args([cmd, "--config"])
                .arg(config)
                .env_remove("KUBERNETES_SERVICE_HOST")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let start = Instant::now();
            while child.try_wait().unwrap().is_none() {
                if start.elapsed() > Duration::from_secs(10) {
                    let _ = child.kill();
                    panic!("meshtrail {cmd} kept running with a bad sink file");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let out = child.wait_with_output().unwrap();
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
        .collect()
}

#[test]
fn files_the_sink_needs_are_refused_at_start_when_unusable() {
    let node = Node::new("es-files");
    let missing = node.root.join("no-such-ca.pem");
    let not_pem = node.root.join("not-a-ca.pem");
    std::fs::write(&not_pem, "this is not a certificate\n").unwrap();
    let cases = [
        (
            format!("  ca_file: {}\n", missing.display()),
            "sink.ca_file",
        ),
        (
            format!("  ca_file: {}\n", not_pem.display()),
            "sink.ca_file",
        ),
        (
            format!(
                "  client_cert_file: {0}\n  client_key_file: {0}\n",
                not_pem.display()
            ),
            "sink.client_cert_file",
        ),
        (
            format!(
                "  password_file: {}\n  username: elastic\n",
                missing.display()
            ),
            "sink.password_file",
        ),
    ];
    for (extra, field) in cases {
        let config = node.config_es("https://127.0.0.1:9", &extra);
        for (code, stderr) in refused(&config) {
            assert_eq!(code, 64, "{extra}: {stderr}");
            assert!(stderr.contains(field), "{extra}: {stderr}");
        }
    }
    // A dead-letter path that cannot be created: /proc takes no new files.
    let config = node.config_es("http://127.0.0.1:9", "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &format!(
            "dead_letter_path: {}/out/dead-letters.ndjson",
            node.root.display()
        ),
        "dead_letter_path: /proc/meshtrail-test/dead-letters.ndjson",
    );
    std::fs::write(&config, text).unwrap();
    for (code, stderr) in refused(&config) {
        assert_eq!(code, 64, "{stderr}");
        assert!(stderr.contains("sink.dead_letter_path"), "{stderr}");
    }
}
