//! A Kubernetes API test server that follows the documented list and watch contract (rules
//! and real bodies in `shared/reference/api-fixtures/k8s/`): `PodList`/`NamespaceList` with a
//! string `resourceVersion` and items without `kind`, `limit`/`continue` paging, watches as
//! chunked streams of `{"type":…,"object":…}` lines ending in `\n`, synthetic `ADDED` events
//! for `resourceVersion` unset or `0`, replay after a given version, a too-old version
//! answered in-stream with an `ERROR` event carrying a `410 Expired` Status,
//! `timeoutSeconds`, and `fieldSelector=spec.nodeName=<node>`. Also the kubelet's `/pods`
//! (a `PodList` with empty list metadata).
//!
//! Faults: all connections dropped (the API unreachable), the next requests answered 500,
//! slow answers, every watch closed, history compacted so that resuming watches get 410.
//! Every request is counted by resource and verb.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Bytes, Frame};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::listener::Listener;

/// Faults the next requests meet.
#[derive(Clone, Debug, Default)]
pub struct K8sFaults {
    /// Close every connection unanswered, as an unreachable API server would look.
    pub down: bool,
    /// Answer this many next requests `500 InternalError`.
    pub fail_next: u32,
    /// Wait this long before answering.
    pub delay: Option<Duration>,
}

/// A pod to serve, shaped by [`PodSpec::to_json`] as the API server writes one.
#[derive(Clone, Debug)]
pub struct PodSpec {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID (a UUID: log paths carry it).
    pub uid: String,
    /// `spec.nodeName`.
    pub node: String,
    /// `status.podIP`.
    pub ip: Option<String>,
    /// Labels.
    pub labels: Vec<(String, String)>,
    /// Annotations.
    pub annotations: Vec<(String, String)>,
    /// The controller owner: (kind, name).
    pub owner: Option<(String, String)>,
    /// Containers: (name, image).
    pub containers: Vec<(String, String)>,
    /// `spec.hostNetwork`.
    pub host_network: bool,
}

impl PodSpec {
    /// A running pod with one container `app`.
    pub fn new(namespace: &str, name: &str, uid: &str, node: &str) -> PodSpec {
        PodSpec {
            namespace: namespace.into(),
            name: name.into(),
            uid: uid.into(),
            node: node.into(),
            ip: None,
            labels: Vec::new(),
            annotations: Vec::new(),
            owner: None,
            containers: vec![("app".into(), "registry.example/app:1.0".into())],
            host_network: false,
        }
    }

    /// The pod as the API server writes it (without `kind`/`apiVersion`, as in a list).
    pub fn to_json(&self, resource_version: u64) -> Value {
        let labels: serde_json::Map<String, Value> = self
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect();
        let annotations: serde_json::Map<String, Value> = self
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect();
        let mut metadata = json!({
            "name": self.name,
            "namespace": self.namespace,
            "uid": self.uid,
            "resourceVersion": resource_version.to_string(),
            "creationTimestamp": "2026-11-24T08:00:00Z",
            "labels": labels,
            "annotations": annotations,
        });
        if let Some((kind, name)) = &self.owner {
            let api_version = match kind.as_str() {
                "Job" | "CronJob" => "batch/v1",
                "Node" => "v1",
                _ => "apps/v1",
            };
            metadata["generateName"] = json!(format!("{name}-"));
            metadata["ownerReferences"] = json!([{
                "apiVersion": api_version, "kind": kind, "name": name,
                "uid": format!("{:0>36}", name.len()), "controller": true, "blockOwnerDeletion": true
            }]);
        }
        let containers: Vec<Value> = self
            .containers
            .iter()
            .map(|(name, image)| {
                json!({
                    "name": name, "image": image, "resources": {},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"
                })
            })
            .collect();
        let statuses: Vec<Value> = self
            .containers
            .iter()
            .enumerate()
            .map(|(i, (name, image))| {
                json!({
                    "name": name,
                    "state": {"running": {"startedAt": "2026-11-24T08:00:02Z"}},
                    "lastState": {}, "ready": true, "restartCount": 0,
                    "image": image, "imageID": format!("{image}@sha256:{:064x}", i),
                    "containerID": format!("containerd://{:064x}", i + 1),
                    "started": true
                })
            })
            .collect();
        let mut spec = json!({
            "volumes": [],
            "containers": containers,
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "serviceAccount": "default",
            "nodeName": self.node,
            "securityContext": {},
            "schedulerName": "default-scheduler",
            "priority": 0,
            "enableServiceLinks": true,
            "preemptionPolicy": "PreemptLowerPriority"
        });
        if self.host_network {
            spec["hostNetwork"] = json!(true);
        }
        let mut status = json!({
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastProbeTime": null,
                            "lastTransitionTime": "2026-11-24T08:00:03Z"}],
            "hostIP": "192.168.0.10",
            "hostIPs": [{"ip": "192.168.0.10"}],
            "startTime": "2026-11-24T08:00:00Z",
            "containerStatuses": statuses,
            "qosClass": "BestEffort"
        });
        if let Some(ip) = &self.ip {
            status["podIP"] = json!(ip);
            status["podIPs"] = json!([{"ip": ip}]);
        }
        json!({"metadata": metadata, "spec": spec, "status": status})
    }
}

/// A namespace as the API server writes it.
fn namespace_json(name: &str, labels: &[(String, String)], rv: u64) -> Value {
    let mut l = serde_json::Map::new();
    l.insert("kubernetes.io/metadata.name".into(), json!(name));
    for (k, v) in labels {
        l.insert(k.clone(), json!(v));
    }
    json!({
        "metadata": {"name": name, "uid": format!("{:0>36}", name.len()),
                     "resourceVersion": rv.to_string(),
                     "creationTimestamp": "2026-11-24T07:00:00Z", "labels": l},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"}
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Resource {
    Pods,
    Namespaces,
}

impl Resource {
    fn kind(self) -> &'static str {
        match self {
            Resource::Pods => "Pod",
            Resource::Namespaces => "Namespace",
        }
    }
}

struct Watcher {
    id: u64,
    resource: Resource,
    node: Option<String>,
    tx: mpsc::UnboundedSender<Bytes>,
}

#[derive(Default)]
struct World {
    rv: u64,
    /// uid → (node, object).
    pods: BTreeMap<String, (String, Value)>,
    namespaces: BTreeMap<String, Value>,
    /// (rv, resource, node of a pod, type, object with kind).
    history: Vec<(u64, Resource, Option<String>, &'static str, Value)>,
    /// Watches from before this version get 410.
    oldest: u64,
    watchers: Vec<Watcher>,
    next_watcher: u64,
    faults: K8sFaults,
    requests: HashMap<(String, String), u64>,
    kubelet_node: String,
}

fn with_kind(resource: Resource, mut object: Value) -> Value {
    if let Some(o) = object.as_object_mut() {
        let mut m = serde_json::Map::new();
        m.insert("kind".into(), json!(resource.kind()));
        m.insert("apiVersion".into(), json!("v1"));
        m.extend(std::mem::take(o));
        *o = m;
    }
    object
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut text = json!({"type": kind, "object": object}).to_string();
    text.push('\n');
    Bytes::from(text)
}

impl World {
    /// The objects of `resource` (pods on `node` when given), as lists carry them.
    fn objects(&self, resource: Resource, node: Option<&str>) -> Vec<Value> {
        match resource {
            Resource::Pods => self
                .pods
                .values()
                .filter(|(n, _)| node.is_none_or(|want| want == n))
                .map(|(_, p)| p.clone())
                .collect(),
            Resource::Namespaces => self.namespaces.values().cloned().collect(),
        }
    }

    fn publish(
        &mut self,
        resource: Resource,
        node: Option<String>,
        kind: &'static str,
        object: Value,
    ) {
        let object = with_kind(resource, object);
        let line = event_line(kind, &object);
        self.watchers.retain(|w| {
            if w.resource != resource || (w.node.is_some() && w.node != node) {
                return true;
            }
            w.tx.send(line.clone()).is_ok()
        });
        self.history.push((self.rv, resource, node, kind, object));
    }
}

type Reply = Response<BoxBody<Bytes, Infallible>>;

fn full(status: u16, body: &Value) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

/// A watch stream's body: lines from a channel, ended when the sender goes.
struct Stream(mpsc::UnboundedReceiver<Bytes>);

impl Body for Stream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

fn query(uri: &hyper::Uri) -> HashMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), decode(v)))
        .collect()
}

fn decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(c) => out.push(c),
                    Err(_) => out.extend_from_slice(&b[i..i + 3]),
                }
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn handle(world: &Arc<Mutex<World>>, uri: &hyper::Uri) -> Reply {
    let path = uri.path().trim_end_matches('/');
    let q = query(uri);
    let watch = matches!(q.get("watch").map(String::as_str), Some("true" | "1"));
    let mut w = world.lock().unwrap_or_else(PoisonError::into_inner);
    let node = q
        .get("fieldSelector")
        .and_then(|f| f.strip_prefix("spec.nodeName="))
        .map(str::to_owned);
    let (resource, name) = match path {
        "/api/v1/pods" => (
            Resource::Pods,
            if node.is_some() { "pods" } else { "peer_pods" },
        ),
        "/api/v1/namespaces" => (Resource::Namespaces, "namespaces"),
        "/pods" => {
            *w.requests
                .entry(("kubelet_pods".into(), "list".into()))
                .or_default() += 1;
            let node = w.kubelet_node.clone();
            let items: Vec<Value> = w
                .pods
                .values()
                .filter(|(n, _)| *n == node)
                .map(|(_, p)| p.clone())
                .collect();
            return full(
                200,
                &json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}),
            );
        }
        _ => {
            return full(
                404,
                &status(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                ),
            );
        }
    };
    let verb = if watch { "watch" } else { "list" };
    *w.requests
        .entry((name.to_owned(), verb.to_owned()))
        .or_default() += 1;
    if w.faults.fail_next > 0 {
        w.faults.fail_next -= 1;
        return full(
            500,
            &status(
                500,
                "InternalError",
                "Internal error occurred: the test server fails on purpose",
            ),
        );
    }
    if watch {
        return start_watch(world, &mut w, resource, node, &q);
    }
    let mut items = w.objects(resource, node.as_deref());
    // Pages: `continue` is the offset of the next item, at the list's version.
    let start: usize = q
        .get("continue")
        .and_then(|c| c.split_once(':'))
        .and_then(|(_, off)| off.parse().ok())
        .unwrap_or(0);
    let limit: usize = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let total = items.len();
    let end = start.saturating_add(limit).min(total);
    items = items
        .get(start..end)
        .map(<[Value]>::to_vec)
        .unwrap_or_default();
    let mut metadata = json!({"resourceVersion": w.rv.to_string()});
    if end < total {
        metadata["continue"] = json!(format!("{}:{end}", w.rv));
    }
    let kind = format!("{}List", resource.kind());
    full(
        200,
        &json!({"kind": kind, "apiVersion": "v1", "metadata": metadata, "items": items}),
    )
}

fn start_watch(
    world: &Arc<Mutex<World>>,
    w: &mut World,
    resource: Resource,
    node: Option<String>,
    q: &HashMap<String, String>,
) -> Reply {
    let (tx, rx) = mpsc::unbounded_channel();
    let from = q.get("resourceVersion").map(String::as_str).unwrap_or("");
    match from {
        "" | "0" => {
            for o in w.objects(resource, node.as_deref()) {
                let _ = tx.send(event_line("ADDED", &with_kind(resource, o)));
            }
        }
        v => {
            let v: u64 = v.parse().unwrap_or(0);
            if v < w.oldest {
                let message = format!("too old resource version: {v} ({})", w.oldest);
                let _ = tx.send(event_line("ERROR", &status(410, "Expired", &message)));
                drop(tx);
                return stream_reply(rx);
            }
            for (rv, r, n, kind, o) in &w.history {
                if *rv > v && *r == resource && (node.is_none() || *n == node) {
                    let _ = tx.send(event_line(kind, o));
                }
            }
        }
    }
    let id = w.next_watcher;
    w.next_watcher += 1;
    if let Some(t) = q.get("timeoutSeconds").and_then(|t| t.parse::<u64>().ok()) {
        // The server ends the watch after timeoutSeconds, whatever happens meanwhile.
        let world = world.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(t)).await;
            world
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .watchers
                .retain(|x| x.id != id);
        });
    }
    w.watchers.push(Watcher {
        id,
        resource,
        node,
        tx,
    });
    stream_reply(rx)
}

fn stream_reply(rx: mpsc::UnboundedReceiver<Bytes>) -> Reply {
    let mut r = Response::new(BoxBody::new(Stream(rx)));
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

/// A running server; stops when dropped.
pub struct K8sServer {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    world: Arc<Mutex<World>>,
    _listener: Listener,
}

impl K8sServer {
    /// Starts on `127.0.0.1` at an ephemeral port; `/pods` answers as the kubelet of
    /// `kubelet_node`.
    pub fn start(kubelet_node: &str) -> K8sServer {
        let world = Arc::new(Mutex::new(World {
            rv: 1000,
            kubelet_node: kubelet_node.to_owned(),
            ..World::default()
        }));
        let w2 = world.clone();
        let listener = Listener::start("127.0.0.1:0", move |stream| {
            let world = w2.clone();
            if world
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .faults
                .down
            {
                // Unreachable: the connection closes unanswered.
                return;
            }
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let world = world.clone();
                    async move {
                        let delay = world
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .faults
                            .delay;
                        if let Some(d) = delay {
                            tokio::time::sleep(d).await;
                        }
                        Ok::<_, Infallible>(handle(&world, req.uri()))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        });
        K8sServer {
            url: listener.url.clone(),
            world,
            _listener: listener,
        }
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds or replaces a pod (`ADDED` or `MODIFIED` to watchers).
    pub fn put_pod(&self, pod: &PodSpec) {
        let mut w = self.world();
        w.rv += 1;
        let rv = w.rv;
        let object = pod.to_json(rv);
        let kind = if w.pods.contains_key(&pod.uid) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        w.pods
            .insert(pod.uid.clone(), (pod.node.clone(), object.clone()));
        w.publish(Resource::Pods, Some(pod.node.clone()), kind, object);
    }

    /// Deletes a pod (`DELETED` to watchers).
    pub fn delete_pod(&self, uid: &str) {
        let mut w = self.world();
        let Some((node, mut object)) = w.pods.remove(uid) else {
            return;
        };
        w.rv += 1;
        object["metadata"]["resourceVersion"] = json!(w.rv.to_string());
        w.publish(Resource::Pods, Some(node), "DELETED", object);
    }

    /// Adds or replaces a namespace with these labels (besides
    /// `kubernetes.io/metadata.name`).
    pub fn put_namespace(&self, name: &str, labels: &[(&str, &str)]) {
        let mut w = self.world();
        w.rv += 1;
        let labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let object = namespace_json(name, &labels, w.rv);
        let kind = if w.namespaces.contains_key(name) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        w.namespaces.insert(name.to_owned(), object.clone());
        w.publish(Resource::Namespaces, None, kind, object);
    }

    /// Sets the faults for the next requests.
    pub fn set_faults(&self, faults: K8sFaults) {
        let mut w = self.world();
        let down = faults.down;
        w.faults = faults;
        if down {
            // Open watches break too.
            w.watchers.clear();
        }
    }

    /// Ends every open watch normally (as `timeoutSeconds` or an API-server restart does).
    pub fn close_watches(&self) {
        self.world().watchers.clear();
    }

    /// Compacts history: resuming a watch from any version seen so far gets `410 Gone`;
    /// open watches are closed so that they resume.
    pub fn expire(&self) {
        let mut w = self.world();
        // Other objects changed meanwhile: the cluster's version moved past every version
        // a client saw, and history up to it is compacted.
        w.rv += 1;
        w.oldest = w.rv;
        w.history.clear();
        w.watchers.clear();
    }

    /// Requests received: (resource, verb) → count. Resources are `pods` (with a node
    /// selector), `peer_pods` (without), `namespaces` and `kubelet_pods`.
    pub fn requests(&self) -> HashMap<(String, String), u64> {
        self.world().requests.clone()
    }

    /// Requests received for one resource and verb.
    pub fn count(&self, resource: &str, verb: &str) -> u64 {
        self.world()
            .requests
            .get(&(resource.to_owned(), verb.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// Open watch streams.
    pub fn open_watches(&self) -> usize {
        let mut w = self.world();
        w.watchers.retain(|x| !x.tx.is_closed());
        w.watchers.len()
    }

    /// A kubeconfig that points a client at this server.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n\
             contexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n\
             current-context: test\nusers:\n- name: test\n  user:\n    token: test-token\n",
            self.url
        )
    }
}

impl Drop for K8sServer {
    fn drop(&mut self) {
        // Open watch streams end, so that the listener's thread can stop.
        self.world().watchers.clear();
    }
}
