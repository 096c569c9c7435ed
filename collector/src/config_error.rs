//! What every stage's configuration shares: the refusal that names the field, the value
//! and why, and the environment a DaemonSet injects. A leaf: each stage's `config` module
//! and the assembler in [`crate::config`] import it, it imports none of them.

use std::path::PathBuf;

/// A configuration value that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid YAML, or an unknown field, or a value of the wrong type.
    #[error("config file {path}: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// serde's message, with the line and column.
        message: String,
    },
    /// A value out of range or otherwise wrong.
    #[error("config field `{field}`: value {value}: {why}")]
    Invalid {
        /// Dotted path of the field.
        field: &'static str,
        /// The value, as given.
        value: String,
        /// Why it is refused and what is accepted.
        why: String,
    },
}

/// The refusal of `value` at `field`, for `why`.
pub(crate) fn invalid(
    field: &'static str,
    value: impl std::fmt::Debug,
    why: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        field,
        value: format!("{value:?}"),
        why: why.into(),
    }
}

/// Environment variables a DaemonSet injects, read through a function so tests can set them.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;
