//! Kubernetes metadata through the real binary and the real `kube` client, against the
//! Kubernetes API test server on 127.0.0.1: enrichment for every owner kind, dedotted
//! labels, gateways from labels, a deleted pod's lines, the API down and back, requests
//! per resource while pods churn, the kubelet source and peer workloads.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use meshtrail_tests::agent::{Agent, http_get};
use meshtrail_tests::k8s_server::{K8sFaults, K8sServer, PodSpec};
use meshtrail_tests::node::{Node, Writer, access_line};
use meshtrail_tests::{eventually, metric_value};
use serde_json::Value;

const NODE: &str = "test-node";
const LIMIT: Duration = Duration::from_secs(30);

fn uid(n: u32) -> String {
    format!("{n:08x}-1111-4222-8333-444455556666")
}

fn pod(ns: &str, name: &str, n: u32) -> PodSpec {
    PodSpec::new(ns, name, &uid(n), NODE)
}

fn owned(mut p: PodSpec, kind: &str, owner: &str) -> PodSpec {
    p.owner = Some((kind.into(), owner.into()));
    p
}

fn config(node: &Node, server: &K8sServer, extra: &str) -> PathBuf {
    let kubeconfig = node.root.join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig()).unwrap();
    node.config(&format!(
        "kubernetes:\n  source: api\n  kubeconfig: {}\n  start_jitter_secs: 0\n  annotations: [team]\n{extra}",
        kubeconfig.display()
    ))
}

/// Writes `n` CRI lines of `text` to a fresh container log of `p`'s container `c`.
fn log(node: &Node, p: &PodSpec, c: &str, n: usize, text: &str) -> Writer {
    let path = node.container_of(&p.namespace, &p.name, &p.uid, c);
    let mut w = Writer::new(&p.name, &path);
    for _ in 0..n {
        w.raw(&format!("2026-11-24T10:00:00.000000000Z stdout F {text}\n"));
    }
    w.flush();
    w
}

fn documents(node: &Node) -> Vec<Value> {
    node.output()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The documents of pod `name`, once `n` of them are out.
fn docs_of(node: &Node, name: &str, n: usize) -> Vec<Value> {
    let mut docs = Vec::new();
    eventually(LIMIT, &format!("{n} events of {name}"), || {
        docs = documents(node)
            .into_iter()
            .filter(|d| d["kubernetes"]["pod"]["name"] == name)
            .collect();
        docs.len() >= n
    });
    assert_eq!(docs.len(), n, "events of {name}");
    docs
}

fn metrics(agent: &Agent) -> String {
    http_get(&agent.admin_address(), "/metrics").1
}

fn wait_metric(agent: &Agent, name: &str, labels: &[(&str, &str)], want: f64) {
    eventually(LIMIT, &format!("{name}{labels:?} = {want}"), || {
        metric_value(&metrics(agent), name, labels) == want
    });
}

fn requests(server: &K8sServer) -> HashMap<(String, String), u64> {
    server.requests()
}

#[test]
fn every_owner_kind_labels_gateways_and_requests_under_churn() {
    let node = Node::new("k8s-owners");
    let server = K8sServer::start(NODE);
    server.put_namespace("shop", &[("istio-injection", "enabled")]);
    server.put_namespace("istio-system", &[]);

    let mut web = owned(
        pod("shop", "web-5d4f9c7b8-abcde", 1),
        "ReplicaSet",
        "web-5d4f9c7b8",
    );
    web.labels = vec![
        ("app".into(), "web".into()),
        ("app.kubernetes.io/name".into(), "web".into()),
        ("pod-template-hash".into(), "5d4f9c7b8".into()),
    ];
    web.annotations = vec![
        ("team".into(), "payments".into()),
        ("secret".into(), "x".into()),
    ];
    web.ip = Some("10.44.0.5".into());
    web.containers
        .push(("istio-proxy".into(), "istio/proxyv2:1.24.0".into()));
    let mut gateway = owned(
        pod("istio-system", "istio-ingressgateway-6b9f-xyz12", 2),
        "ReplicaSet",
        "istio-ingressgateway-6b9f",
    );
    gateway.labels = vec![
        ("istio".into(), "ingressgateway".into()),
        ("pod-template-hash".into(), "6b9f".into()),
    ];
    gateway.containers = vec![("istio-proxy".into(), "istio/proxyv2:1.24.0".into())];
    let db = owned(pod("shop", "db-0", 3), "StatefulSet", "db");
    let agent_pod = owned(
        pod("shop", "node-agent-x1x2y", 4),
        "DaemonSet",
        "node-agent",
    );
    let cron = owned(
        pod("shop", "backup-29400000-q8r2t", 5),
        "Job",
        "backup-29400000",
    );
    let job = owned(pod("shop", "migrate-7-zz9kq", 6), "Job", "migrate-7");
    let solo = pod("shop", "solo", 7);
    let mut elsewhere = pod("shop", "far-away", 8);
    elsewhere.node = "other-node".into();
    for p in [
        &web, &gateway, &db, &agent_pod, &cron, &job, &solo, &elsewhere,
    ] {
        server.put_pod(p);
    }

    let agent = Agent::start(&config(&node, &server, ""));
    wait_metric(&agent, "meshtrail_kubernetes_synced", &[], 1.0);
    // The other node's pod is not ours to cache.
    wait_metric(
        &agent,
        "meshtrail_kubernetes_cached_objects",
        &[("kind", "pods")],
        7.0,
    );

    let _w = [
        log(&node, &web, "app", 2, "GET /healthz 200"),
        log(&node, &web, "istio-proxy", 3, &access_line("web", 1)),
        log(&node, &gateway, "istio-proxy", 2, &access_line("gw", 1)),
        log(&node, &db, "app", 1, "ready"),
        log(&node, &agent_pod, "app", 1, "ready"),
        log(&node, &cron, "app", 1, "backup done"),
        log(&node, &job, "app", 1, "migrated"),
        log(&node, &solo, "app", 1, "hello"),
    ];

    let web_docs = docs_of(&node, "web-5d4f9c7b8-abcde", 5);
    let proxy = web_docs
        .iter()
        .find(|d| d["kubernetes"]["container"]["name"] == "istio-proxy")
        .unwrap();
    let k = &proxy["kubernetes"];
    assert_eq!(k["namespace"], "shop");
    assert_eq!(k["pod"]["uid"], uid(1));
    assert_eq!(k["pod"]["ip"], "10.44.0.5");
    assert_eq!(k["node"]["name"], NODE);
    assert_eq!(k["deployment"]["name"], "web");
    assert_eq!(k["replicaset"]["name"], "web-5d4f9c7b8");
    assert_eq!(
        k["labels"],
        serde_json::json!({"app": "web", "app_kubernetes_io/name": "web", "pod-template-hash": "5d4f9c7b8"})
    );
    assert_eq!(k["annotations"], serde_json::json!({"team": "payments"}));
    assert_eq!(
        k["namespace_labels"],
        serde_json::json!({"istio-injection": "enabled", "kubernetes_io/metadata_name": "shop"})
    );
    assert_eq!(proxy["container"]["image"]["name"], "istio/proxyv2:1.24.0");
    assert_eq!(proxy["container"]["runtime"], "containerd");
    assert_eq!(proxy["meshtrail"]["gateway"], "sidecar");
    assert_eq!(proxy["orchestrator"]["type"], "kubernetes");

    let gw = docs_of(&node, "istio-ingressgateway-6b9f-xyz12", 2);
    assert_eq!(gw[0]["meshtrail"]["gateway"], "ingress");
    assert_eq!(
        gw[0]["kubernetes"]["deployment"]["name"],
        "istio-ingressgateway"
    );

    let owner =
        |name: &str, field: &str| docs_of(&node, name, 1)[0]["kubernetes"][field]["name"].clone();
    assert_eq!(owner("db-0", "statefulset"), "db");
    assert_eq!(owner("node-agent-x1x2y", "daemonset"), "node-agent");
    assert_eq!(owner("backup-29400000-q8r2t", "cronjob"), "backup");
    assert_eq!(owner("backup-29400000-q8r2t", "job"), "backup-29400000");
    assert_eq!(owner("migrate-7-zz9kq", "job"), "migrate-7");
    let solo_doc = &docs_of(&node, "solo", 1)[0]["kubernetes"];
    for kind in [
        "deployment",
        "statefulset",
        "daemonset",
        "job",
        "cronjob",
        "replicaset",
    ] {
        assert!(solo_doc.get(kind).is_none(), "a bare pod has no {kind}");
    }
    // The security metrics are labelled by the workload the API names.
    let m = metrics(&agent);
    assert_eq!(
        metric_value(
            &m,
            "meshtrail_requests_total",
            &[("workload", "web"), ("gateway", "sidecar")]
        ),
        3.0,
        "{m}"
    );
    assert_eq!(
        metric_value(
            &m,
            "meshtrail_requests_total",
            &[("workload", "istio-ingressgateway"), ("gateway", "ingress")]
        ),
        2.0
    );

    // Churn: pods come, change and go; the agent keeps one list and one watch per resource.
    for n in 100..140 {
        let mut p = pod("shop", &format!("churn-{n}"), n);
        server.put_pod(&p);
        p.labels.push(("version".into(), "v2".into()));
        server.put_pod(&p);
    }
    for n in 100..120 {
        server.delete_pod(&uid(n));
    }
    wait_metric(
        &agent,
        "meshtrail_kubernetes_cached_objects",
        &[("kind", "pods")],
        47.0,
    );
    let r = requests(&server);
    let count = |res: &str, verb: &str| r.get(&(res.into(), verb.into())).copied().unwrap_or(0);
    assert_eq!(
        (
            count("pods", "list"),
            count("pods", "watch"),
            count("namespaces", "list"),
            count("namespaces", "watch")
        ),
        (1, 1, 1, 1),
        "{r:?}"
    );
    assert_eq!(
        count("peer_pods", "list") + count("peer_pods", "watch"),
        0,
        "peers are opt-in"
    );

    // A watch that ends resumes from its last version: no new list.
    server.close_watches();
    eventually(LIMIT, "watches resumed", || {
        server.count("pods", "watch") == 2 && server.count("namespaces", "watch") == 2
    });
    assert_eq!(server.count("pods", "list"), 1);

    // 410 Gone on resume: exactly one re-list per resource, then a watch again.
    server.expire();
    eventually(LIMIT, "re-listed after 410", || {
        server.count("pods", "list") == 2
            && server.count("pods", "watch") == 4
            && server.count("namespaces", "list") == 2
            && server.count("namespaces", "watch") == 4
    });
    // Changes after the re-list still arrive.
    let late = owned(pod("shop", "late-1", 200), "StatefulSet", "late");
    server.put_pod(&late);
    // The watch delivers the pod before its container starts, as a scheduler and a kubelet
    // take their time.
    wait_metric(
        &agent,
        "meshtrail_kubernetes_cached_objects",
        &[("kind", "pods")],
        48.0,
    );
    let _l = log(&node, &late, "app", 1, "late");
    assert_eq!(owner("late-1", "statefulset"), "late");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        (
            server.count("pods", "list"),
            server.count("namespaces", "list")
        ),
        (2, 2)
    );

    // The agent counts the same requests the server saw.
    let m = metrics(&agent);
    assert_eq!(
        metric_value(
            &m,
            "meshtrail_kubernetes_api_requests_total",
            &[("resource", "pods"), ("verb", "list")]
        ),
        2.0,
        "{m}"
    );
    assert_eq!(
        metric_value(
            &m,
            "meshtrail_kubernetes_api_requests_total",
            &[("resource", "pods"), ("verb", "watch")]
        ),
        4.0,
        "{m}"
    );
    assert!(
        metric_value(
            &m,
            "meshtrail_kubernetes_api_errors_total",
            &[("resource", "pods")]
        ) >= 1.0
    );
    assert_eq!(
        metric_value(&m, "meshtrail_kubernetes_unenriched_events_total", &[]),
        0.0
    );
    meshtrail_tests::promtool_check_metrics(&m);
    agent.kill();
}

#[test]
fn a_deleted_pods_lines_are_still_enriched() {
    let node = Node::new("k8s-deleted");
    let server = K8sServer::start(NODE);
    let agent = Agent::start(&config(&node, &server, ""));
    wait_metric(&agent, "meshtrail_kubernetes_synced", &[], 1.0);

    // A Job pod is scheduled, logs and is deleted within 200 ms.
    let job = owned(
        pod("batch", "report-28000000-abcde", 1),
        "Job",
        "report-28000000",
    );
    server.put_pod(&job);
    std::thread::sleep(Duration::from_millis(100));
    let _w = log(&node, &job, "app", 20, "report written");
    server.delete_pod(&job.uid);

    let docs = docs_of(&node, "report-28000000-abcde", 20);
    for d in &docs {
        assert_eq!(d["kubernetes"]["job"]["name"], "report-28000000", "{d}");
        assert_eq!(d["kubernetes"]["pod"]["uid"], job.uid);
    }
    let m = metrics(&agent);
    assert_eq!(
        metric_value(&m, "meshtrail_kubernetes_unenriched_events_total", &[]),
        0.0
    );
    agent.kill();
}

#[test]
fn with_the_api_down_lines_flow_with_path_metadata_and_enrichment_recovers() {
    let node = Node::new("k8s-down");
    let server = K8sServer::start(NODE);
    let p = owned(pod("shop", "api-7f8d9c6b5-k2j4h", 1), "StatefulSet", "api");
    server.put_pod(&p);
    server.set_faults(K8sFaults {
        down: true,
        ..K8sFaults::default()
    });
    let agent = Agent::start(&config(&node, &server, "  initial_sync_timeout_secs: 1\n"));
    let mut w = log(&node, &p, "app", 5, "before");
    let docs = docs_of(&node, "api-7f8d9c6b5-k2j4h", 5);
    for d in &docs {
        // What the path says, nothing the API would.
        assert_eq!(d["kubernetes"]["namespace"], "shop");
        assert_eq!(d["kubernetes"]["pod"]["uid"], p.uid);
        assert!(d["kubernetes"].get("statefulset").is_none(), "{d}");
    }
    wait_metric(
        &agent,
        "meshtrail_kubernetes_unenriched_events_total",
        &[],
        5.0,
    );
    assert!(
        metric_value(
            &metrics(&agent),
            "meshtrail_kubernetes_api_requests_total",
            &[("code", "error")]
        ) >= 1.0
    );

    // Back, but the first answer is a 500: the client backs off and lists again.
    server.set_faults(K8sFaults {
        fail_next: 1,
        ..K8sFaults::default()
    });
    wait_metric(&agent, "meshtrail_kubernetes_synced", &[], 1.0);
    for _ in 0..3 {
        w.raw("2026-11-24T10:00:01.000000000Z stdout F after\n");
    }
    w.flush();
    let docs = docs_of(&node, "api-7f8d9c6b5-k2j4h", 8);
    let enriched = docs
        .iter()
        .filter(|d| d["kubernetes"]["statefulset"]["name"] == "api")
        .count();
    assert_eq!(enriched, 3, "lines after the recovery are enriched");
    // One of the two first lists got the 500 and was made again.
    eventually(LIMIT, "both lists answered", || {
        server.count("pods", "list") + server.count("namespaces", "list") == 3
    });
    wait_metric(
        &agent,
        "meshtrail_kubernetes_api_requests_total",
        &[("code", "500")],
        1.0,
    );
    agent.kill();
}

#[test]
fn the_kubelet_source_polls_pods() {
    let node = Node::new("k8s-kubelet");
    let server = K8sServer::start(NODE);
    let p = owned(pod("shop", "cart-0", 1), "StatefulSet", "cart");
    server.put_pod(&p);
    let cfg = node.config(&format!(
        "kubernetes:\n  source: kubelet\n  kubelet_url: {}\n  kubelet_poll_secs: 1\n  start_jitter_secs: 0\n",
        server.url
    ));
    let agent = Agent::start(&cfg);
    wait_metric(&agent, "meshtrail_kubernetes_synced", &[], 1.0);
    let _w = log(&node, &p, "app", 2, "hello");
    let docs = docs_of(&node, "cart-0", 2);
    assert_eq!(docs[0]["kubernetes"]["statefulset"]["name"], "cart");
    let r = server.requests();
    assert!(
        r.get(&("kubelet_pods".into(), "list".into()))
            .copied()
            .unwrap_or(0)
            >= 1
    );
    assert!(
        r.keys().all(|(res, _)| res == "kubelet_pods"),
        "the API server is spared: {r:?}"
    );
    agent.kill();
}

#[test]
fn peers_are_named_by_ip() {
    let node = Node::new("k8s-peers");
    let server = K8sServer::start(NODE);
    // The sidecar's pod on this node, and its client on another node.
    let mut web = owned(pod("shop", "web-0", 1), "StatefulSet", "web");
    web.ip = Some("10.44.1.27".into());
    web.containers = vec![("istio-proxy".into(), "istio/proxyv2:1.24.0".into())];
    let mut client = owned(pod("front", "frontend-0", 2), "StatefulSet", "frontend");
    client.node = "other-node".into();
    client.ip = Some("10.1.2.3".into());
    let mut host_net = pod("kube-system", "kube-proxy-x", 3);
    host_net.node = "other-node".into();
    host_net.ip = Some("192.168.0.11".into());
    host_net.host_network = true;
    for p in [&web, &client, &host_net] {
        server.put_pod(p);
    }
    let agent = Agent::start(&config(&node, &server, "  enrich_peers: true\n"));
    wait_metric(
        &agent,
        "meshtrail_kubernetes_cached_objects",
        &[("kind", "peers")],
        2.0,
    );
    // access_line: source 10.1.2.3 (frontend), upstream host 10.44.1.27 (web).
    let _w = log(&node, &web, "istio-proxy", 2, &access_line("peers", 1));
    let docs = docs_of(&node, "web-0", 2);
    assert_eq!(
        docs[0]["meshtrail"]["source"],
        serde_json::json!({"namespace": "front", "workload": "frontend"})
    );
    assert_eq!(
        docs[0]["meshtrail"]["destination"],
        serde_json::json!({"namespace": "shop", "workload": "web"})
    );
    assert_eq!(
        (
            server.count("peer_pods", "list"),
            server.count("peer_pods", "watch")
        ),
        (1, 1)
    );
    agent.kill();
}

#[test]
fn a_slow_api_server_never_holds_lines_back() {
    let node = Node::new("k8s-slow");
    let server = K8sServer::start(NODE);
    let p = owned(pod("shop", "slowpoke-0", 1), "StatefulSet", "slowpoke");
    server.put_pod(&p);
    server.set_faults(K8sFaults {
        delay: Some(Duration::from_secs(5)),
        ..K8sFaults::default()
    });
    let agent = Agent::start(&config(&node, &server, "  initial_sync_timeout_secs: 0\n"));
    let mut w = log(&node, &p, "app", 4, "early");
    // Shipped before the API answered, with what the path says.
    let docs = docs_of(&node, "slowpoke-0", 4);
    assert!(
        docs.iter()
            .all(|d| d["kubernetes"].get("statefulset").is_none())
    );
    assert_eq!(
        metric_value(&metrics(&agent), "meshtrail_kubernetes_synced", &[]),
        0.0,
        "the list was still on its way"
    );
    wait_metric(&agent, "meshtrail_kubernetes_synced", &[], 1.0);
    w.raw("2026-11-24T10:00:01.000000000Z stdout F late\n");
    w.flush();
    let docs = docs_of(&node, "slowpoke-0", 5);
    assert_eq!(
        docs.iter()
            .filter(|d| d["kubernetes"]["statefulset"]["name"] == "slowpoke")
            .count(),
        1
    );
    agent.kill();
}
