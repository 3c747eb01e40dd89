//! Strict JSON loading for the state files (results, secrets, journal records, sealed
//! documents): a missing file is "nothing yet", anything else that does not parse is an
//! error naming the file, the line and column, and the kind of problem, never the content; a
//! key given twice is refused (two parsers could read two different files from it).

use std::path::Path;

use super::{StateError, StateFile};
use crate::fs::Fs;

/// Reads a JSON state file: `None` when it does not exist (a first run); an error, never
/// "nothing", when it cannot be read or parsed.
pub(crate) fn load_json<F: Fs, T: serde::de::DeserializeOwned>(
    fs: &F,
    path: &Path,
    kind: StateFile,
) -> Result<Option<T>, StateError> {
    // A regular file only (a FIFO would block while the lock is held, `/dev/zero` never
    // ends), of a bounded size, zeroed when dropped (the secrets file is read here too).
    let limit = crate::bounded::MAX_STATE_FILE_BYTES;
    let read = crate::fs::trust::open_regular(fs, path, crate::bounded::Symlinks::Follow)
        .and_then(|f| crate::bounded::read_capped(f, limit));
    let bytes = match read {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Read {
                kind,
                path: path.to_path_buf(),
                source,
            });
        }
    };
    parse_state_json(&bytes, path, kind).map(Some)
}

/// Reads a secret-bearing JSON state file (the secrets file) only if it can be trusted: not
/// through a symlink, a regular file, ours, 0600, bounded (a file another user planted could
/// hand out secrets of theirs, through `export`, as ours).
pub(crate) fn load_own_secret_json<F: Fs, T: serde::de::DeserializeOwned>(
    fs: &F,
    path: &Path,
    kind: StateFile,
) -> Result<Option<T>, StateError> {
    let limit = crate::bounded::MAX_STATE_FILE_BYTES;
    let Some(file) = crate::fs::trust::open_own_secret_file(fs, path, kind.word(), limit)? else {
        return Ok(None);
    };
    let bytes = crate::bounded::read_capped(file, limit).map_err(|source| StateError::Read {
        kind,
        path: path.to_path_buf(),
        source,
    })?;
    parse_state_json(&bytes, path, kind).map(Some)
}

/// Parses a JSON state file, refusing a key twice in any object.
fn parse_state_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    path: &Path,
    kind: StateFile,
) -> Result<T, StateError> {
    parse_strict(bytes).map_err(|detail| StateError::Corrupt {
        kind,
        path: path.to_path_buf(),
        detail,
    })
}

/// Parses a JSON document a user pointed the tool at (a state file, a saved plan), refusing a
/// key twice in any object. The error is `line L column C: <kind of problem>`, never a word of
/// the document: serde's messages quote values, which may be secrets.
pub(crate) fn parse_strict<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    // serde keeps the last of two equal keys: a results file with an account twice would lose
    // the first one's tokens, and apply would create them again; a saved plan would show its
    // reviewer one value and apply another. Refused, as in the manifest.
    reject_duplicate_keys(bytes).map_err(|e| match e {
        DuplicateKey::At { line, column } => {
            format!("line {line} column {column}: a key appears twice in the same object")
        }
        DuplicateKey::Json(e) => json_error_detail(&e),
    })?;
    serde_json::from_slice(bytes).map_err(|e| json_error_detail(&e))
}

/// Why [`reject_duplicate_keys`] refused a document.
#[derive(Debug)]
pub(crate) enum DuplicateKey {
    /// A key repeated in one object; the position is where the repeat ends.
    At {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// Not JSON at all.
    Json(serde_json::Error),
}

/// Refuses a JSON document in which any object has the same key twice.
pub(crate) fn reject_duplicate_keys(bytes: &[u8]) -> Result<(), DuplicateKey> {
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

    /// Walks any JSON value; on a repeated key, sets `found` and stops with an error.
    #[derive(Clone, Copy)]
    struct Walk<'a> {
        found: &'a std::cell::Cell<bool>,
    }

    impl<'de> DeserializeSeed<'de> for Walk<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Walk<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element_seed(self)?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut keys = std::collections::HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                if !keys.insert(key) {
                    self.found.set(true);
                    // Never the key itself in the message: keep messages free of file content.
                    return Err(serde::de::Error::custom("duplicate key"));
                }
                map.next_value_seed(self)?;
            }
            Ok(())
        }
    }

    let found = std::cell::Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let walked = Walk { found: &found }
        .deserialize(&mut de)
        .and_then(|()| de.end());
    match walked {
        Ok(()) => Ok(()),
        Err(e) if found.get() => Err(DuplicateKey::At {
            line: e.line(),
            column: e.column(),
        }),
        Err(e) => Err(DuplicateKey::Json(e)),
    }
}

/// What kind of problem a serde_json error is, without its message: serde_json's messages
/// quote the offending value (`invalid type: string "..."`, `unknown field ...`), which in the
/// secrets file or the journal may be a secret. The message is only matched against serde's
/// fixed openings to pick one of these phrases; not a byte of it is shown.
pub(crate) fn json_error_kind(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "it could not be read",
        serde_json::error::Category::Syntax => "it is not valid JSON",
        serde_json::error::Category::Eof => "it ends too early (cut short?)",
        serde_json::error::Category::Data => {
            let message = e.to_string();
            let kinds = [
                ("invalid type", "a value has the wrong type"),
                ("invalid value", "a value is not one this field takes"),
                ("invalid length", "a list has the wrong number of items"),
                ("unknown variant", "a value is not one this field takes"),
                ("missing field", "a required field is missing"),
                ("unknown field", "an unknown field"),
                ("duplicate field", "a field appears twice"),
            ];
            kinds
                .iter()
                .find(|(opening, _)| message.starts_with(opening))
                .map_or(
                    "a value has the wrong type or a field is missing or unknown",
                    |k| k.1,
                )
        }
    }
}

/// `line L column C: <kind>` for a serde_json error (never its message; see [`json_error_kind`]).
pub(crate) fn json_error_detail(e: &serde_json::Error) -> String {
    format!(
        "line {} column {}: {}",
        e.line(),
        e.column(),
        json_error_kind(e)
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)] // tests set up real files, clocks and seeds
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::state::ResultsFile;

    #[test]
    fn a_key_twice_in_any_object_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        // The same account twice: serde would keep the second and forget `ci`.
        std::fs::write(
            &p,
            r#"{"version": 1, "updated_at": "x", "accounts": {
  "160343": {"ci": {"token_id": 1, "created_at": "x"}},
  "160343": {"other": {"token_id": 2, "created_at": "x"}}}}"#,
        )
        .unwrap();
        let err = ResultsFile::load(&p).unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains("twice"), "{err}");
        assert!(reject_duplicate_keys(br#"{"a": [{"b": 1, "b": 2}]}"#).is_err());
        assert!(reject_duplicate_keys(br#"{"a": {"b": 1}, "c": {"b": 2}}"#).is_ok());
        assert!(matches!(
            reject_duplicate_keys(b"{"),
            Err(DuplicateKey::Json(_))
        ));
        // Found inside arrays and nested objects, at the repeat.
        assert!(matches!(
            reject_duplicate_keys(b"[1, true, null, \"s\", 1.5, -2, {\"b\": 1, \"b\": 2}]"),
            Err(DuplicateKey::At { line: 1, .. })
        ));
        assert!(matches!(
            reject_duplicate_keys(b"{\"a\": {\"b\": 1,\n \"b\": 2}}"),
            Err(DuplicateKey::At { line: 2, .. })
        ));
        assert!(reject_duplicate_keys(b"[1, true, null, \"s\", 1.5, -2, {\"b\": [{}]}]").is_ok());
    }
}
