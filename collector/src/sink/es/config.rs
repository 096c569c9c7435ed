//! `sink:` for Elasticsearch as written and validated: where the cluster is, how the agent
//! authenticates, how bulk requests are sized and where refused documents go. Every file
//! the sink will need (CA, client certificate, secrets, the dead-letter file) is opened
//! here, so a bad one stops the agent before it reads a line.

use std::path::{Path, PathBuf};

use meshtrail_parsers::classify::Role;
use serde::Deserialize;

use super::bulk::{Destination, check_name};
use super::route::Route;
use crate::config_error::{ConfigError, Env, invalid};

/// `sink:` with `type: elasticsearch`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EsConfig {
    /// The cluster's URL, e.g. `http://elasticsearch:9200`.
    pub url: Option<String>,
    /// The data stream namespace (`logs-meshtrail.access-<namespace>`).
    /// Default `default`.
    pub namespace: Option<String>,
    /// Write daily indices `<prefix>-YYYY.MM.DD` instead of data
    /// streams (as the Fluentd config's `logstash_format`).
    pub logstash_prefix: Option<String>,
    /// Basic-auth user; the password comes from `password_file` or
    /// `$MESHTRAIL_ES_PASSWORD`.
    pub username: Option<String>,
    /// File holding the password (a mounted Secret).
    pub password_file: Option<PathBuf>,
    /// File holding an API key (`id:key` encoded, as Elasticsearch
    /// returns it); or `$MESHTRAIL_ES_API_KEY`.
    pub api_key_file: Option<PathBuf>,
    /// Gzip request bodies. Default true.
    pub gzip: Option<bool>,
    /// Which gzip writer, `meshtrail` (default) or `zlib`.
    pub gzip_writer: Option<String>,
    /// Largest bulk request body before compression, bytes. Default 5 MiB.
    pub max_batch_bytes: Option<usize>,
    /// Most documents per bulk request. Default 5000.
    pub max_batch_docs: Option<usize>,
    /// The most bulk requests in flight at once (how many are adapts
    /// to Elasticsearch's answers). Default 8.
    pub max_concurrent_requests: Option<usize>,
    /// The dead-letter file. Default `<data_dir>/dead-letters.ndjson`.
    pub dead_letter_path: Option<PathBuf>,
    /// Install the ILM policy and templates at start. Default true.
    pub install_templates: Option<bool>,
    /// An Elastic Cloud ID, instead of `url`.
    pub cloud_id: Option<String>,
    /// File holding a bearer token (a service account token); or
    /// `$MESHTRAIL_ES_BEARER_TOKEN`.
    pub bearer_token_file: Option<PathBuf>,
    /// PEM bundle of CAs to trust besides the system's.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for clusters that ask for one.
    pub client_cert_file: Option<PathBuf>,
    /// The client certificate's PEM key.
    pub client_key_file: Option<PathBuf>,
    /// Accept any server certificate. Default false; warned about.
    pub tls_insecure_skip_verify: Option<bool>,
    /// Where events of some pods go instead, first match wins.
    pub routes: Option<Vec<RouteConfig>>,
    /// `elasticsearch` (default) or `opensearch` (ISM instead of ILM,
    /// `flat_object` instead of `flattened`).
    pub distribution: Option<String>,
    /// Days before the lifecycle policy deletes data. Default 30.
    pub retention_days: Option<u32>,
}

/// One of `sink.routes`: events of pods that match go to their own data stream namespace
/// or index prefix (the Fluentd config's per-gateway `<match>` blocks).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteConfig {
    /// Match `meshtrail.gateway`: `ingress`, `egress` or `sidecar`.
    pub gateway: Option<String>,
    /// Match `kubernetes.namespace`.
    pub namespace: Option<String>,
    /// With data streams: the namespace part, `logs-meshtrail.access-<this>`.
    pub data_stream_namespace: Option<String>,
    /// With daily indices: the prefix, `<this>-YYYY.MM.DD`.
    pub logstash_prefix: Option<String>,
}

/// A credential that is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The Elasticsearch sink, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EsSettings {
    /// Base URL, without a trailing `/`.
    pub url: String,
    /// Data streams or daily indices.
    pub destination: Destination,
    /// The `Authorization` header value.
    pub authorization: Option<Secret>,
    /// Gzip bodies.
    pub gzip: bool,
    /// With which writer.
    pub gzip_writer: super::gzip::Writer,
    /// Batch bounds.
    pub max_batch_bytes: usize,
    /// Batch bounds.
    pub max_batch_docs: usize,
    /// Bulk requests in flight at once.
    pub max_concurrent_requests: usize,
    /// Dead letters.
    pub dead_letter_path: PathBuf,
    /// Install templates at start.
    pub install_templates: bool,
    /// TLS.
    pub tls: super::connect::Tls,
    /// Routing rules, first match wins; the rest goes to `destination`.
    pub routes: Vec<Route>,
    /// OpenSearch rather than Elasticsearch.
    pub opensearch: bool,
    /// Retention of the lifecycle policy, days.
    pub retention_days: u32,
}

/// Whether a file can be appended to at `path`: it is, or its directory is (or can be made)
/// one where files can be created. Checked by doing it: open for appending, or create and
/// remove a probe file in the nearest existing directory.
fn writable(path: &Path) -> Result<(), String> {
    if path.is_dir() {
        return Err("is a directory; expected a file path".into());
    }
    if path.exists() {
        return std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map(drop)
            .map_err(|e| format!("cannot open it for appending: {e}"));
    }
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d.as_os_str().is_empty() {
            dir = Some(Path::new("."));
            continue;
        }
        if d.is_dir() {
            let probe = d.join(format!(".meshtrail-write-check-{}", std::process::id()));
            return std::fs::File::create(&probe)
                .map(|_| {
                    let _ = std::fs::remove_file(&probe);
                })
                .map_err(|e| format!("cannot create files under {}: {e}", d.display()));
        }
        if d.exists() {
            return Err(format!("{} is not a directory", d.display()));
        }
        dir = d.parent();
    }
    Err("no directory of it exists".into())
}

/// Standard base64 (RFC 4648) of `bytes`, for basic authentication.
fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl EsConfig {
    /// Applies the defaults (files under `data_dir`) and the environment (secrets), checks
    /// every value and opens every file the sink will need.
    pub fn validate(self, data_dir: &Path, env: Env<'_>) -> Result<EsSettings, ConfigError> {
        let s = self;
        let url = match (&s.url, &s.cloud_id) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "sink.cloud_id",
                    "(set)",
                    "give url or cloud_id, not both",
                ));
            }
            (Some(u), None) => u.clone(),
            (None, Some(id)) => super::connect::cloud_id_url(id)
                .map_err(|why| invalid("sink.cloud_id", "(set)", why))?,
            (None, None) => {
                return Err(invalid(
                    "sink.url",
                    "none",
                    "the elasticsearch sink needs the cluster's URL (e.g. https://elasticsearch:9200) or cloud_id",
                ));
            }
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid(
                "sink.url",
                &url,
                "expected http://host:port or https://host:port",
            ));
        }
        let client_cert = match (&s.client_cert_file, &s.client_key_file) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            (None, None) => None,
            (c, _) => {
                return Err(invalid(
                    if c.is_some() {
                        "sink.client_key_file"
                    } else {
                        "sink.client_cert_file"
                    },
                    "none",
                    "a client certificate needs both client_cert_file and client_key_file",
                ));
            }
        };
        let tls = super::connect::Tls {
            ca_file: s.ca_file.clone(),
            client_cert,
            insecure_skip_verify: s.tls_insecure_skip_verify.unwrap_or(false),
        };
        // Opened now, not when the sink starts: a bad file stops the agent before
        // it reads a line.
        super::connect::check_files(&tls)
            .map_err(|(field, path, why)| invalid(field, path, why))?;
        let destination = match &s.logstash_prefix {
            Some(prefix) => {
                check_name(prefix).map_err(|why| invalid("sink.logstash_prefix", prefix, why))?;
                Destination::DailyIndex {
                    prefix: prefix.clone(),
                }
            }
            None => {
                let ns = s.namespace.clone().unwrap_or_else(|| "default".to_owned());
                check_name(&ns).map_err(|why| invalid("sink.namespace", &ns, why))?;
                Destination::DataStream { namespace: ns }
            }
        };
        let read_secret = |field: &'static str,
                           path: &Option<PathBuf>,
                           var: &str|
         -> Result<Option<String>, ConfigError> {
            if let Some(p) = path {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| invalid(field, p, format!("cannot read it: {e}")))?;
                return Ok(Some(text.trim().to_owned()));
            }
            Ok(env(var).filter(|v| !v.is_empty()))
        };
        let api_key = read_secret("sink.api_key_file", &s.api_key_file, "MESHTRAIL_ES_API_KEY")?;
        let bearer = read_secret(
            "sink.bearer_token_file",
            &s.bearer_token_file,
            "MESHTRAIL_ES_BEARER_TOKEN",
        )?;
        let authorization = match (&s.username, api_key, bearer) {
            (Some(user), None, None) => {
                let password = read_secret(
                    "sink.password_file",
                    &s.password_file,
                    "MESHTRAIL_ES_PASSWORD",
                )?
                .ok_or_else(|| {
                    invalid(
                        "sink.password_file",
                        "none",
                        "a username needs password_file or $MESHTRAIL_ES_PASSWORD",
                    )
                })?;
                Some(Secret(format!(
                    "Basic {}",
                    base64(format!("{user}:{password}").as_bytes())
                )))
            }
            (None, Some(key), None) => Some(Secret(format!("ApiKey {key}"))),
            (None, None, Some(token)) => Some(Secret(format!("Bearer {token}"))),
            (None, None, None) => None,
            _ => {
                return Err(invalid(
                    "sink.username/api_key_file/bearer_token_file",
                    "(several set)",
                    "give one of: username and password, an API key, a bearer token",
                ));
            }
        };
        let opensearch = match s.distribution.as_deref() {
            None | Some("elasticsearch") => false,
            Some("opensearch") => true,
            Some(other) => {
                return Err(invalid(
                    "sink.distribution",
                    other,
                    "expected elasticsearch or opensearch",
                ));
            }
        };
        if opensearch
            && authorization
                .as_ref()
                .is_some_and(|a| a.0.starts_with("ApiKey "))
        {
            return Err(invalid(
                "sink.api_key_file",
                "(set)",
                "OpenSearch has no Elasticsearch API keys: use username and password, or a bearer token",
            ));
        }
        let retention_days = s.retention_days.unwrap_or(30);
        if !(1..=3650).contains(&retention_days) {
            return Err(invalid(
                "sink.retention_days",
                retention_days,
                "expected 1 to 3650 days",
            ));
        }
        let routes = routes(s.routes.as_deref().unwrap_or_default(), &destination)?;
        let max_batch_bytes = s.max_batch_bytes.unwrap_or(5 << 20);
        if !((64 << 10)..=(100 << 20)).contains(&max_batch_bytes) {
            return Err(invalid(
                "sink.max_batch_bytes",
                max_batch_bytes,
                "expected 65536 to 104857600 (Elasticsearch refuses bodies over http.max_content_length, 100mb by default)",
            ));
        }
        let max_batch_docs = s.max_batch_docs.unwrap_or(5000);
        if !(1..=100_000).contains(&max_batch_docs) {
            return Err(invalid(
                "sink.max_batch_docs",
                max_batch_docs,
                "expected 1 to 100000",
            ));
        }
        let max_concurrent_requests = s.max_concurrent_requests.unwrap_or(8);
        if !(1..=32).contains(&max_concurrent_requests) {
            return Err(invalid(
                "sink.max_concurrent_requests",
                max_concurrent_requests,
                "expected 1 to 32",
            ));
        }
        Ok(EsSettings {
            url: url.trim_end_matches('/').to_owned(),
            destination,
            authorization,
            gzip: s.gzip.unwrap_or(true),
            gzip_writer: match s.gzip_writer.as_deref() {
                None | Some("meshtrail") => super::gzip::Writer::Meshtrail,
                Some("zlib") => super::gzip::Writer::Zlib,
                Some(other) => {
                    return Err(invalid(
                        "sink.gzip_writer",
                        other,
                        "expected meshtrail (the agent's own deflate writer) or zlib (zlib-rs through flate2, level 1)",
                    ));
                }
            },
            max_batch_bytes,
            max_batch_docs,
            max_concurrent_requests,
            dead_letter_path: {
                let path = s
                    .dead_letter_path
                    .clone()
                    .unwrap_or_else(|| data_dir.join("dead-letters.ndjson"));
                writable(&path).map_err(|why| invalid("sink.dead_letter_path", &path, why))?;
                path
            },
            install_templates: s.install_templates.unwrap_or(true),
            tls,
            routes,
            opensearch,
            retention_days,
        })
    }
}

/// Validates `sink.routes` against the sink's mode (data streams or daily indices).
fn routes(cfgs: &[RouteConfig], default: &Destination) -> Result<Vec<Route>, ConfigError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::es::route::{RouteKey, pick};

    #[test]
    fn basic_credentials_are_standard_base64() {
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
    }

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
        let routes = routes(
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
        let err = routes(&[rule(Some("ingress"), None, "ingress")], &daily)
            .unwrap_err()
            .to_string();
        assert!(err.contains("sink.routes.logstash_prefix"), "{err}");
        let ds = Destination::DataStream {
            namespace: "default".into(),
        };
        let err = routes(&[rule(Some("gw"), None, "x")], &ds)
            .unwrap_err()
            .to_string();
        assert!(err.contains("ingress, egress or sidecar"), "{err}");
        let err = routes(&[rule(None, None, "x")], &ds)
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs gateway, namespace"), "{err}");
        let err = routes(&[rule(Some("ingress"), None, "Bad-Name")], &ds)
            .unwrap_err()
            .to_string();
        assert!(err.contains("data_stream_namespace"), "{err}");
    }
}
