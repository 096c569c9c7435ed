//! `sink:` as written and validated. `type` picks the sink and each type takes only its
//! own fields, so a field of another sink is refused by name; the Elasticsearch sink's
//! section is [`super::es::config`].

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, de::Error as _};

use super::es::config::EsConfig;
use crate::config_error::{ConfigError, Env, invalid};

/// `sink:` as written.
#[derive(Debug, Default)]
pub enum SinkConfig {
    /// `type: stdout` (the default).
    #[default]
    Stdout,
    /// `type: file`.
    File(FileConfig),
    /// `type: blackhole`.
    Blackhole(BlackholeConfig),
    /// `type: elasticsearch`.
    Elasticsearch(Box<EsConfig>),
}

/// `sink:` with `type: file`: NDJSON files, size-rotated.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// The NDJSON file. Default `<data_dir>/events.ndjson`.
    pub path: Option<PathBuf>,
    /// Size at which the file is rotated, in bytes. Default 100 MiB.
    pub max_file_bytes: Option<u64>,
    /// Rotated files kept. Default 5.
    pub max_files: Option<usize>,
}

/// `sink:` with `type: blackhole`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlackholeConfig {
    /// Encode each event as its JSON document before dropping it (to measure encoding).
    /// Default false: events are parsed, classified and counted only.
    pub encode: Option<bool>,
}

/// The sections by `type`, as serde reads them.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum Typed {
    Stdout {},
    File(FileConfig),
    Blackhole(BlackholeConfig),
    Elasticsearch(Box<EsConfig>),
}

impl<'de> Deserialize<'de> for SinkConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SinkConfig, D::Error> {
        // `type` may be left out (stdout); serde's tagged enums need it, so it is added.
        let mut map = Option::<serde_yaml_ng::Mapping>::deserialize(d)?.unwrap_or_default();
        let kind = match map.get("type") {
            None => {
                map.insert("type".into(), "stdout".into());
                "stdout".to_owned()
            }
            Some(serde_yaml_ng::Value::String(k)) => k.clone(),
            Some(_) => String::new(),
        };
        let typed = Typed::deserialize(serde_yaml_ng::Value::Mapping(map)).map_err(|e| {
            let msg = e.to_string();
            // Name the sink type when its section holds a field of another one.
            if msg.starts_with("unknown field") {
                D::Error::custom(format!("sink (type {kind}): {msg}"))
            } else {
                D::Error::custom(format!("sink: {msg}"))
            }
        })?;
        Ok(match typed {
            Typed::Stdout {} => SinkConfig::Stdout,
            Typed::File(f) => SinkConfig::File(f),
            Typed::Blackhole(b) => SinkConfig::Blackhole(b),
            Typed::Elasticsearch(e) => SinkConfig::Elasticsearch(e),
        })
    }
}

/// Where events go, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sink {
    /// NDJSON on standard output.
    Stdout,
    /// NDJSON files, size-rotated.
    File {
        /// The current file.
        path: PathBuf,
        /// Rotation size.
        max_bytes: u64,
        /// Rotated files kept.
        max_files: usize,
    },
    /// Discarded (benchmarks).
    Blackhole {
        /// Encode documents before dropping them.
        encode: bool,
    },
    /// Elasticsearch `_bulk`.
    Elasticsearch(super::es::config::EsSettings),
}

impl SinkConfig {
    /// Applies the defaults (files under `data_dir`) and the environment and checks every
    /// value.
    pub fn validate(self, data_dir: &Path, env: Env<'_>) -> Result<Sink, ConfigError> {
        Ok(match self {
            SinkConfig::Stdout => Sink::Stdout,
            SinkConfig::Blackhole(b) => Sink::Blackhole {
                encode: b.encode.unwrap_or(false),
            },
            SinkConfig::Elasticsearch(e) => Sink::Elasticsearch(e.validate(data_dir, env)?),
            SinkConfig::File(f) => {
                let max_bytes = f.max_file_bytes.unwrap_or(100 << 20);
                if max_bytes < 1 << 20 {
                    return Err(invalid(
                        "sink.max_file_bytes",
                        max_bytes,
                        "expected at least 1048576 bytes (1 MiB)",
                    ));
                }
                let max_files = f.max_files.unwrap_or(5);
                if max_files > 1000 {
                    return Err(invalid(
                        "sink.max_files",
                        max_files,
                        "expected at most 1000",
                    ));
                }
                Sink::File {
                    path: f.path.unwrap_or_else(|| data_dir.join("events.ndjson")),
                    max_bytes,
                    max_files,
                }
            }
        })
    }
}
