//! Timestamps as the state files and the API write them: RFC 3339 in UTC.

/// Orders two RFC 3339 timestamps by the instant they name, not by their text (`…:58Z` and
/// `…:58.000Z` are the same instant; as text the first sorts after `…:58.500Z`). A timestamp
/// that does not parse sorts by its text, after every one that does.
pub fn rfc3339_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let parse = |s: &str| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
    };
    match (parse(a), parse(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// The current time as RFC 3339 with millisecond precision, in UTC.
#[allow(clippy::disallowed_methods)] // the ambient wall clock, for the CLI; the state uses a Clock
pub fn now_rfc3339() -> String {
    format_rfc3339(time::OffsetDateTime::now_utc())
}

/// Formats a time as RFC 3339 (`2026-11-23T20:00:00.123Z`), UTC.
pub fn format_rfc3339(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&fmt)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Converts API epoch seconds (integer or decimal) to RFC 3339.
pub fn epoch_to_rfc3339(epoch_seconds: f64) -> String {
    // Round to milliseconds first: a decimal like 1621858311.000000000 may parse as
    // 1621858310.9999998, which must not become the second before.
    let nanos = (epoch_seconds * 1e3).round() as i128 * 1_000_000;
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => {
            let fmt =
                time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
            t.format(&fmt).unwrap_or_else(|_| epoch_seconds.to_string())
        }
        Err(_) => epoch_seconds.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)] // tests set up real files, clocks and seeds
    use super::*;

    #[test]
    fn epoch_conversion_accepts_integer_and_decimal() {
        assert_eq!(epoch_to_rfc3339(1621858311.0), "2021-05-24T12:11:51Z");
        assert_eq!(
            epoch_to_rfc3339(1621858311.000000000),
            "2021-05-24T12:11:51Z"
        );
    }

    #[test]
    fn timestamps_compare_as_instants() {
        use std::cmp::Ordering::*;
        assert_eq!(
            rfc3339_cmp("2026-11-23T19:59:58Z", "2026-11-23T19:59:58.000Z"),
            Equal
        );
        assert_eq!(
            rfc3339_cmp("2026-11-23T19:59:58Z", "2026-11-23T19:59:58.500Z"),
            Less
        );
        assert_eq!(
            rfc3339_cmp("2026-11-23T21:00:00+01:00", "2026-11-23T19:59:59Z"),
            Greater
        );
        assert_eq!(rfc3339_cmp("garbage", "2026-11-23T19:59:58Z"), Greater);
    }

    #[test]
    fn now_is_the_current_instant_in_utc_with_milliseconds() {
        let before = time::OffsetDateTime::now_utc();
        let now = now_rfc3339();
        let after = time::OffsetDateTime::now_utc();
        let parsed =
            time::OffsetDateTime::parse(&now, &time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|e| panic!("{now:?} is not RFC 3339: {e}"));
        assert!(now.ends_with('Z') && now.len() == "2026-11-23T20:00:00.500Z".len());
        // Truncated to the millisecond, so up to 1 ms before `before`.
        assert!(parsed > before - time::Duration::milliseconds(1) && parsed <= after);
    }

    #[test]
    fn rfc3339_has_milliseconds() {
        let t = time::macros::datetime!(2026-11-23 20:00:00.5 UTC);
        assert_eq!(format_rfc3339(t), "2026-11-23T20:00:00.500Z");
    }
}
