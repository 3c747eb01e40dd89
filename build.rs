//! Bakes the commit a binary was built from into `--version` (`LOGZIO_TOKENS_COMMIT`), and
//! chooses how the journal holds its disk room (see `src/state/journal/room.rs`).
//!
//! The commit comes from, in order: the `LOGZIO_TOKENS_COMMIT` environment variable (a
//! packager building from a tarball sets it), `git` in the source tree, or the
//! `.cargo_vcs_info.json` that `cargo package` writes. With none of them (a source archive
//! without `.git`, or no `git` installed) the version prints without a commit; the build never
//! fails for want of one.

#![allow(clippy::disallowed_methods)] // a build script reads git and the filesystem directly; clippy.toml is for src/state and src/execution

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    journal_room();
    println!("cargo:rerun-if-env-changed=LOGZIO_TOKENS_COMMIT");
    let commit = std::env::var("LOGZIO_TOKENS_COMMIT")
        .ok()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .or_else(from_git)
        .or_else(from_cargo_vcs_info)
        .unwrap_or_default();
    println!("cargo:rustc-env=LOGZIO_TOKENS_COMMIT={commit}");
}

/// `journal_room_by_filesystem` on Linux: the journal picks how it holds its room by the
/// filesystem's magic number, with `fallocate` where zeros would not do. Elsewhere (macOS) it
/// takes the portable way, zeros written ahead. `LOGZIO_TOKENS_PORTABLE_JOURNAL_ROOM=1` takes
/// the portable way on Linux too, so that the journal's tests run here as they run on macOS.
fn journal_room() {
    println!("cargo:rustc-check-cfg=cfg(journal_room_by_filesystem)");
    println!("cargo:rerun-if-env-changed=LOGZIO_TOKENS_PORTABLE_JOURNAL_ROOM");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    let portable =
        std::env::var_os("LOGZIO_TOKENS_PORTABLE_JOURNAL_ROOM").is_some_and(|v| v == "1");
    if linux && !portable {
        println!("cargo:rustc-cfg=journal_room_by_filesystem");
    }
}

/// `abcdef123456 2026-12-07` from `git`, and the files to watch so that a new commit or a
/// checkout rebuilds the version.
fn from_git() -> Option<String> {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    // Only this crate's own repository: a source archive unpacked inside another repository
    // must not take that repository's commit.
    let top = git(&dir, &["rev-parse", "--show-toplevel"])?;
    if std::fs::canonicalize(&top).ok()? != std::fs::canonicalize(&dir).ok()? {
        return None;
    }
    let described = git(&dir, &["log", "-1", "--format=%h %cs", "--abbrev=12"])?;
    // HEAD moves on checkout; the branch's ref (loose or packed) moves on commit.
    for path in ["HEAD", "packed-refs"] {
        if let Some(p) = git(&dir, &["rev-parse", "--git-path", path]) {
            watch(&dir, &p);
        }
    }
    if let Some(branch) = git(&dir, &["symbolic-ref", "-q", "HEAD"])
        && let Some(p) = git(&dir, &["rev-parse", "--git-path", &branch])
    {
        watch(&dir, &p);
    }
    Some(described)
}

/// The commit `cargo package` recorded, for a build from a packaged crate.
fn from_cargo_vcs_info() -> Option<String> {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    let path = dir.join(".cargo_vcs_info.json");
    // Watched only when it exists: cargo reruns a build script on every build while a path
    // it watches is missing.
    watch(&dir, ".cargo_vcs_info.json");
    let text = std::fs::read_to_string(path).ok()?;
    // `"sha1": "<40 hex>"`, read without a JSON parser in the build script.
    let rest = &text[text.find("\"sha1\"")? + 6..];
    let start = rest.find('"')? + 1;
    let sha: String = rest[start..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .take(12)
        .collect();
    (sha.len() == 12).then_some(sha)
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}

fn watch(dir: &Path, path: &str) {
    let path = dir.join(path);
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
