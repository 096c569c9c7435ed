//! Envoy access logs: format strings compiled into matchers, the built-in formats, JSON
//! access logs, and the per-line choice among formats.

pub mod builtin;
pub mod cluster;
mod compile;
mod field;
mod fields;
pub mod flags;
mod format;
mod json;
mod matcher;
mod parser;

pub use compile::Program;
pub use field::{Field, Kind};
pub use fields::Fields;
pub use flags::Flags;
pub use format::{FormatError, FormatErrorKind, Operator, Token, tokenize};
pub use json::JsonProblem;
pub use matcher::{Expected, Mismatch};
pub use parser::{Failure, Hint, Outcome, Parsed, Parser, ParserError};
