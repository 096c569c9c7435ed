//! Kubernetes metadata a log file's path carries: the kubelet's layout.
//!
//! * `/var/log/containers/<pod>_<namespace>_<container>-<container id>.log`, a symlink to
//! * `/var/log/pods/<namespace>_<pod>_<pod uid>/<container>/<restart>.log` (rotated to
//!   `<restart>.log.<time>`, older ones gzipped).
//!
//! See kubelet `pkg/kubelet/kuberuntime/helpers.go` (`BuildContainerLogsDirectory`) and
//! `pkg/kubelet/kuberuntime/kuberuntime_container.go` (`legacyLogSymlink`).

use std::path::Path;

/// What a path says of the container that wrote it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathMeta {
    /// `kubernetes.namespace`.
    pub namespace: Option<String>,
    /// `kubernetes.pod.name`.
    pub pod: Option<String>,
    /// `kubernetes.pod.uid`.
    pub pod_uid: Option<String>,
    /// `kubernetes.container.name`.
    pub container: Option<String>,
    /// `container.id`.
    pub container_id: Option<String>,
}

impl PathMeta {
    /// Reads what it can from the path a file was found at (`link`, a `/var/log/containers`
    /// symlink, if any) and the file itself (`target`).
    pub fn from_paths(link: Option<&Path>, target: &Path) -> PathMeta {
        let mut meta = PathMeta::default();
        if let Some(link) = link {
            meta.read_containers_link(link);
        }
        meta.read_pods_path(target);
        meta
    }

    fn read_containers_link(&mut self, link: &Path) {
        let Some(name) = link
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".log"))
        else {
            return;
        };
        let mut parts = name.splitn(3, '_');
        let (Some(pod), Some(ns), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
            return;
        };
        let Some((container, id)) = rest.rsplit_once('-') else {
            return;
        };
        if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            self.container_id = Some(id.to_owned());
        }
        self.pod = Some(pod.to_owned());
        self.namespace = Some(ns.to_owned());
        self.container = Some(container.to_owned());
    }

    fn read_pods_path(&mut self, target: &Path) {
        let mut comps = target
            .components()
            .rev()
            .filter_map(|c| c.as_os_str().to_str());
        let (Some(_file), Some(container), Some(pod_dir)) =
            (comps.next(), comps.next(), comps.next())
        else {
            return;
        };
        let mut parts = pod_dir.splitn(3, '_');
        let (Some(ns), Some(pod), Some(uid)) = (parts.next(), parts.next(), parts.next()) else {
            return;
        };
        // A pod uid is a UUID; anything else is not the kubelet's layout.
        if uid.len() != 36 || uid.bytes().filter(|b| *b == b'-').count() != 4 {
            return;
        }
        self.namespace = Some(ns.to_owned());
        self.pod = Some(pod.to_owned());
        self.pod_uid = Some(uid.to_owned());
        self.container = Some(container.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn kubelet_layout() {
        let link = format!(
            "/var/log/containers/istio-ingressgateway-5d4f_istio-system_istio-proxy-{ID}.log"
        );
        let target = "/var/log/pods/istio-system_istio-ingressgateway-5d4f_7e0b4c1a-2f7e-4d0e-9a57-0d2c8b1e6f00/istio-proxy/0.log";
        let m = PathMeta::from_paths(Some(Path::new(&link)), Path::new(target));
        assert_eq!(m.namespace.as_deref(), Some("istio-system"));
        assert_eq!(m.pod.as_deref(), Some("istio-ingressgateway-5d4f"));
        assert_eq!(
            m.pod_uid.as_deref(),
            Some("7e0b4c1a-2f7e-4d0e-9a57-0d2c8b1e6f00")
        );
        assert_eq!(m.container.as_deref(), Some("istio-proxy"));
        assert_eq!(m.container_id.as_deref(), Some(ID));
    }

    #[test]
    fn rotated_and_unknown_paths() {
        let rotated =
            "/var/log/pods/ns_pod_7e0b4c1a-2f7e-4d0e-9a57-0d2c8b1e6f00/c/0.log.20240101-000000.gz";
        assert_eq!(
            PathMeta::from_paths(None, Path::new(rotated))
                .container
                .as_deref(),
            Some("c")
        );
        assert_eq!(
            PathMeta::from_paths(None, Path::new("/tmp/app.log")),
            PathMeta::default()
        );
        assert_eq!(
            PathMeta::from_paths(Some(Path::new("/x/notkubelet.log")), Path::new("/a/b")),
            PathMeta::default()
        );
    }
}
