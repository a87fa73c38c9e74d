use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, the one clock unit stored anywhere.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
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

fn split(ms: i64) -> (i64, u32, u32, i64, i64, i64, i64) {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60, days)
}

/// `"+09:00"`, `"-05:30"`, `"+0900"`, `"UTC"` or `"Z"` → minutes east of UTC.
pub fn parse_utc_offset(s: &str) -> Option<i32> {
    let s = s.trim();
    if !s.is_ascii() {
        return None;
    }
    if s.eq_ignore_ascii_case("utc") || s == "Z" {
        return Some(0);
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let digits = |t: &str, n: std::ops::RangeInclusive<usize>| {
        (n.contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit())).then(|| t.parse::<i32>().ok()).flatten()
    };
    let (h, m) = match rest.split_once(':') {
        Some((h, m)) => (digits(h, 1..=2)?, digits(m, 2..=2)?),
        None if rest.len() == 4 => (digits(&rest[..2], 2..=2)?, digits(&rest[2..], 2..=2)?),
        None => (digits(rest, 1..=2)?, 0),
    };
    ((0..=14).contains(&h) && (0..60).contains(&m)).then_some(sign * (h * 60 + m))
}

/// `2026-12-02 16:20 (+09:00)`: a time for people, at `offset` minutes
/// east of UTC.
pub fn local_time(ms: i64, offset_minutes: i32) -> String {
    let (y, mo, d, h, mi, _, _) = split(ms + i64::from(offset_minutes) * 60_000);
    let sign = if offset_minutes < 0 { '-' } else { '+' };
    let off = offset_minutes.unsigned_abs();
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02} ({sign}{:02}:{:02})", off / 60, off % 60)
}

/// `2026-11-29T01:02:03Z`
pub fn rfc3339(ms: i64) -> String {
    let (y, mo, d, h, mi, s, _) = split(ms);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `Sun, 29 Nov 2026 01:02:03 +0000`, for Date and Received headers.
pub fn rfc2822(ms: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let (y, mo, d, h, mi, s, days) = split(ms);
    let wd = DAYS[days.rem_euclid(7) as usize];
    let mon = MONTHS[(mo - 1) as usize];
    format!("{wd}, {d} {mon} {y:04} {h:02}:{mi:02}:{s:02} +0000")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_local_times() {
        assert_eq!(parse_utc_offset("+09:00"), Some(540));
        assert_eq!(parse_utc_offset("-05:30"), Some(-330));
        assert_eq!(parse_utc_offset("+0900"), Some(540));
        assert_eq!(parse_utc_offset("UTC"), Some(0));
        for bad in ["", "09:00", "+9:99", "+25:00", "JST", "+09:00:00", "+123", "+1é1", "+９:00"] {
            assert_eq!(parse_utc_offset(bad), None, "{bad}");
        }
        // 2026-12-01T23:30:00Z is already the 2nd in Tokyo.
        let ms = 1_796_167_800_000;
        assert_eq!(rfc3339(ms), "2026-12-01T23:30:00Z");
        assert_eq!(local_time(ms, 540), "2026-12-02 08:30 (+09:00)");
        assert_eq!(local_time(ms, -330), "2026-12-01 18:00 (-05:30)");
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        // 2024-02-29T12:34:56Z, a leap day and a Thursday.
        assert_eq!(rfc3339(1_709_210_096_000), "2024-02-29T12:34:56Z");
        assert_eq!(rfc2822(1_709_210_096_000), "Thu, 29 Feb 2024 12:34:56 +0000");
    }
}
