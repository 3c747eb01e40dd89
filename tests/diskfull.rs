//! A state directory on a real filesystem that fills up mid-run: a small tmpfs mounted in the
//! test's temp dir, filled by another "program" (a filler file the test keeps growing) once the
//! simulator has created N tokens, or sized so the run fills it by itself. The run must stop
//! sending, land every answer it was waiting for, and the resume (space freed) must finish with
//! no possible orphan, no duplicate token and every secret recorded as the simulator gave it.
//!
//! Mounting needs root (CI runs the tests as root). Elsewhere each test prints plainly that it
//! did not run and why; under `CI=true` that is a failure, so CI cannot skip them silently.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use logzio_tokens::simulator::SimConfig;

use crate::chaos::{
    CONVERGED, Files, Key, Recorded, apply_cmd, check_records, one_account_many_tokens,
};
use crate::util::{Env, Run, wait_until};

/// A tmpfs mounted on a directory for the life of the value; unmounted on drop (lazily when
/// something still holds it).
pub(crate) struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `kib` KiB on `dir`, or says why it cannot.
    pub(crate) fn mount(dir: &Path, kib: u64) -> Result<Tmpfs, String> {
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={kib}k,mode=0755"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs {
            dir: dir.to_path_buf(),
        })
    }

    /// Changes the filesystem's size (`mount -o remount,size=`).
    pub(crate) fn resize(&self, kib: u64) {
        self.remount(&format!("size={kib}k")).unwrap();
    }

    /// `mount -o remount,OPTS`; the error says what mount printed.
    pub(crate) fn remount(&self, opts: &str) -> Result<(), String> {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(&self.dir)
            .output()
            .unwrap();
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// Mounts a tmpfs for the test `name`, or prints plainly that the test did not run and why
/// (a failure under `CI=true`).
pub(crate) fn tmpfs_or_skip(name: &str, dir: &Path, kib: u64) -> Option<Tmpfs> {
    match Tmpfs::mount(dir, kib) {
        Ok(m) => Some(m),
        Err(why) => {
            let msg = format!(
                "diskfull::{name} DID NOT RUN: it needs to mount a tmpfs (root), and {why}"
            );
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "{msg}; CI must run it as root"
            );
            eprintln!("{msg}");
            None
        }
    }
}

/// Grows `file` by 4 KiB writes (then single bytes) until the filesystem refuses; returns how
/// many bytes it holds.
fn fill(file: &Path) -> u64 {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .unwrap();
    let chunk = [0u8; 4096];
    while f.write_all(&chunk).is_ok() {}
    while f.write_all(&[0]).is_ok() {}
    f.metadata().unwrap().len()
}

/// An age key pair for a sealed run: the identity file's path and the recipient.
fn keygen(dir: &Path) -> (PathBuf, String) {
    use age::secrecy::ExposeSecret;
    let id = age::x25519::Identity::generate();
    let file = dir.join("key.txt");
    std::fs::write(&file, format!("{}\n", id.to_string().expose_secret())).unwrap();
    (file, id.to_public().to_string())
}

/// The secrets of a sealed state, through `export --identity`.
fn exported(env: &Env, files: &Files, identity: &Path, sealed_dir: &Path) -> Recorded {
    let run = env.run_cmd(
        env.cmd()
            .arg("export")
            .arg(&files.manifest)
            .arg("--results")
            .arg(&files.results)
            .arg("--sealed-dir")
            .arg(sealed_dir)
            .arg("--identity")
            .arg(identity)
            .arg("--stdout"),
        Duration::from_secs(60),
    );
    run.expect_code(0);
    let mut rec = Recorded::read(files);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    for r in v.as_array().unwrap() {
        rec.secrets.insert(
            (
                u32::try_from(r["account_id"].as_u64().unwrap()).unwrap(),
                r["token_name"].as_str().unwrap().to_owned(),
            ),
            (
                r["token_id"].as_i64().unwrap(),
                r["token"].as_str().unwrap().to_owned(),
            ),
        );
    }
    rec
}

/// A 400-token run into a tmpfs of `kib` KiB; with `fill_at`, a filler takes every free byte
/// once the server has created that many tokens, and keeps taking what the run frees. Then the
/// space comes back and the run is resumed to the end. With `seal`, the run seals its secrets
/// (journal and sealed files on the tmpfs). Prints what it measured.
fn disk_full(name: &str, kib: u64, fill_at: Option<usize>, seal: bool) {
    let tokens = 400;
    let workload = one_account_many_tokens(tokens);
    let env = Env::with_sim(SimConfig {
        latency: Duration::from_millis(15),
        seed: 13,
        ..SimConfig::default()
    });
    let (identity, recipient) = keygen(env.dir.path());
    let manifest = if seal {
        format!(
            "{}secrets:\n  recipients:\n    - {recipient}\n",
            workload.manifest
        )
    } else {
        workload.manifest.clone()
    };
    let files = Files::new(&env, &manifest);
    let state = files.results.parent().unwrap().to_path_buf();
    let sealed_dir = state.join("sealed");
    let sealed_arg = sealed_dir.display().to_string();
    let mut extra = vec!["--rate", "400"];
    if seal {
        extra.extend(["--sealed-dir", sealed_arg.as_str()]);
    }
    let extra = extra.as_slice();
    let Some(mount) = tmpfs_or_skip(name, &state, kib) else {
        return;
    };
    let filler = state.join("filler");
    let created = || usize::try_from(env.sim().counters().created).unwrap();

    let mut child = apply_cmd(&env, &files, extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut created_at_fill = 0;
    if let Some(n) = fill_at {
        assert!(
            wait_until(Duration::from_secs(60), || created() >= n
                || child.try_wait().unwrap().is_some()),
            "the run neither finished nor created {n} tokens"
        );
        created_at_fill = created();
        // Another program keeps the disk full until the run ends.
        while child.try_wait().unwrap().is_none() {
            fill(&filler);
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let run = Run::from(crate::util::wait_with_timeout(
        child,
        Duration::from_secs(120),
    ));
    let created_at_stop = env.sim().ground_truth().len();
    eprintln!(
        "diskfull::{name}: run 1 exited {:?} with {created_at_stop} of {tokens} created\n{}",
        run.code, run.stderr
    );
    run.expect_code(3);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(
        run.stderr.contains("No space left on device"),
        "the message must say the disk is full:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("the save needs about"),
        "the message must say how much room the save needs:\n{}",
        run.stderr
    );
    assert!(
        created_at_stop < tokens,
        "the run went on sending after the disk was full"
    );

    // Space comes back; resume until done.
    let _ = std::fs::remove_file(&filler);
    mount.resize(8 * 1024);
    let desired: BTreeSet<Key> = workload.desired.clone();
    for i in 1..=3 {
        let run = env.run_cmd(
            &mut apply_cmd(&env, &files, extra),
            Duration::from_secs(120),
        );
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
        if i == 1 {
            eprintln!("diskfull::{name}: resume:\n{}", run.stderr);
        }
        match run.code {
            Some(0) => break,
            Some(1) if i < 3 => {}
            _ => panic!("resume run {i} exited {:?}\n{}", run.code, run.stderr),
        }
    }
    let gt = env.sim().ground_truth();
    let recorded = if seal {
        exported(&env, &files, &identity, &sealed_dir)
    } else {
        Recorded::read(&files)
    };
    let problems = check_records(&desired, &gt, &recorded, CONVERGED);
    let keys: BTreeSet<Key> = gt
        .iter()
        .map(|t| (u32::try_from(t.account_id).unwrap(), t.name.clone()))
        .collect();
    let orphans = recorded.orphans.len();
    let duplicates = gt.len() - keys.len();
    eprintln!(
        "diskfull::{name}: {tokens} tokens, tmpfs {kib} KiB, filled at {created_at_fill} created, run 1 stopped at {created_at_stop}; after the resume: {orphans} possible orphans, {duplicates} duplicates"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(
        orphans, 0,
        "answered requests were reported as possible orphans: {:?}",
        recorded.orphans
    );
    assert_eq!(duplicates, 0, "tokens were created twice");
    assert_eq!(gt.len(), tokens);
    drop(mount);
}

#[test]
fn a_disk_that_fills_mid_run_costs_no_received_secret_and_no_duplicate() {
    disk_full("filled_by_another_program", 1024, Some(100), false);
}

#[test]
fn a_small_disk_filled_by_the_run_itself_costs_nothing() {
    disk_full("filled_by_the_run", 40, None, false);
}

#[test]
fn a_sealed_run_on_a_disk_that_fills_costs_nothing() {
    disk_full("sealed", 1024, Some(100), true);
}
