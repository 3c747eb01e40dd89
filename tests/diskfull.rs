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

use logzio_tokens::simulator::{CreatedToken, SimConfig};

use crate::chaos::{
    CONVERGED, Key, Recorded, Workload, apply_cmd, check_records, one_account_many_tokens,
};
use crate::util::{Env, Files, Run, wait_until};

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
    crate::util::private(&file);
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
/// How the journal holds its room: as on this filesystem (a tmpfs: zeros written ahead), or
/// with `fallocate` as on btrfs or overlayfs (a debug build's test switch).
#[derive(Clone, Copy, PartialEq)]
enum Room {
    Native,
    Fallocate,
}

fn disk_full(name: &str, kib: u64, fill_at: Option<usize>, seal: bool) {
    disk_full_with(name, kib, fill_at, seal, Room::Native);
}

fn disk_full_with(name: &str, kib: u64, fill_at: Option<usize>, seal: bool, room: Room) {
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

    let mut cmd = apply_cmd(&env, &files, extra);
    if room == Room::Fallocate {
        cmd.env("LOGZIO_TOKENS_TEST_JOURNAL_ROOM", "reserve");
    }
    let mut child = cmd
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
    // The journal was kept, its room held the way asked: zeros after the records on a tmpfs,
    // none with `fallocate` (the blocks are held beyond its size).
    let journal = std::fs::read(files.journal()).unwrap();
    assert_eq!(
        journal.contains(&0),
        room == Room::Native,
        "journal room held as zeros: {}",
        journal.contains(&0)
    );
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

/// Resumes (at most three runs, every one before the last allowed to end 1) until apply exits
/// 0, then checks the records against the simulator's ground truth as converged. Returns both.
fn resume_and_check(
    env: &Env,
    files: &Files,
    extra: &[&str],
    workload: &Workload,
    named: &BTreeSet<Key>,
) -> (Vec<CreatedToken>, Recorded) {
    for i in 1..=3 {
        let run = env.run_cmd(&mut apply_cmd(env, files, extra), Duration::from_secs(120));
        match run.code {
            Some(0) => break,
            Some(1) if i < 3 => {}
            _ => panic!("resume run {i} exited {:?}\n{}", run.code, run.stderr),
        }
    }
    let gt = env.sim().ground_truth();
    let recorded = Recorded::read(files);
    // Keys the stopped run named on stderr as possibly recorded nowhere: reported by name,
    // like a possible orphan in the results file.
    let mut reported = recorded.clone();
    reported.orphans.extend(named.iter().cloned());
    let problems = check_records(&workload.desired, &gt, &reported, CONVERGED);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    (gt, recorded)
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
fn a_disk_that_fills_mid_run_costs_nothing_with_the_room_held_by_fallocate() {
    disk_full_with(
        "filled_by_another_program_fallocate",
        1024,
        Some(100),
        false,
        Room::Fallocate,
    );
}

#[test]
fn a_small_disk_filled_by_the_run_itself_costs_nothing_with_the_room_held_by_fallocate() {
    disk_full_with(
        "filled_by_the_run_fallocate",
        40,
        None,
        false,
        Room::Fallocate,
    );
}

#[test]
fn a_sealed_run_on_a_disk_that_fills_costs_nothing() {
    disk_full("sealed", 1024, Some(100), true);
}

/// An ext4 image loop-mounted with `errors=remount-ro`, so that the test can make the kernel
/// turn it read-only under a running process (`trigger_fs_error`), as it does on a disk error.
/// A plain `mount -o remount,ro` is refused (busy) while apply holds its journal open for
/// writing, so that is how a state directory really becomes read-only mid-run.
struct Ext4 {
    image: PathBuf,
    dir: PathBuf,
}

impl Ext4 {
    fn mount(image: &Path, dir: &Path) -> Result<Ext4, String> {
        let sh = |cmd: &mut Command| -> Result<(), String> {
            let out = cmd
                .output()
                .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "{cmd:?} failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        };
        std::fs::File::create(image)
            .and_then(|f| f.set_len(16 << 20))
            .map_err(|e| e.to_string())?;
        sh(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(image))?;
        sh(Command::new("mount")
            .args(["-o", "loop,errors=remount-ro"])
            .arg(image)
            .arg(dir))?;
        Ok(Ext4 {
            image: image.to_path_buf(),
            dir: dir.to_path_buf(),
        })
    }

    /// The kernel's own "remount read-only after an error".
    fn turn_read_only(&self) {
        let out = Command::new("findmnt")
            .args(["-no", "SOURCE"])
            .arg(&self.dir)
            .output()
            .unwrap();
        let source = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let dev = Path::new(&source).file_name().unwrap().to_owned();
        let trigger = Path::new("/sys/fs/ext4").join(dev).join("trigger_fs_error");
        std::fs::write(&trigger, b"1").unwrap();
    }

    /// Unmounts, repairs and mounts again, read-write.
    fn repair(&self) {
        assert!(
            Command::new("umount")
                .arg(&self.dir)
                .status()
                .unwrap()
                .success()
        );
        let _ = Command::new("e2fsck")
            .args(["-fy"])
            .arg(&self.image)
            .output();
        assert!(
            Command::new("mount")
                .args(["-o", "loop"])
                .arg(&self.image)
                .arg(&self.dir)
                .status()
                .unwrap()
                .success()
        );
    }
}

impl Drop for Ext4 {
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

/// The keys a run that could not save named on stderr as possibly recorded nowhere.
fn named_unsaved(stderr: &str) -> BTreeSet<Key> {
    const MARK: &str = "Check them in the Logz.io UI (Settings > Tools > Manage Tokens): ";
    let Some(list) = stderr
        .lines()
        .find_map(|l| l.split_once(MARK).map(|(_, rest)| rest))
    else {
        return BTreeSet::new();
    };
    list.split(", ")
        .map(|k| {
            let (id, name) = k.trim().split_once(' ').unwrap();
            (id.parse().unwrap(), name.to_owned())
        })
        .collect()
}

/// The journal's created outcomes (token id -> secret) and the keys of its intents without an
/// outcome.
fn read_journal(path: &Path) -> (Vec<(i64, String)>, BTreeSet<Key>) {
    // Zeros are the journal's room, or (a filesystem that dropped writes) a hole among its
    // records: records are what lies between line breaks and zeros.
    let bytes = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let mut created = Vec::new();
    let mut pending = std::collections::BTreeMap::new();
    for line in text.split(['\n', '\0']).filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue; // a line cut short by the failed write
        };
        if v["kind"] != "intent" && v["kind"] != "outcome" {
            continue; // the endpoint, or a sealed file's name: no request
        }
        let key: Key = (
            u32::try_from(v["account_id"].as_u64().unwrap()).unwrap(),
            v["token_name"].as_str().unwrap().to_owned(),
        );
        if v["kind"] == "intent" {
            pending.insert(v["seq"].as_u64().unwrap(), key);
        } else {
            pending.remove(&v["seq"].as_u64().unwrap());
            if v["result"] == "created" {
                created.push((
                    v["token_id"].as_i64().unwrap(),
                    v["token"].as_str().unwrap().to_owned(),
                ));
            }
        }
    }
    (created, pending.into_values().collect())
}

#[test]
fn a_state_directory_turned_read_only_mid_run_stops_it_and_loses_nothing_silently() {
    let tokens = 400;
    let workload = one_account_many_tokens(tokens);
    let env = Env::with_sim(SimConfig {
        latency: Duration::from_millis(15),
        seed: 17,
        ..SimConfig::default()
    });
    let files = Files::new(&env, &workload.manifest);
    let state = files.results.parent().unwrap().to_path_buf();
    let extra = ["--rate", "400"];
    let fs = match Ext4::mount(&env.path("state.img"), &state) {
        Ok(fs) => fs,
        Err(why) => {
            let msg = format!(
                "diskfull::read_only DID NOT RUN: it needs to loop-mount an ext4 image (root, mkfs.ext4, a loop device), and {why}"
            );
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "{msg}; CI must run it as root"
            );
            eprintln!("{msg}");
            return;
        }
    };
    let created = || usize::try_from(env.sim().counters().created).unwrap();
    let mut child = apply_cmd(&env, &files, &extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(60), || created() >= 100
        || child.try_wait().unwrap().is_some()));
    let at = created();
    fs.turn_read_only();
    let run = Run::from(crate::util::wait_with_timeout(
        child,
        Duration::from_secs(120),
    ));
    let stopped = env.sim().ground_truth().len();
    run.expect_code(3);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(
        run.stderr.contains("Read-only file system") && run.stderr.contains("read-only"),
        "the message must say the state became read-only:\n{}",
        run.stderr
    );
    assert!(
        stopped < tokens,
        "the run went on after the state became read-only"
    );
    // The run names every request answered or in flight after the state stopped taking
    // writes: their tokens may be recorded nowhere (the kernel may even drop the journal's
    // last fsync'd records when it turns the filesystem read-only after an error).
    let named = named_unsaved(&run.stderr);
    // Every token created is in the journal or the secrets file with its secret, or its
    // intent is in the journal (a possible orphan for the next run), or it was named:
    // nothing is lost silently.
    let (journaled, in_flight) = read_journal(&files.journal());
    let saved = Recorded::read(&files);
    for t in env.sim().ground_truth() {
        let key: Key = (u32::try_from(t.account_id).unwrap(), t.name.clone());
        let kept = journaled.iter().any(|(id, s)| *id == t.id && *s == t.token)
            || saved.secrets.get(&key) == Some(&(t.id, t.token.clone()));
        // The journal is read here as the page cache holds it, which the kernel may not
        // write: a token not kept must be named.
        assert!(
            kept || named.contains(&key),
            "token {} of {key:?} is neither kept nor named (the journal holds it in flight: {}):\n{}",
            t.id,
            in_flight.contains(&key),
            run.stderr
        );
    }
    fs.repair();
    let (gt, recorded) = resume_and_check(&env, &files, &extra, &workload, &named);
    let keys: BTreeSet<Key> = gt
        .iter()
        .map(|t| (u32::try_from(t.account_id).unwrap(), t.name.clone()))
        .collect();
    let duplicates = gt.len() - keys.len();
    eprintln!(
        "diskfull::read_only: {tokens} tokens, read-only at {at} created, run 1 stopped at {stopped}; {} requests in flight then, {} named by the run; after the resume: {} possible orphans, {duplicates} duplicates",
        in_flight.len(),
        named.len(),
        recorded.orphans.len()
    );
    // Only requests in flight at that instant (at most the concurrency, 8) may be possible
    // orphans, and only those, or those the run named, may have been created again. (The
    // journal read above is the page cache's view; an outcome written there whose fsync
    // failed is not on the disk, and the kernel may drop the last fsync'd records too.)
    assert!(
        recorded.orphans.len() <= 8,
        "more possible orphans than requests in flight"
    );
    let reported: BTreeSet<&Key> = recorded.orphans.iter().chain(named.iter()).collect();
    assert!(
        duplicates <= reported.len(),
        "{duplicates} duplicates, {} keys reported",
        reported.len()
    );
    drop(fs);
}

#[test]
fn a_results_file_replaced_during_a_run_is_not_clobbered_and_nothing_is_lost() {
    let tokens = 200;
    let workload = one_account_many_tokens(tokens);
    let env = Env::with_sim(SimConfig {
        latency: Duration::from_millis(5),
        seed: 19,
        ..SimConfig::default()
    });
    let files = Files::new(&env, &workload.manifest);
    // 10 s at 20/s: the first periodic save comes after 3 s, and the file must be replaced
    // while the run still goes, also on a loaded machine.
    let extra = ["--rate", "20"];
    let mut child = apply_cmd(&env, &files, &extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The run's first periodic save, then another program replaces the file (its own copy,
    // written elsewhere and renamed over it, as editors and checkouts do).
    assert!(
        wait_until(Duration::from_secs(60), || files.results.exists()),
        "no periodic save happened"
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run ended too soon"
    );
    let mut v = files.results_json();
    v["updated_at"] = serde_json::json!("2000-01-01T00:00:00.000Z");
    let theirs = serde_json::to_vec_pretty(&v).unwrap();
    let tmp = files.results.with_extension("theirs");
    std::fs::write(&tmp, &theirs).unwrap();
    std::fs::rename(&tmp, &files.results).unwrap();
    let at = env.sim().ground_truth().len();
    let run = Run::from(crate::util::wait_with_timeout(
        child,
        Duration::from_secs(120),
    ));
    run.expect_code(3);
    assert!(
        run.stderr
            .contains("replaced or changed by another program"),
        "{}",
        run.stderr
    );
    assert_eq!(
        std::fs::read(&files.results).unwrap(),
        theirs,
        "the other program's file was overwritten"
    );
    assert!(
        files.journal().exists(),
        "the journal must keep the run's records"
    );
    let stopped = env.sim().ground_truth().len();
    let (gt, recorded) = resume_and_check(&env, &files, &extra, &workload, &BTreeSet::new());
    eprintln!(
        "diskfull::replaced: {tokens} tokens, results file replaced at {at} created, run 1 stopped at {stopped}; after the resume: {} possible orphans, {} duplicates",
        recorded.orphans.len(),
        gt.len() - tokens
    );
    assert!(recorded.orphans.is_empty());
    assert_eq!(gt.len(), tokens, "a token was created twice");
}
