//! Routing rules: events of some pods go to their own data stream namespace or index
//! prefix, as the Fluentd config's two `<match>` blocks sent the ingress and egress
//! gateways' logs to their own indices. A batch holds lines of one file, so one pod: it is
//! routed once, by the pod's gateway role and namespace.

use meshtrail_parsers::classify::Role;

use super::bulk::Destination;

/// What a batch is routed by.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteKey {
    /// `meshtrail.gateway` of the file's container.
    pub gateway: Option<Role>,
    /// `kubernetes.namespace` of the file's pod.
    pub namespace: Option<String>,
}

/// One rule: who matches and where they go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Match this gateway role, if set.
    pub gateway: Option<Role>,
    /// Match this namespace, if set.
    pub namespace: Option<String>,
    /// Where matching events go.
    pub destination: Destination,
}

impl Route {
    fn matches(&self, key: &RouteKey) -> bool {
        self.gateway.is_none_or(|g| key.gateway == Some(g))
            && self
                .namespace
                .as_ref()
                .is_none_or(|ns| key.namespace.as_ref() == Some(ns))
    }
}

/// The destination of a batch: the first rule it matches, else `default`.
pub fn pick<'a>(routes: &'a [Route], default: &'a Destination, key: &RouteKey) -> &'a Destination {
    routes
        .iter()
        .find(|r| r.matches(key))
        .map_or(default, |r| &r.destination)
}

/// Where the workers send a batch's documents: the routing rules, then the default.
#[derive(Clone, Debug)]
pub struct Router {
    routes: Vec<Route>,
    default: Destination,
}

impl Router {
    /// The sink's rules, first match wins, and where the rest goes.
    pub fn new(routes: Vec<Route>, default: Destination) -> Router {
        Router { routes, default }
    }

    /// Where a batch of the pod `key` goes.
    pub fn destination(&self, key: &RouteKey) -> &Destination {
        pick(&self.routes, &self.default, key)
    }
}
