//! Envoy access-log format strings: `[%START_TIME%] "%REQ(:METHOD)% …"` into [`Token`]s.
//!
//! The grammar is Envoy's: literal text, `%OPERATOR%`, `%OPERATOR(ARG)%`,
//! `%OPERATOR(ARG):LEN%` and `%%` for a literal percent sign. An argument may itself
//! contain `%` (`%START_TIME(%Y-%m-%d)%`), so it runs to its closing parenthesis.

use std::fmt;

/// One piece of a format string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Token {
    /// Text written as is.
    Literal(String),
    /// A command operator whose value Envoy substitutes.
    Operator(Operator),
}

/// A command operator such as `%REQ(USER-AGENT):64%`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operator {
    /// The name, e.g. `REQ`.
    pub name: String,
    /// The argument in parentheses, e.g. `USER-AGENT`.
    pub arg: Option<String>,
    /// The truncation length after `:`, e.g. `64`.
    pub max_len: Option<usize>,
}

impl Operator {
    /// The operator as written in a format string, e.g. `%REQ(USER-AGENT)%`.
    pub fn source(&self) -> String {
        let mut s = format!("%{}", self.name);
        if let Some(arg) = &self.arg {
            s.push('(');
            s.push_str(arg);
            s.push(')');
        }
        if let Some(len) = self.max_len {
            s.push_str(&format!(":{len}"));
        }
        s.push('%');
        s
    }
}

/// A format string that is not valid Envoy syntax, or that meshtrail cannot match.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid access-log format at byte {position}: {kind} (format: {format:?})")]
pub struct FormatError {
    /// The whole format string.
    pub format: String,
    /// Byte offset of the problem.
    pub position: usize,
    /// What is wrong.
    pub kind: FormatErrorKind,
}

/// What is wrong with a format string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FormatErrorKind {
    /// `%` not followed by an operator name or `%`.
    BadOperatorStart,
    /// `%NAME(` without `)`.
    UnclosedArgument,
    /// `:` after an operator not followed by a number.
    BadLength,
    /// An operator not closed by `%`.
    UnclosedOperator,
    /// Two operators with no literal text between them: no line can be split there.
    AdjacentOperators(String, String),
    /// Nothing to match.
    Empty,
}

impl fmt::Display for FormatErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadOperatorStart => f.write_str(
                "'%' must start an operator such as %START_TIME%; write '%%' for a literal percent sign",
            ),
            Self::UnclosedArgument => f.write_str("operator argument has no closing ')'"),
            Self::BadLength => f.write_str("':' after an operator must be followed by a length in digits"),
            Self::UnclosedOperator => f.write_str("operator is not closed by '%'"),
            Self::AdjacentOperators(a, b) => write!(
                f,
                "{a} and {b} follow each other with no text between them, so a line cannot be split there; put a separator (e.g. a space) between them"
            ),
            Self::Empty => f.write_str("the format is empty"),
        }
    }
}

/// Splits a format string into tokens. A trailing newline (Envoy appends one) is dropped,
/// adjacent literals are merged.
pub fn tokenize(format: &str) -> Result<Vec<Token>, FormatError> {
    let err = |position, kind| FormatError {
        format: format.to_owned(),
        position,
        kind,
    };
    let body = format.strip_suffix('\n').unwrap_or(format);
    let bytes = body.as_bytes();
    let mut tokens: Vec<Token> = Vec::new();
    let mut literal = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let Some(rel) = memchr::memchr(b'%', &bytes[i..]) else {
            literal.push_str(&body[i..]);
            break;
        };
        literal.push_str(&body[i..i + rel]);
        let start = i + rel;
        i = start + 1;
        if bytes.get(i) == Some(&b'%') {
            literal.push('%');
            i += 1;
            continue;
        }
        let name_end = i + bytes[i..]
            .iter()
            .take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || **b == b'_')
            .count();
        if name_end == i {
            return Err(err(start, FormatErrorKind::BadOperatorStart));
        }
        let name = body[i..name_end].to_owned();
        i = name_end;
        let mut arg = None;
        if bytes.get(i) == Some(&b'(') {
            let close = memchr::memchr(b')', &bytes[i..])
                .ok_or_else(|| err(start, FormatErrorKind::UnclosedArgument))?;
            arg = Some(body[i + 1..i + close].to_owned());
            i += close + 1;
        }
        let mut max_len = None;
        if bytes.get(i) == Some(&b':') {
            let digits = bytes[i + 1..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            if digits == 0 {
                return Err(err(i, FormatErrorKind::BadLength));
            }
            max_len = body[i + 1..i + 1 + digits].parse().ok();
            i += 1 + digits;
        }
        if bytes.get(i) != Some(&b'%') {
            return Err(err(start, FormatErrorKind::UnclosedOperator));
        }
        i += 1;
        let op = Operator { name, arg, max_len };
        if literal.is_empty() {
            if let Some(Token::Operator(prev)) = tokens.last() {
                return Err(err(
                    start,
                    FormatErrorKind::AdjacentOperators(prev.source(), op.source()),
                ));
            }
        } else {
            tokens.push(Token::Literal(std::mem::take(&mut literal)));
        }
        tokens.push(Token::Operator(op));
    }
    if !literal.is_empty() {
        tokens.push(Token::Literal(literal));
    }
    if tokens.is_empty() {
        return Err(err(0, FormatErrorKind::Empty));
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(name: &str, arg: Option<&str>, max_len: Option<usize>) -> Token {
        Token::Operator(Operator {
            name: name.into(),
            arg: arg.map(Into::into),
            max_len,
        })
    }
    fn lit(s: &str) -> Token {
        Token::Literal(s.into())
    }

    macro_rules! ok {
        ($name:ident, $fmt:expr, [$($tok:expr),* $(,)?]) => {
            #[test]
            fn $name() { assert_eq!(tokenize($fmt).unwrap(), vec![$($tok),*]); }
        };
    }
    macro_rules! bad {
        ($name:ident, $fmt:expr, $pos:expr, $kind:pat) => {
            #[test]
            fn $name() {
                let e = tokenize($fmt).unwrap_err();
                assert_eq!(e.position, $pos, "{e}");
                assert!(matches!(e.kind, $kind), "{e}");
            }
        };
    }

    ok!(
        plain_operator,
        "%START_TIME%",
        [op("START_TIME", None, None)]
    );
    ok!(
        bracketed,
        "[%START_TIME%]\n",
        [lit("["), op("START_TIME", None, None), lit("]")]
    );
    ok!(
        with_arg,
        "%REQ(:METHOD)%",
        [op("REQ", Some(":METHOD"), None)]
    );
    ok!(
        alt_arg,
        "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
        [op("REQ", Some("X-ENVOY-ORIGINAL-PATH?:PATH"), None)]
    );
    ok!(
        with_len,
        "%REQ(USER-AGENT):10% x",
        [op("REQ", Some("USER-AGENT"), Some(10)), lit(" x")]
    );
    ok!(
        percent_literal,
        "100%% %DURATION%",
        [lit("100% "), op("DURATION", None, None)]
    );
    ok!(
        percent_in_arg,
        "%START_TIME(%Y-%m-%d)%",
        [op("START_TIME", Some("%Y-%m-%d"), None)]
    );
    ok!(only_literal, "hello", [lit("hello")]);
    ok!(
        digits_in_name,
        "%UPSTREAM_HOST% %X2%",
        [
            op("UPSTREAM_HOST", None, None),
            lit(" "),
            op("X2", None, None)
        ]
    );
    bad!(lone_percent, "a % b", 2, FormatErrorKind::BadOperatorStart);
    bad!(
        lowercase,
        "%start_time%",
        0,
        FormatErrorKind::BadOperatorStart
    );
    bad!(
        unclosed_arg,
        "x %REQ(:METHOD%",
        2,
        FormatErrorKind::UnclosedArgument
    );
    bad!(
        unclosed_op,
        "%DURATION",
        0,
        FormatErrorKind::UnclosedOperator
    );
    bad!(bad_len, "%REQ(A):x%", 7, FormatErrorKind::BadLength);
    bad!(
        adjacent,
        "%BYTES_SENT%%DURATION%",
        12,
        FormatErrorKind::AdjacentOperators(_, _)
    );
    bad!(empty, "\n", 0, FormatErrorKind::Empty);

    #[test]
    fn error_message_names_the_fix() {
        let e = tokenize("%A%%B%").unwrap_err().to_string();
        assert!(e.contains("%A% and %B%") && e.contains("separator"), "{e}");
    }

    #[test]
    fn source_round_trips() {
        let f = "%REQ(USER-AGENT):64%";
        let Token::Operator(o) = &tokenize(f).unwrap()[0] else {
            panic!()
        };
        assert_eq!(o.source(), f);
    }
}
