//! Which files to read: glob patterns, excludes, symlinks followed to their targets, and
//! the rotated siblings of files the checkpoint still owes bytes of.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use glob::Pattern;

/// A file found by the patterns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The path as matched (a `/var/log/containers` symlink, say).
    pub link: Option<PathBuf>,
    /// The file it resolves to.
    pub target: PathBuf,
}

/// Compiled include and exclude patterns.
#[derive(Debug)]
pub struct Patterns {
    include: Vec<String>,
    exclude: Vec<Pattern>,
}

impl Patterns {
    /// Compiles the patterns; an error names the bad one.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Patterns, String> {
        for p in include {
            Pattern::new(p).map_err(|e| format!("tail.include {p:?}: {e}"))?;
        }
        let exclude = exclude
            .iter()
            .map(|p| Pattern::new(p).map_err(|e| format!("tail.exclude {p:?}: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Patterns {
            include: include.to_vec(),
            exclude,
        })
    }

    /// The directories of include patterns whose directory part has no wildcard.
    pub fn include_dirs(&self) -> Vec<PathBuf> {
        self.include
            .iter()
            .filter_map(|p| super::watch::pattern_dir(p))
            .collect()
    }

    fn excluded(&self, path: &Path) -> bool {
        self.exclude.iter().any(|p| p.matches_path(path))
    }

    /// Every regular file the patterns match now, keyed by target (one entry per file even
    /// when two links lead to it).
    pub fn scan(&self) -> Vec<Found> {
        let mut found: HashMap<PathBuf, Found> = HashMap::new();
        for pattern in &self.include {
            let Ok(paths) = glob::glob(pattern) else {
                continue;
            };
            for path in paths.flatten() {
                if self.excluded(&path) {
                    continue;
                }
                let Ok(target) = std::fs::canonicalize(&path) else {
                    continue;
                };
                if self.excluded(&target) || !target.is_file() {
                    continue;
                }
                let link = (target != path).then_some(path);
                found
                    .entry(target.clone())
                    .or_insert(Found { link, target });
            }
        }
        let mut v: Vec<Found> = found.into_values().collect();
        v.sort_by(|a, b| a.target.cmp(&b.target));
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
        let p = Patterns::new(
            &[format!("{}/containers/*.log", root.display())],
            &[format!("{}/containers/skip_*", root.display())],
        )
        .unwrap();
        let found = p.scan();
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].link.as_deref(),
            Some(containers.join("pod_ns_c-1.log").as_path())
        );
        assert_eq!(
            found[0].target,
            std::fs::canonicalize(pods.join("0.log")).unwrap()
        );
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
