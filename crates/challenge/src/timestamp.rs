//! Timestamps in the API's JSON: RFC 3339 in UTC (`2026-12-07T04:12:49.444094Z`), the same text as
//! `time::serde::rfc3339` writes, a test compares the two over many values.
//!
//! Why not that function itself: it formats through the `time` crate's general formatter into a new
//! `String`, which was 7 % of the instructions of a GET one task with its two timestamps (callgrind,
//! docs/BENCHMARKS.md). Every task's timestamps are UTC (read from the database's `DATETIME(6)` or
//! taken from the clock), so here they are written digit by digit into a buffer on the stack; any
//! other value (an offset other than UTC, a year outside 0000-9999) goes to `time`'s formatter.

use serde::Serializer;
use time::OffsetDateTime;

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`, the longest text written here.
const MAX_LEN: usize = 30;

/// Serialises `at` as RFC 3339 (for `#[serde(serialize_with = ...)]`).
pub fn serialize<S: Serializer>(at: &OffsetDateTime, serializer: S) -> Result<S::Ok, S::Error> {
    let mut buffer = [0u8; MAX_LEN];
    match write_utc(at, &mut buffer) {
        // Only ASCII digits and separators were written.
        Some(len) => serializer.serialize_str(std::str::from_utf8(&buffer[..len]).unwrap_or("")),
        None => time::serde::rfc3339::serialize(at, serializer),
    }
}

/// Writes `at` into `out` as `time`'s RFC 3339 format does for a UTC value: seconds, then the
/// fraction without its trailing zeros when it is not zero, then `Z`. `None` (nothing written that
/// counts) for a value that is not UTC or whose year has not four digits.
fn write_utc(at: &OffsetDateTime, out: &mut [u8; MAX_LEN]) -> Option<usize> {
    let year = u32::try_from(at.year()).ok().filter(|y| *y <= 9999)?;
    if !at.offset().is_utc() {
        return None;
    }
    let (hour, minute, second, nanosecond) = at.to_hms_nano();
    let mut len = put_digits(out, 0, 4, year);
    for (separator, value) in [
        (b'-', u8::from(at.month())),
        (b'-', at.day()),
        (b'T', hour),
        (b':', minute),
        (b':', second),
    ] {
        out[len] = separator;
        len = put_digits(out, len + 1, 2, u32::from(value));
    }
    if nanosecond != 0 {
        let (mut digits, mut fraction) = (9, nanosecond);
        while fraction % 10 == 0 {
            fraction /= 10;
            digits -= 1;
        }
        out[len] = b'.';
        len = put_digits(out, len + 1, digits, fraction);
    }
    out[len] = b'Z';
    Some(len + 1)
}

/// Writes `value` as `count` decimal digits (zero-padded) at `at`; returns the end.
fn put_digits(out: &mut [u8], at: usize, count: usize, mut value: u32) -> usize {
    for slot in out[at..at + count].iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
    at + count
}

#[cfg(test)]
mod tests {
    use time::format_description::well_known::Rfc3339;
    use time::macros::datetime;
    use time::{Duration, OffsetDateTime, UtcOffset};

    use super::{MAX_LEN, write_utc};

    fn written(at: OffsetDateTime) -> Option<String> {
        let mut buffer = [0u8; MAX_LEN];
        let len = write_utc(&at, &mut buffer)?;
        Some(String::from_utf8(buffer[..len].to_vec()).unwrap())
    }

    #[test]
    fn writes_what_the_time_crate_writes() {
        let cases = [
            datetime!(2026-12-07 04:12:49.444094 UTC),
            datetime!(2026-01-01 00:00:00 UTC),
            datetime!(1000-01-01 00:00:00.000001 UTC),
            datetime!(9999-12-31 23:59:59.999999999 UTC),
            datetime!(0000-01-01 00:00:00.5 UTC),
            datetime!(2024-02-29 12:30:05.120 UTC),
        ];
        for at in cases {
            assert_eq!(written(at).unwrap(), at.format(&Rfc3339).unwrap(), "{at}");
        }
    }

    #[test]
    fn writes_what_the_time_crate_writes_over_many_values() {
        // A fixed walk over the years 1970 to 9999 with every precision of the fraction.
        let mut at = Some(datetime!(1970-01-01 00:00:00 UTC));
        let step = Duration::new(2_522_394_107, 123_456_789);
        let mut compared = 0;
        while let Some(current) = at {
            for nanos in [
                0,
                100_000_000,
                120_000_000,
                123_456_000,
                1_000,
                999_999_999,
                7,
            ] {
                let value = current.replace_nanosecond(nanos).unwrap();
                assert_eq!(written(value).unwrap(), value.format(&Rfc3339).unwrap());
                compared += 1;
            }
            at = current.checked_add(step);
        }
        assert!(compared > 500, "{compared} values compared");
    }

    #[test]
    fn leaves_other_offsets_and_years_to_the_time_crate() {
        let paris =
            datetime!(2026-12-07 05:12:49 UTC).to_offset(UtcOffset::from_hms(1, 0, 0).unwrap());
        assert_eq!(written(paris), None);
        let far = datetime!(2026-12-07 00:00 UTC).replace_year(10_000);
        // Years past 9999 exist only with time's `large-dates` feature.
        if let Ok(far) = far {
            assert_eq!(written(far), None);
        }
        let json = serde_json::to_value(Serialized(paris)).unwrap();
        assert_eq!(json, "2026-12-07T06:12:49+01:00");
    }

    #[derive(serde::Serialize)]
    struct Serialized(#[serde(serialize_with = "super::serialize")] OffsetDateTime);

    #[test]
    fn serialises_as_a_json_string() {
        let json =
            serde_json::to_string(&Serialized(datetime!(2026-12-07 04:12:49.4 UTC))).unwrap();
        assert_eq!(json, "\"2026-12-07T04:12:49.4Z\"");
    }
}
