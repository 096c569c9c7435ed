//! A file's identity: device and inode while it is open, and a fingerprint of its first
//! line, which survives rename, compression and restarts, and tells inode reuse apart.

use std::os::unix::fs::MetadataExt;

/// Device and inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DevIno {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
}

impl DevIno {
    /// From a file's metadata.
    pub fn of(meta: &std::fs::Metadata) -> DevIno {
        DevIno {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// How many bytes of the first line the fingerprint covers.
pub const FINGERPRINT_BYTES: usize = 256;

/// FNV-1a 64 of the file's first line (with its newline), or of its first
/// [`FINGERPRINT_BYTES`] when the line is longer; `None` while neither is there yet. A
/// container runtime's first line starts with a nanosecond timestamp, so two files' first
/// lines practically never agree. FNV is written out here because the value is persisted:
/// it must not change with a Rust or crate upgrade.
pub fn fingerprint(head: &[u8]) -> Option<u64> {
    let end = match memchr::memchr(b'\n', &head[..head.len().min(FINGERPRINT_BYTES)]) {
        Some(i) => i + 1,
        None if head.len() >= FINGERPRINT_BYTES => FINGERPRINT_BYTES,
        None => return None,
    };
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in &head[..end] {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    Some(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints() {
        assert_eq!(fingerprint(b"abc"), None, "no full line yet");
        let a = fingerprint(b"first\nsecond").unwrap();
        assert_eq!(
            fingerprint(b"first\nother"),
            Some(a),
            "only the first line counts"
        );
        assert_ne!(fingerprint(b"first!\n"), Some(a));
        assert!(
            fingerprint(&[b'x'; 300]).is_some(),
            "a long first line is cut"
        );
        // The published FNV-1a 64 test vector: the value must never change.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in b"a" {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        assert_eq!(h, 0xaf63_dc4c_8601_ec8c);
    }
}
