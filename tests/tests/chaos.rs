//! The reliability suite: rotation under load, Elasticsearch faults, `kill -9` of the agent
//! at random moments and a Kubernetes API outage, all at once; then every line must be in
//! the index exactly once (by sequence number, and so by `_id`). Bounded in time for CI;
//! the seed is printed so a failure can be replayed (`MESHTRAIL_CHAOS_SEED`).
#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use meshtrail_tests::agent::Agent;
use meshtrail_tests::es_server::{EsServer, Faults};
use meshtrail_tests::k8s_server::{K8sFaults, K8sServer, PodSpec};
use meshtrail_tests::node::{Node, Writer};

/// A small deterministic generator (xorshift64*), so that a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn rotation_faults_kills_and_an_api_outage_lose_and_duplicate_nothing() {
    let seed = std::env::var("MESHTRAIL_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("chaos seed {seed} (MESHTRAIL_CHAOS_SEED={seed} replays it)");
    let mut rng = Rng(seed);
    // Built before the load starts: a build meanwhile would only let lines pile up.
    meshtrail_tests::agent::binary();

    let node = Node::new("chaos");
    let es = EsServer::start(None);
    let k8s = K8sServer::start("test-node");
    let pods = [
        ("istio-system", "istio-ingressgateway-7d4f8b6c9-x2x7q", "gw"),
        ("shop", "web-5c9f8d7b6-abcde", "web"),
        ("shop", "cart-0", "cart"),
    ];
    let mut writers = Vec::new();
    for (i, (ns, pod, name)) in pods.iter().enumerate() {
        let uid = format!("{i:08x}-1111-4222-8333-444455556666");
        let mut spec = PodSpec::new(ns, pod, &uid, "test-node");
        spec.containers = vec![("istio-proxy".into(), "istio/proxyv2:1.24.0".into())];
        spec.owner = Some(("StatefulSet".into(), (*name).into()));
        k8s.put_pod(&spec);
        writers.push(Writer::new(
            name,
            &node.container_of(ns, pod, &uid, "istio-proxy"),
        ));
    }
    let kubeconfig = node.root.join("kubeconfig");
    std::fs::write(&kubeconfig, k8s.kubeconfig()).unwrap();
    let config = node.config_es(
        &es.url,
        &format!(
            "  max_batch_docs: 300\nkubernetes:\n  source: api\n  kubeconfig: {}\n  start_jitter_secs: 0\n  initial_sync_timeout_secs: 1\n",
            kubeconfig.display()
        ),
    );

    // Load: every writer appends 300 lines a second and rotates (kubelet style, compressing older
    // files) every 1,500 lines, keeping every rotation: what the agent has not read while it
    // was down must still be there.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for w in &mut writers {
                    for _ in 0..15 {
                        w.line();
                    }
                    if w.written % 1500 < 15 {
                        w.rotate(1000);
                    }
                    w.flush();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            writers
                .iter()
                .map(|w| (w.name.clone(), w.written))
                .collect::<Vec<_>>()
        })
    };

    let mut agent = Some(Agent::start(&config));
    let mut kills = 0;
    let deadline = Instant::now() + Duration::from_secs(40);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500 + rng.below(2500)));
        match rng.below(7) {
            0 | 1 => {
                // kill -9 at a random moment, and back after a while.
                if let Some(a) = agent.take() {
                    a.kill();
                    kills += 1;
                }
                std::thread::sleep(Duration::from_millis(rng.below(1500)));
                agent = Some(Agent::start(&config));
            }
            2 => es.set_faults(Faults {
                item_every: Some((3 + rng.below(10), if rng.below(2) == 0 { 429 } else { 503 })),
                ..Faults::default()
            }),
            3 => es.set_faults(Faults {
                reject_all: Some(if rng.below(2) == 0 { 429 } else { 503 }),
                ..Faults::default()
            }),
            4 => es.set_faults(Faults {
                drop_after_store: true,
                ..Faults::default()
            }),
            5 => k8s.set_faults(K8sFaults {
                down: rng.below(2) == 0,
                ..K8sFaults::default()
            }),
            _ => {
                es.set_faults(Faults::default());
                k8s.expire();
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let written = load.join().unwrap();
    es.set_faults(Faults::default());
    k8s.set_faults(K8sFaults::default());
    let agent = agent.unwrap_or_else(|| Agent::start(&config));
    let total: u64 = written.iter().map(|(_, n)| n).sum();
    // Wait for every line; if they do not all come, the checks below say which are missing.
    let waited = Instant::now();
    while (es.request_ids("logs-meshtrail").len() as u64) < total
        && waited.elapsed() < Duration::from_secs(180)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    if (es.request_ids("logs-meshtrail").len() as u64) < total {
        // What every agent run said of files, for the report below.
        println!("seed {seed}: not all lines after 180 s; what the agent runs logged of files:");
        let mut logs: Vec<_> = std::fs::read_dir(&node.root)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        logs.sort();
        for path in logs {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for l in text.lines().filter(|l| !l.contains("meshtrail::k8s")) {
                println!("  {}: {l}", path.file_name().unwrap().to_string_lossy());
            }
        }
        drop(agent);
    } else {
        assert_eq!(agent.terminate(), 0);
    }
    let stored = es.request_ids("logs-meshtrail");
    for (name, n) in &written {
        let lost: Vec<u64> = (0..*n)
            .filter(|i| !stored.contains_key(&format!("seq-{name}-{i}")))
            .collect();
        assert!(
            lost.is_empty(),
            "seed {seed}: {name} lost {} lines, first {:?}",
            lost.len(),
            lost.first()
        );
    }
    let dup: Vec<_> = stored.iter().filter(|(_, c)| **c > 1).collect();
    assert!(dup.is_empty(), "seed {seed}: duplicated {dup:?}");
    assert_eq!(
        stored.len() as u64,
        total,
        "seed {seed}: nothing else stored"
    );
    println!("chaos: {total} lines, {kills} kills, exactly once");
}
