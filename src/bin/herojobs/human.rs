//! Output for people: times and durations as a person reads them ("3 min ago", "1.2 s"),
//! and stdout writes that end the process quietly when the reader went away
//! (`herojobs list | head -1`). Raw values stay in `--json`.

use std::io::{IsTerminal, Write};

/// Writes one line to stdout. A closed pipe (the reader exited) ends the process with
/// status 0: the output was not wanted any more, which is not an error.
pub fn emit(args: std::fmt::Arguments) {
    let mut out = std::io::stdout().lock();
    let res = out.write_fmt(args).and_then(|_| out.write_all(b"\n"));
    if let Err(e) = res {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("herojobs: writing to stdout: {e}");
        std::process::exit(1);
    }
}

/// `println!` through [`emit`].
#[macro_export]
macro_rules! outln {
    ($($t:tt)*) => { $crate::human::emit(format_args!($($t)*)) };
}

/// Whether stdout is a terminal (spinners, headers and colour only then).
pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

/// Whether stderr is a terminal (progress bars and spinners draw there).
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// A duration in whole seconds: `42 s`, `3 min 5 s`, `2 h 10 min`, `4 d 3 h`.
pub fn duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        3600..=86_399 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// A unix time relative to now: `12 s ago`, `—` for 0 (never).
pub fn ago(unix: i64) -> String {
    if unix <= 0 {
        return "—".into();
    }
    format!("{} ago", duration(unix_now() - unix))
}

/// A unix time as UTC date and time with how long ago: `2026-12-01 21:45:13 UTC (3 s ago)`.
pub fn when(unix: i64) -> String {
    if unix <= 0 {
        return "—".into();
    }
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC ({})",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60,
        ago(unix)
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The first line of `s`, at most `max` characters (with `…` when cut).
pub fn snippet(s: &str, max: usize) -> String {
    let line = s.lines().next().unwrap_or("");
    let cut: String = line.chars().take(max).collect();
    if cut.len() < s.len() {
        format!("{cut}…")
    } else {
        cut
    }
}

/// Now, in unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_dates_read_as_people_write_them() {
        assert_eq!(duration(5), "5 s");
        assert_eq!(duration(185), "3 min 5 s");
        assert_eq!(duration(7800), "2 h 10 min");
        assert_eq!(duration(-3), "0 s");
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_788), (2026, 12, 1));
        assert!(when(1_796_161_513).starts_with("2026-12-01 21:45:13 UTC"));
        assert_eq!(snippet("abc\ndef", 10), "abc…");
        assert_eq!(snippet("abc", 10), "abc");
    }
}
