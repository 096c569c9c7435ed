//! Tailing: finds the files, reads them fairly in large blocks, unwraps and joins container
//! records into lines, and hands batches of lines to the pipeline, within the in-flight
//! byte budget. It follows files across rename (kubelet rotation), compression (`.gz`),
//! truncation (copytruncate) and deletion, and persists the acknowledged position of each.
//!
//! Each batch carries the byte range it settles: from the end of the previous batch to the
//! first byte not yet handed on, which is never past the head of a line still waiting for
//! its last partial record. The checkpoint is the low-water mark of acknowledged ranges, so
//! a restart replays at most the unacknowledged lines and never skips one.

pub mod config;
pub mod discover;
pub mod identity;
pub mod reader;
pub mod watch;

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use meshtrail_parsers::frame::{self, Stream};
use meshtrail_parsers::partial::{Joined, Joiner};
use tracing::{info, warn};

use crate::ack::{Acks, Budget, FileId};
use crate::checkpoint::{Entry, Store};
use crate::enrich::PathMeta;
use crate::stats::{self, Counters};
pub use config::{StartAt, TailSettings};
use discover::{Found, Patterns};
use identity::{DevIno, FINGERPRINT_BYTES, fingerprint};
use reader::FileReader;
use watch::{Wake, Watch};

/// What every line of a file shares.
#[derive(Debug)]
pub struct FileMeta {
    /// The id acknowledgements name.
    pub id: FileId,
    /// `log.file.path`: where the file was found.
    pub path: String,
    /// What the path says of the container.
    pub kube: PathMeta,
    /// The file's fingerprint, once its first line has been read.
    pub fingerprint: OnceLock<u64>,
}

/// One line of a batch, as ranges into the batch's data.
#[derive(Clone, Debug)]
pub struct Line {
    /// The line's bytes.
    pub body: Range<usize>,
    /// The runtime's timestamp.
    pub time: Range<usize>,
    /// Its stream.
    pub stream: Option<Stream>,
    /// Offset of its first byte in the file.
    pub offset: u64,
    /// How many records it was joined from.
    pub records: u32,
    /// Bytes cut off it.
    pub truncated_bytes: u64,
}

/// Lines of one file, and the byte range their delivery settles.
#[derive(Debug)]
pub struct LineBatch {
    /// The file.
    pub file: Arc<FileMeta>,
    /// Settled range start.
    pub start: u64,
    /// Settled range end.
    pub end: u64,
    /// Line bodies and timestamps.
    pub data: Vec<u8>,
    /// The lines.
    pub lines: Vec<Line>,
    /// Bytes taken from the in-flight budget, returned on acknowledgement.
    pub reserved: usize,
}

impl LineBatch {
    /// A batch of `file` settling nothing yet, from `at`.
    fn empty(file: Arc<FileMeta>, at: u64) -> LineBatch {
        LineBatch {
            file,
            start: at,
            end: at,
            data: Vec::new(),
            lines: Vec::new(),
            reserved: 0,
        }
    }

    /// A line as the pipeline takes it.
    pub fn joined(&self, line: &Line) -> Joined<'_> {
        Joined {
            body: std::borrow::Cow::Borrowed(&self.data[line.body.clone()]),
            time: (!line.time.is_empty())
                .then(|| std::str::from_utf8(&self.data[line.time.clone()]).ok())
                .flatten()
                .map(std::borrow::Cow::Borrowed),
            stream: line.stream,
            offset: line.offset,
            records: line.records,
            truncated_bytes: line.truncated_bytes,
        }
    }
}

struct Tracked {
    meta: Arc<FileMeta>,
    target: PathBuf,
    reader: FileReader,
    fingerprint: Option<u64>,
    /// Bytes after the last newline, starting at file offset `carry_start`.
    carry: Vec<u8>,
    carry_start: u64,
    /// Bytes of an over-long record dropped while waiting for its newline.
    skipping: u64,
    /// Offsets of lines the sink already holds (it said so at start), ascending.
    delivered: Arc<Vec<u64>>,
    joiner: Joiner,
    /// End of the range the last batch settled.
    sent_to: u64,
    /// Not found by the last scan (renamed away or deleted).
    gone: bool,
    last_growth: Instant,
    /// The file's mtime after the last read that returned data.
    read_mtime: Option<std::time::SystemTime>,
    at_eof: bool,
    /// Its directory is watched: inotify says when it changes.
    watched: bool,
    /// Looked at in this turn (a retired file must have been).
    looked: bool,
}

/// The tail stage's settings.
pub struct TailOptions {
    /// Include and exclude patterns, compiled from `settings`.
    pub patterns: Patterns,
    /// The validated `tail:` section.
    pub settings: TailSettings,
    /// How often to write checkpoints.
    pub checkpoint_interval: Duration,
    /// Stop once every file is read to its end and acknowledged (`run --once`).
    pub once: bool,
    /// Where a SIGHUP leaves new options.
    pub reload: Option<Arc<std::sync::Mutex<Option<TailOptions>>>>,
}

impl TailOptions {
    /// From validated settings.
    pub fn from_settings(s: &TailSettings) -> Result<TailOptions, String> {
        Ok(TailOptions {
            patterns: Patterns::new(&s.include, &s.exclude)?,
            settings: s.clone(),
            checkpoint_interval: Duration::from_secs(1),
            once: false,
            reload: None,
        })
    }
}

/// The tail stage.
pub struct Tailer {
    opts: TailOptions,
    files: Vec<Tracked>,
    next_id: FileId,
    acks: Arc<Acks>,
    budget: Arc<Budget>,
    counters: Arc<Counters>,
    store: Store,
    /// Checkpoint entries not matched to a file yet.
    unmatched: Vec<Entry>,
    /// Per fingerprint, the offset of the last line the sink already holds.
    delivered: HashMap<u64, Arc<Vec<u64>>>,
    /// Fingerprints of files read to their end and closed (bounded): their copies and
    /// compressed rotations are not read again.
    finished: Finished,
    /// When each path began to be watched: siblings rotated later are the agent's to read.
    watch_start: HashMap<PathBuf, std::time::SystemTime>,
    /// inotify wake-ups.
    watch: Watch,
    /// Liveness and readiness facts for `/healthz` and `/readyz`.
    health: Option<Arc<crate::admin::Health>>,
    block: Vec<u8>,
}

fn hex(fp: u64) -> String {
    format!("{fp:016x}")
}

impl Tailer {
    /// A tailer that resumes from the checkpoint `unmatched` (loaded from `store`) and writes
    /// it back there. `delivered` is what the sink already holds that the checkpoint does not
    /// account for (per file fingerprint, the offsets of those lines, ascending): they are
    /// not sent again.
    pub fn new(
        opts: TailOptions,
        store: Store,
        unmatched: Vec<Entry>,
        delivered: HashMap<u64, Arc<Vec<u64>>>,
        acks: Arc<Acks>,
        budget: Arc<Budget>,
        counters: Arc<Counters>,
    ) -> Tailer {
        if !unmatched.is_empty() {
            info!(files = unmatched.len(), path = %store.path().display(), "checkpoints loaded");
        }
        Tailer {
            opts,
            files: Vec::new(),
            next_id: 1,
            acks,
            budget,
            counters,
            store,
            unmatched,
            delivered,
            finished: Finished::default(),
            watch_start: HashMap::new(),
            watch: Watch::new(),
            health: None,
            block: Vec::new(),
        }
    }

    /// Runs until `stop`, then waits (up to `drain`) for every batch it sent to be
    /// acknowledged and writes the final checkpoint. Dropping `out` ends the pipeline.
    pub fn run(mut self, out: SyncSender<LineBatch>, stop: &AtomicBool, drain: Duration) {
        let mut next_scan = Instant::now();
        let mut next_poll = Instant::now();
        let mut next_checkpoint = Instant::now() + self.opts.checkpoint_interval;
        let mut first = true;
        // Files inotify said were written to since the last turn.
        let mut touched: HashSet<PathBuf> = HashSet::new();
        let mut look_at_all = true;
        // What the last idle wait was woken by.
        let mut woke = Wake::Timeout;
        while !stop.load(Ordering::Relaxed) {
            if let Some(h) = &self.health {
                h.beat();
            }
            self.take_reload(&mut next_scan);
            match std::mem::replace(&mut woke, Wake::Timeout).max(self.watch.drain(&mut touched)) {
                Wake::Rescan => next_scan = Instant::now(),
                Wake::Missed => look_at_all = true,
                Wake::Data | Wake::Timeout => {}
            }
            let now = Instant::now();
            if now >= next_scan {
                self.scan(first);
                first = false;
                next_scan = now + self.opts.settings.scan_interval;
                // The safety net: every file once per scan, whatever inotify said.
                look_at_all = true;
            }
            let poll = now >= next_poll;
            if poll {
                next_poll = now + self.opts.settings.poll_interval;
            }
            let mut progressed = false;
            for i in 0..self.files.len() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                // A copytruncate restart may have dropped a file.
                let Some(t) = self.files.get_mut(i) else {
                    break;
                };
                // A quiet file in a watched directory waits for inotify: a thousand of
                // them cost nothing between scans.
                t.looked = look_at_all
                    || !t.at_eof
                    || t.gone
                    || (poll && !t.watched)
                    || touched.contains(&t.target);
                if t.looked {
                    progressed |= self.read_some(i, &out, stop);
                }
            }
            touched.clear();
            look_at_all = false;
            self.retire(&out, stop);
            if now >= next_checkpoint {
                self.checkpoint();
                next_checkpoint = now + self.opts.checkpoint_interval;
            }
            if !progressed {
                if self.opts.once && self.drained() {
                    info!("every file read to its end and acknowledged; stopping (--once)");
                    break;
                }
                let now = Instant::now();
                let mut idle = next_scan
                    .min(next_checkpoint)
                    .saturating_duration_since(now);
                if self.files.iter().any(|t| !t.watched) {
                    idle = idle.min(next_poll.saturating_duration_since(now));
                }
                woke = self.watch.wait(idle, &mut touched);
            }
        }
        drop(out);
        let deadline = Instant::now() + drain;
        while self.budget.used() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if self.budget.used() > 0 {
            warn!(
                bytes = self.budget.used(),
                "shutdown deadline reached with unacknowledged lines; they are read again at the next start"
            );
        }
        self.checkpoint();
    }

    /// Applies options a SIGHUP left: new patterns take effect at the next scan (files no
    /// longer matched are read to their end, then closed, like rotated ones).
    fn take_reload(&mut self, next_scan: &mut Instant) {
        let Some(slot) = &self.opts.reload else {
            return;
        };
        let new = slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(mut new) = new {
            new.once = self.opts.once;
            new.reload = self.opts.reload.clone();
            new.checkpoint_interval = self.opts.checkpoint_interval;
            self.opts = new;
            for dir in self.opts.patterns.include_dirs() {
                self.watch.dir(&dir);
            }
            *next_scan = Instant::now();
        }
    }

    /// Reports liveness and checkpoint health to `health`.
    pub fn with_health(mut self, health: Arc<crate::admin::Health>) -> Tailer {
        self.health = Some(health);
        self
    }

    /// Every file at its end, nothing waiting for a last partial record, all acknowledged.
    fn drained(&self) -> bool {
        self.budget.used() == 0
            && self
                .files
                .iter()
                .all(|t| t.at_eof && t.carry.is_empty() && t.joiner.pending_since().is_none())
    }

    fn new_id(&mut self) -> FileId {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Finds new files and notices tracked ones that are gone.
    fn scan(&mut self, first: bool) {
        if first {
            for dir in self.opts.patterns.include_dirs() {
                self.watch.dir(&dir);
            }
        }
        let found = self.opts.patterns.scan();
        let mut present: HashMap<DevIno, ()> = HashMap::new();
        // The tracked files by identity (a scan looks up every file found: a thousand).
        let mut tracked: HashMap<DevIno, Vec<usize>> = HashMap::new();
        for (i, t) in self.files.iter().enumerate() {
            tracked.entry(t.reader.dev_ino).or_default().push(i);
        }
        for scanned in &found {
            let (f, di) = (&scanned.found, scanned.dev_ino);
            present.insert(di, ());
            let same = tracked.get(&di).map(Vec::as_slice).unwrap_or_default();
            if same.iter().any(|&i| !self.files[i].gone) {
                continue;
            }
            if let Some(&i) = same.first() {
                self.files[i].gone = false;
                continue;
            }
            // A new file at this path: a new container, the first scan, or a rotation.
            // Rotations the agent did not see (it was down, or two came between scans)
            // are among the siblings.
            let before = self.files.len();
            self.catch_up_siblings(f);
            self.open(f, first, scanned.size);
            for i in before..self.files.len() {
                tracked
                    .entry(self.files[i].reader.dev_ino)
                    .or_default()
                    .push(i);
            }
        }
        for t in &mut self.files {
            if !t.gone && !present.contains_key(&t.reader.dev_ino) {
                t.gone = true;
                stats::add(&self.counters.rotations, 1);
                info!(path = %t.target.display(), "file rotated or deleted; reading it to its end");
            }
        }
        if first {
            self.resume_rotated();
        }
        stats::set(&self.counters.files_tracked, self.files.len() as u64);
    }

    fn open(&mut self, f: &Found, first: bool, size: u64) {
        let head = FileReader::head(&f.target, FINGERPRINT_BYTES).unwrap_or_default();
        let fp = fingerprint(&f.target, &head);
        // A copy or rotation of a file already tracked (same first line): read once only.
        if fp.is_some() && self.files.iter().any(|t| t.fingerprint == fp) {
            return;
        }
        let entry = fp.and_then(|fp| {
            let i = self
                .unmatched
                .iter()
                .position(|e| e.fingerprint == hex(fp))?;
            Some(self.unmatched.swap_remove(i))
        });
        let offset = match (&entry, first, self.opts.settings.start_at) {
            (Some(e), _, _) => e.offset,
            (None, true, StartAt::End) => size,
            (None, _, _) => 0,
        };
        self.track(f.link.as_deref(), &f.target, fp, offset, false);
    }

    fn track(
        &mut self,
        link: Option<&Path>,
        target: &Path,
        fp: Option<u64>,
        offset: u64,
        gone: bool,
    ) {
        let reader = match FileReader::open(target, offset) {
            Ok(r) => r,
            Err(e) => {
                stats::add(&self.counters.read_errors, 1);
                warn!(path = %target.display(), error = %e, "cannot open file");
                return;
            }
        };
        let reader_mtime = reader.size_and_mtime().and_then(|(_, m)| m);
        let watched = target.parent().is_some_and(|dir| self.watch.dir(dir));
        let id = self.new_id();
        self.acks.register(id, offset);
        if !gone {
            self.watch_start
                .entry(target.to_owned())
                .or_insert_with(std::time::SystemTime::now);
        }
        let path = link.unwrap_or(target).display().to_string();
        let meta = Arc::new(FileMeta {
            id,
            path,
            kube: PathMeta::from_paths(link, target),
            fingerprint: OnceLock::new(),
        });
        if let Some(fp) = fp {
            let _ = meta.fingerprint.set(fp);
        }
        let delivered = fp
            .and_then(|fp| self.delivered.get(&fp).cloned())
            .unwrap_or_default();
        info!(path = %target.display(), offset, "tailing file");
        self.files.push(Tracked {
            meta,
            target: target.to_owned(),
            reader,
            fingerprint: fp,
            carry: Vec::new(),
            carry_start: offset,
            skipping: 0,
            delivered,
            joiner: Joiner::new(self.opts.settings.max_line_bytes),
            sent_to: offset,
            gone,
            last_growth: Instant::now(),
            read_mtime: reader_mtime,
            at_eof: false,
            watched,
            looked: false,
        });
    }

    /// True when lines of the file with this fingerprint were read before: it is tracked,
    /// checkpointed, or the sink holds some of it.
    fn known(&self, fp: u64) -> bool {
        self.files.iter().any(|t| t.fingerprint == Some(fp))
            || self.finished.contains(&fp)
            || self.unmatched.iter().any(|e| e.fingerprint == hex(fp))
            || self.delivered.contains_key(&fp)
    }

    /// Reads the rotated siblings of `f` the agent has not read: those after the newest
    /// one it knows (tracked, finished, checkpointed, or in the sink), and those rotated
    /// since it began watching this path. Other siblings predate the agent (history) and
    /// are left alone, as `start_at` says.
    fn catch_up_siblings(&mut self, f: &Found) {
        let mut siblings = discover::rotated_siblings(&f.target);
        siblings.sort_by_key(|p| rotation_key(p));
        // File times come from the kernel's coarse clock, which may stamp a copy made just
        // after the watch began a few milliseconds before it.
        let since = self
            .watch_start
            .get(&f.target)
            .map(|t| *t - Duration::from_millis(200));
        let heads: Vec<(PathBuf, Option<u64>, Option<DevIno>, bool)> = siblings
            .into_iter()
            .map(|p| {
                let fp = FileReader::head(&p, FINGERPRINT_BYTES)
                    .ok()
                    .and_then(|h| fingerprint(&p, &h));
                let meta = std::fs::metadata(&p).ok();
                let di = meta.as_ref().map(DevIno::of);
                let recent = since
                    .is_some_and(|s| meta.and_then(|m| m.modified().ok()).is_some_and(|m| m >= s));
                (p, fp, di, recent)
            })
            .collect();
        let tracked = |di: Option<DevIno>, fp: Option<u64>, files: &[Tracked]| {
            files
                .iter()
                .any(|t| Some(t.reader.dev_ino) == di || (fp.is_some() && t.fingerprint == fp))
        };
        let newest_known = heads.iter().rposition(|(_, fp, di, _)| {
            tracked(*di, *fp, &self.files) || fp.is_some_and(|fp| self.known(fp))
        });
        for (k, (path, fp, di, recent)) in heads.iter().enumerate() {
            if tracked(*di, *fp, &self.files) {
                continue;
            }
            let Some(fp) = *fp else {
                if newest_known.is_some_and(|n| k > n) || *recent {
                    // Unreadable now (being written): the next look will see it.
                    warn!(path = %path.display(), "rotated file unreadable; skipped for now");
                }
                continue;
            };
            if self.finished.contains(&fp) {
                continue;
            }
            // Known but not finished (checkpointed, or partly in the sink) is read on; unknown
            // is read when it came after the known ones or while the path was watched.
            let partly_read = self.known(fp);
            if !(partly_read || newest_known.is_some_and(|n| k > n) || *recent) {
                continue;
            }
            let entry = self
                .unmatched
                .iter()
                .position(|e| e.fingerprint == hex(fp))
                .map(|i| self.unmatched.swap_remove(i));
            let offset = entry.map_or(0, |e| e.offset);
            info!(path = %path.display(), offset, "reading a rotation that happened while the file was not watched");
            self.track(f.link.as_deref(), path, Some(fp), offset, true);
        }
    }

    /// After a restart, a checkpointed file that is no longer where it was may have been
    /// rotated (and compressed) meanwhile: find it among its siblings by fingerprint and
    /// read on from the checkpoint.
    fn resume_rotated(&mut self) {
        for entry in std::mem::take(&mut self.unmatched) {
            let sibling = discover::rotated_siblings(&entry.path)
                .into_iter()
                .find(|p| {
                    FileReader::head(p, FINGERPRINT_BYTES)
                        .ok()
                        .and_then(|h| fingerprint(p, &h))
                        .map(hex)
                        .as_deref()
                        == Some(entry.fingerprint.as_str())
                });
            match sibling {
                Some(path) => {
                    info!(path = %path.display(), offset = entry.offset, "resuming a file rotated while stopped");
                    let fp = u64::from_str_radix(&entry.fingerprint, 16).ok();
                    self.track(None, &path, fp, entry.offset, true);
                }
                None => {
                    let lost = entry.size.saturating_sub(entry.offset);
                    stats::add(&self.counters.bytes_lost_to_rotation, lost);
                    warn!(
                        path = %entry.path.display(),
                        offset = entry.offset,
                        lost_bytes_at_least = lost,
                        "checkpointed file is gone (rotated away and deleted while stopped); its unread tail is lost"
                    );
                }
            }
        }
    }

    /// Reads one block of file `i` and sends its lines. True when bytes were read.
    fn read_some(&mut self, i: usize, out: &SyncSender<LineBatch>, stop: &AtomicBool) -> bool {
        let max_line = self.opts.settings.max_line_bytes;
        let framing = self.opts.settings.framing;
        let t = &mut self.files[i];
        let mut block = std::mem::take(&mut self.block);
        block.clear();
        block.extend_from_slice(&t.carry);
        let n = match t
            .reader
            .read_block(&mut block, self.opts.settings.read_block_bytes)
        {
            Ok(n) => n,
            Err(e) => {
                stats::add(&self.counters.read_errors, 1);
                warn!(path = %t.target.display(), error = %e, "read failed; will retry");
                // A decoder that failed cannot go on: reopen at the same offset next time.
                if let Ok(r) = FileReader::open(&t.target, t.reader.offset) {
                    t.reader = r;
                }
                self.block = block;
                return false;
            }
        };
        if n == 0 {
            t.at_eof = true;
            let (size, mtime) = t.reader.size_and_mtime().unwrap_or((t.reader.offset, None));
            // Shorter than what was read: truncated. As long, but written to since the last
            // read: written and truncated between two looks (the lines are in a copy).
            let written_since = mtime.is_some() && t.read_mtime.is_some() && mtime > t.read_mtime;
            // The head is read only then: idle files are looked at every turn.
            let rewritten = size == t.reader.offset
                && written_since
                && (t.fingerprint.is_none()
                    || t.reader
                        .head_now()
                        .is_some_and(|h| fingerprint(&t.target, &h) != t.fingerprint));
            let truncated = size < t.reader.offset || rewritten;
            self.block = block;
            if truncated {
                let offset = self.files[i].reader.offset;
                self.restart_truncated(i, offset);
            }
            return false;
        }
        // Copytruncate may have rewritten the file under us, past our offset even: the first
        // line tells (it is another line now). The block is then not this file's.
        if t.fingerprint.is_some()
            && t.reader
                .head_now()
                .is_some_and(|h| fingerprint(&t.target, &h) != t.fingerprint)
        {
            let before = t.reader.offset - n as u64;
            self.block = block;
            self.restart_truncated(i, before);
            return true;
        }
        t.at_eof = false;
        t.last_growth = Instant::now();
        t.read_mtime = t.reader.size_and_mtime().and_then(|(_, m)| m);
        stats::add(&self.counters.bytes_read, n as u64);
        if t.fingerprint.is_none() && t.carry_start == 0 {
            t.fingerprint = fingerprint(&t.target, &block);
            if let Some(fp) = t.fingerprint {
                let _ = t.meta.fingerprint.set(fp);
                t.delivered = self.delivered.get(&fp).cloned().unwrap_or_default();
            }
        }

        let mut batch = LineBatch::empty(t.meta.clone(), t.sent_to);
        // Sized once: bodies and times fit in the block, and a line ends at each newline.
        batch.data.reserve_exact(block.len());
        batch
            .lines
            .reserve_exact(memchr::memchr_iter(b'\n', &block).count());
        let mut pos = 0;
        while let Some(nl) = memchr::memchr(b'\n', &block[pos..]) {
            let line_start = t.carry_start + pos as u64;
            let mut line = &block[pos..pos + nl];
            let mut cut = std::mem::take(&mut t.skipping);
            if line.len() > max_line + 64 {
                cut += (line.len() - max_line - 64) as u64;
                line = &line[..max_line + 64];
            }
            if let Some(mut joined) = t.joiner.push(frame::frame(line, framing), line_start) {
                joined.truncated_bytes += cut;
                if t.delivered.binary_search(&joined.offset).is_err() {
                    push_line(&mut batch, &joined);
                }
            }
            pos += nl + 1;
        }
        t.carry_start += pos as u64;
        t.carry.clear();
        let rest = &block[pos..];
        if rest.len() > max_line + 64 {
            // A record with no newline yet, longer than any line kept: keep its head only.
            t.carry.extend_from_slice(&rest[..max_line + 64]);
            t.skipping += (rest.len() - max_line - 64) as u64;
            t.carry_start += t.skipping;
        } else {
            t.carry.extend_from_slice(rest);
        }
        let safe = t
            .joiner
            .pending_since()
            .unwrap_or(t.carry_start)
            .min(t.carry_start);
        batch.end = safe.max(t.sent_to);
        t.sent_to = batch.end;
        self.block = block;
        self.send(batch, out, stop);
        true
    }

    fn send(&self, mut batch: LineBatch, out: &SyncSender<LineBatch>, stop: &AtomicBool) {
        if batch.lines.is_empty() && batch.start == batch.end {
            return;
        }
        stats::add(&self.counters.lines_read, batch.lines.len() as u64);
        // What the batch will hold once its documents are rendered (the workers settle the
        // exact figure).
        let reserved = self.budget.estimate(batch.data.len())
            + batch.lines.len() * std::mem::size_of::<Line>();
        // Backpressure: wait for room, so the files are the buffer.
        while !self.budget.acquire(reserved, Duration::from_millis(100)) {
            if stop.load(Ordering::Relaxed) {
                // Not sent: the checkpoint stays before these lines.
                return;
            }
        }
        batch.reserved = reserved;
        if let Err(e) = out.send(batch) {
            self.budget.release(e.0.reserved);
        }
    }

    /// The file shrank under us (copytruncate). Its unread tail is in the copy, which starts
    /// with the same first line: the file's state (acknowledgements, partial records) carries
    /// on there at the same offset, and the truncated file starts over as a new one.
    fn restart_truncated(&mut self, i: usize, offset: u64) {
        stats::add(&self.counters.truncations, 1);
        let (target, fp, dev_ino) = {
            let t = &self.files[i];
            (t.target.clone(), t.fingerprint, t.reader.dev_ino)
        };
        let copy = fp.and_then(|fp| {
            discover::rotated_siblings(&target).into_iter().find(|p| {
                let same = FileReader::head(p, FINGERPRINT_BYTES)
                    .ok()
                    .and_then(|h| fingerprint(p, &h))
                    == Some(fp);
                same && std::fs::metadata(p).is_ok_and(|m| DevIno::of(&m) != dev_ino)
            })
        });
        let reopened =
            copy.and_then(|copy| FileReader::open(&copy, offset).ok().map(|r| (copy, r)));
        let t = &mut self.files[i];
        let link = PathBuf::from(&t.meta.path);
        let link = (link != t.target).then_some(link);
        match reopened {
            Some((copy, reader)) => {
                info!(path = %target.display(), copy = %copy.display(), offset, "file truncated; reading its unread tail from the copy");
                t.reader = reader;
                t.target = copy;
                t.gone = true;
                t.at_eof = false;
                t.last_growth = Instant::now();
            }
            None => {
                warn!(path = %target.display(), read = offset, "file truncated and no copy found; reading it again from its start");
                let t = self.files.remove(i);
                self.acks.forget(t.meta.id);
            }
        }
        // Copies newer than the one found hold lines the agent never saw.
        let found = Found {
            link: link.clone(),
            target: target.clone(),
        };
        self.catch_up_siblings(&found);
        self.track(link.as_deref(), &target, None, 0, false);
    }

    /// Closes files that are gone, read to their end, idle for `rotate_wait` and
    /// acknowledged; an unfinished last line is handed on first.
    fn retire(&mut self, out: &SyncSender<LineBatch>, stop: &AtomicBool) {
        let wait = self.opts.settings.rotate_wait;
        let framing = self.opts.settings.framing;
        let mut i = 0;
        while i < self.files.len() {
            let t = &mut self.files[i];
            // A file deleted or renamed is marked gone by the scan its inotify event calls;
            // others were read this turn or are not due.
            if !t.looked && !t.gone {
                i += 1;
                continue;
            }
            let rotated = t.gone || t.reader.unlinked();
            // `at_eof` is what this file's last read found, and reading another file may have
            // waited on the in-flight budget for seconds since: the file may have grown, then
            // been renamed and unlinked, meanwhile. Its descriptor still tells its size.
            if rotated && t.at_eof && t.reader.size().is_some_and(|size| size > t.reader.offset) {
                t.at_eof = false;
            }
            let finished = rotated && t.at_eof && t.last_growth.elapsed() >= wait;
            if !finished {
                i += 1;
                continue;
            }
            if t.joiner.pending_since().is_some() || !t.carry.is_empty() {
                let mut batch = LineBatch::empty(t.meta.clone(), t.sent_to);
                if !t.carry.is_empty() {
                    let carry = std::mem::take(&mut t.carry);
                    if let Some(j) = t.joiner.push(frame::frame(&carry, framing), t.carry_start) {
                        push_line(&mut batch, &j);
                    }
                    t.carry_start += carry.len() as u64;
                }
                while let Some(j) = t.joiner.flush() {
                    push_line(&mut batch, &j);
                }
                batch.end = t.carry_start;
                t.sent_to = batch.end;
                self.send(batch, out, stop);
                i += 1;
                continue;
            }
            if self.acks.watermark(t.meta.id) != Some(t.sent_to) {
                i += 1;
                continue;
            }
            info!(path = %t.target.display(), "finished rotated file");
            if let Some(fp) = t.fingerprint {
                self.finished.insert(fp);
            }
            self.acks.forget(t.meta.id);
            self.files.remove(i);
        }
        stats::set(&self.counters.files_tracked, self.files.len() as u64);
    }

    /// Writes every file's acknowledged position.
    fn checkpoint(&mut self) {
        let mut lag = 0u64;
        let mut worst = 0u64;
        let mut entries = Vec::new();
        for t in &self.files {
            let size = t.reader.size();
            if let Some(size) = size {
                let l = size.saturating_sub(t.reader.offset);
                lag += l;
                worst = worst.max(l);
            }
            let (Some(fp), Some(offset)) = (t.fingerprint, self.acks.watermark(t.meta.id)) else {
                continue;
            };
            entries.push(Entry {
                fingerprint: hex(fp),
                path: t.target.clone(),
                dev: t.reader.dev_ino.dev,
                ino: t.reader.dev_ino.ino,
                offset,
                size: size.unwrap_or(offset),
            });
        }
        // Entries of files not found yet stay until they are (a restart before the first scan).
        entries.extend(self.unmatched.iter().cloned());
        stats::set(&self.counters.lag_bytes, lag);
        stats::set(&self.counters.lag_bytes_max_file, worst);
        let saved = self.store.save(entries);
        if let Some(h) = &self.health {
            h.checkpoint_ok.store(saved.is_ok(), Ordering::Relaxed);
        }
        if let Err(e) = saved {
            stats::add(&self.counters.checkpoint_errors, 1);
            tracing::error!(path = %self.store.path().display(), error = %e, "cannot write checkpoint; will retry");
        }
    }
}

/// A bounded set of fingerprints, oldest forgotten first.
#[derive(Default)]
struct Finished {
    set: std::collections::HashSet<u64>,
    order: std::collections::VecDeque<u64>,
}

impl Finished {
    const MAX: usize = 100_000;

    fn insert(&mut self, fp: u64) {
        if self.set.insert(fp) {
            self.order.push_back(fp);
            if self.order.len() > Self::MAX {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }

    fn contains(&self, fp: &u64) -> bool {
        self.set.contains(fp)
    }
}

/// Orders rotated files oldest first. The kubelet names a rotation by its time
/// (`0.log.20240101-000000`, older ones `.gz`): later is newer. logrotate numbers them
/// (`app.log.1`, `app.log.2`): higher is older.
fn rotation_key(p: &Path) -> (i64, String) {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let name = name.strip_suffix(".gz").unwrap_or(name);
    let suffix = name.rsplit('.').next().unwrap_or_default();
    match suffix.parse::<i64>() {
        Ok(n) if suffix.len() <= 4 => (-n, String::new()),
        _ => (i64::MIN, name.to_owned()),
    }
}

fn push_line(batch: &mut LineBatch, j: &Joined<'_>) {
    let body_start = batch.data.len();
    batch.data.extend_from_slice(&j.body);
    let time_start = batch.data.len();
    if let Some(t) = &j.time {
        batch.data.extend_from_slice(t.as_bytes());
    }
    batch.lines.push(Line {
        body: body_start..time_start,
        time: time_start..batch.data.len(),
        stream: j.stream,
        offset: j.offset,
        records: j.records,
        truncated_bytes: j.truncated_bytes,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(names: &[&str]) -> Vec<String> {
        let mut v: Vec<PathBuf> = names
            .iter()
            .map(|n| PathBuf::from(format!("/d/{n}")))
            .collect();
        v.sort_by_key(|p| rotation_key(p));
        v.iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn rotations_sort_oldest_first() {
        // kubelet: by time, compressed ones with their uncompressed names.
        assert_eq!(
            order(&[
                "0.log.20240102-000000",
                "0.log.20240101-000000.gz",
                "0.log.20231231-235959.gz"
            ]),
            [
                "0.log.20231231-235959.gz",
                "0.log.20240101-000000.gz",
                "0.log.20240102-000000"
            ]
        );
        // logrotate: higher numbers are older.
        assert_eq!(
            order(&["app.log.1", "app.log.3.gz", "app.log.2"]),
            ["app.log.3.gz", "app.log.2", "app.log.1"]
        );
    }

    #[test]
    fn finished_set_is_bounded() {
        let mut f = Finished::default();
        for i in 0..(Finished::MAX as u64 + 10) {
            f.insert(i);
        }
        assert!(!f.contains(&0) && f.contains(&(Finished::MAX as u64 + 9)));
        assert_eq!(f.set.len(), Finished::MAX);
    }
}
