//! Secret values: the owner API token and every created token.
//!
//! A [`Secret`] prints as `[redacted]` through `Debug` and `Display`, serializes only where the
//! code opts in (the secrets file and the journal, through [`Secret::expose`]), and is zeroed on
//! drop (by `secrecy`).

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// A secret string. Its value leaves the type only through [`Secret::expose`].
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(SecretString::from(value.into()))
    }

    /// The value itself. Call this only where the secret is sent or written.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Writes the value, for `#[serde(serialize_with = "Secret::serialize_exposed")]` on the
    /// fields of the secrets file and the journal: the one place a secret is written out.
    /// `Secret` itself does not implement `Serialize`, so no other type can write one by accident.
    pub fn serialize_exposed<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.expose())
    }

    /// [`Secret::serialize_exposed`] for an optional field (skip `None` with
    /// `skip_serializing_if`).
    pub fn serialize_exposed_opt<S: serde::Serializer>(
        v: &Option<Secret>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(secret) => secret.serialize_exposed(s),
            None => s.serialize_none(),
        }
    }

    /// Whether two secrets hold the same value (without exposing either to the caller).
    pub fn same_as(&self, other: &Secret) -> bool {
        self.expose() == other.expose()
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.same_as(other)
    }
}

impl Eq for Secret {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact() {
        let s = Secret::new("c498fbc3-a3ac-4676-ad09-689854b5cbbd");
        assert_eq!(format!("{s:?}"), "Secret([redacted])");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&s)), "Some(Secret([redacted]))");
        assert_eq!(s.expose(), "c498fbc3-a3ac-4676-ad09-689854b5cbbd");
    }
}
