//! UTC calendar arithmetic for partition names and readable timestamps,
//! computed from Unix time without a date library (Howard Hinnant's
//! `days_from_civil` / `civil_from_days`).

/// Nanoseconds in a day.
pub const DAY_NANOS: u64 = 86_400 * 1_000_000_000;

/// A UTC calendar day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day {
    /// Days since 1970-01-01.
    pub index: i64,
}

impl Day {
    /// The day containing `unix_nanos`.
    pub fn of_nanos(unix_nanos: u64) -> Day {
        Day { index: (unix_nanos / DAY_NANOS) as i64 }
    }

    pub fn from_ymd(y: i64, m: u32, d: u32) -> Day {
        Day { index: days_from_civil(y, m, d) }
    }

    pub fn ymd(self) -> (i64, u32, u32) {
        civil_from_days(self.index)
    }

    pub fn plus(self, days: i64) -> Day {
        Day { index: self.index + days }
    }

    /// `YYYYMMDD`, as used in partition names.
    pub fn compact(self) -> String {
        let (y, m, d) = self.ymd();
        format!("{y:04}{m:02}{d:02}")
    }

    /// Parses `YYYYMMDD`.
    pub fn parse_compact(s: &str) -> Option<Day> {
        if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let y: i64 = s[..4].parse().ok()?;
        let m: u32 = s[4..6].parse().ok()?;
        let d: u32 = s[6..].parse().ok()?;
        if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
            return None;
        }
        Some(Day::from_ymd(y, m, d))
    }

    /// Midnight UTC as a SQL literal with an explicit offset, so it means the
    /// same instant whatever the session's `TimeZone`.
    pub fn sql_midnight(self) -> String {
        let (y, m, d) = self.ymd();
        format!("'{y:04}-{m:02}-{d:02} 00:00:00+00'")
    }

    /// Midnight UTC in Unix nanoseconds (0 for days before 1970).
    pub fn start_nanos(self) -> u64 {
        u64::try_from(self.index).map_or(0, |i| i.saturating_mul(DAY_NANOS))
    }
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (days since 1970-01-01).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// RFC 3339 UTC with microseconds: `2024-12-23T14:30:00.123456Z`.
pub fn rfc3339(unix_nanos: u64) -> String {
    let day = Day::of_nanos(unix_nanos);
    let (y, mo, d) = day.ymd();
    let in_day = unix_nanos % DAY_NANOS;
    let secs = in_day / 1_000_000_000;
    let micros = (in_day % 1_000_000_000) / 1_000;
    format!("{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z", secs / 3600, (secs / 60) % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip_through_dates() {
        for (ymd, index) in [
            ((1970, 1, 1), 0),
            ((2000, 3, 1), 11_017),
            ((2024, 2, 29), 19_782),
            ((2024, 12, 31), 20_088),
            ((1969, 12, 31), -1),
        ] {
            assert_eq!(Day::from_ymd(ymd.0, ymd.1, ymd.2).index, index, "{ymd:?}");
            assert_eq!(Day { index }.ymd(), ymd);
        }
        for i in -1000..30_000 {
            let (y, m, d) = civil_from_days(i);
            assert_eq!(days_from_civil(y, m, d), i);
        }
    }

    #[test]
    fn compact_names_parse_back_and_reject_nonsense() {
        let d = Day::from_ymd(2026, 1, 5);
        assert_eq!(d.compact(), "20260105");
        assert_eq!(Day::parse_compact("20260105"), Some(d));
        for bad in ["2026015", "20261305", "20260230", "2026010a", "202601050"] {
            assert_eq!(Day::parse_compact(bad), None, "{bad}");
        }
        assert_eq!(Day::parse_compact("20240229"), Some(Day::from_ymd(2024, 2, 29)));
        assert_eq!(d.sql_midnight(), "'2026-01-05 00:00:00+00'");
        assert_eq!(d.plus(27).compact(), "20260201");
    }

    #[test]
    fn rfc3339_has_microseconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(1_735_000_200_123_456_789), "2024-12-24T00:30:00.123456Z");
        assert_eq!(Day::of_nanos(1_735_000_200_123_456_789).compact(), "20241224");
        assert_eq!(Day::from_ymd(2024, 12, 24).start_nanos(), 1_734_998_400_000_000_000);
    }
}
