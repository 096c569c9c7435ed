//! The collector end to end: the real binary tails a node-like directory while writers
//! append numbered lines; every line must reach the sink exactly once, through rotation,
//! compression, truncation, restarts and `kill -9`.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::time::Duration;

use meshtrail_tests::agent::Agent;
use meshtrail_tests::eventually;
use meshtrail_tests::node::{Node, Writer, exactly_once, gzip};

const DRAIN: Duration = Duration::from_secs(60);

fn wait_for_all(node: &Node, writers: &[(&str, u64)]) {
    wait_for_all_within(node, writers, DRAIN);
}

fn wait_for_all_within(node: &Node, writers: &[(&str, u64)], limit: Duration) {
    let total: u64 = writers.iter().map(|(_, n)| n).sum();
    let start = std::time::Instant::now();
    while (meshtrail_tests::node::count_seqs(&node.output()).len() as u64) < total {
        if start.elapsed() > limit {
            let why = exactly_once(&node.output(), writers)
                .err()
                .unwrap_or_default();
            panic!("timed out waiting for {total} lines in the sink: {why}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `count` containers in `namespace`, each with `lines` lines written; writer `i` is named
/// `<namespace>-<i>`.
fn containers_with_lines(node: &Node, namespace: &str, count: usize, lines: u64) -> Vec<Writer> {
    (0..count)
        .map(|i| {
            let log = node.container(namespace, &format!("pod-{i}"), "app");
            let mut w = Writer::new(&format!("{namespace}-{i}"), &log);
            for _ in 0..lines {
                w.line();
            }
            w.flush();
            w
        })
        .collect()
}

#[test]
fn rename_rotation_under_load() {
    let node = Node::new("rotation");
    let log = node.container("istio-system", "istio-ingressgateway-7d4f", "istio-proxy");
    let agent = Agent::start(&node.config(""));
    let mut w = Writer::new("ingress", &log);
    // 10 MiB files, 5 kept, older ones gzipped, the writer at full speed.
    for _ in 0..120_000 {
        w.line();
        if w.size() >= 10 << 20 {
            w.rotate(5);
        }
    }
    w.flush();
    wait_for_all(&node, &[("ingress", w.written)]);
    assert_eq!(agent.terminate(), 0);
    exactly_once(&node.output(), &[("ingress", w.written)]).unwrap();
}

#[test]
fn copytruncate_reads_the_tail_from_the_copy() {
    let node = Node::new("copytruncate");
    let log = node.container("shop", "web-5c9f", "istio-proxy");
    let agent = Agent::start(&node.config(""));
    let mut w = Writer::new("web", &log);
    for _ in 0..4 {
        for _ in 0..15_000 {
            w.line();
        }
        // No waiting for the agent: whatever it had not read yet is only in the copy.
        w.copytruncate();
        // logrotate runs on a schedule; two copytruncates with nothing read in between
        // would leave a copy the agent cannot know of.
        std::thread::sleep(Duration::from_millis(300));
    }
    w.flush();
    wait_for_all(&node, &[("web", w.written)]);
    assert_eq!(agent.terminate(), 0);
    exactly_once(&node.output(), &[("web", w.written)]).unwrap();
    assert!(node.output().lines().count() as u64 == w.written);
}

#[test]
fn gzip_rotation_while_stopped_continues_inside_the_gz() {
    let node = Node::new("gz");
    let log = node.container("shop", "payment-1", "istio-proxy");
    let config = node.config("");
    let mut w = Writer::new("pay", &log);
    for _ in 0..20_000 {
        w.line();
    }
    w.flush();
    let agent = Agent::start(&config);
    eventually(DRAIN, "some lines read", || {
        node.output().lines().count() > 100
    });
    eventually(DRAIN, "a checkpoint", || {
        node.root.join("data/checkpoints.json").exists()
    });
    agent.kill();
    // While the agent is down the file is rotated and the rotation compressed.
    let rotated = log.with_file_name("0.log.20261124-100000");
    std::fs::rename(&log, &rotated).unwrap();
    gzip(&rotated);
    let mut w = Writer::new("pay2", &log);
    for _ in 0..5_000 {
        w.line();
    }
    w.flush();
    let agent = Agent::start(&config);
    wait_for_all(&node, &[("pay", 20_000), ("pay2", 5_000)]);
    assert_eq!(agent.terminate(), 0);
    exactly_once(&node.output(), &[("pay", 20_000), ("pay2", 5_000)]).unwrap();
}

#[test]
fn kill_9_at_random_moments() {
    let node = Node::new("kill9");
    let log = node.container("istio-system", "istio-egressgateway-1", "istio-proxy");
    let config = node.config("");
    let mut w = Writer::new("egress", &log);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for _round in 0..20 {
        let agent = Agent::start(&config);
        let lines = 2_000 + rand(6_000);
        for _ in 0..lines {
            w.line();
            if w.size() >= 2 << 20 {
                w.rotate(5);
            }
        }
        w.flush();
        std::thread::sleep(Duration::from_millis(50 + rand(400)));
        agent.kill();
    }
    let agent = Agent::start(&config);
    wait_for_all(&node, &[("egress", w.written)]);
    assert_eq!(agent.terminate(), 0);
    exactly_once(&node.output(), &[("egress", w.written)]).unwrap();
}

#[test]
fn a_thousand_files() {
    let node = Node::new("thousand");
    let writers = containers_with_lines(&node, "load", 1000, 50);
    let agent = Agent::start(&node.config(""));
    let expect: Vec<(&str, u64)> = writers
        .iter()
        .map(|w| (w.name.as_str(), w.written))
        .collect();
    wait_for_all(&node, &expect);
    assert_eq!(agent.terminate(), 0);
    exactly_once(&node.output(), &expect).unwrap();
}

#[test]
fn partial_records_and_a_5_mib_line() {
    let node = Node::new("long");
    let log = node.container("shop", "web-1", "app");
    let mut w = Writer::new("long", &log);
    for _ in 0..100 {
        w.line();
    }
    // 5 MiB in 16 KiB partial records, as containerd writes it, then more numbered lines.
    let chunk = "x".repeat(16 << 10);
    for _ in 0..320 {
        w.raw(&format!(
            "2026-11-24T10:00:00.000000000Z stdout P {chunk}\n"
        ));
    }
    w.raw("2026-11-24T10:00:00.000000000Z stdout F end\n");
    for _ in 0..100 {
        w.line();
    }
    w.flush();
    let agent = Agent::start(&node.config(""));
    wait_for_all(&node, &[("long", w.written)]);
    assert_eq!(agent.terminate(), 0);
    let out = node.output();
    exactly_once(&out, &[("long", w.written)]).unwrap();
    let long: Vec<&str> = out.lines().filter(|l| l.contains("xxxxxxxx")).collect();
    assert_eq!(long.len(), 1, "the long line is one event");
    assert!(
        long[0].contains(r#""flags":["multiline","truncated"]"#),
        "flagged: {}",
        &long[0][long[0].len() - 300..]
    );
    assert!(
        long[0].len() < (1 << 20) + 4096,
        "cut at max_line_bytes: {}",
        long[0].len()
    );
    assert!(
        out.lines()
            .filter(|l| l.contains("\"seq-long-3\""))
            .all(|l| l.contains(r#""flags":["multiline"]"#))
    );
}

#[test]
fn bad_config_is_refused_with_the_field() {
    let node = Node::new("badconfig");
    let config = node.config("pipeline:\n  workers: 0\n");
    let out = std::process::Command::new(meshtrail_tests::agent::binary())
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`pipeline.workers`") && err.contains("value 0"),
        "{err}"
    );
}

#[test]
fn corrupt_checkpoint_is_reported_and_set_aside() {
    let node = Node::new("corrupt");
    let log = node.container("shop", "web-2", "app");
    let mut w = Writer::new("c", &log);
    for _ in 0..500 {
        w.line();
    }
    w.flush();
    std::fs::write(
        node.root.join("data/checkpoints.json"),
        b"{\"version\":\"1\",\"fi",
    )
    .unwrap();
    let agent = Agent::start(&node.config(""));
    wait_for_all(&node, &[("c", 500)]);
    let log_text = agent.log();
    assert_eq!(agent.terminate(), 0);
    assert!(
        log_text.contains("checkpoint unusable") && log_text.contains("corrupt"),
        "{log_text}"
    );
    assert!(node.root.join("data/checkpoints.json.corrupt").exists());
    exactly_once(&node.output(), &[("c", 500)]).unwrap();
}

#[test]
fn sighup_applies_formats_and_patterns_and_refuses_a_bad_file() {
    let node = Node::new("sighup");
    let a = node.container("shop", "pod-a", "istio-proxy");
    let b = node.container("shop", "pod-b", "istio-proxy");
    let config = node.root.join("meshtrail.yaml");
    let write = |include: &str, formats: &str| {
        let text = format!(
            "node_name: n\ndata_dir: {root}/data\ntail:\n  include: [\"{root}/containers/{include}\"]\n  poll_interval_ms: 50\n\
             pipeline:\n  formats: [{formats}]\nsink:\n  type: file\n  path: {root}/out/events.ndjson\n\
             metrics:\n  address: 127.0.0.1:0\n",
            root = node.root.display()
        );
        std::fs::write(&config, text).unwrap();
    };
    write("pod-a_*.log", "envoy-default");
    let mut agent = Agent::start(&config);
    let (mut wa, mut wb) = (Writer::new("a", &a), Writer::new("b", &b));
    wa.line();
    wa.flush();
    wb.line();
    wb.flush();
    eventually(DRAIN, "line a-0", || node.output().contains("seq-a-0"));
    let first = node.output();
    assert!(
        first.contains("meshtrail.container"),
        "istio-1.9 is not envoy-default: {first}"
    );
    assert!(!first.contains("seq-b-"), "pod-b is not included yet");

    write("*.log", "auto");
    agent.hup();
    eventually(DRAIN, "the reload", || {
        agent.log().contains("configuration reloaded")
    });
    wa.line();
    wa.flush();
    eventually(DRAIN, "line a-1 and pod-b", || {
        let out = node.output();
        out.contains("seq-a-1") && out.contains("seq-b-0")
    });
    let a1 = node
        .output()
        .lines()
        .find(|l| l.contains("\"seq-a-1\""))
        .unwrap()
        .to_owned();
    assert!(
        a1.contains(r#""dataset":"meshtrail.access""#) && a1.contains(r#""format":"istio-1.9""#),
        "{a1}"
    );

    std::fs::write(&config, "pipeline:\n  workers: lots\n").unwrap();
    agent.hup();
    eventually(DRAIN, "the refusal", || {
        agent.log().contains("configuration reload refused")
    });
    assert!(agent.running(), "a bad file does not stop the agent");
    wa.line();
    wa.flush();
    eventually(DRAIN, "line a-2", || node.output().contains("seq-a-2"));
    assert_eq!(agent.terminate(), 0);
}

/// With polling and scanning set to minutes, lines still arrive: inotify names the file
/// written to (reached through its `/var/log/containers` link), a new container's link, and
/// a rotation, and the agent reads just those.
#[test]
fn inotify_alone_finds_new_lines_new_files_and_rotations() {
    let node = Node::new("inotify");
    let mut writers = containers_with_lines(&node, "quiet", 100, 5);
    let config = node.config("");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "poll_interval_ms: 50",
        "poll_interval_ms: 60000\n  scan_interval_ms: 600000",
    );
    std::fs::write(&config, text).unwrap();
    let agent = Agent::start(&config);
    // Well inside the first poll (60 s) and scan (10 min): only inotify can have told.
    let within = |ws: &[Writer]| {
        let expect: Vec<(&str, u64)> = ws.iter().map(|w| (w.name.as_str(), w.written)).collect();
        wait_for_all_within(&node, &expect, Duration::from_secs(20));
        exactly_once(&node.output(), &expect).unwrap();
    };
    within(&writers);
    // Lines appended to a few of the quiet files.
    for w in writers.iter_mut().step_by(17) {
        for _ in 0..3 {
            w.line();
        }
        w.flush();
    }
    within(&writers);
    // A container started after the agent, and a rotation.
    let log = node.container("quiet", "pod-new", "app");
    let mut fresh = Writer::new("fresh", &log);
    for _ in 0..4 {
        fresh.line();
    }
    fresh.flush();
    writers.push(fresh);
    writers[3].rotate(5);
    for _ in 0..6 {
        writers[3].line();
    }
    writers[3].flush();
    within(&writers);
    assert_eq!(agent.terminate(), 0);
}
