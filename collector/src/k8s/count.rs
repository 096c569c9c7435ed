//! A tower layer under the Kubernetes client that counts its requests by resource, verb and
//! status, so that what the agent costs the API server is on `/metrics`.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::KubeMetrics;

/// Wraps the client's HTTP service.
#[derive(Clone)]
pub struct CountLayer(pub Arc<KubeMetrics>);

impl<S> Layer<S> for CountLayer {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            metrics: self.0.clone(),
        }
    }
}

/// The wrapped service.
#[derive(Clone)]
pub struct Counted<S> {
    inner: S,
    metrics: Arc<KubeMetrics>,
}

/// `(resource, verb)` of a request: `/api/v1/pods?fieldSelector=spec.nodeName%3Dn&watch=true`
/// → `("pods", "watch")`; the kubelet's `/pods` → `("pods", "list")`.
pub fn classify<B>(req: &Request<B>) -> (&'static str, &'static str) {
    let path = req.uri().path().trim_end_matches('/');
    let query = req.uri().query().unwrap_or("");
    let resource = match path.rsplit('/').next() {
        // The cluster-wide pod watch of `enrich_peers` has no node selector.
        Some("pods") if path.starts_with("/api/") && !query.contains("spec.nodeName") => {
            "peer_pods"
        }
        Some("pods") => "pods",
        Some("namespaces") => "namespaces",
        _ => "other",
    };
    let watch = query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    let verb = if watch { "watch" } else { "list" };
    (resource, verb)
}

impl<S, B, ResBody> Service<Request<B>> for Counted<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (resource, verb) = classify(&req);
        let metrics = self.metrics.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await;
            metrics.request(
                resource,
                verb,
                res.as_ref().ok().map(|r| r.status().as_u16()),
            );
            res
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_by_resource_and_verb() {
        let req = |uri: &str| Request::get(uri).body(()).unwrap();
        assert_eq!(
            classify(&req(
                "/api/v1/pods?fieldSelector=spec.nodeName%3Dn&watch=true"
            )),
            ("pods", "watch")
        );
        assert_eq!(
            classify(&req("/api/v1/namespaces?resourceVersion=0")),
            ("namespaces", "list")
        );
        assert_eq!(classify(&req("/pods")), ("pods", "list"));
        assert_eq!(
            classify(&req("/api/v1/pods?watch=1&resourceVersion=7")),
            ("peer_pods", "watch")
        );
    }
}
