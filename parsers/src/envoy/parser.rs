//! [`Parser`]: an ordered set of formats, and the per-line choice among them.

use std::fmt;

use super::builtin;
use super::compile::Program;
use super::fields::Fields;
use super::format::FormatError;
use super::json::{self, JsonOutcome, JsonProblem};
use super::matcher::Mismatch;

/// What a line turned out to be.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "boxing the fields would allocate on every line"
)]
pub enum Parsed<'a> {
    /// An access log, with the name of the format that read it.
    Access {
        /// The format's name (`istio-1.9`, `istio-json`, a configured name).
        format: &'a str,
        /// Its values.
        fields: Fields<'a>,
    },
    /// Anything else. `Some` when the line looked like an access log but no format read
    /// it completely: why, for `meshtrail.parse.error`.
    Other(Option<Failure<'a>>),
}

/// What [`Parser::parse_into`] found; the values are in the caller's fields.
#[derive(Debug)]
pub enum Outcome<'a> {
    /// An access log, read by this format.
    Access {
        /// The format's name.
        format: &'a str,
    },
    /// Anything else; `Some` when it looked like an access log (see [`Parsed::Other`]).
    Other(Option<Failure<'a>>),
}

/// Why a line that looked like an access log was not read as one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure<'a> {
    /// No text format matched; the closest attempt.
    Text(Mismatch<'a>),
    /// The JSON reader refused it.
    Json(JsonProblem),
}

impl Failure<'_> {
    /// A bounded name for metrics: `format_mismatch` or `invalid_json`.
    pub fn code(&self) -> &'static str {
        match self {
            Failure::Text(_) => "format_mismatch",
            Failure::Json(_) => "invalid_json",
        }
    }
}

impl fmt::Display for Failure<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Text(m) => write!(f, "no access-log format matched; closest: {m}"),
            Failure::Json(p) => p.fmt(f),
        }
    }
}

/// A format name or string that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ParserError {
    /// Neither a known name nor a format string.
    #[error("unknown format {0:?}: use auto, {known}, or an Envoy format string containing %OPERATORS%", known = builtin::names().skip(1).collect::<Vec<_>>().join(", "))]
    UnknownName(String),
    /// A format string that does not compile.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// No format at all.
    #[error("no access-log format given")]
    Empty,
}

/// Which format read the previous line of a stream; tried first on the next one.
#[derive(Clone, Copy, Debug, Default)]
pub struct Hint(usize);

/// Reads access-log lines in any of its formats.
#[derive(Clone, Debug)]
pub struct Parser {
    text: Vec<Program>,
    json: bool,
}

impl Parser {
    /// Every built-in format: what `auto` means.
    pub fn auto() -> Parser {
        Parser::from_specs(["auto"]).expect("built-in formats compile")
    }

    /// A parser from format specs, tried in order: `auto`, a built-in name, `istio-json`, or
    /// an Envoy format string (named `custom`, `custom-2`, …).
    pub fn from_specs<'s>(specs: impl IntoIterator<Item = &'s str>) -> Result<Parser, ParserError> {
        let mut named = Vec::new();
        let mut customs = 0;
        for spec in specs {
            let mut push = |name: String, format: &str| {
                if !named.iter().any(|(n, _): &(String, String)| *n == name) {
                    named.push((name, format.to_owned()));
                }
            };
            match spec {
                "auto" => {
                    for (name, format) in builtin::TEXT {
                        push((*name).to_owned(), format);
                    }
                    push(builtin::ISTIO_JSON.to_owned(), "");
                }
                n if n == builtin::ISTIO_JSON => push(n.to_owned(), ""),
                n if builtin::text(n).is_some() => {
                    push(n.to_owned(), builtin::text(n).unwrap_or_default())
                }
                f if f.contains('%') => {
                    customs += 1;
                    let name = if customs == 1 {
                        "custom".to_owned()
                    } else {
                        format!("custom-{customs}")
                    };
                    push(name, f);
                }
                other => return Err(ParserError::UnknownName(other.to_owned())),
            }
        }
        Parser::from_named(named.iter().map(|(n, f)| (n.as_str(), f.as_str())))
    }

    /// A parser from `(name, format string)` pairs, tried in order; the name `istio-json`
    /// with any format string stands for the JSON reader.
    pub fn from_named<'s>(
        formats: impl IntoIterator<Item = (&'s str, &'s str)>,
    ) -> Result<Parser, ParserError> {
        let mut parser = Parser {
            text: Vec::new(),
            json: false,
        };
        for (name, format) in formats {
            if name == builtin::ISTIO_JSON {
                parser.json = true;
            } else {
                parser.text.push(Program::compile(name, format)?);
            }
        }
        if parser.text.is_empty() && !parser.json {
            return Err(ParserError::Empty);
        }
        Ok(parser)
    }

    /// The names of the formats, in the order they are tried.
    pub fn format_names(&self) -> impl Iterator<Item = &str> {
        self.text
            .iter()
            .map(Program::name)
            .chain(self.json.then_some(builtin::ISTIO_JSON))
    }

    /// Reads one line (without its newline; trailing white space is ignored).
    pub fn parse<'a>(&'a self, line: &'a str, hint: &mut Hint) -> Parsed<'a> {
        let mut fields = Fields::new();
        match self.parse_into(line, hint, &mut fields) {
            Outcome::Access { format } => Parsed::Access { format, fields },
            Outcome::Other(why) => Parsed::Other(why),
        }
    }

    /// [`Parser::parse`] into the caller's `fields`, which must be empty: the hot path, where
    /// moving ~1 KiB of fields per line would show.
    pub fn parse_into<'a>(
        &'a self,
        line: &'a str,
        hint: &mut Hint,
        fields: &mut Fields<'a>,
    ) -> Outcome<'a> {
        let line = line.trim_end_matches([' ', '\t', '\r', '\n']);
        if line.starts_with('{') {
            if !self.json {
                return Outcome::Other(None);
            }
            return match json::parse(line) {
                JsonOutcome::Access(f) => {
                    *fields = f;
                    Outcome::Access {
                        format: builtin::ISTIO_JSON,
                    }
                }
                JsonOutcome::NotAccess => Outcome::Other(None),
                JsonOutcome::Invalid(problem) => Outcome::Other(Some(Failure::Json(problem))),
            };
        }
        let mut best: Option<Mismatch<'a>> = None;
        let first = hint.0.min(self.text.len().saturating_sub(1));
        let order = std::iter::once(first).chain((0..self.text.len()).filter(|i| *i != first));
        for i in order {
            let Some(program) = self.text.get(i) else {
                break;
            };
            if best.is_some() {
                // The previous attempt left part of a line's values behind.
                *fields = Fields::new();
            }
            match program.matches_into(line, fields) {
                Ok(()) => {
                    hint.0 = i;
                    return Outcome::Access {
                        format: program.name(),
                    };
                }
                Err(m) => {
                    if best.is_none_or(|b| (m.step, m.position) > (b.step, b.position)) {
                        best = Some(m);
                    }
                }
            }
        }
        *fields = Fields::new();
        // Only a line whose first operator matched (a timestamp where the format has one)
        // looked like an access log; other programs' output is not a parse error.
        Outcome::Other(best.filter(|m| m.step > 0).map(Failure::Text))
    }
}
