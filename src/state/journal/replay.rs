//! Reading a journal back: every outcome in order, the intents that never got one, and
//! what a crash or a failing disk left (a torn last record, zeros among the records).

use crate::state::StateFile;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

use super::{JournalRecord, Outcome};
use crate::fs::Fs;
use crate::key::{CreateKind, TokenKey};
use crate::state::StateError;

/// What a journal held: outcomes in order, and intents that never got one.
#[derive(Debug, Default)]
pub struct Replayed {
    /// Every outcome record, in order.
    pub outcomes: Vec<(TokenKey, Outcome, String)>,
    /// Intents without an outcome: the run stopped while these requests were in flight.
    pub interrupted: Vec<(TokenKey, String)>,
    /// Whether a record was cut short (a crash during a write); it is ignored.
    pub truncated_tail: bool,
    /// The first run of zeros followed by more records, if any: a write there failed or was
    /// lost, and what it held is gone.
    pub gap: Option<Gap>,
    /// Number of records read.
    pub records: usize,
    /// The endpoint the journal is bound to (its `begin` record), if it has one.
    pub endpoint: Option<String>,
    /// The sealed files the run journaled before writing them.
    pub sealed_files: Vec<crate::state::SealedFile>,
    /// Sub-account records, in order: intents (seq, name, known ids) and outcomes.
    pub accounts: Vec<crate::state::accounts::AccountRecord>,
}

/// Zeros between a journal's records: a write that failed part way (the recorder starts the
/// next one after a zero byte), or one the disk lost (a power loss, a failing disk). The
/// records it held are gone and cannot be named; the times around it say when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// Where the zeros start, in bytes from the start of the file.
    pub offset: u64,
    /// When the last record before the gap was written (RFC 3339), if there is one.
    pub after: Option<String>,
    /// When the first record after it was written, if one could be read.
    pub before: Option<String>,
}

impl Gap {
    /// What the gap means and what to do, for the journal at `journal`.
    pub fn describe(&self, journal: &Path) -> String {
        let when = match (&self.after, &self.before) {
            (Some(a), Some(b)) => format!("written between {a} and {b}"),
            (Some(a), None) => format!("written after {a}"),
            (None, Some(b)) => format!("written before {b}"),
            (None, None) => "of this journal".to_owned(),
        };
        format!(
            "journal {} has zeros among its records at byte {}: a write there failed or was lost (a full or failing disk, a power loss), and the records it held are gone. A token created by a request {when} may exist without a record; it cannot be named. Check the Logz.io UI (Settings > Tools > Manage Tokens) for tokens created then",
            journal.display(),
            self.offset
        )
    }
}

/// The longest record read: far above any this tool writes (a few hundred bytes, a sealed
/// secret included). Longer text is not a record, and is not kept in memory.
const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// Reads a journal. A missing file is an empty journal; zeros are its unused room; a record
/// cut short by a crash (on the last line, or next to zeros) is tolerated; a malformed line
/// elsewhere is corruption.
///
/// The file is streamed: what is held in memory is one record at a time, never a line, so a
/// journal of a gigabyte of zeros (its room, or a sparse file) takes no more memory than an
/// empty one.
pub fn replay<F: Fs>(fs: &F, path: &Path) -> Result<Replayed, StateError> {
    // Not through a symlink, not a FIFO or device, ours and 0600, of a bounded size.
    let Some(file) = crate::fs::trust::open_own_secret_file(
        fs,
        path,
        StateFile::Journal.word(),
        crate::bounded::MAX_JOURNAL_BYTES,
    )?
    else {
        return Ok(Replayed::default());
    };
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut scan = Scan::new(path);
    loop {
        let buf = reader.fill_buf().map_err(|source| StateError::Read {
            kind: StateFile::Journal,
            path: path.to_path_buf(),
            source,
        })?;
        if buf.is_empty() {
            break;
        }
        let n = buf.len();
        scan.feed(buf)?;
        reader.consume(n);
    }
    scan.finish()
}

/// A journal read as it streams by: lines end at `\n`, and the zeros of the journal's room
/// (`super::room`) split a line into pieces, each a record, a record cut short, or blank.
///
/// The journal's room is zeros written ahead of its records: a line with zeros in it is the
/// unused tail, or records around a write that failed or was lost. Text that does not parse
/// there, or on the last line, is a record cut short: it was never acknowledged. Anything else
/// (binary bytes next to the zeros too) is corruption. Whether a line is the last one is known
/// only once a byte follows it, so a piece that is excused only on the last line waits there.
struct Scan<'p> {
    path: &'p Path,
    out: Replayed,
    pending: HashMap<u64, (TokenKey, String)>,
    order: Vec<u64>,
    /// The file offset of the next byte.
    offset: u64,
    /// The current line's index, from 0.
    line: usize,
    /// Bytes of the current line were read.
    line_open: bool,
    /// The current line's `\n` was read; it ends for good when a byte follows, or the file.
    line_ended: bool,
    /// The current line holds a zero.
    line_zeros: bool,
    /// The current piece, up to [`MAX_RECORD_BYTES`] (it may hold a secret).
    piece: zeroize::Zeroizing<Vec<u8>>,
    /// The piece is only whitespace so far.
    piece_blank: bool,
    /// The piece could be a record's text so far (no byte below 0x20).
    piece_text: bool,
    /// The piece is longer than [`MAX_RECORD_BYTES`].
    piece_long: bool,
    /// A cut-short piece of this line, excused only if the line is the last: what was wrong.
    torn: Option<String>,
    /// Where the zeros seen last (and not yet followed by a record) start.
    zeros_from: Option<u64>,
    /// The time of the last record read.
    last_at: Option<String>,
}

impl<'p> Scan<'p> {
    fn new(path: &'p Path) -> Scan<'p> {
        Scan {
            path,
            out: Replayed::default(),
            pending: HashMap::new(),
            order: Vec::new(),
            offset: 0,
            line: 0,
            line_open: false,
            line_ended: false,
            line_zeros: false,
            piece: zeroize::Zeroizing::new(Vec::new()),
            piece_blank: true,
            piece_text: true,
            piece_long: false,
            torn: None,
            zeros_from: None,
            last_at: None,
        }
    }

    fn feed(&mut self, buf: &[u8]) -> Result<(), StateError> {
        let mut i = 0;
        while i < buf.len() {
            if self.line_ended {
                // A byte follows the line: it was not the last one.
                self.end_line(false)?;
            }
            self.line_open = true;
            match buf[i] {
                b'\n' => {
                    self.end_piece()?;
                    self.line_ended = true;
                    i += 1;
                    self.offset += 1;
                }
                0 => {
                    self.line_zeros = true;
                    self.end_piece()?;
                    self.zeros_from.get_or_insert(self.offset);
                    // The rest of the run of zeros: blank pieces, skipped a block at a time.
                    let run = zero_run(&buf[i..]);
                    i += run;
                    self.offset += run as u64;
                }
                _ => {
                    let end = buf[i..]
                        .iter()
                        .position(|b| *b == 0 || *b == b'\n')
                        .map_or(buf.len(), |p| i + p);
                    self.add_to_piece(&buf[i..end]);
                    self.offset += (end - i) as u64;
                    i = end;
                }
            }
        }
        Ok(())
    }

    fn add_to_piece(&mut self, bytes: &[u8]) {
        self.piece_blank &= bytes.iter().all(u8::is_ascii_whitespace);
        self.piece_text &= is_record_text(bytes);
        let room = MAX_RECORD_BYTES.saturating_sub(self.piece.len());
        if bytes.len() > room {
            self.piece_long = true;
        }
        self.piece
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// The piece read so far is whole (a zero, a line break or the end follows it).
    fn end_piece(&mut self) -> Result<(), StateError> {
        let piece = std::mem::take(&mut self.piece);
        let (blank, text, long) = (self.piece_blank, self.piece_text, self.piece_long);
        (self.piece_blank, self.piece_text, self.piece_long) = (true, true, false);
        if blank {
            return Ok(());
        }
        if let Some(from) = self.zeros_from.take()
            && self.out.gap.is_none()
        {
            self.out.gap = Some(Gap {
                offset: from,
                after: self.last_at.clone(),
                before: None,
            });
        }
        let parsed = if long {
            Err(Unreadable::Torn(format!(
                "longer than any record ({MAX_RECORD_BYTES} bytes)"
            )))
        } else {
            parse_record(&piece)
        };
        match parsed {
            Ok(record) => {
                if let Some(gap) = self.out.gap.as_mut()
                    && gap.before.is_none()
                {
                    gap.before = Some(record.at().to_owned());
                }
                self.last_at = Some(record.at().to_owned());
                note(record, &mut self.out, &mut self.pending, &mut self.order);
            }
            Err(Unreadable::Torn(_)) if self.line_zeros && text => self.out.truncated_tail = true,
            Err(Unreadable::Torn(detail)) => {
                self.torn.get_or_insert(detail);
            }
            Err(Unreadable::KeyTwice(detail)) => return Err(self.corrupt(detail)),
        }
        Ok(())
    }

    /// The current line ends; `last` when nothing follows it.
    fn end_line(&mut self, last: bool) -> Result<(), StateError> {
        if let Some(detail) = self.torn.take() {
            if !last {
                return Err(self.corrupt(detail));
            }
            self.out.truncated_tail = true;
        }
        self.line += 1;
        (self.line_open, self.line_ended, self.line_zeros) = (false, false, false);
        Ok(())
    }

    fn corrupt(&self, detail: String) -> StateError {
        StateError::Corrupt {
            kind: StateFile::Journal,
            path: self.path.to_path_buf(),
            detail: format!("line {}: {detail}", self.line + 1),
        }
    }

    fn finish(mut self) -> Result<Replayed, StateError> {
        if self.line_open {
            self.end_piece()?;
            self.end_line(true)?;
        }
        for seq in self.order {
            if let Some(p) = self.pending.remove(&seq) {
                self.out.interrupted.push(p);
            }
        }
        Ok(self.out)
    }
}

/// How many zeros `bytes` begins with, compared a block at a time (a journal's room is
/// megabytes of them; a sparse one, gigabytes).
fn zero_run(bytes: &[u8]) -> usize {
    const BLOCK: [u8; 4096] = [0; 4096];
    let mut n = 0;
    while bytes.len() - n >= BLOCK.len() && bytes[n..n + BLOCK.len()] == BLOCK {
        n += BLOCK.len();
    }
    n + bytes[n..].iter().take_while(|b| **b == 0).count()
}

/// Why a journal record could not be read.
enum Unreadable {
    /// Not a whole record: cut short by a crash when it is where a crash leaves one.
    Torn(String),
    /// A record with a key twice (two `token`s): never a cut-short line, always corruption.
    KeyTwice(String),
}

fn parse_record(bytes: &[u8]) -> Result<JournalRecord, Unreadable> {
    if let Err(crate::state::json::DuplicateKey::At { .. }) =
        crate::state::json::reject_duplicate_keys(bytes)
    {
        return Err(Unreadable::KeyTwice(
            "a key appears twice in one record".into(),
        ));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| Unreadable::Torn(crate::state::json::json_error_kind(&e).to_string()))
}

/// Whether `bytes` could be part of a record as this tool writes it: no byte below 0x20
/// (JSON escapes those; a line break ends the record). Bytes, not characters: a cut can fall
/// inside a multi-byte character, and JSON writes DEL and the C1 controls as they are.
fn is_record_text(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| *b >= 0x20)
}

/// Takes one record into the replay: an intent waits for its outcome.
fn note(
    record: JournalRecord,
    out: &mut Replayed,
    pending: &mut HashMap<u64, (TokenKey, String)>,
    order: &mut Vec<u64>,
) {
    out.records += 1;
    match record {
        JournalRecord::Intent {
            seq,
            create,
            account_id,
            token_name,
            at,
            ..
        } => {
            // Every record is about a token today; a new kind is replayed here first.
            let CreateKind::Token = create;
            pending.insert(
                seq,
                (
                    TokenKey {
                        account_id,
                        token_name,
                    },
                    at,
                ),
            );
            order.push(seq);
        }
        JournalRecord::AccountIntent {
            seq,
            name,
            known,
            run_id,
            at,
            ..
        } => out
            .accounts
            .push(crate::state::accounts::AccountRecord::Intent {
                seq,
                name,
                known,
                run_id,
                at,
            }),
        JournalRecord::AccountOutcome {
            seq,
            name,
            outcome,
            at,
        } => out
            .accounts
            .push(crate::state::accounts::AccountRecord::Outcome {
                seq,
                name,
                outcome,
                at,
            }),
        JournalRecord::Outcome {
            seq,
            create,
            account_id,
            token_name,
            outcome,
            at,
        } => {
            let CreateKind::Token = create;
            pending.remove(&seq);
            if crate::reintroduced::on(crate::reintroduced::Bug::ReplayDropsOutcome)
                && out.outcomes.is_empty()
            {
                return;
            }
            out.outcomes.push((
                TokenKey {
                    account_id,
                    token_name,
                },
                outcome,
                at,
            ));
        }
        JournalRecord::Begin { endpoint, .. } => {
            out.endpoint.get_or_insert(endpoint);
        }
        JournalRecord::Sealed { file, .. } => out.sealed_files.push(file),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)] // tests set up real files, clocks and seeds
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::key::CreateKind;
    use crate::secret::Secret;
    use crate::state::HeldSecret;

    /// The journal as this tool creates it: 0600 (anything else is refused).
    fn write_0600(p: &Path, bytes: &[u8]) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(p, bytes).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    fn intent(seq: u64) -> JournalRecord {
        JournalRecord::Intent {
            seq,
            create: CreateKind::Token,
            account_id: 7,
            token_name: format!("t{seq}"),
            attempt: 1,
            at: "2026-01-01T00:00:00.000Z".into(),
        }
    }

    #[test]
    fn replay_pairs_intents_with_outcomes_and_tolerates_a_cut_tail() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j");
        let mut bytes = Vec::new();
        bytes.extend(intent(1).to_line());
        bytes.extend(intent(2).to_line());
        bytes.extend(
            JournalRecord::Outcome {
                seq: 1,
                create: CreateKind::Token,
                account_id: 7,
                token_name: "t1".into(),
                outcome: Outcome::Created {
                    token_id: 5,
                    secret: HeldSecret::plain(Secret::new("s3cr3t")),
                    created_at: "2021-05-24T12:11:51Z".into(),
                },
                at: "2026-01-01T00:00:01.000Z".into(),
            }
            .to_line(),
        );
        let full = bytes.clone();
        bytes.extend(&intent(3).to_line()[..10]);
        write_0600(&p, &bytes);
        let r = replay(&crate::fs::RealFs, &p).unwrap();
        assert!(r.truncated_tail);
        // Two intents and an outcome were read; the cut-short fourth line was not.
        assert_eq!(r.records, 3);
        assert_eq!(r.outcomes.len(), 1);
        match &r.outcomes[0].1 {
            Outcome::Created {
                secret, token_id, ..
            } => {
                assert_eq!(*token_id, 5);
                assert_eq!(secret.token.as_ref().unwrap().expose(), "s3cr3t");
            }
            o => panic!("unexpected {o:?}"),
        }
        assert_eq!(r.interrupted.len(), 1);
        assert_eq!(r.interrupted[0].0.token_name, "t2");

        // A bad line that is not the last one is corruption, never skipped.
        let mut bad = b"{nope}\n".to_vec();
        bad.extend(&full);
        write_0600(&p, &bad);
        let err = replay(&crate::fs::RealFs, &p).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    fn created(seq: u64, secret: &str) -> JournalRecord {
        JournalRecord::Outcome {
            seq,
            create: CreateKind::Token,
            account_id: 7,
            token_name: format!("t{seq}"),
            outcome: Outcome::Created {
                token_id: 100 + seq as i64,
                secret: HeldSecret::plain(Secret::new(secret)),
                created_at: "2021-05-24T12:11:51Z".into(),
            },
            at: "2026-01-01T00:00:01.000Z".into(),
        }
    }

    fn secrets(r: &Replayed) -> Vec<String> {
        r.outcomes
            .iter()
            .map(|(_, o, _)| match o {
                Outcome::Created { secret, .. } => secret.token.as_ref().unwrap().expose().into(),
                o => panic!("unexpected {o:?}"),
            })
            .collect()
    }

    #[test]
    fn zeros_after_the_records_are_unused_room() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j");
        let mut bytes = intent(1).to_line();
        bytes.extend(created(1, "s1").to_line());
        bytes.extend(intent(2).to_line());
        bytes.extend([0; 5000]);
        write_0600(&p, &bytes);
        let r = replay(&crate::fs::RealFs, &p).unwrap();
        assert!(!r.truncated_tail, "zeros are not a cut-short record");
        assert_eq!(r.gap, None, "zeros at the end are the room, not a gap");
        assert_eq!((r.records, secrets(&r)), (3, vec!["s1".to_owned()]));
        assert_eq!(r.interrupted.len(), 1);
        assert_eq!(r.interrupted[0].0.token_name, "t2");

        // A record cut short by a crash, followed by the zeros: tolerated and noted.
        let mut torn = intent(1).to_line();
        torn.extend(&created(1, "s1").to_line()[..30]);
        torn.extend([0; 100]);
        write_0600(&p, &torn);
        let r = replay(&crate::fs::RealFs, &p).unwrap();
        assert!(r.truncated_tail);
        assert_eq!((r.records, r.interrupted.len()), (1, 1));
    }

    #[test]
    fn records_a_power_loss_left_around_zeros_are_all_read() {
        // The disk wrote a later block but not an earlier one: zeros in the middle, a torn
        // record before them, whole records after. Every whole record is read.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j");
        let mut bytes = intent(1).to_line();
        bytes.extend(intent(2).to_line());
        bytes.extend(&created(1, "s1").to_line()[..20]);
        bytes.extend([0; 300]);
        bytes.extend(&created(2, "s2").to_line()[25..]);
        bytes.extend(created(3, "s3").to_line());
        bytes.extend([0; 300]);
        let gap_at = bytes.iter().position(|b| *b == 0).unwrap() as u64;
        write_0600(&p, &bytes);
        let r = replay(&crate::fs::RealFs, &p).unwrap();
        assert!(r.truncated_tail);
        assert_eq!(secrets(&r), ["s3"]);
        assert_eq!(r.interrupted.len(), 2);
        // The zeros between records are a gap, reported with the times around it; the zeros
        // at the end are the room.
        assert_eq!(
            r.gap,
            Some(Gap {
                offset: gap_at,
                after: Some("2026-01-01T00:00:00.000Z".into()),
                before: Some("2026-01-01T00:00:01.000Z".into()),
            })
        );

        // Zeros excuse only text next to them that could be a record cut short: binary bytes
        // there, or a bad line elsewhere, are corruption.
        let mut binary = intent(1).to_line();
        binary.extend(b"\0\x01\x02\xff garbage\n");
        binary.extend(intent(2).to_line());
        write_0600(&p, &binary);
        let err = replay(&crate::fs::RealFs, &p).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        let mut bad = b"{nope}\n".to_vec();
        bad.extend(intent(1).to_line());
        bad.extend([0; 100]);
        write_0600(&p, &bad);
        let err = replay(&crate::fs::RealFs, &p).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn a_cut_inside_a_character_or_next_to_raw_controls_is_a_cut_short_record() {
        // A cut falls on a block boundary, which can split a multi-byte character of a name;
        // JSON writes DEL and the C1 controls as they are.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j");
        let named = |seq: u64, name: &str| JournalRecord::Intent {
            seq,
            create: CreateKind::Token,
            account_id: 7,
            token_name: name.into(),
            attempt: 1,
            at: "2026-01-01T00:00:00.000Z".into(),
        };
        let mut bytes = named(1, "été").to_line();
        let line = named(2, "été").to_line();
        let e = line.windows(2).position(|w| w == "é".as_bytes()).unwrap();
        bytes.extend(&line[..=e]);
        bytes.extend([0; 300]);
        bytes.extend(&line[e + 1..]);
        let ambiguous = JournalRecord::Outcome {
            seq: 1,
            create: CreateKind::Token,
            account_id: 7,
            token_name: "été".into(),
            outcome: Outcome::Ambiguous {
                detail: "the server said \u{7f}\u{85}".into(),
            },
            at: "2026-01-01T00:00:02.000Z".into(),
        }
        .to_line();
        assert!(ambiguous.contains(&0x7f), "JSON leaves DEL as it is");
        bytes.extend(&ambiguous[..ambiguous.len() - 5]);
        bytes.extend([0; 300]);
        bytes.extend(b"\n");
        bytes.extend(created(3, "s3").to_line());
        write_0600(&p, &bytes);
        let r = replay(&crate::fs::RealFs, &p).unwrap();
        assert!(r.truncated_tail);
        assert_eq!(secrets(&r), ["s3"]);
        assert!(r.gap.is_some());
    }

    /// Streamed, a record that straddles two reads is read whole; a sparse journal's
    /// hundreds of megabytes of zeros are skipped (its gap and the records after it read as
    /// before); text longer than any record is not kept, and is corruption unless last.
    #[test]
    fn a_journal_is_streamed_whatever_its_size() {
        use std::io::{Seek, SeekFrom, Write};
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j");
        // A record across the reader's 64 KiB boundary, after zeros (room before a record:
        // a gap).
        let mut bytes = intent(1).to_line();
        bytes.extend(vec![0; 64 * 1024 - bytes.len() - 20]);
        bytes.extend(created(1, "s1").to_line());
        write_0600(&p, &bytes);
        let r = replay(&crate::fs::RealFs, &p).unwrap();
        assert_eq!(secrets(&r), ["s1"]);
        assert!(r.gap.is_some() && !r.truncated_tail);

        // 300 MB of zeros (a sparse file: nothing on disk), then a record.
        let first = intent(1).to_line();
        write_0600(&p, &first);
        let mut f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        let at = 300 * 1024 * 1024;
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(&created(1, "s1").to_line()).unwrap();
        drop(f);
        let r = replay(&crate::fs::RealFs, &p).unwrap();
        assert_eq!(secrets(&r), ["s1"]);
        assert_eq!(r.gap.as_ref().map(|g| g.offset), Some(first.len() as u64));
        assert_eq!(r.records, 2);

        // 2 MB of text without a line break: not a record, not kept; corruption unless last.
        let mut long = intent(1).to_line();
        long.extend(vec![b'x'; 2 * 1024 * 1024]);
        write_0600(&p, &long);
        let r = replay(&crate::fs::RealFs, &p).unwrap();
        assert!(r.truncated_tail);
        long.extend(b"\n");
        long.extend(intent(2).to_line());
        write_0600(&p, &long);
        let err = replay(&crate::fs::RealFs, &p).unwrap_err().to_string();
        assert!(
            err.contains("line 2") && err.contains("longer than any record"),
            "{err}"
        );
    }

    /// The bound on a record is far above any record this tool writes: a record of 100 KiB (a
    /// long answer kept as an ambiguous outcome's detail) is read like any other, in the middle
    /// of the journal too.
    #[test]
    fn a_long_record_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j");
        let detail = "x".repeat(100 * 1024);
        let mut bytes = intent(1).to_line();
        bytes.extend(
            JournalRecord::Outcome {
                seq: 1,
                create: CreateKind::Token,
                account_id: 7,
                token_name: "t1".into(),
                outcome: Outcome::Ambiguous {
                    detail: detail.clone(),
                },
                at: "2026-01-01T00:00:01.000Z".into(),
            }
            .to_line(),
        );
        bytes.extend(intent(2).to_line());
        write_0600(&p, &bytes);
        let r = replay(&crate::fs::RealFs, &p).unwrap();
        assert_eq!(r.records, 3);
        assert!(!r.truncated_tail);
        match &r.outcomes[..] {
            [(_, Outcome::Ambiguous { detail: read }, _)] => assert_eq!(read.len(), detail.len()),
            o => panic!("unexpected {o:?}"),
        }
    }

    #[test]
    fn a_gap_says_where_what_to_check_and_when() {
        let gap = Gap {
            offset: 4096,
            after: Some("2026-01-01T00:00:00.000Z".into()),
            before: Some("2026-01-01T00:00:05.000Z".into()),
        };
        let text = gap.describe(Path::new("/state/m.results.journal"));
        for part in [
            "/state/m.results.journal",
            "at byte 4096",
            "between 2026-01-01T00:00:00.000Z and 2026-01-01T00:00:05.000Z",
            "cannot be named",
            "Manage Tokens",
        ] {
            assert!(text.contains(part), "{part:?} in {text}");
        }
        let open_ended = Gap {
            before: None,
            ..gap.clone()
        };
        assert!(
            open_ended
                .describe(Path::new("j"))
                .contains("written after 2026-01-01T00:00:00.000Z")
        );
        // Zeros before the first record read, and zeros with no record on either side.
        let no_start = Gap {
            after: None,
            ..gap.clone()
        };
        assert!(
            no_start
                .describe(Path::new("j"))
                .contains("a request written before 2026-01-01T00:00:05.000Z")
        );
        let nothing = Gap {
            offset: 0,
            after: None,
            before: None,
        };
        assert!(
            nothing
                .describe(Path::new("j"))
                .contains("a request of this journal may exist")
        );
    }

    #[test]
    fn a_secret_is_written_in_the_line_but_never_in_debug() {
        let o = Outcome::Created {
            token_id: 1,
            secret: HeldSecret::plain(Secret::new("topsecret")),
            created_at: String::new(),
        };
        assert!(!format!("{o:?}").contains("topsecret"));
        let line = JournalRecord::Outcome {
            seq: 1,
            create: CreateKind::Token,
            account_id: 1,
            token_name: "a".into(),
            outcome: o,
            at: String::new(),
        }
        .to_line();
        assert!(String::from_utf8(line).unwrap().contains("topsecret"));
    }
}
