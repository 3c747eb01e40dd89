//! Logz.io regions and their API base URLs.
//!
//! Pure data: the manifest validator lists the valid codes from here and the API client turns a
//! code into a base URL. Nothing here knows about HTTP.

use std::fmt;

/// A Logz.io region, each served by its own API host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Region {
    /// `us`, the default: `https://api.logz.io`.
    Us,
    /// `eu`: `https://api-eu.logz.io`.
    Eu,
    /// `uk`: `https://api-uk.logz.io`.
    Uk,
    /// `au`: `https://api-au.logz.io`.
    Au,
    /// `ca`: `https://api-ca.logz.io`.
    Ca,
}

impl Region {
    /// Every supported region, in the order they are listed to users.
    pub const ALL: [Region; 5] = [Region::Us, Region::Eu, Region::Uk, Region::Au, Region::Ca];

    /// The short code used in manifests and on the command line.
    pub fn code(self) -> &'static str {
        match self {
            Region::Us => "us",
            Region::Eu => "eu",
            Region::Uk => "uk",
            Region::Au => "au",
            Region::Ca => "ca",
        }
    }

    /// The API base URL of this region (no trailing slash).
    pub fn base_url(self) -> &'static str {
        match self {
            Region::Us => "https://api.logz.io",
            Region::Eu => "https://api-eu.logz.io",
            Region::Uk => "https://api-uk.logz.io",
            Region::Au => "https://api-au.logz.io",
            Region::Ca => "https://api-ca.logz.io",
        }
    }

    /// Parses a region code, case-insensitively. `None` for an unknown or deprecated code.
    pub fn from_code(code: &str) -> Option<Region> {
        Region::ALL
            .into_iter()
            .find(|r| r.code().eq_ignore_ascii_case(code.trim()))
    }

    /// The valid codes as a human list: `us, eu, uk, au, ca`.
    pub fn codes_list() -> String {
        Region::ALL.map(Region::code).join(", ")
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for r in Region::ALL {
            assert_eq!(Region::from_code(r.code()), Some(r));
        }
        assert_eq!(Region::from_code("EU"), Some(Region::Eu));
        assert_eq!(Region::from_code("nl"), None);
        assert_eq!(Region::codes_list(), "us, eu, uk, au, ca");
    }
}
