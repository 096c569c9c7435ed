//! Routing rules: events of some pods go to their own data stream namespace or index
//! prefix, as the Fluentd config's two `<match>` blocks sent the ingress and egress
//! gateways' logs to their own indices. A batch holds lines of one file, so one pod: it is
//! routed once, by the pod's gateway role and namespace.

use meshtrail_parsers::classify::Role;

use super::bulk::{Destination, check_name};
use crate::config::{ConfigError, RouteConfig, invalid};

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
    /// Validates `sink.routes` against the sink's mode (data streams or daily indices).
    pub fn from_config(
        cfgs: &[RouteConfig],
        default: &Destination,
    ) -> Result<Vec<Route>, ConfigError> {
        cfgs.iter()
            .map(|c| {
                let gateway = match c.gateway.as_deref() {
                    None => None,
                    Some("ingress") => Some(Role::Ingress),
                    Some("egress") => Some(Role::Egress),
                    Some("sidecar") => Some(Role::Sidecar),
                    Some(other) => {
                        return Err(invalid(
                            "sink.routes.gateway",
                            other,
                            "expected ingress, egress or sidecar",
                        ));
                    }
                };
                if gateway.is_none() && c.namespace.is_none() {
                    return Err(invalid(
                        "sink.routes",
                        "(a rule)",
                        "a rule needs gateway, namespace or both to match on",
                    ));
                }
                let destination = match (default, &c.data_stream_namespace, &c.logstash_prefix) {
                    (Destination::DataStream { .. }, Some(ns), None) => {
                        check_name(ns)
                            .map_err(|why| invalid("sink.routes.data_stream_namespace", ns, why))?;
                        Destination::DataStream {
                            namespace: ns.clone(),
                        }
                    }
                    (Destination::DailyIndex { .. }, None, Some(prefix)) => {
                        check_name(prefix)
                            .map_err(|why| invalid("sink.routes.logstash_prefix", prefix, why))?;
                        Destination::DailyIndex {
                            prefix: prefix.clone(),
                        }
                    }
                    (Destination::DataStream { .. }, ..) => {
                        return Err(invalid(
                            "sink.routes.data_stream_namespace",
                            "none",
                            "the sink writes data streams: each rule names its data_stream_namespace (and no logstash_prefix)",
                        ));
                    }
                    (Destination::DailyIndex { .. }, ..) => {
                        return Err(invalid(
                            "sink.routes.logstash_prefix",
                            "none",
                            "the sink writes daily indices (logstash_prefix): each rule names its logstash_prefix (and no data_stream_namespace)",
                        ));
                    }
                };
                Ok(Route {
                    gateway,
                    namespace: c.namespace.clone(),
                    destination,
                })
            })
            .collect()
    }

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
    /// The sink's rules and default destination.
    pub fn new(cfg: &crate::config::EsSettings) -> Router {
        Router {
            routes: cfg.routes.clone(),
            default: cfg.destination.clone(),
        }
    }

    /// Where a batch of the pod `key` goes.
    pub fn destination(&self, key: &RouteKey) -> &Destination {
        pick(&self.routes, &self.default, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(gateway: Option<&str>, namespace: Option<&str>, ds: &str) -> RouteConfig {
        RouteConfig {
            gateway: gateway.map(Into::into),
            namespace: namespace.map(Into::into),
            data_stream_namespace: Some(ds.into()),
            logstash_prefix: None,
        }
    }

    #[test]
    fn first_match_wins() {
        let default = Destination::DataStream {
            namespace: "default".into(),
        };
        let routes = Route::from_config(
            &[
                rule(Some("ingress"), None, "ingress"),
                rule(Some("egress"), None, "egress"),
                rule(None, Some("payments"), "pci"),
            ],
            &default,
        )
        .unwrap();
        let key = |g: Option<Role>, ns: &str| RouteKey {
            gateway: g,
            namespace: Some(ns.into()),
        };
        let ns = |d: &Destination| match d {
            Destination::DataStream { namespace } => namespace.clone(),
            Destination::DailyIndex { prefix } => prefix.clone(),
        };
        assert_eq!(
            ns(pick(
                &routes,
                &default,
                &key(Some(Role::Ingress), "istio-system")
            )),
            "ingress"
        );
        assert_eq!(
            ns(pick(
                &routes,
                &default,
                &key(Some(Role::Egress), "payments")
            )),
            "egress"
        );
        assert_eq!(
            ns(pick(
                &routes,
                &default,
                &key(Some(Role::Sidecar), "payments")
            )),
            "pci"
        );
        assert_eq!(ns(pick(&routes, &default, &key(None, "shop"))), "default");
    }

    #[test]
    fn rules_must_fit_the_mode() {
        let daily = Destination::DailyIndex {
            prefix: "logstash".into(),
        };
        let err = Route::from_config(&[rule(Some("ingress"), None, "ingress")], &daily)
            .unwrap_err()
            .to_string();
        assert!(err.contains("sink.routes.logstash_prefix"), "{err}");
        let ds = Destination::DataStream {
            namespace: "default".into(),
        };
        let err = Route::from_config(&[rule(Some("gw"), None, "x")], &ds)
            .unwrap_err()
            .to_string();
        assert!(err.contains("ingress, egress or sidecar"), "{err}");
        let err = Route::from_config(&[rule(None, None, "x")], &ds)
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs gateway, namespace"), "{err}");
        let err = Route::from_config(&[rule(Some("ingress"), None, "Bad-Name")], &ds)
            .unwrap_err()
            .to_string();
        assert!(err.contains("data_stream_namespace"), "{err}");
    }
}
