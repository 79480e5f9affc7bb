//! Times as people type them, for `--defer-until`: RFC 3339 (`2026-11-26T08:00:00Z`), a delay
//! from now (`+2h`, `+1h 30m`, `+3days`), or a local wall-clock time (`08:00`: the next 08:00;
//! `today 17:30`, `tomorrow 08:00`).

use chrono::{Duration as Days, NaiveDate, NaiveTime};
use mapi::FileTime;

/// The instant `text` names, `now` being the current Unix time; `Err` says what is accepted.
pub fn parse(text: &str, now: i64) -> Result<FileTime, String> {
    parse_with(text, now, local_offset)
}

/// [`parse`] with the local zone's UTC offset (seconds east, at a Unix time) given, so tests
/// do not depend on the machine's zone.
fn parse_with(text: &str, now: i64, offset: impl Fn(i64) -> i64) -> Result<FileTime, String> {
    let t = text.trim();
    let hint = || {
        format!(
            "{text:?} is not a time; use RFC 3339 (2026-11-26T08:00:00Z), a delay (+2h, +1h 30m, +3days) or a local time (08:00, today 17:30, tomorrow 08:00)"
        )
    };
    if let Some(delay) = t.strip_prefix('+') {
        let d = humantime::parse_duration(delay.trim()).map_err(|e| format!("{}: {e}", hint()))?;
        let secs = i64::try_from(d.as_secs()).map_err(|_| hint())?;
        return now
            .checked_add(secs)
            .map(FileTime::from_unix_seconds)
            .ok_or_else(hint);
    }
    if let Some(time) = FileTime::parse_rfc3339(t) {
        return Ok(time);
    }
    let (day, clock) = match t.split_once(char::is_whitespace) {
        Some((word, clock)) => match word.to_ascii_lowercase().as_str() {
            "today" => (Some(0), clock.trim()),
            "tomorrow" => (Some(1), clock.trim()),
            _ => return Err(hint()),
        },
        None => (None, t),
    };
    let clock = NaiveTime::parse_from_str(clock, "%H:%M")
        .or_else(|_| NaiveTime::parse_from_str(clock, "%H:%M:%S"))
        .map_err(|_| hint())?;
    let today = local_date(now, &offset).ok_or_else(hint)?;
    let at = |date: NaiveDate| local_to_unix(date, clock, &offset);
    let unix = match day {
        Some(n) => at(today + Days::days(n)),
        // A bare time is the next one: today's if it is still to come, else tomorrow's.
        None => {
            let t = at(today);
            if t > now {
                t
            } else {
                at(today + Days::days(1))
            }
        }
    };
    Ok(FileTime::from_unix_seconds(unix))
}

fn local_date(now: i64, offset: &impl Fn(i64) -> i64) -> Option<NaiveDate> {
    let local = now + offset(now);
    NaiveDate::from_ymd_opt(1970, 1, 1)?.checked_add_signed(Days::days(local.div_euclid(86_400)))
}

/// The Unix time of a local wall-clock `date` `clock`. The offset is read at a first guess and
/// again at the result, so a time on the other side of a DST change gets that side's offset
/// (a time skipped by the change lands an hour off, as `date -d` does).
fn local_to_unix(date: NaiveDate, clock: NaiveTime, offset: &impl Fn(i64) -> i64) -> i64 {
    let naive = date.and_time(clock).and_utc().timestamp();
    let guess = naive - offset(naive);
    naive - offset(guess)
}

/// The local zone's offset from UTC at `unix`, in seconds east, from the C library's view of
/// `TZ` and /etc/localtime. Hand-written because chrono's `Local` needs its `clock` feature and
/// the iana-time-zone crate, which this workspace does not otherwise carry; 0 (UTC) if the C
/// library cannot say.
fn local_offset(unix: i64) -> i64 {
    // time_t is 32 bits on some targets, where this can fail.
    #[allow(irrefutable_let_patterns)]
    let Ok(t) = libc::time_t::try_from(unix) else {
        return 0;
    };
    // SAFETY: `tm` is plain data that localtime_r fills in; `t` lives across the call.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let filled = unsafe { libc::localtime_r(&t, &mut tm) };
    if filled.is_null() {
        0
    } else {
        // c_long: 64 bits here, 32 on some targets.
        #[allow(clippy::useless_conversion)]
        i64::from(tm.tm_gmtoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-12-07T10:30:00Z, a Monday.
    const NOW: i64 = 1_796_639_400;

    fn utc(text: &str) -> String {
        parse_with(text, NOW, |_| 0)
            .map(FileTime::to_rfc3339)
            .unwrap_or_else(|e| e)
    }

    #[test]
    fn rfc_3339_delays_and_wall_clock_times() {
        assert_eq!(
            FileTime::from_unix_seconds(NOW).to_rfc3339(),
            "2026-12-07T10:30:00Z"
        );
        assert_eq!(utc("2026-11-26T08:00:00Z"), "2026-11-26T08:00:00Z");
        assert_eq!(utc("+2h"), "2026-12-07T12:30:00Z");
        assert_eq!(utc("+1h 30m"), "2026-12-07T12:00:00Z");
        assert_eq!(utc("+3days"), "2026-12-10T10:30:00Z");
        assert_eq!(utc("tomorrow 08:00"), "2026-12-08T08:00:00Z");
        assert_eq!(utc("Tomorrow 08:00:30"), "2026-12-08T08:00:30Z");
        assert_eq!(utc("today 17:30"), "2026-12-07T17:30:00Z");
        // A bare time is the next one.
        assert_eq!(utc("17:30"), "2026-12-07T17:30:00Z");
        assert_eq!(utc("08:00"), "2026-12-08T08:00:00Z");
    }

    #[test]
    fn local_times_use_the_zone_offset_at_that_time() {
        // UTC+1: tomorrow 08:00 local is 07:00Z.
        let t = parse_with("tomorrow 08:00", NOW, |_| 3600).expect("a time");
        assert_eq!(t.to_rfc3339(), "2026-12-08T07:00:00Z");
        // Near midnight UTC, UTC+2's "today" is already tomorrow's date in UTC terms.
        let late = NOW + 12 * 3600 + 30 * 60; // 23:00Z = 01:00 on the 8th at UTC+2
        let t = parse_with("today 09:00", late, |_| 7200).expect("a time");
        assert_eq!(t.to_rfc3339(), "2026-12-08T07:00:00Z");
        // An offset that changes (a DST switch) between now and the target: the target's own.
        let switch = NOW + 6 * 3600;
        let t = parse_with("tomorrow 08:00", NOW, |u| if u < switch { 0 } else { 3600 })
            .expect("a time");
        assert_eq!(t.to_rfc3339(), "2026-12-08T07:00:00Z");
    }

    #[test]
    fn anything_else_says_what_is_accepted() {
        for bad in [
            "tomorrow",
            "next week",
            "25:00",
            "+soon",
            "yesterday 08:00",
            "",
        ] {
            let e = utc(bad);
            assert!(
                e.contains(&format!("{bad:?}")) && e.contains("RFC 3339") && e.contains("+2h"),
                "{bad}: {e}"
            );
        }
    }
}
