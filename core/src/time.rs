//! Time as the core handles it: deadlines and wall-clock formatting. The
//! core never reads a clock: the caller's `Instant` and `SystemTime` come
//! in and are only added to or formatted here.

use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `now + wait`, saturating a century ahead instead of overflowing: a
/// configured wait may be absurdly long (someone's "never"), and
/// `Instant`'s `+` panics past the clock's range.
pub fn later(now: Instant, wait: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 86_400);
    now.checked_add(wait.min(CENTURY)).unwrap_or(now)
}

/// Seconds since the Unix epoch (OpenAI's `created`).
pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// RFC 3339 in UTC with microseconds, e.g. `2026-11-21T15:13:00.000123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let mut s = String::with_capacity(27);
    write_rfc3339(&mut s, t);
    s
}

/// [`rfc3339`] written straight into `out`, for stream lines (one per
/// Ollama chunk: the digits are placed by hand, as `write!`'s padding cost
/// more than the rest of the line).
pub fn write_rfc3339(out: &mut impl fmt::Write, t: SystemTime) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    let fields: [(usize, usize, u64); 7] = [
        (0, 4, y.clamp(0, 9999) as u64),
        (5, 2, u64::from(m)),
        (8, 2, u64::from(day)),
        (11, 2, rem / 3600),
        (14, 2, rem % 3600 / 60),
        (17, 2, rem % 60),
        (20, 6, u64::from(d.subsec_micros())),
    ];
    for (at, width, mut value) in fields {
        for digit in text.iter_mut().skip(at).take(width).rev() {
            *digit = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    // Digits and separators only: always UTF-8. Writing into memory
    // cannot fail.
    let _ = out.write_str(std::str::from_utf8(&text).unwrap_or_default());
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_past_the_clock_s_range_ends_a_century_ahead() {
        let now = Instant::now();
        assert_eq!(
            later(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        let never = later(now, Duration::MAX);
        assert!(never > now + Duration::from_secs(99 * 365 * 86_400));
        assert_eq!(never, later(now, Duration::from_secs(u64::MAX)));
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_273_980) + Duration::from_micros(42);
        assert_eq!(rfc3339(t), "2026-11-21T15:13:00.000042Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000000Z");
        let last =
            UNIX_EPOCH + Duration::from_secs(253_402_300_799) + Duration::from_micros(999_999);
        assert_eq!(rfc3339(last), "9999-12-31T23:59:59.999999Z");
    }
}
