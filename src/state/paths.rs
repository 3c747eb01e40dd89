//! Where the state files of a manifest live.

use std::path::{Path, PathBuf};

/// The paths of the results, secrets, journal and lock files of one manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatePaths {
    /// The results file (token ids, no secrets).
    pub results: PathBuf,
    /// The secrets file (0600).
    pub secrets: PathBuf,
    /// The write-ahead journal, beside the results file (0600).
    pub journal: PathBuf,
    /// The advisory lock file, beside the results file.
    pub lock: PathBuf,
    /// The directory of sealed secrets files, beside the results file: `<stem>.sealed/`.
    pub sealed: PathBuf,
}

impl StatePaths {
    /// The contract's defaults: `<manifest dir>/<stem>.results.json` and `.secrets.json`,
    /// overridden by `--results` / `--secrets`.
    #[allow(
        clippy::disallowed_methods,
        reason = "paths given on the command line name files on the real filesystem"
    )]
    pub fn for_manifest(manifest: &Path, results: Option<&Path>, secrets: Option<&Path>) -> Self {
        let dir = crate::fs::atomic::parent_dir(manifest);
        let stem = manifest
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "manifest".to_owned());
        let results = results
            .map(Path::to_path_buf)
            .unwrap_or_else(|| dir.join(format!("{stem}.results.json")));
        let secrets = secrets
            .map(Path::to_path_buf)
            .unwrap_or_else(|| dir.join(format!("{stem}.secrets.json")));
        // Invariant 5: a results path that is a symlink names the file it points to, so the
        // lock, the journal and the sealed directory are those of the real file: two runs, one
        // through the link, take one lock. (A symlinked directory on the way, or a bind mount,
        // reaches the same lock file's inode already.)
        let results =
            if std::fs::symlink_metadata(&results).is_ok_and(|m| m.file_type().is_symlink()) {
                super::invariants::promises::lock_subject(&results, follow_links)
            } else {
                results
            };
        let journal = sibling(&results, "journal");
        let lock = sibling(&results, "lock");
        let sealed = sealed_dir(&results);
        StatePaths {
            results,
            secrets,
            journal,
            lock,
            sealed,
        }
    }

    /// Where a fresh journal is written before it replaces the journal (`<journal>.next`);
    /// one a killed run left there is removed at the next start.
    pub fn next_journal(&self) -> PathBuf {
        let mut name = self.journal.as_os_str().to_owned();
        name.push(".next");
        PathBuf::from(name)
    }

    /// Moves the sealed directory (`--sealed-dir`).
    pub fn with_sealed_dir(mut self, dir: Option<&Path>) -> Self {
        if let Some(d) = dir {
            self.sealed = d.to_path_buf();
        }
        self
    }
}

/// The file a symlink leads to (through further links, at most 40), with its directory
/// resolved; the file itself need not exist yet (a first run through a link).
#[allow(
    clippy::disallowed_methods,
    reason = "paths given on the command line name files on the real filesystem"
)]
fn follow_links(path: &Path) -> Option<PathBuf> {
    let mut cur = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::read_link(&cur) {
            Ok(target) => cur = crate::fs::parent_dir(&cur).join(target),
            Err(_) => break,
        }
    }
    let dir = std::fs::canonicalize(crate::fs::parent_dir(&cur)).ok()?;
    Some(dir.join(cur.file_name()?))
}

/// `x.results.json` -> `x.sealed`; anything else -> `<name>.sealed`.
fn sealed_dir(results: &Path) -> PathBuf {
    let name = results
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".results.json").unwrap_or(&name);
    crate::fs::atomic::parent_dir(results).join(format!("{stem}.sealed"))
}

/// `x.results.json` -> `x.results.<ext>`; `x` -> `x.<ext>`.
fn sibling(results: &Path, ext: &str) -> PathBuf {
    if results.extension().is_some_and(|e| e == "json") {
        results.with_extension(ext)
    } else {
        let mut s = results.as_os_str().to_owned();
        s.push(".");
        s.push(ext);
        PathBuf::from(s)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)] // tests set up real files, clocks and seeds
    use super::*;

    #[test]
    fn defaults_sit_beside_the_manifest() {
        let p = StatePaths::for_manifest(Path::new("examples/quickstart.yaml"), None, None);
        assert_eq!(p.results, Path::new("examples/quickstart.results.json"));
        assert_eq!(p.secrets, Path::new("examples/quickstart.secrets.json"));
        assert_eq!(p.journal, Path::new("examples/quickstart.results.journal"));
        assert_eq!(p.lock, Path::new("examples/quickstart.results.lock"));
        assert_eq!(p.sealed, Path::new("examples/quickstart.sealed"));
        let bare = StatePaths::for_manifest(Path::new("m.yaml"), None, None);
        assert_eq!(bare.results, Path::new("./m.results.json"));
    }

    #[test]
    fn explicit_paths_win() {
        let p = StatePaths::for_manifest(
            Path::new("m.yaml"),
            Some(Path::new("/s/r.json")),
            Some(Path::new("/s/k")),
        );
        assert_eq!(p.results, Path::new("/s/r.json"));
        assert_eq!(p.secrets, Path::new("/s/k"));
        assert_eq!(p.journal, Path::new("/s/r.journal"));
    }

    /// Invariant 5: two runs, one through a link to the results file, take one lock.
    #[test]
    #[allow(clippy::unwrap_used)]
    fn a_results_path_through_links_names_its_files_beside_the_file_it_leads_to() {
        use std::os::unix::fs::symlink;
        let tmp = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(tmp.path()).unwrap();
        std::fs::create_dir(base.join("real")).unwrap();
        std::fs::create_dir(base.join("links")).unwrap();
        // A link to a link, both relative, to a file not written yet (a first run).
        symlink("hop.json", base.join("links/m.results.json")).unwrap();
        symlink("../real/t.results.json", base.join("links/hop.json")).unwrap();
        let manifest = base.join("m.yaml");
        let p = StatePaths::for_manifest(&manifest, Some(&base.join("links/m.results.json")), None);
        assert_eq!(p.results, base.join("real/t.results.json"));
        assert_eq!(p.journal, base.join("real/t.results.journal"));
        assert_eq!(p.lock, base.join("real/t.results.lock"));
        assert_eq!(p.sealed, base.join("real/t.sealed"));
        assert_eq!(
            p.secrets,
            base.join("m.secrets.json"),
            "not the results file's"
        );
    }
}
