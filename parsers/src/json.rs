//! A scanner for flat JSON objects: docker json-file records and Istio JSON access logs.
//!
//! It borrows from the input: a string without escapes is a slice of the line, only an
//! escaped one is decoded into a new `String`. Nested objects and arrays are returned as
//! their raw text. serde_json would allocate a map per line; this does not.

use std::borrow::Cow;

/// A member value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    /// A string, decoded.
    Str(Cow<'a, str>),
    /// A number, `true`, `false`, or a nested object or array, as written.
    Raw(&'a str),
    /// `null`.
    Null,
}

/// Why a line is not a JSON object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON at byte {position}: expected {expected}")]
pub struct JsonError {
    /// Byte offset of the problem.
    pub position: usize,
    /// What was expected there.
    pub expected: &'static str,
}

struct Scanner<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn err<T>(&self, expected: &'static str) -> Result<T, JsonError> {
        Err(JsonError {
            position: self.i,
            expected,
        })
    }

    fn ws(&mut self) {
        while self
            .b
            .get(self.i)
            .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
        {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8, expected: &'static str) -> Result<(), JsonError> {
        self.ws();
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            Ok(())
        } else {
            self.err(expected)
        }
    }

    /// A string starting at the opening quote.
    fn string(&mut self) -> Result<Cow<'a, str>, JsonError> {
        self.eat(b'"', "'\"'")?;
        let start = self.i;
        let mut escaped = false;
        loop {
            let Some(rel) = memchr::memchr2(b'"', b'\\', &self.b[self.i..]) else {
                return self.err("a closing '\"'");
            };
            self.i += rel;
            if self.b[self.i] == b'"' {
                break;
            }
            escaped = true;
            self.i += 2;
            if self.i > self.b.len() {
                return self.err("an escape sequence");
            }
        }
        let raw = &self.s[start..self.i];
        self.i += 1;
        if !escaped {
            return Ok(Cow::Borrowed(raw));
        }
        unescape(raw).map(Cow::Owned).map_err(|off| JsonError {
            position: start + off,
            expected: "a valid escape",
        })
    }

    fn value(&mut self) -> Result<Value<'a>, JsonError> {
        self.ws();
        let start = self.i;
        match self.b.get(self.i) {
            Some(b'"') => self.string().map(Value::Str),
            Some(b'{' | b'[') => {
                self.nested()?;
                Ok(Value::Raw(&self.s[start..self.i]))
            }
            Some(_) => {
                let n = self.b[self.i..]
                    .iter()
                    .take_while(|c| !matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                    .count();
                self.i += n;
                match &self.s[start..self.i] {
                    "null" => Ok(Value::Null),
                    v @ ("true" | "false") => Ok(Value::Raw(v)),
                    v if v.starts_with(|c: char| c == '-' || c.is_ascii_digit())
                        && v.parse::<f64>().is_ok() =>
                    {
                        Ok(Value::Raw(v))
                    }
                    _ => {
                        self.i = start;
                        self.err("a value")
                    }
                }
            }
            None => self.err("a value"),
        }
    }

    /// Skips a nested object or array, strings included.
    fn nested(&mut self) -> Result<(), JsonError> {
        let mut depth = 0usize;
        while let Some(&c) = self.b.get(self.i) {
            match c {
                b'"' => {
                    self.string()?;
                    continue;
                }
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        self.i += 1;
                        return Ok(());
                    }
                }
                _ => {}
            }
            self.i += 1;
        }
        self.err("the end of a nested value")
    }
}

/// Decodes the escapes of a JSON string body; `Err(offset)` at a bad one.
fn unescape(raw: &str) -> Result<String, usize> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.char_indices();
    while let Some((i, c)) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let (_, e) = chars.next().ok_or(i)?;
        out.push(match e {
            '"' => '"',
            '\\' => '\\',
            '/' => '/',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => {
                let hex = |chars: &mut std::str::CharIndices<'_>| -> Result<u32, usize> {
                    let s: String = chars.by_ref().take(4).map(|(_, c)| c).collect();
                    if s.len() == 4 {
                        u32::from_str_radix(&s, 16).map_err(|_| i)
                    } else {
                        Err(i)
                    }
                };
                let hi = hex(&mut chars)?;
                let code = if (0xD800..0xDC00).contains(&hi) {
                    let rest = chars.as_str();
                    if rest.starts_with("\\u") {
                        chars.next();
                        chars.next();
                        let lo = hex(&mut chars)?;
                        0x10000 + ((hi - 0xD800) << 10) + lo.wrapping_sub(0xDC00)
                    } else {
                        0xFFFD
                    }
                } else {
                    hi
                };
                char::from_u32(code).unwrap_or('\u{FFFD}')
            }
            _ => return Err(i),
        });
    }
    Ok(out)
}

/// Calls `member` for each key and value of the JSON object `s`, in order. Fails on
/// anything that is not exactly one object (white space around it is allowed).
pub fn for_each_member<'a>(
    s: &'a str,
    mut member: impl FnMut(Cow<'a, str>, Value<'a>),
) -> Result<(), JsonError> {
    let mut sc = Scanner {
        s,
        b: s.as_bytes(),
        i: 0,
    };
    sc.eat(b'{', "'{'")?;
    sc.ws();
    if sc.b.get(sc.i) == Some(&b'}') {
        sc.i += 1;
    } else {
        loop {
            sc.ws();
            let key = sc.string()?;
            sc.eat(b':', "':'")?;
            let value = sc.value()?;
            member(key, value);
            sc.ws();
            match sc.b.get(sc.i) {
                Some(b',') => sc.i += 1,
                Some(b'}') => {
                    sc.i += 1;
                    break;
                }
                _ => return sc.err("',' or '}'"),
            }
        }
    }
    sc.ws();
    if sc.i != sc.b.len() {
        return sc.err("the end of the line after the object");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(s: &str) -> Result<Vec<(String, Value<'_>)>, JsonError> {
        let mut v = Vec::new();
        for_each_member(s, |k, val| v.push((k.into_owned(), val)))?;
        Ok(v)
    }

    #[test]
    fn flat_object() {
        let m = members(r#"{"a":"x","b":12,"c":null,"d":true, "e" : -1.5e3 }"#).unwrap();
        assert_eq!(m[0], ("a".into(), Value::Str("x".into())));
        assert_eq!(m[1].1, Value::Raw("12"));
        assert_eq!(m[2].1, Value::Null);
        assert_eq!(m[3].1, Value::Raw("true"));
        assert_eq!(m[4].1, Value::Raw("-1.5e3"));
    }

    #[test]
    fn strings_borrow_unless_escaped() {
        let m = members(r#"{"plain":"abc","esc":"a\"b\\c\n\u00e9\ud83d\ude00"}"#).unwrap();
        assert!(matches!(&m[0].1, Value::Str(Cow::Borrowed("abc"))));
        assert_eq!(m[1].1, Value::Str(Cow::Owned("a\"b\\c\né😀".into())));
    }

    #[test]
    fn nested_values_are_raw() {
        let m = members(r#"{"o":{"x":[1,"}"]},"n":1}"#).unwrap();
        assert_eq!(m[0].1, Value::Raw(r#"{"x":[1,"}"]}"#));
        assert_eq!(m[1].1, Value::Raw("1"));
    }

    #[test]
    fn rejects_non_objects() {
        for bad in [
            "",
            "[]",
            "{",
            r#"{"a"}"#,
            r#"{"a":}"#,
            r#"{"a":1"#,
            r#"{"a":1} x"#,
            r#"{"a":"x\q"}"#,
            r#"{"a":nope}"#,
            r#"{"a":"unterminated}"#,
            r#"{"a":"\"#,
        ] {
            assert!(members(bad).is_err(), "{bad}");
        }
        assert!(members("{}").unwrap().is_empty());
    }
}
