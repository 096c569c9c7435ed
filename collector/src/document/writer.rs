//! A JSON object writer that nests by dotted path: `field("http.request.method", …)`
//! opens `http` and `request` as needed and closes them when the next path leaves them.
//! Callers write fields grouped by prefix; a debug assertion catches a group reopened.

use smallvec_lite::Stack;

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

impl JsonValue for bool {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(if *self { b"true" } else { b"false" });
    }
}

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

/// Text already formatted (a timestamp) written as a JSON string without escaping.
pub struct Preformatted<'a>(pub &'a [u8]);

impl JsonValue for Preformatted<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'"');
        out.extend_from_slice(self.0);
        out.push(b'"');
    }
}

/// Bytes that need escaping in a JSON string.
static ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// Appends `s` as a JSON string.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let b = s.as_bytes();
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        if !ESCAPE[c as usize] {
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

/// Writes one JSON object into a caller's buffer.
pub struct ObjectWriter<'o, 'k> {
    out: &'o mut Vec<u8>,
    open: Stack<'k>,
    #[cfg(debug_assertions)]
    closed: Vec<String>,
}

impl<'o, 'k> ObjectWriter<'o, 'k> {
    /// Starts an object at the end of `out`.
    pub fn new(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        ObjectWriter {
            out,
            open: Stack::default(),
            #[cfg(debug_assertions)]
            closed: Vec::new(),
        }
    }

    fn comma(&mut self) {
        if self.out.last() != Some(&b'{') {
            self.out.push(b',');
        }
    }

    /// Makes `parents` the open objects, closing and opening as needed.
    fn enter(&mut self, parents: &[&'k str]) {
        let common = self
            .open
            .iter()
            .zip(parents)
            .take_while(|(a, b)| a == b)
            .count();
        while self.open.len() > common {
            #[cfg(debug_assertions)]
            {
                let path = self.open.iter().copied().collect::<Vec<_>>().join(".");
                self.closed.push(path);
            }
            self.open.pop();
            self.out.push(b'}');
        }
        for seg in &parents[common..] {
            self.comma();
            write_str(self.out, seg);
            self.out.extend_from_slice(b":{");
            self.open.push(seg);
            #[cfg(debug_assertions)]
            {
                let path = self.open.iter().copied().collect::<Vec<_>>().join(".");
                debug_assert!(!self.closed.contains(&path), "object {path} written twice");
            }
        }
    }

    /// Writes `value` at a dotted `path` such as `http.request.method`.
    pub fn field(&mut self, path: &'k str, value: impl JsonValue) {
        let mut segs: [&'k str; 8] = [""; 8];
        let mut n = 0;
        for seg in path.split('.') {
            segs[n] = seg;
            n += 1;
        }
        let (key, parents) = (segs[n - 1], &segs[..n - 1]);
        self.enter(parents);
        self.comma();
        write_str(self.out, key);
        self.out.push(b':');
        value.write_json(self.out);
    }

    /// Writes `value` under `key` inside the object at dotted `parent`; `key` is taken
    /// whole, dots included.
    pub fn field_in(&mut self, parent: &'k str, key: &str, value: impl JsonValue) {
        let mut segs: [&'k str; 8] = [""; 8];
        let mut n = 0;
        for seg in parent.split('.') {
            segs[n] = seg;
            n += 1;
        }
        self.enter(&segs[..n]);
        self.comma();
        write_str(self.out, key);
        self.out.push(b':');
        value.write_json(self.out);
    }

    /// Closes every open object and the document.
    pub fn finish(mut self) {
        self.enter(&[]);
        self.out.push(b'}');
    }
}

/// A tiny fixed-capacity stack, so that writing a document allocates nothing.
mod smallvec_lite {
    #[derive(Default)]
    pub struct Stack<'k> {
        items: [&'k str; 8],
        len: usize,
    }

    impl<'k> Stack<'k> {
        pub fn iter(&self) -> std::slice::Iter<'_, &'k str> {
            self.items[..self.len].iter()
        }
        pub fn len(&self) -> usize {
            self.len
        }
        pub fn push(&mut self, s: &'k str) {
            self.items[self.len] = s;
            self.len += 1;
        }
        pub fn pop(&mut self) {
            self.len -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(f: impl FnOnce(&mut ObjectWriter<'_, 'static>)) -> String {
        let mut out = Vec::new();
        let mut w = ObjectWriter::new(&mut out);
        f(&mut w);
        w.finish();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn nests_by_path() {
        let s = doc(|w| {
            w.field("@timestamp", "t");
            w.field("http.request.method", "GET");
            w.field("http.request.id", "x");
            w.field("http.response.status_code", 200u16);
            w.field("url.original", "/a");
            w.field_in("envoy", "req_x", "v");
        });
        assert_eq!(
            s,
            r#"{"@timestamp":"t","http":{"request":{"method":"GET","id":"x"},"response":{"status_code":200}},"url":{"original":"/a"},"envoy":{"req_x":"v"}}"#
        );
        serde_json::from_str::<serde_json::Value>(&s).unwrap();
    }

    #[test]
    fn escapes_strings() {
        let s = doc(|w| w.field("m", "a\"b\\c\n\u{1}é"));
        assert_eq!(s, r#"{"m":"a\"b\\c\n\u0001é"}"#);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["m"], "a\"b\\c\n\u{1}é");
    }

    #[test]
    fn arrays_and_empty() {
        assert_eq!(
            doc(|w| w.field("a.b", StrArray(["x", "y"].into_iter()))),
            r#"{"a":{"b":["x","y"]}}"#
        );
        assert_eq!(doc(|_| {}), "{}");
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "object http written twice")]
    fn reopening_a_group_is_caught() {
        doc(|w| {
            w.field("http.a", 1u16);
            w.field("url.b", 1u16);
            w.field("http.c", 1u16);
        });
    }
}
