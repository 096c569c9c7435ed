//! A pod as the pipeline needs it: the few fields events carry, rendered to JSON once when
//! the pod changes, so that enriching a line is a copy. Pure: no I/O.
//!
//! The owning workload comes from the pod alone, without a request per pod:
//! * a ReplicaSet owner whose name is `<deployment>-<pod-template-hash>` (the Deployment
//!   controller names its ReplicaSets so, and stamps the hash on the pod's
//!   `pod-template-hash` label) names its Deployment;
//! * a Job owner whose name is `<cronjob>-<scheduled minute>` (the CronJob controller's
//!   naming: minutes since the epoch) names its CronJob;
//! * StatefulSet and DaemonSet owners are the workload; a pod without an owner is its own.
//!
//! Watching ReplicaSets and Jobs would answer the same question exactly, for the price of two
//! more cluster-wide watches on every node; the names above are how the controllers build
//! them.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use meshtrail_parsers::classify::Role;

use crate::document::write_str;

/// The container that writes Envoy's access logs in every Istio pod.
const PROXY_CONTAINER: &str = "istio-proxy";

/// What kind of controller owns a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkloadKind {
    /// Through its ReplicaSet.
    Deployment,
    /// A ReplicaSet not made by a Deployment.
    ReplicaSet,
    /// A StatefulSet.
    StatefulSet,
    /// A DaemonSet.
    DaemonSet,
    /// Through its Job.
    CronJob,
    /// A Job.
    Job,
    /// Another controller (an operator's custom resource).
    Other,
    /// No owner: the pod is its own workload.
    Pod,
}

/// One container of a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerInfo {
    /// `kubernetes.container.name`.
    pub name: String,
    /// `container.id`, from the pod status (`containerd://<id>` → `<id>`).
    pub id: Option<String>,
    /// `container.runtime`, the scheme of the status's container id.
    pub runtime: Option<String>,
    /// `container.image.name`.
    pub image: Option<String>,
    /// `"runtime":…,"image":{"name":…}`: members of the `container` object.
    pub rendered: Vec<u8>,
}

/// A pod, projected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInfo {
    /// `kubernetes.pod.uid`.
    pub uid: String,
    /// `kubernetes.namespace`.
    pub namespace: String,
    /// `kubernetes.pod.name`.
    pub name: String,
    /// `kubernetes.pod.ip`.
    pub ip: Option<IpAddr>,
    /// The owning workload's kind.
    pub workload_kind: WorkloadKind,
    /// Its name: the `workload` label of the metrics, `meshtrail.*.workload`.
    pub workload: String,
    /// The Istio gateway this pod is, from its `istio` label.
    pub gateway: Option<Role>,
    /// Its containers (init containers too).
    pub containers: Vec<ContainerInfo>,
    /// Members of the `kubernetes` object: `namespace`, `pod`, `node`, `labels`,
    /// `annotations`, the owner names.
    pub rendered: Vec<u8>,
}

impl PodInfo {
    /// Projects `pod`, copying the annotations whose keys are in `annotations`. `None` when
    /// the pod lacks a name, namespace or uid (never so from an API server).
    pub fn from_pod(pod: &Pod, annotations: &[String]) -> Option<PodInfo> {
        let meta = &pod.metadata;
        let (name, namespace, uid) = (
            meta.name.clone()?,
            meta.namespace.clone()?,
            meta.uid.clone()?,
        );
        let empty = BTreeMap::new();
        let labels = meta.labels.as_ref().unwrap_or(&empty);
        let status = pod.status.as_ref();
        let ip: Option<IpAddr> = status
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse().ok());
        let owner = Owner::of(pod, labels);
        let (workload_kind, workload) = match &owner {
            Some(o) => (o.workload_kind, o.workload.clone()),
            None => (WorkloadKind::Pod, name.clone()),
        };
        let gateway = match labels.get("istio").map(String::as_str) {
            Some("ingressgateway") => Some(Role::Ingress),
            Some("egressgateway") => Some(Role::Egress),
            _ => None,
        };

        let mut out = Vec::with_capacity(256);
        let key = |out: &mut Vec<u8>, k: &str| {
            if !out.is_empty() {
                out.push(b',');
            }
            write_str(out, k);
            out.push(b':');
        };
        key(&mut out, "namespace");
        write_str(&mut out, &namespace);
        key(&mut out, "pod");
        out.extend_from_slice(b"{\"name\":");
        write_str(&mut out, &name);
        out.extend_from_slice(b",\"uid\":");
        write_str(&mut out, &uid);
        if let Some(ip) = &ip {
            out.extend_from_slice(b",\"ip\":");
            write_str(&mut out, &ip.to_string());
        }
        out.push(b'}');
        if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            key(&mut out, "node");
            out.extend_from_slice(b"{\"name\":");
            write_str(&mut out, node);
            out.push(b'}');
        }
        if !labels.is_empty() {
            key(&mut out, "labels");
            render_dedotted(&mut out, labels.iter());
        }
        if let Some(all) = &meta.annotations {
            let kept = all.iter().filter(|(k, _)| annotations.contains(k));
            if kept.clone().next().is_some() {
                key(&mut out, "annotations");
                render_dedotted(&mut out, kept);
            }
        }
        if let Some(o) = &owner {
            for (kind, name) in o.names() {
                key(&mut out, kind);
                out.extend_from_slice(b"{\"name\":");
                write_str(&mut out, name);
                out.push(b'}');
            }
        }

        let statuses = status.into_iter().flat_map(|s| {
            s.container_statuses
                .iter()
                .flatten()
                .chain(s.init_container_statuses.iter().flatten())
        });
        let spec = pod.spec.iter().flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        });
        let containers = spec
            .map(|c| {
                let st = statuses.clone().find(|s| s.name == c.name);
                let (runtime, id) = match st.and_then(|s| s.container_id.as_deref()) {
                    Some(full) => match full.split_once("://") {
                        Some((rt, id)) => (Some(rt.to_owned()), Some(id.to_owned())),
                        None => (None, Some(full.to_owned())),
                    },
                    None => (None, None),
                };
                let image = c.image.clone().or_else(|| st.map(|s| s.image.clone()));
                let mut rendered = Vec::new();
                if let Some(rt) = &runtime {
                    rendered.extend_from_slice(b"\"runtime\":");
                    write_str(&mut rendered, rt);
                }
                if let Some(img) = &image {
                    if !rendered.is_empty() {
                        rendered.push(b',');
                    }
                    rendered.extend_from_slice(b"\"image\":{\"name\":");
                    write_str(&mut rendered, img);
                    rendered.push(b'}');
                }
                ContainerInfo {
                    name: c.name.clone(),
                    id,
                    runtime,
                    image,
                    rendered,
                }
            })
            .collect();

        Some(PodInfo {
            uid,
            namespace,
            name,
            ip,
            workload_kind,
            workload,
            gateway,
            containers,
            rendered: out,
        })
    }

    /// The proxy role of `container` in this pod: the gateway the pod is, or a sidecar,
    /// when it is the `istio-proxy` container.
    pub fn role(&self, container: &str) -> Option<Role> {
        (container == PROXY_CONTAINER).then(|| self.gateway.unwrap_or(Role::Sidecar))
    }

    /// Heap bytes this projection holds, for the cache-size gauge.
    pub fn heap_bytes(&self) -> usize {
        self.uid.capacity()
            + self.namespace.capacity()
            + self.name.capacity()
            + self.workload.capacity()
            + self.rendered.capacity()
            + self
                .containers
                .iter()
                .map(|c| {
                    std::mem::size_of::<ContainerInfo>()
                        + c.name.capacity()
                        + c.id.as_ref().map_or(0, String::capacity)
                        + c.runtime.as_ref().map_or(0, String::capacity)
                        + c.image.as_ref().map_or(0, String::capacity)
                        + c.rendered.capacity()
                })
                .sum::<usize>()
    }
}

/// `{"k":"v",…}` with `.` in keys replaced by `_`, so `app` and `app.kubernetes.io/name`
/// never collide in an Elasticsearch mapping.
fn render_dedotted<'a>(out: &mut Vec<u8>, kv: impl Iterator<Item = (&'a String, &'a String)>) {
    out.push(b'{');
    for (i, (k, v)) in kv.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, &dedot(k));
        out.push(b':');
        write_str(out, v);
    }
    out.push(b'}');
}

/// A label or annotation key as a field name: `.` → `_`.
pub fn dedot(key: &str) -> std::borrow::Cow<'_, str> {
    if key.contains('.') {
        std::borrow::Cow::Owned(key.replace('.', "_"))
    } else {
        std::borrow::Cow::Borrowed(key)
    }
}

/// A namespace's labels, rendered: the value of `kubernetes.namespace_labels`.
pub fn namespace_labels(ns: &Namespace) -> Option<(String, Vec<u8>)> {
    let name = ns.metadata.name.clone()?;
    let labels = ns.metadata.labels.as_ref().filter(|l| !l.is_empty());
    let mut out = Vec::new();
    if let Some(labels) = labels {
        render_dedotted(&mut out, labels.iter());
    }
    Some((name, out))
}

/// The controller that owns a pod and the workload behind it.
struct Owner {
    workload_kind: WorkloadKind,
    workload: String,
    /// The direct owner: (field, name), e.g. `("replicaset", "web-5d4f")`.
    direct: Option<(&'static str, String)>,
}

impl Owner {
    fn of(pod: &Pod, labels: &BTreeMap<String, String>) -> Option<Owner> {
        let refs = pod.metadata.owner_references.as_ref()?;
        let r = refs
            .iter()
            .find(|r| r.controller == Some(true))
            .or_else(|| refs.first())?;
        let name = r.name.clone();
        Some(match r.kind.as_str() {
            "ReplicaSet" => {
                let deployment = labels
                    .get("pod-template-hash")
                    .and_then(|h| name.strip_suffix(h.as_str()))
                    .and_then(|n| n.strip_suffix('-'))
                    .filter(|n| !n.is_empty());
                match deployment {
                    Some(d) => Owner {
                        workload_kind: WorkloadKind::Deployment,
                        workload: d.to_owned(),
                        direct: Some(("replicaset", name)),
                    },
                    None => Owner {
                        workload_kind: WorkloadKind::ReplicaSet,
                        workload: name.clone(),
                        direct: Some(("replicaset", name)),
                    },
                }
            }
            "StatefulSet" => Owner {
                workload_kind: WorkloadKind::StatefulSet,
                workload: name,
                direct: None,
            },
            "DaemonSet" => Owner {
                workload_kind: WorkloadKind::DaemonSet,
                workload: name,
                direct: None,
            },
            "Job" => match cronjob_of(&name) {
                Some(c) => Owner {
                    workload_kind: WorkloadKind::CronJob,
                    workload: c.to_owned(),
                    direct: Some(("job", name)),
                },
                None => Owner {
                    workload_kind: WorkloadKind::Job,
                    workload: name.clone(),
                    direct: Some(("job", name)),
                },
            },
            _ => Owner {
                workload_kind: WorkloadKind::Other,
                workload: name,
                direct: None,
            },
        })
    }

    /// `(field, name)` pairs to write under `kubernetes`.
    fn names(&self) -> impl Iterator<Item = (&'static str, &str)> {
        let top = match self.workload_kind {
            WorkloadKind::Deployment => Some("deployment"),
            WorkloadKind::StatefulSet => Some("statefulset"),
            WorkloadKind::DaemonSet => Some("daemonset"),
            WorkloadKind::CronJob => Some("cronjob"),
            // The direct owner already names them.
            WorkloadKind::ReplicaSet
            | WorkloadKind::Job
            | WorkloadKind::Other
            | WorkloadKind::Pod => None,
        };
        top.map(|k| (k, self.workload.as_str()))
            .into_iter()
            .chain(self.direct.as_ref().map(|(k, n)| (*k, n.as_str())))
    }
}

/// The CronJob a Job belongs to, when its name is `<cronjob>-<minutes since the epoch>`:
/// eight digits from 2015 (23,667,840) on.
fn cronjob_of(job: &str) -> Option<&str> {
    let (base, suffix) = job.rsplit_once('-')?;
    let minutes: u64 = suffix.parse().ok()?;
    (suffix.len() >= 8 && minutes >= 23_667_840 && !base.is_empty()).then_some(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    /// The documentation's Deployment-owned pod (`api-fixtures/k8s`), trimmed.
    fn deployment_pod() -> Pod {
        pod(serde_json::json!({
            "metadata": {
                "name": "nginx-deployment-67d4bdd6f5-w6kd7",
                "generateName": "nginx-deployment-67d4bdd6f5-",
                "namespace": "default",
                "uid": "a6501da1-0447-4262-98eb-c03d4002222e",
                "labels": {"app": "nginx", "pod-template-hash": "67d4bdd6f5",
                           "app.kubernetes.io/name": "web"},
                "annotations": {"sidecar.istio.io/status": "{}", "team": "shop"},
                "ownerReferences": [{"apiVersion": "apps/v1", "blockOwnerDeletion": true,
                    "controller": true, "kind": "ReplicaSet",
                    "name": "nginx-deployment-67d4bdd6f5",
                    "uid": "7d41dfd4-84c0-4be4-88ab-cedbe626ad82"}]
            },
            "spec": {"containers": [{"name": "nginx", "image": "nginx"},
                                    {"name": "istio-proxy", "image": "istio/proxyv2:1.24.0"}],
                     "nodeName": "kube-worker-1"},
            "status": {"podIP": "10.244.1.6",
                "containerStatuses": [{"name": "nginx", "image": "docker.io/library/nginx:latest",
                    "imageID": "x", "ready": true, "restartCount": 0,
                    "containerID": "containerd://20da4ef0c1e2b6c8e7d2ec0d2f6e2f1b3a4c5d6e7f8091a2b3c4d5e6f7a8b9c0"}]}
        }))
    }

    #[test]
    fn deployment_through_its_replicaset() {
        let p = PodInfo::from_pod(&deployment_pod(), &["team".to_owned()]).unwrap();
        assert_eq!(p.workload_kind, WorkloadKind::Deployment);
        assert_eq!(p.workload, "nginx-deployment");
        assert_eq!(p.ip, Some("10.244.1.6".parse().unwrap()));
        let json: serde_json::Value =
            serde_json::from_slice(&[b"{", &p.rendered[..], b"}"].concat()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "namespace": "default",
                "pod": {"name": "nginx-deployment-67d4bdd6f5-w6kd7",
                        "uid": "a6501da1-0447-4262-98eb-c03d4002222e", "ip": "10.244.1.6"},
                "node": {"name": "kube-worker-1"},
                "labels": {"app": "nginx", "pod-template-hash": "67d4bdd6f5",
                           "app_kubernetes_io/name": "web"},
                "annotations": {"team": "shop"},
                "deployment": {"name": "nginx-deployment"},
                "replicaset": {"name": "nginx-deployment-67d4bdd6f5"}
            })
        );
        let c = p.containers.iter().find(|c| c.name == "nginx").unwrap();
        assert_eq!(c.runtime.as_deref(), Some("containerd"));
        assert_eq!(c.id.as_deref().map(str::len), Some(64));
        assert_eq!(
            String::from_utf8_lossy(&c.rendered),
            r#""runtime":"containerd","image":{"name":"nginx"}"#
        );
        assert_eq!(p.role("istio-proxy"), Some(Role::Sidecar));
        assert_eq!(p.role("nginx"), None);
    }

    fn owned(kind: &str, name: &str, labels: serde_json::Value) -> PodInfo {
        PodInfo::from_pod(
            &pod(serde_json::json!({
                "metadata": {"name": "p", "namespace": "n", "uid": "u", "labels": labels,
                    "ownerReferences": [{"apiVersion": "v1", "kind": kind, "name": name,
                                         "uid": "o", "controller": true}]},
            })),
            &[],
        )
        .unwrap()
    }

    #[test]
    fn every_owner_kind() {
        let none = serde_json::json!({});
        let cases = [
            (
                owned("StatefulSet", "db", none.clone()),
                WorkloadKind::StatefulSet,
                "db",
            ),
            (
                owned("DaemonSet", "fluentd", none.clone()),
                WorkloadKind::DaemonSet,
                "fluentd",
            ),
            (
                owned("Job", "backup-29400000", none.clone()),
                WorkloadKind::CronJob,
                "backup",
            ),
            (
                owned("Job", "migrate-7", none.clone()),
                WorkloadKind::Job,
                "migrate-7",
            ),
            (
                // Not made by a Deployment: no pod-template-hash suffix.
                owned(
                    "ReplicaSet",
                    "legacy",
                    serde_json::json!({"pod-template-hash": "abc"}),
                ),
                WorkloadKind::ReplicaSet,
                "legacy",
            ),
            (
                owned("Rollout", "canary", none),
                WorkloadKind::Other,
                "canary",
            ),
        ];
        for (p, kind, workload) in cases {
            assert_eq!((p.workload_kind, p.workload.as_str()), (kind, workload));
        }
        let cron = owned("Job", "backup-29400000", serde_json::json!({}));
        let text = String::from_utf8(cron.rendered).unwrap();
        assert!(
            text.ends_with(r#""cronjob":{"name":"backup"},"job":{"name":"backup-29400000"}"#),
            "{text}"
        );
        let bare = PodInfo::from_pod(
            &pod(serde_json::json!({"metadata": {"name": "solo", "namespace": "n", "uid": "u"}})),
            &[],
        )
        .unwrap();
        assert_eq!(
            (bare.workload_kind, bare.workload.as_str()),
            (WorkloadKind::Pod, "solo")
        );
    }

    #[test]
    fn gateways_by_label() {
        let mut p = deployment_pod();
        let labels = p.metadata.labels.get_or_insert_default();
        labels.insert("istio".into(), "ingressgateway".into());
        let info = PodInfo::from_pod(&p, &[]).unwrap();
        assert_eq!(info.role("istio-proxy"), Some(Role::Ingress));
        let labels = p.metadata.labels.get_or_insert_default();
        labels.insert("istio".into(), "egressgateway".into());
        let info = PodInfo::from_pod(&p, &[]).unwrap();
        assert_eq!(info.role("istio-proxy"), Some(Role::Egress));
    }

    #[test]
    fn namespace_labels_dedotted() {
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "shop", "labels": {"istio.io/rev": "1-24",
                                                    "kubernetes.io/metadata.name": "shop"}}
        }))
        .unwrap();
        let (name, text) = namespace_labels(&ns).unwrap();
        assert_eq!(name, "shop");
        assert_eq!(
            String::from_utf8(text).unwrap(),
            r#"{"istio_io/rev":"1-24","kubernetes_io/metadata_name":"shop"}"#
        );
    }
}
