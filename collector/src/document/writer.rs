//! A JSON object writer for a document whose shape is fixed in code: `begin("http")`
//! … `end()` bracket a nested object, which is written only if a field lands in it, so
//! absent groups cost nothing and never appear as `{}`.

/// A value the writer can write.
pub trait JsonValue {
    /// Appends the JSON form of the value.
    fn write_json(&self, out: &mut Vec<u8>);
}

impl JsonValue for &str {
    #[inline]
    fn write_json(&self, out: &mut Vec<u8>) {
        write_str(out, self);
    }
}

macro_rules! int_value {
    ($($t:ty),*) => {$(
        impl JsonValue for $t {
            #[inline]
            fn write_json(&self, out: &mut Vec<u8>) {
                put(out, itoa::Buffer::new().format(*self).as_bytes());
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
    #[inline]
    fn write_json(&self, out: &mut Vec<u8>) {
        out.reserve(self.0.len() + 2);
        out.push(b'"');
        put(out, self.0);
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

/// The eight bytes at `at`.
#[inline(always)]
fn word_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// True when no byte of `b` needs escaping in a JSON string.
#[inline]
fn is_clean(b: &[u8]) -> bool {
    let n = b.len();
    if n < 8 {
        return b.iter().all(|&c| c >= 0x20 && c != b'"' && c != b'\\');
    }
    let mut at = 0;
    while at + 8 < n {
        if word_needs_escape(word_at(b, at)) {
            return false;
        }
        at += 8;
    }
    // The last word overlaps the one before: every byte is looked at, none twice in a way
    // that matters.
    !word_needs_escape(word_at(b, n - 8))
}

/// Appends `b`. Values and keys are mostly a few bytes long; for those, fixed-size copies
/// the compiler inlines beat a call into `memcpy`.
#[inline(always)]
fn put(out: &mut Vec<u8>, b: &[u8]) {
    let n = b.len();
    if n < 4 {
        for &c in b {
            out.push(c);
        }
        return;
    }
    if n > 16 {
        out.extend_from_slice(b);
        return;
    }
    let at = out.len();
    out.extend_from_slice(&[0u8; 16]);
    let dst = &mut out[at..at + 16];
    if n >= 8 {
        dst[..8].copy_from_slice(&b[..8]);
        dst[n - 8..n].copy_from_slice(&b[n - 8..]);
    } else {
        dst[..4].copy_from_slice(&b[..4]);
        dst[n - 4..n].copy_from_slice(&b[n - 4..]);
    }
    out.truncate(at + n);
}

/// Appends `s` as a JSON string.
#[inline(always)]
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    out.reserve(b.len() + 2);
    out.push(b'"');
    if is_clean(b) {
        put(out, b);
    } else {
        write_escaped(out, b);
    }
    out.push(b'"');
}

/// The body of a JSON string that needs escaping.
#[cold]
fn write_escaped(out: &mut Vec<u8>, b: &[u8]) {
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
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
}

/// Writes `"key":` for a key known to need no escaping. Inlined where `key` is a
/// constant, so the copy is too.
#[inline(always)]
fn write_plain_key(out: &mut Vec<u8>, key: &str) {
    debug_assert!(is_clean(key.as_bytes()), "key {key:?} needs escaping");
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
    /// The innermost written object has a member already: the next one takes a comma.
    comma: bool,
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
            comma: false,
        }
    }

    /// Begins the nested object `key`; it appears only if a field is written in it.
    #[inline]
    pub fn begin(&mut self, key: &'static str) {
        debug_assert!(
            self.depth < MAX_DEPTH,
            "objects nested deeper than {MAX_DEPTH}"
        );
        self.keys[self.depth] = key;
        self.depth += 1;
    }

    /// Ends the innermost object begun.
    #[inline]
    pub fn end(&mut self) {
        debug_assert!(self.depth > 0, "end() without begin()");
        if self.written == self.depth {
            self.out.push(b'}');
            self.written -= 1;
            self.comma = true;
        }
        self.depth -= 1;
    }

    /// Opens the objects begun but not yet written, then places the comma a member needs.
    #[inline(always)]
    fn next_member(&mut self) {
        if self.written < self.depth {
            self.open_pending();
        }
        if self.comma {
            self.out.push(b',');
        }
        self.comma = true;
    }

    fn open_pending(&mut self) {
        while self.written < self.depth {
            if self.comma {
                self.out.push(b',');
            }
            write_plain_key(self.out, self.keys[self.written]);
            self.out.push(b'{');
            self.written += 1;
            self.comma = false;
        }
    }

    /// Writes `key: value` in the innermost object; `key` is one of the schema's names,
    /// which need no escaping.
    #[inline(always)]
    pub fn field(&mut self, key: &'static str, value: impl JsonValue) {
        self.next_member();
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
        self.next_member();
        self.out.extend_from_slice(raw);
    }

    /// Writes `key: value` with a key from the input (an operator or JSON key), escaped.
    pub fn field_escaped(&mut self, key: &str, value: impl JsonValue) {
        self.next_member();
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
    fn clean_check_and_copy_see_every_byte_at_every_length() {
        for n in 0..40usize {
            let plain: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            assert!(is_clean(&plain), "length {n}");
            let mut out = b"x".to_vec();
            put(&mut out, &plain);
            assert_eq!(&out[1..], &plain[..], "length {n}");
            for pos in 0..n {
                for bad in [b'"', b'\\', 0x1f, 0] {
                    let mut b = plain.clone();
                    b[pos] = bad;
                    assert!(!is_clean(&b), "length {n}, {bad:#x} at {pos}");
                }
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
