//! Gzip for bulk bodies (RFC 1952 around RFC 1951 deflate), built for the one kind of data
//! it gets: JSON documents that repeat each other's keys and differ in their values.
//!
//! Compressing was half of the agent's CPU per line with zlib-rs at level 1 (its
//! `deflate_quick`: greedy matches on a 4-byte hash, fixed Huffman codes). This is the same
//! kind of compressor with the choices these documents reward: a 7-byte hash, so that a
//! candidate is nearly always the start of a long match (a key and what follows it) and
//! short matches inside values are not chased; one fixed-code block for the whole body,
//! no window copy (matches point into the slice being compressed) and literals coded two
//! at a time. On the benchmark's documents it spends 1.6 µs per 2 KB document where
//! zlib-rs spent 2.1, and the body is 3 % smaller. Any inflater reads it; the tests check
//! it against zlib-rs's.

use std::io::{self, Write};

/// Matches reach back at most this far (deflate's window).
const WINDOW: usize = 32 * 1024;
/// Which gzip writer compresses bulk bodies (`sink.gzip_writer`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Writer {
    /// [`Gzip`]: this module's writer.
    #[default]
    Meshtrail,
    /// zlib-rs at level 1 through `flate2`: the reference, if a reader ever disagrees with
    /// [`Gzip`]'s streams.
    Zlib,
}

/// Deflate's longest match.
const MAX_MATCH: usize = 258;
/// Matches are only taken from this length (a candidate is checked on 4 bytes).
const MIN_MATCH: usize = 4;
/// Slots of the hash table: positions of the last 7-byte sequence hashing to each.
const HASH_BITS: u32 = 16;
/// Input compressed, then summed, at a time: small enough to stay in the core's cache.
const PIECE: usize = 64 * 1024;

/// A gzip stream being written into a `Vec`: [`Write`] appends uncompressed bytes,
/// [`Gzip::finish`] ends the stream and returns it. Matches are found within each `write`
/// call's slice (never across calls): callers write whole runs of documents at once.
pub struct Gzip {
    out: Vec<u8>,
    /// Bits not yet in `out`, the oldest in the lowest bits (deflate's bit order).
    bits: u64,
    /// How many bits of `bits` are used; below 32 between calls.
    used: u32,
    /// Per hash, the position (counted over all input, wrapping) last seen with it.
    table: Vec<u32>,
    /// Input written so far (its low 32 bits name positions in `table`).
    len: u64,
    crc: flate2::Crc,
}

impl Gzip {
    /// A stream appended to `out`: writes the gzip header and opens the deflate block.
    pub fn new(mut out: Vec<u8>) -> Gzip {
        // Magic, deflate, no flags, no mtime, "fastest" (XFL 4), OS unknown.
        out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 0xff]);
        let mut gz = Gzip {
            out,
            bits: 0,
            used: 0,
            table: vec![0; 1 << HASH_BITS],
            len: 0,
            crc: flate2::Crc::new(),
        };
        gz.put(0b010, 3); // BFINAL 0, BTYPE 01: fixed Huffman codes
        gz
    }

    /// Ends the block, adds an empty final one, the CRC-32 and the length; returns the
    /// whole stream.
    pub fn finish(mut self) -> Vec<u8> {
        self.put(0, 7); // end of block (symbol 256: seven zero bits)
        self.put(0b011, 3); // BFINAL 1, fixed codes
        self.put(0, 7); // and its end
        while self.used > 0 {
            self.out.push(self.bits as u8);
            self.bits >>= 8;
            self.used = self.used.saturating_sub(8);
        }
        self.out.extend_from_slice(&self.crc.sum().to_le_bytes());
        // ISIZE is the length modulo 2^32.
        self.out.extend_from_slice(&(self.len as u32).to_le_bytes());
        self.out
    }

    /// Appends `n` bits (at most 32 with what is pending below 32: the sum stays in 64).
    #[inline(always)]
    fn put(&mut self, code: u32, n: u32) {
        self.bits |= u64::from(code) << self.used;
        self.used += n;
        if self.used >= 32 {
            self.out
                .extend_from_slice(&(self.bits as u32).to_le_bytes());
            self.bits >>= 32;
            self.used -= 32;
        }
    }

    #[inline(always)]
    fn literals(&mut self, s: &[u8]) {
        let mut pairs = s.chunks_exact(2);
        for pair in &mut pairs {
            let (c0, n0) = LITERAL[usize::from(pair[0])];
            let (c1, n1) = LITERAL[usize::from(pair[1])];
            self.put(
                u32::from(c0) | u32::from(c1) << n0,
                u32::from(n0) + u32::from(n1),
            );
        }
        for &b in pairs.remainder() {
            let (c, n) = LITERAL[usize::from(b)];
            self.put(u32::from(c), u32::from(n));
        }
    }

    /// Compresses `s[start..]` from `start` until at least `to`, matches reaching back to
    /// the start of `s` (`s[0]` is input position `base`); returns where it stopped.
    fn compress(&mut self, s: &[u8], base: u32, start: usize, to: usize) -> usize {
        let n = s.len();
        let mut i = start;
        // Start of the literals not yet written.
        let mut pending = start;
        // Each position reads 8 bytes for its hash; the last 7 go as literals.
        while i < to && i + 8 <= n {
            let word = load64(s, i);
            let slot =
                ((word << 8).wrapping_mul(0x9E37_79B1_7F4A_7C15) >> (64 - HASH_BITS)) as usize;
            let here = base.wrapping_add(i as u32);
            let seen = std::mem::replace(&mut self.table[slot], here);
            let distance = here.wrapping_sub(seen) as usize;
            // A slot may hold a position of an earlier call (then `distance > i`) or a
            // colliding sequence: a match is taken only when its first bytes are equal.
            if distance.wrapping_sub(1) < WINDOW
                && distance <= i
                && load32(s, i - distance) == word as u32
            {
                let from = i - distance;
                let len = match_len(s, from, i, MAX_MATCH.min(n - i));
                self.literals(&s[pending..i]);
                let (lc, ln) = LENGTH[len];
                let (dc, dn) = distance_code(distance);
                self.put(lc | dc << ln, u32::from(ln) + dn);
                i += len;
                pending = i;
            } else {
                i += 1;
            }
        }
        if i + 8 > n {
            i = n;
        }
        self.literals(&s[pending..i]);
        i
    }
}

impl Write for Gzip {
    fn write(&mut self, s: &[u8]) -> io::Result<usize> {
        // A cache-sized piece at a time, compressed then summed while it is still cached.
        let base = self.len as u32;
        let mut done = 0;
        while done < s.len() {
            let next = self.compress(s, base, done, (done + PIECE).min(s.len()));
            self.crc.update(&s[done..next]);
            done = next;
        }
        self.len += s.len() as u64;
        Ok(s.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How far the bytes at `at` repeat those at `from` (`from < at`), from `MIN_MATCH`
/// (already compared) to `max`, comparing 8 bytes at a time.
#[inline(always)]
fn match_len(s: &[u8], from: usize, at: usize, max: usize) -> usize {
    let mut len = MIN_MATCH;
    while len + 8 <= max {
        let diff = load64(s, from + len) ^ load64(s, at + len);
        if diff != 0 {
            return len + (diff.trailing_zeros() / 8) as usize;
        }
        len += 8;
    }
    while len < max && s[from + len] == s[at + len] {
        len += 1;
    }
    len
}

#[inline(always)]
fn load32(s: &[u8], i: usize) -> u32 {
    let mut b = [0; 4];
    b.copy_from_slice(&s[i..i + 4]);
    u32::from_le_bytes(b)
}

#[inline(always)]
fn load64(s: &[u8], i: usize) -> u64 {
    let mut b = [0; 8];
    b.copy_from_slice(&s[i..i + 8]);
    u64::from_le_bytes(b)
}

/// The fixed Huffman code of a literal/length symbol (RFC 1951 §3.2.6), bit-reversed as
/// deflate sends Huffman codes, and its length.
const fn fixed_code(symbol: u32) -> (u32, u32) {
    let (code, len) = match symbol {
        0..=143 => (0x30 + symbol, 8),
        144..=255 => (0x190 + symbol - 144, 9),
        256..=279 => (symbol - 256, 7),
        _ => (0xc0 + symbol - 280, 8),
    };
    (reverse(code, len), len)
}

const fn reverse(code: u32, len: u32) -> u32 {
    let mut out = 0;
    let mut i = 0;
    while i < len {
        out |= ((code >> i) & 1) << (len - 1 - i);
        i += 1;
    }
    out
}

const LENGTH_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LENGTH_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DISTANCE_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DISTANCE_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

/// Code and length of each literal byte.
const LITERAL: [(u16, u8); 256] = {
    let mut t = [(0, 0); 256];
    let mut b = 0;
    while b < 256 {
        let (code, len) = fixed_code(b as u32);
        t[b] = (code as u16, len as u8);
        b += 1;
    }
    t
};

/// Per match length (3 to 258): its symbol's code followed by the extra bits, and their
/// total length.
const LENGTH: [(u32, u8); MAX_MATCH + 1] = {
    let mut t = [(0, 0); MAX_MATCH + 1];
    let mut sym = 0;
    let mut len = 3;
    while len <= MAX_MATCH {
        while sym < 28 && len >= LENGTH_BASE[sym + 1] as usize {
            sym += 1;
        }
        let (code, n) = fixed_code(257 + sym as u32);
        let extra = (len - LENGTH_BASE[sym] as usize) as u32;
        t[len] = (code | extra << n, (n + LENGTH_EXTRA[sym] as u32) as u8);
        len += 1;
    }
    t
};

/// The distance symbol of `d - 1` for `d` up to 256, then of `256 + (d - 1) / 128`.
const DISTANCE_SYMBOL: [u8; 512] = {
    let mut t = [0; 512];
    let mut i = 0;
    while i < 512 {
        let d = if i < 256 { i + 1 } else { ((i - 256) << 7) + 1 };
        let mut sym = 0;
        while sym < 29 && d >= DISTANCE_BASE[sym + 1] as usize {
            sym += 1;
        }
        t[i] = sym as u8;
        i += 1;
    }
    t
};

/// Distance `d` (1 to 32768): its 5-bit code followed by the extra bits, and their length.
#[inline(always)]
fn distance_code(d: usize) -> (u32, u32) {
    let sym = usize::from(if d <= 256 {
        DISTANCE_SYMBOL[d - 1]
    } else {
        DISTANCE_SYMBOL[256 + ((d - 1) >> 7)]
    });
    let extra = (d - usize::from(DISTANCE_BASE[sym])) as u32;
    (
        reverse(sym as u32, 5) | extra << 5,
        5 + u32::from(DISTANCE_EXTRA[sym]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Read;

    fn gzip(parts: &[&[u8]]) -> Vec<u8> {
        let mut gz = Gzip::new(Vec::new());
        for p in parts {
            gz.write_all(p).unwrap();
        }
        gz.finish()
    }

    /// Inflated by zlib-rs, which also checks the CRC and the length.
    fn gunzip(z: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(z).read_to_end(&mut out)?;
        Ok(out)
    }

    fn documents(n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..n {
            writeln!(
                out,
                r#"{{"create":{{"_index":"logs-meshtrail.access-default","_id":"{:036x}"}}}}"#,
                i * 7919
            )
            .unwrap();
            writeln!(
                out,
                r#"{{"@timestamp":"2026-11-24T10:00:{:02}.{:03}Z","source":{{"ip":"10.{}.{}.7","port":{}}},"http":{{"response":{{"status_code":{}}}}},"url":{{"path":"/api/v1/items/{}"}}}}"#,
                i % 60,
                i % 1000,
                i % 256,
                i * 31 % 256,
                30000 + i,
                [200, 403, 503][i % 3],
                i * 104_729 % 100_000
            )
            .unwrap();
        }
        out
    }

    #[test]
    fn round_trips_edge_inputs() {
        let long_run = vec![b'a'; 100_000];
        let mut all_bytes: Vec<u8> = (0..=255).collect();
        all_bytes.extend((0..=255).rev());
        // A sequence repeated at exactly the window's reach, and just beyond it.
        let mut far = Vec::new();
        for gap in [WINDOW - 16, WINDOW - 15, WINDOW - 14] {
            far.extend_from_slice(b"0123456789abcdef");
            far.extend((0..gap).map(|i| (i * 131 % 251) as u8));
        }
        far.extend_from_slice(b"0123456789abcdef");
        for input in [
            &b""[..],
            b"x",
            b"1234567",
            b"12345678",
            b"abcdabcdabcdabcd",
            &long_run,
            &all_bytes,
            &far,
        ] {
            let z = gzip(&[input]);
            assert_eq!(gunzip(&z).unwrap(), input, "{} bytes", input.len());
        }
        // One byte repeated: overlapping matches at distance 1, each 258 long.
        assert!(gzip(&[&long_run]).len() < 1_000);
    }

    #[test]
    fn documents_round_trip_in_runs_and_compress_like_zlib_level_1() {
        let docs = documents(3_000);
        let (a, b) = docs.split_at(docs.len() / 3);
        let (b, c) = b.split_at(b.len() / 2);
        let z = gzip(&[a, b, c]);
        assert_eq!(gunzip(&z).unwrap(), docs);
        let mut zlib = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        zlib.write_all(&docs).unwrap();
        let zlib = zlib.finish().unwrap();
        assert!(
            z.len() * 10 <= zlib.len() * 11,
            "{} bytes here, {} from zlib-rs level 1",
            z.len(),
            zlib.len()
        );
    }

    #[test]
    fn a_damaged_trailer_is_caught_by_the_inflater() {
        // The round trips above mean something only if the CRC and length are checked.
        let mut z = gzip(&[&documents(10)]);
        let at = z.len() - 6;
        z[at] ^= 1;
        assert!(gunzip(&z).is_err());
    }

    #[test]
    fn length_and_distance_tables_match_the_rfc() {
        // Spot checks from RFC 1951 §3.2.5, codes as sent (reversed).
        assert_eq!(LENGTH[3], (reverse(1, 7), 7)); // symbol 257
        assert_eq!(LENGTH[10], (reverse(8, 7), 7)); // 264
        assert_eq!(LENGTH[12], (reverse(9, 7) | 1 << 7, 8)); // 265, extra 1
        assert_eq!(LENGTH[227], (reverse(0xc0 + 4, 8), 13)); // 284, extra 0
        assert_eq!(LENGTH[258], (reverse(0xc0 + 5, 8), 8)); // 285
        assert_eq!(distance_code(1), (0, 5));
        assert_eq!(distance_code(5), (reverse(4, 5), 6));
        assert_eq!(distance_code(257), (reverse(16, 5), 12));
        assert_eq!(distance_code(32768), (reverse(29, 5) | 8191 << 5, 18));
    }

    proptest! {
        #[test]
        fn any_writes_round_trip(
            parts in prop::collection::vec(
                prop::collection::vec(prop::sample::select(b"ab{}\":,0\xff".to_vec()), 0..600),
                0..8,
            ),
            noise in prop::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut all: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            all.push(&noise);
            let z = gzip(&all);
            prop_assert_eq!(gunzip(&z).unwrap(), all.concat());
        }
    }
}
