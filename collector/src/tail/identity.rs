//! A file's identity: device and inode while it is open, and a fingerprint of its first
//! line, which survives rename, compression and restarts, and tells inode reuse apart.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

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

/// FNV-1a 64 of the directory of `path` and the file's first line (with its newline), or
/// of its first [`FINGERPRINT_BYTES`] when the line is longer; `None` while neither is there
/// yet. Rotation keeps a file in its directory (the kubelet's container directory,
/// logrotate's), so the value survives rename and compression; the directory keeps two
/// containers whose first lines agree byte for byte (same text, same timestamp) apart. FNV
/// is written out here because the value is persisted: it must not change with a Rust or
/// crate upgrade.
pub fn fingerprint(path: &Path, head: &[u8]) -> Option<u64> {
    let end = match memchr::memchr(b'\n', &head[..head.len().min(FINGERPRINT_BYTES)]) {
        Some(i) => i + 1,
        None if head.len() >= FINGERPRINT_BYTES => FINGERPRINT_BYTES,
        None => return None,
    };
    let dir = path.parent().map(Path::as_os_str).unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in dir.as_bytes().iter().chain([&0u8]).chain(&head[..end]) {
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
        let p = Path::new("/var/log/pods/ns_a_u/c/0.log");
        assert_eq!(fingerprint(p, b"abc"), None, "no full line yet");
        let a = fingerprint(p, b"first\nsecond").unwrap();
        assert_eq!(
            fingerprint(p, b"first\nother"),
            Some(a),
            "only the first line counts"
        );
        assert_eq!(
            fingerprint(
                Path::new("/var/log/pods/ns_a_u/c/0.log.20261124-100000.gz"),
                b"first\n"
            ),
            Some(a),
            "a rotation in the same directory is the same file"
        );
        assert_ne!(
            fingerprint(Path::new("/var/log/pods/ns_b_u/c/0.log"), b"first\n"),
            Some(a),
            "another container's file with the same first line is another file"
        );
        assert_ne!(fingerprint(p, b"first!\n"), Some(a));
        assert!(
            fingerprint(p, &[b'x'; 300]).is_some(),
            "a long first line is cut"
        );
        // The persisted value must never change: FNV-1a 64 of "/d", a zero byte and "a\n".
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in b"/d\0a\n" {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        assert_eq!(fingerprint(Path::new("/d/f"), b"a\n"), Some(h));
        assert_eq!(
            h, 0x10cf_571c_412d_6181,
            "FNV-1a 64 of the bytes above (computed apart)"
        );
    }
}
