//! Runs a [`Program`] over a line and returns its [`Fields`], borrowed from the line.
//!
//! A value ends at the literal that follows it in the format. Values that may contain
//! that literal (header values such as a user agent with `"` in it) are tried at each
//! occurrence in turn until the rest of the line matches, within a fixed budget; every
//! other value must fit its kind (an integer, an address, text without spaces), which is
//! what keeps a line of another format from matching with its fields shifted.

use std::borrow::Cow;
use std::fmt;

use super::compile::{Program, Step};
use super::field::{Kind, Target};
use super::fields::Fields;
use super::flags;
use crate::addr;
use crate::timestamp::Timestamp;

/// How many alternative splits one line may try before it is given up as ambiguous.
const BACKTRACK_BUDGET: u32 = 64;

/// Why a line did not match a format: the furthest point the match reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mismatch<'p> {
    /// The format's name.
    pub format: &'p str,
    /// The operator being matched (`%RESPONSE_CODE%`), or `None` for the format's
    /// leading text.
    pub operator: Option<&'p str>,
    /// Byte offset in the line.
    pub position: usize,
    /// How many operators had matched before it failed (0: not even the first).
    pub step: usize,
    /// What the line should have had there.
    pub expected: Expected<'p>,
}

/// What a format expected at a position of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected<'p> {
    /// This literal text.
    Literal(&'p str),
    /// This literal text somewhere after the position; the line has none.
    Missing(&'p str),
    /// The line to end with this literal text.
    End(&'p str),
    /// A value of this description.
    Value(&'static str),
    /// Fewer ways to split the line: too many header values contain the separators.
    LessAmbiguity,
}

impl fmt::Display for Mismatch<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "format {} at byte {}", self.format, self.position)?;
        if let Some(op) = self.operator {
            write!(f, " ({op})")?;
        }
        match self.expected {
            Expected::Literal(l) => write!(f, ": expected {l:?}"),
            Expected::Missing(l) => {
                write!(f, ": expected {l:?} after the value, but the line has none")
            }
            Expected::End(l) => write!(f, ": expected the line to end with {l:?}"),
            Expected::Value(v) => write!(f, ": expected {v}"),
            Expected::LessAmbiguity => f.write_str(": too many ways to split the line"),
        }
    }
}

fn has_any(v: &str, a: u8, b: u8, c: u8) -> bool {
    memchr::memchr3(a, b, c, v.as_bytes()).is_some()
}

/// Checks a value against its kind; `Err` describes what was expected.
fn check(kind: Kind, v: &str) -> Result<(), &'static str> {
    let ok = match kind {
        Kind::Text => true,
        _ if v == "-" => true,
        Kind::Timestamp => Timestamp::is_valid(v),
        Kind::Integer => !v.is_empty() && v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit()),
        Kind::Method => {
            !v.is_empty()
                && v.len() <= 24
                && v.bytes()
                    .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
        }
        Kind::Protocol => v.starts_with("HTTP/") && !has_any(v, b' ', b'\t', b'"'),
        Kind::Flags => flags::well_formed(v),
        Kind::Address => !has_any(v, b' ', b'\t', b'"') && addr::plausible(v),
        Kind::Token => !v.is_empty() && !has_any(v, b' ', b'\t', b'"'),
    };
    if ok {
        return Ok(());
    }
    Err(match kind {
        Kind::Timestamp => "an RFC 3339 timestamp",
        Kind::Integer => "an integer or \"-\"",
        Kind::Method => "an HTTP method or \"-\"",
        Kind::Protocol => "HTTP/<version> or \"-\"",
        Kind::Flags => "response flags such as UF,URX or \"-\"",
        Kind::Address => "an address such as 10.0.0.1:80 or \"-\"",
        Kind::Token | Kind::Text => "a value without spaces or quotes",
    })
}

struct Run<'a, 'l> {
    program: &'a Program,
    line: &'l str,
    budget: u32,
    best: Mismatch<'a>,
}

impl<'a> Run<'a, 'a> {
    fn fail(&mut self, step: Option<&'a Step>, position: usize, expected: Expected<'a>) -> bool {
        let index = step.map_or(0, |s| {
            self.program
                .steps
                .iter()
                .position(|x| std::ptr::eq(x, s))
                .unwrap_or(0)
        });
        if (index, position) >= (self.best.step, self.best.position) {
            self.best = Mismatch {
                format: &self.program.name,
                operator: step.map(|s| s.operator.as_str()),
                position,
                step: index,
                expected,
            };
        }
        false
    }

    fn assign(&self, out: &mut Fields<'a>, step: &'a Step, value: &'a str) {
        match &step.target {
            Target::Known(f) => out.set(*f, Cow::Borrowed(value)),
            Target::Extra(name) => out.set_extra(Cow::Borrowed(name), Cow::Borrowed(value)),
        }
    }

    /// Matches steps `from..` starting at byte `pos`.
    fn steps(&mut self, out: &mut Fields<'a>, from: usize, mut pos: usize) -> bool {
        let line = self.line;
        for i in from..self.program.steps.len() {
            let step = &self.program.steps[i];
            let rest = &line[pos..];
            let Some(lit) = &step.until else {
                if let Err(e) = check(step.kind, rest) {
                    return self.fail(Some(step), pos, Expected::Value(e));
                }
                self.assign(out, step, rest);
                return true;
            };
            if step.anchored {
                let Some(value) = rest.strip_suffix(lit.text.as_str()) else {
                    return self.fail(Some(step), line.len(), Expected::End(&lit.text));
                };
                if let Err(e) = check(step.kind, value) {
                    return self.fail(Some(step), pos, Expected::Value(e));
                }
                self.assign(out, step, value);
                return true;
            }
            if step.kind == Kind::Text {
                return self.text_step(out, i, pos);
            }
            let Some(at) = lit.find(rest.as_bytes()) else {
                return self.fail(Some(step), pos, Expected::Missing(&lit.text));
            };
            let value = &rest[..at];
            if let Err(e) = check(step.kind, value) {
                return self.fail(Some(step), pos, Expected::Value(e));
            }
            self.assign(out, step, value);
            pos += at + lit.text.len();
        }
        true
    }

    /// A free-text value: try each occurrence of its closing literal in turn.
    fn text_step(&mut self, out: &mut Fields<'a>, i: usize, pos: usize) -> bool {
        let line = self.line;
        let step = &self.program.steps[i];
        let Some(lit) = &step.until else {
            unreachable!("text_step is only called for steps with a literal")
        };
        let extras = out.extras_len();
        let mut search = pos;
        loop {
            let Some(at) = lit.find(&line.as_bytes()[search..]).map(|a| a + search) else {
                return self.fail(Some(step), pos, Expected::Missing(&lit.text));
            };
            self.assign(out, step, &line[pos..at]);
            if self.steps(out, i + 1, at + lit.text.len()) {
                return true;
            }
            out.truncate_extras(extras);
            if self.budget == 0 {
                return self.fail(Some(step), pos, Expected::LessAmbiguity);
            }
            self.budget -= 1;
            search = at + 1;
        }
    }
}

impl Program {
    /// Matches a whole line (without its newline) against the format.
    pub fn matches<'a>(&'a self, line: &'a str) -> Result<Fields<'a>, Mismatch<'a>> {
        let mut out = Fields::new();
        self.matches_into(line, &mut out).map(|()| out)
    }

    /// [`Program::matches`] into the caller's `out`, which must be empty; on failure it holds
    /// whatever was read before the mismatch. Saves moving the fields on the hot path.
    pub fn matches_into<'a>(
        &'a self,
        line: &'a str,
        out: &mut Fields<'a>,
    ) -> Result<(), Mismatch<'a>> {
        let mut run = Run {
            program: self,
            line,
            budget: BACKTRACK_BUDGET,
            best: Mismatch {
                format: &self.name,
                operator: None,
                position: 0,
                step: 0,
                expected: Expected::Literal(&self.prefix),
            },
        };
        let Some(_) = line.strip_prefix(self.prefix.as_str()) else {
            return Err(run.best);
        };
        if self.steps.is_empty() {
            return if line.len() == self.prefix.len() {
                Ok(())
            } else {
                Err(Mismatch {
                    position: self.prefix.len(),
                    expected: Expected::End(&self.prefix),
                    ..run.best
                })
            };
        }
        if run.steps(out, 0, self.prefix.len()) {
            Ok(())
        } else {
            Err(run.best)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envoy::field::Field;

    fn p(format: &str) -> Program {
        Program::compile("t", format).unwrap()
    }

    #[test]
    fn splits_on_the_following_literal() {
        let prog = p(
            r#"[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE%"#,
        );
        let f = prog
            .matches(r#"[2020-11-25T21:26:18.409Z] "GET /a?b=c HTTP/1.1" 200"#)
            .unwrap();
        assert_eq!(f.get(Field::StartTime), Some("2020-11-25T21:26:18.409Z"));
        assert_eq!(f.get(Field::Path), Some("/a?b=c"));
        assert_eq!(f.status(), Some(200));
    }

    #[test]
    fn quoted_text_may_contain_quotes() {
        let prog = p(r#""%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" %DURATION%"#);
        let f = prog.matches(r#""say "hi" there" "abc" 5"#).unwrap();
        assert_eq!(f.get(Field::UserAgent), Some(r#"say "hi" there"#));
        assert_eq!(f.get(Field::RequestId), Some("abc"));
        // The separator itself inside a value: the first split that lets the rest match.
        let f = prog.matches(r#""a" "b" "c" 5"#).unwrap();
        assert_eq!(
            (f.get(Field::UserAgent), f.get(Field::RequestId)),
            (Some("a"), Some(r#"b" "c"#))
        );
    }

    #[test]
    fn typed_fields_refuse_shifted_values() {
        let prog = p("%RESPONSE_CODE% %BYTES_SENT%");
        let e = prog.matches("abc 12").unwrap_err();
        assert_eq!(
            (e.operator, e.position, e.expected),
            (
                Some("%RESPONSE_CODE%"),
                0,
                Expected::Value("an integer or \"-\"")
            )
        );
        assert!(
            prog.matches("200 1 2").is_err(),
            "a token cannot hold a space"
        );
    }

    #[test]
    fn trailing_literal_must_end_the_line() {
        let prog = p(r#""%UPSTREAM_HOST%""#);
        assert!(prog.matches(r#""10.0.0.1:80""#).is_ok());
        let e = prog.matches(r#""10.0.0.1:80" more"#).unwrap_err();
        assert!(
            matches!(e.expected, Expected::End("\"") | Expected::Value(_)),
            "{e}"
        );
    }

    #[test]
    fn extras_are_named_and_typed_as_text() {
        let prog = p("%REQ(X-B3-TRACEID)% %DURATION% %UPSTREAM_TLS_VERSION%");
        let f = prog.matches("80f198ee 3 TLSv1.3").unwrap();
        assert_eq!(
            f.extras().collect::<Vec<_>>(),
            [
                ("req_x_b3_traceid", "80f198ee"),
                ("upstream_tls_version", "TLSv1.3")
            ]
        );
    }

    #[test]
    fn backtracking_does_not_leave_stale_extras() {
        let prog = p(r#""%REQ(A)%" "%REQ(B)%" %DURATION%"#);
        let f = prog.matches(r#""x" "y" "z" 5"#).unwrap();
        assert_eq!(f.extras().count(), 2, "{f:?}");
    }

    #[test]
    fn ambiguity_is_bounded() {
        let prog = p(r#""%REQ(A)%" "%REQ(B)%" "%REQ(C)%" %DURATION%"#);
        let line = format!("\"{}\" x", "a\" \"".repeat(200));
        assert!(prog.matches(&line).is_err());
    }

    #[test]
    fn mismatch_messages() {
        let prog = p("[%START_TIME%] %DURATION%");
        let e = prog
            .matches("[2022-04-02 18:29:55.979][1][info] x")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "format t at byte 1 (%START_TIME%): expected an RFC 3339 timestamp"
        );
        let e = prog.matches("hello").unwrap_err();
        assert_eq!(e.to_string(), "format t at byte 0: expected \"[\"");
    }
}
