//! Reads a file from an offset in blocks: a plain file, or a gzip-compressed rotation of
//! one (the kubelet compresses older rotations), where the offset counts decompressed
//! bytes so that reading continues where the plain file was left.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use flate2::read::MultiGzDecoder;

use super::identity::DevIno;

enum Source {
    Plain(File),
    Gzip(Box<MultiGzDecoder<File>>),
}

/// An open file and the offset of the next byte to read.
pub struct FileReader {
    source: Source,
    /// Bytes consumed from the (decompressed) stream.
    pub offset: u64,
    /// Its identity while open.
    pub dev_ino: DevIno,
}

/// True for a gzip file name.
pub fn is_gzip(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
}

impl FileReader {
    /// Opens `path` at `offset`; for gzip, decompresses and discards up to it.
    pub fn open(path: &Path, offset: u64) -> io::Result<FileReader> {
        let mut file = File::open(path)?;
        let dev_ino = DevIno::of(&file.metadata()?);
        if !is_gzip(path) {
            file.seek(SeekFrom::Start(offset))?;
            return Ok(FileReader {
                source: Source::Plain(file),
                offset,
                dev_ino,
            });
        }
        let mut gz = Box::new(MultiGzDecoder::new(file));
        let skipped = io::copy(&mut (&mut *gz).take(offset), &mut io::sink())?;
        if skipped < offset {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} decompresses to {skipped} bytes, fewer than the checkpoint's {offset}",
                    path.display()
                ),
            ));
        }
        Ok(FileReader {
            source: Source::Gzip(gz),
            offset,
            dev_ino,
        })
    }

    /// The first bytes of a file (decompressed for gzip), for its fingerprint.
    pub fn head(path: &Path, n: usize) -> io::Result<Vec<u8>> {
        let file = File::open(path)?;
        let mut out = Vec::with_capacity(n);
        if is_gzip(path) {
            MultiGzDecoder::new(file)
                .take(n as u64)
                .read_to_end(&mut out)?;
        } else {
            file.take(n as u64).read_to_end(&mut out)?;
        }
        Ok(out)
    }

    /// Appends up to `max` bytes to `buf`; 0 at the current end. On an error nothing is
    /// appended and the offset stays (the caller reopens there).
    pub fn read_block(&mut self, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        let start = buf.len();
        // Into the buffer's spare capacity, which a file read does not zero first: a tailer
        // polling a thousand idle files would otherwise clear a block for each, each turn.
        buf.reserve(max);
        let read = match &mut self.source {
            Source::Plain(f) => f.take(max as u64).read_to_end(buf),
            Source::Gzip(g) => (&mut **g).take(max as u64).read_to_end(buf),
        };
        if let Err(e) = read {
            buf.truncate(start);
            return Err(e);
        }
        let n = buf.len() - start;
        self.offset += n as u64;
        Ok(n)
    }

    /// The first bytes of the open file as they are now (plain files), read without moving
    /// the offset: tells whether the file was rewritten under us.
    pub fn head_now(&self) -> Option<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let Source::Plain(f) = &self.source else {
            return None;
        };
        let mut buf = vec![0u8; super::identity::FINGERPRINT_BYTES];
        let n = f.read_at(&mut buf, 0).ok()?;
        buf.truncate(n);
        Some(buf)
    }

    /// The file's size and modification time now (plain files); `None` for gzip.
    pub fn size_and_mtime(&self) -> Option<(u64, Option<std::time::SystemTime>)> {
        match &self.source {
            Source::Plain(f) => f.metadata().ok().map(|m| (m.len(), m.modified().ok())),
            Source::Gzip(_) => None,
        }
    }

    /// The file's size now (plain files); `None` for gzip, which never grows.
    pub fn size(&self) -> Option<u64> {
        match &self.source {
            Source::Plain(f) => f.metadata().ok().map(|m| m.len()),
            Source::Gzip(_) => None,
        }
    }

    /// True when the file has been deleted (no name links to it any more).
    pub fn unlinked(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        match &self.source {
            Source::Plain(f) => f.metadata().is_ok_and(|m| m.nlink() == 0),
            Source::Gzip(g) => g.get_ref().metadata().is_ok_and(|m| m.nlink() == 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gzip_continues_at_the_plain_offset() {
        let dir = std::env::temp_dir().join(format!("meshtrail-reader-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = b"line one\nline two\nline three\n";
        let plain = dir.join("0.log");
        std::fs::write(&plain, text).unwrap();
        let gz = dir.join("0.log.20240101.gz");
        let mut enc =
            flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
        enc.write_all(text).unwrap();
        enc.finish().unwrap();
        for path in [&plain, &gz] {
            let mut r = FileReader::open(path, 9).unwrap();
            let mut buf = Vec::new();
            while r.read_block(&mut buf, 4).unwrap() > 0 {}
            assert_eq!(buf, b"line two\nline three\n", "{}", path.display());
            assert_eq!(r.offset, text.len() as u64);
        }
        assert_eq!(FileReader::head(&gz, 8).unwrap(), b"line one");
        assert!(FileReader::open(&gz, 1000).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
