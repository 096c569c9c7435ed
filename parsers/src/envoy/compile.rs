//! Format [`Token`]s into a [`Program`]: "field up to literal X" steps with prebuilt
//! substring finders.

use memchr::memmem::Finder;

use super::field::{self, Kind, Target};
use super::format::{FormatError, Token, tokenize};

/// A compiled text format, ready to match lines ([`Program::matches`]).
#[derive(Clone, Debug)]
pub struct Program {
    pub(crate) name: String,
    pub(crate) source: String,
    /// Literal text the line starts with.
    pub(crate) prefix: String,
    pub(crate) steps: Vec<Step>,
}

/// One operator and the literal that ends its value.
#[derive(Clone, Debug)]
pub(crate) struct Step {
    /// The operator as written, for error messages.
    pub(crate) operator: String,
    pub(crate) target: Target,
    pub(crate) kind: Kind,
    /// `None`: the value runs to the end of the line.
    pub(crate) until: Option<Literal>,
    /// The literal is the last of the format: it must end the line.
    pub(crate) anchored: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct Literal {
    pub(crate) text: String,
    finder: Finder<'static>,
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The first byte of `w` equal to `b`, by SWAR (the lowest flagged byte is exact).
#[inline]
fn word_find(w: u64, b: u8) -> Option<usize> {
    let x = w ^ (LO * u64::from(b));
    let m = x.wrapping_sub(LO) & !x & HI;
    (m != 0).then(|| (m.trailing_zeros() / 8) as usize)
}

/// The first `needle` in `hay`. Values are mostly a few bytes long, where `memchr`'s set-up
/// costs more than the search: the first 32 bytes are scanned a word at a time.
#[inline]
pub(crate) fn find_byte(needle: u8, hay: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < 32 {
        let Some(chunk) = hay.get(i..i + 8) else {
            return hay[i..].iter().position(|b| *b == needle).map(|p| p + i);
        };
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        if let Some(p) = word_find(u64::from_le_bytes(word), needle) {
            return Some(i + p);
        }
        i += 8;
    }
    memchr::memchr(needle, &hay[i..]).map(|p| p + i)
}

impl Literal {
    /// The first occurrence of the literal in `hay`.
    ///
    /// Values are short (a few to a few dozen bytes) and literals are one to three bytes
    /// (` `, `" `, `" "`): `memchr` for the first byte, then a compare, beats a general
    /// substring searcher there. Longer literals use the prebuilt finder.
    #[inline]
    pub(crate) fn find(&self, hay: &[u8]) -> Option<usize> {
        let needle = self.text.as_bytes();
        if needle.len() > 4 {
            return self.finder.find(hay);
        }
        let mut from = 0;
        while let Some(i) = find_byte(needle[0], &hay[from..]) {
            let at = from + i;
            // A byte loop: a `memcmp` call costs more than comparing three bytes.
            if hay.len() - at >= needle.len() && needle.iter().zip(&hay[at..]).all(|(a, b)| a == b)
            {
                return Some(at);
            }
            from = at + 1;
        }
        None
    }
}

impl Program {
    /// Compiles an Envoy format string under a name (used in events and errors).
    pub fn compile(name: &str, format: &str) -> Result<Program, FormatError> {
        let tokens = tokenize(format)?;
        let mut iter = tokens.into_iter().peekable();
        let prefix = match iter.peek() {
            Some(Token::Literal(_)) => match iter.next() {
                Some(Token::Literal(l)) => l,
                _ => unreachable!("peeked a literal"),
            },
            _ => String::new(),
        };
        let mut steps = Vec::new();
        let mut known = Vec::new();
        while let Some(token) = iter.next() {
            let Token::Operator(op) = token else {
                unreachable!("tokenize alternates operators and literals")
            };
            let mut target = field::target(&op);
            // A field named twice keeps the first; later ones keep their operator name.
            if let Target::Known(f) = target {
                if known.contains(&f) {
                    target = Target::Extra(field::extra_name(&op));
                } else {
                    known.push(f);
                }
            }
            let until = match iter.next() {
                Some(Token::Literal(text)) => Some(Literal {
                    finder: Finder::new(text.as_bytes()).into_owned(),
                    text,
                }),
                Some(Token::Operator(_)) => unreachable!("tokenize rejects adjacent operators"),
                None => None,
            };
            let anchored = until.is_some() && iter.peek().is_none();
            steps.push(Step {
                operator: op.source(),
                kind: target.kind(),
                target,
                until,
                anchored,
            });
        }
        Ok(Program {
            name: name.to_owned(),
            source: format.to_owned(),
            prefix,
            steps,
        })
    }

    /// The name given at compile time.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The format string.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Writes a line of this format as Envoy would: `value` is asked for each operator by
    /// its field key (`response_code`) or extra name (`req_x_b3_traceid`); `None` is `-`.
    /// Used to generate test and demo traffic from the same format strings.
    pub fn render<'v>(&self, value: impl Fn(&str) -> Option<&'v str>) -> String {
        let mut line = self.prefix.clone();
        for step in &self.steps {
            let key = match &step.target {
                Target::Known(f) => f.key(),
                Target::Extra(name) => name.as_str(),
            };
            line.push_str(value(key).unwrap_or("-"));
            if let Some(lit) = &step.until {
                line.push_str(&lit.text);
            }
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_byte_agrees_with_a_naive_search() {
        let hay: Vec<u8> = (0..200u32).map(|i| (i * 7 % 13) as u8 + b'a').collect();
        for start in 0..hay.len() {
            for needle in [b'a', b'c', b'm', b'z', 0x80] {
                let want = hay[start..].iter().position(|b| *b == needle);
                assert_eq!(
                    find_byte(needle, &hay[start..]),
                    want,
                    "start {start} needle {needle}"
                );
            }
        }
        assert_eq!(find_byte(b'x', b""), None);
        assert_eq!(find_byte(0xff, &[0xfe, 0xff]), Some(1));
    }
}
