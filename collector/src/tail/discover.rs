//! Which files to read: glob patterns, excludes, symlinks followed to their targets, and
//! the rotated siblings of files the checkpoint still owes bytes of.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use glob::Pattern;

use super::identity::DevIno;

/// A file found by the patterns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The path as matched (a `/var/log/containers` symlink, say).
    pub link: Option<PathBuf>,
    /// The file it resolves to.
    pub target: PathBuf,
}

/// A file a scan found, with what the scan's one look at it said.
#[derive(Clone, Debug)]
pub struct Scanned {
    /// Where it is.
    pub found: Found,
    /// The file's device and inode.
    pub dev_ino: DevIno,
    /// Its size.
    pub size: u64,
}

/// Compiled include and exclude patterns.
#[derive(Debug)]
pub struct Patterns {
    include: Vec<Include>,
    exclude: Vec<Pattern>,
    /// Where each path matched by the last scan led, and what was at the path then.
    /// Resolving walks every component of the link and of its target (a dozen system calls
    /// for a kubelet path), for every file at every scan: most of an idle agent's CPU on a
    /// node with a thousand containers. A path is resolved again when what is at it was
    /// replaced, and every path every [`RESOLVE_AGAIN`] (a directory on the way may have
    /// been moved).
    resolved: HashMap<PathBuf, (Identity, PathBuf)>,
    resolved_since: Instant,
}

/// One include pattern, compiled for how it is listed.
#[derive(Debug)]
enum Include {
    /// A directory without wildcards and a pattern for the names in it (the kubelet's
    /// `/var/log/containers/*.log`): one listing, no look at each file, as `glob` takes.
    Names { dir: PathBuf, name: Pattern },
    /// Anything else, for `glob`.
    Glob(String),
}

impl Include {
    fn new(pattern: &str) -> Result<Include, String> {
        Pattern::new(pattern).map_err(|e| format!("tail.include {pattern:?}: {e}"))?;
        let name = Path::new(pattern).file_name().and_then(|n| n.to_str());
        Ok(
            match (super::watch::pattern_dir(pattern), name.map(Pattern::new)) {
                (Some(dir), Some(Ok(name))) => Include::Names { dir, name },
                _ => Include::Glob(pattern.to_owned()),
            },
        )
    }

    /// The paths it matches now.
    fn matches(&self) -> Vec<PathBuf> {
        match self {
            Include::Names { dir, name } => match std::fs::read_dir(dir) {
                Ok(entries) => entries
                    .flatten()
                    .filter(|e| e.file_name().to_str().is_some_and(|n| name.matches(n)))
                    .map(|e| e.path())
                    .collect(),
                Err(_) => Vec::new(),
            },
            Include::Glob(pattern) => match glob::glob(pattern) {
                Ok(paths) => paths.flatten().collect(),
                Err(_) => Vec::new(),
            },
        }
    }
}

/// How long a path's resolution is trusted while the link at it stays the same.
pub const RESOLVE_AGAIN: Duration = Duration::from_secs(60);

/// What is at a path, without following it: a link re-created there differs.
type Identity = (u64, u64, i64, i64);

fn identity(path: &Path) -> Option<Identity> {
    let m = std::fs::symlink_metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.ctime(), m.ctime_nsec()))
}

impl Patterns {
    /// Compiles the patterns; an error names the bad one.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Patterns, String> {
        let include = include
            .iter()
            .map(|p| Include::new(p))
            .collect::<Result<_, _>>()?;
        let exclude = exclude
            .iter()
            .map(|p| Pattern::new(p).map_err(|e| format!("tail.exclude {p:?}: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Patterns {
            include,
            exclude,
            resolved: HashMap::new(),
            resolved_since: Instant::now(),
        })
    }

    /// The directories of include patterns whose directory part has no wildcard.
    pub fn include_dirs(&self) -> Vec<PathBuf> {
        self.include
            .iter()
            .filter_map(|p| match p {
                Include::Names { dir, .. } => Some(dir.clone()),
                Include::Glob(_) => None,
            })
            .collect()
    }

    fn excluded(&self, path: &Path) -> bool {
        self.exclude.iter().any(|p| p.matches_path(path))
    }

    /// Every regular file the patterns match now, keyed by target (one entry per file even
    /// when two links lead to it).
    pub fn scan(&mut self) -> Vec<Scanned> {
        if self.resolved_since.elapsed() >= RESOLVE_AGAIN {
            self.resolved.clear();
            self.resolved_since = Instant::now();
        }
        let mut resolved = HashMap::with_capacity(self.resolved.len());
        let mut found: HashMap<PathBuf, Scanned> = HashMap::new();
        for pattern in &self.include {
            for path in pattern.matches() {
                if self.excluded(&path) {
                    continue;
                }
                let Some(here) = identity(&path) else {
                    continue;
                };
                let target = match self.resolved.remove(&path) {
                    Some((was, target)) if was == here => target,
                    _ => match std::fs::canonicalize(&path) {
                        Ok(target) => target,
                        Err(_) => continue,
                    },
                };
                resolved.insert(path.clone(), (here, target.clone()));
                if self.excluded(&target) {
                    continue;
                }
                let Ok(meta) = std::fs::metadata(&target) else {
                    continue;
                };
                if !meta.is_file() {
                    continue;
                }
                let link = (target != path).then_some(path);
                found.entry(target.clone()).or_insert(Scanned {
                    found: Found { link, target },
                    dev_ino: DevIno::of(&meta),
                    size: meta.len(),
                });
            }
        }
        self.resolved = resolved;
        let mut v: Vec<Scanned> = found.into_values().collect();
        v.sort_by(|a, b| a.found.target.cmp(&b.found.target));
        v
    }
}

/// Rotated siblings of `path` (`0.log` → `0.log.20240101-000000`, `0.log.20240101-000000.gz`).
pub fn rotated_siblings(path: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let prefix = format!("{name}.");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && !n.ends_with(".tmp"))
        })
        .collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_links_and_excludes() {
        let root = std::env::temp_dir().join(format!("meshtrail-discover-{}", std::process::id()));
        let pods = root.join("pods/ns_pod_uid/c");
        let containers = root.join("containers");
        std::fs::create_dir_all(&pods).unwrap();
        std::fs::create_dir_all(&containers).unwrap();
        std::fs::write(pods.join("0.log"), "x\n").unwrap();
        std::fs::write(pods.join("0.log.20240101-000000.gz"), "x").unwrap();
        std::os::unix::fs::symlink(pods.join("0.log"), containers.join("pod_ns_c-1.log")).unwrap();
        std::os::unix::fs::symlink(pods.join("0.log"), containers.join("skip_ns_c-2.log")).unwrap();
        let mut p = Patterns::new(
            &[format!("{}/containers/*.log", root.display())],
            &[format!("{}/containers/skip_*", root.display())],
        )
        .unwrap();
        let found = p.scan();
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].found.link.as_deref(),
            Some(containers.join("pod_ns_c-1.log").as_path())
        );
        assert_eq!(
            found[0].found.target,
            std::fs::canonicalize(pods.join("0.log")).unwrap()
        );
        assert_eq!(found[0].size, 2);
        // A link re-created to lead elsewhere is resolved again, not taken from the last scan.
        let other = root.join("pods/ns_pod_uid/d");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("0.log"), "y\n").unwrap();
        std::fs::remove_file(containers.join("pod_ns_c-1.log")).unwrap();
        std::os::unix::fs::symlink(other.join("0.log"), containers.join("pod_ns_c-1.log")).unwrap();
        let again = p.scan();
        assert_eq!(again.len(), 1);
        assert_eq!(
            again[0].found.target,
            std::fs::canonicalize(other.join("0.log")).unwrap()
        );
        // A wildcard directory goes through glob: both pod files, no link.
        let mut deep = Patterns::new(&[format!("{}/pods/*/*/0.log", root.display())], &[]).unwrap();
        let targets: Vec<PathBuf> = deep.scan().into_iter().map(|s| s.found.target).collect();
        assert_eq!(
            targets,
            [
                std::fs::canonicalize(pods.join("0.log")).unwrap(),
                std::fs::canonicalize(other.join("0.log")).unwrap()
            ]
        );
        assert_eq!(deep.include_dirs(), Vec::<PathBuf>::new());
        assert_eq!(p.include_dirs(), std::slice::from_ref(&containers));
        assert_eq!(
            rotated_siblings(&pods.join("0.log")),
            [pods.join("0.log.20240101-000000.gz")]
        );
        assert!(
            Patterns::new(&["/a/[".into()], &[])
                .unwrap_err()
                .contains("tail.include")
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
