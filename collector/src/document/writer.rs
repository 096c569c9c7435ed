//! A JSON object writer for a document whose shape is fixed in code: `begin("http")`
//! … `end()` bracket a nested object, which is written only if a field lands in it, so
//! absent groups cost nothing and never appear as `{}`.

/// A value the writer can write.
pub trait JsonValue {
    /// Appends the JSON form of the value.
    fn write_json(&self, out: &mut Vec<u8>);
}

impl JsonValue for &str {
    fn write_json(&self, out: &mut Vec<u8>) {
        write_str(out, self);
    }
}

macro_rules! int_value {
    ($($t:ty),*) => {$(
        impl JsonValue for $t {
            fn write_json(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(itoa::Buffer::new().format(*self).as_bytes());
            }
        }
    )*};
}
int_value!(u16, u32, u64, i64);

/// An array of strings.
pub struct StrArray<I>(pub I);

impl<'s, I: Iterator<Item = &'s str> + Clone> JsonValue for StrArray<I> {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'[');
        for (i, s) in self.0.clone().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(out, s);
        }
        out.push(b']');
    }
}

/// Text known to need no escaping (a timestamp, an id), written as a JSON string.
pub struct Preformatted<'a>(pub &'a [u8]);

impl JsonValue for Preformatted<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'"');
        out.extend_from_slice(self.0);
        out.push(b'"');
    }
}

/// A JSON value rendered beforehand (an object of labels), written as is.
pub struct RawJson<'a>(pub &'a [u8]);

impl JsonValue for RawJson<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.0);
    }
}

/// True when any byte of the word is `"`, `\` or below 0x20 (SWAR: eight bytes a step).
#[inline]
fn word_needs_escape(w: u64) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(LO) & !x & HI;
    let below_space = w.wrapping_sub(LO * 0x20) & !w & HI;
    (below_space | has_zero(w ^ (LO * b'"' as u64)) | has_zero(w ^ (LO * b'\\' as u64))) != 0
}

/// Appends `s` as a JSON string.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    out.reserve(b.len() + 2);
    out.push(b'"');
    // Most values need no escaping: find the first byte that does, a word at a time.
    let mut clean = 0;
    while clean + 8 <= b.len() {
        let mut word = [0u8; 8];
        word.copy_from_slice(&b[clean..clean + 8]);
        if word_needs_escape(u64::from_le_bytes(word)) {
            break;
        }
        clean += 8;
    }
    out.extend_from_slice(&b[..clean]);
    let mut start = clean;
    for (i, &c) in b.iter().enumerate().skip(clean) {
        if c >= 0x20 && c != b'"' && c != b'\\' {
            continue;
        }
        out.extend_from_slice(&b[start..i]);
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(c >> 4) as usize]);
                out.push(HEX[(c & 0xf) as usize]);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&b[start..]);
    out.push(b'"');
}

/// Writes `"key":` for a key known to need no escaping.
#[inline]
fn write_plain_key(out: &mut Vec<u8>, key: &str) {
    debug_assert!(
        !key.bytes().any(|c| c < 0x20 || c == b'"' || c == b'\\'),
        "key {key:?} needs escaping"
    );
    out.reserve(key.len() + 3);
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

/// How deep objects may nest.
const MAX_DEPTH: usize = 8;

/// Writes one JSON object into a caller's buffer.
pub struct ObjectWriter<'o> {
    out: &'o mut Vec<u8>,
    keys: [&'static str; MAX_DEPTH],
    /// Objects begun.
    depth: usize,
    /// Of those, objects written (a field landed in them).
    written: usize,
}

impl<'o> ObjectWriter<'o> {
    /// Starts an object at the end of `out`.
    pub fn new(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        ObjectWriter {
            out,
            keys: [""; MAX_DEPTH],
            depth: 0,
            written: 0,
        }
    }

    fn comma(&mut self) {
        if self.out.last() != Some(&b'{') {
            self.out.push(b',');
        }
    }

    /// Begins the nested object `key`; it appears only if a field is written in it.
    pub fn begin(&mut self, key: &'static str) {
        debug_assert!(
            self.depth < MAX_DEPTH,
            "objects nested deeper than {MAX_DEPTH}"
        );
        self.keys[self.depth] = key;
        self.depth += 1;
    }

    /// Ends the innermost object begun.
    pub fn end(&mut self) {
        debug_assert!(self.depth > 0, "end() without begin()");
        if self.written == self.depth {
            self.out.push(b'}');
            self.written -= 1;
        }
        self.depth -= 1;
    }

    fn open_pending(&mut self) {
        while self.written < self.depth {
            self.comma();
            write_plain_key(self.out, self.keys[self.written]);
            self.out.push(b'{');
            self.written += 1;
        }
        self.comma();
    }

    /// Writes `key: value` in the innermost object; `key` is one of the schema's names,
    /// which need no escaping.
    pub fn field(&mut self, key: &'static str, value: impl JsonValue) {
        self.open_pending();
        write_plain_key(self.out, key);
        value.write_json(self.out);
    }

    /// Appends members rendered beforehand (`"a":1,"b":{…}`, no braces) to the innermost
    /// object. The caller guarantees they are valid JSON members and that no key repeats one
    /// written around them.
    pub fn members(&mut self, raw: &[u8]) {
        if raw.is_empty() {
            return;
        }
        self.open_pending();
        self.out.extend_from_slice(raw);
    }

    /// Writes `key: value` with a key from the input (an operator or JSON key), escaped.
    pub fn field_escaped(&mut self, key: &str, value: impl JsonValue) {
        self.open_pending();
        write_str(self.out, key);
        self.out.push(b':');
        value.write_json(self.out);
    }

    /// Closes the document.
    pub fn finish(mut self) {
        debug_assert_eq!(self.depth, 0, "begin() without end()");
        while self.depth > 0 {
            self.end();
        }
        self.out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(f: impl FnOnce(&mut ObjectWriter<'_>)) -> String {
        let mut out = Vec::new();
        let mut w = ObjectWriter::new(&mut out);
        f(&mut w);
        w.finish();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn nests_lazily() {
        let s = doc(|w| {
            w.field("@timestamp", "t");
            w.begin("http");
            w.begin("request");
            w.field("method", "GET");
            w.field("id", "x");
            w.end();
            w.begin("response");
            w.end();
            w.field("version", "1.1");
            w.end();
            w.begin("empty");
            w.begin("deeper");
            w.end();
            w.end();
            w.begin("envoy");
            w.field_escaped("req_\"x", 5u64);
            w.end();
        });
        assert_eq!(
            s,
            r#"{"@timestamp":"t","http":{"request":{"method":"GET","id":"x"},"version":"1.1"},"envoy":{"req_\"x":5}}"#
        );
        serde_json::from_str::<serde_json::Value>(&s).unwrap();
    }

    #[test]
    fn escapes_strings() {
        for (input, want) in [
            ("a\"b\\c\n\u{1}é", r#""a\"b\\c\n\u0001é""#),
            ("0123456789abcdef\"", r#""0123456789abcdef\"""#),
            ("01234567\t", r#""01234567\t""#),
            (
                "plain text that is long enough to take the word path",
                r#""plain text that is long enough to take the word path""#,
            ),
            ("", r#""""#),
        ] {
            let mut out = Vec::new();
            write_str(&mut out, input);
            assert_eq!(String::from_utf8(out.clone()).unwrap(), want);
            let back: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, input);
        }
    }

    #[test]
    fn swar_agrees_with_the_byte_rule() {
        for b in 0u8..=255 {
            for pos in 0..8 {
                let mut w = [b'a'; 8];
                w[pos] = b;
                let want = b < 0x20 || b == b'"' || b == b'\\';
                assert_eq!(
                    word_needs_escape(u64::from_le_bytes(w)),
                    want,
                    "byte {b:#x} at {pos}"
                );
            }
        }
    }

    #[test]
    fn arrays_and_empty() {
        assert_eq!(
            doc(|w| w.field("b", StrArray(["x", "y"].into_iter()))),
            r#"{"b":["x","y"]}"#
        );
        assert_eq!(doc(|_| {}), "{}");
    }
}
