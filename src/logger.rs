//! The `log` backend: one line per record on stderr, as text or JSON lines, with a
//! UTC timestamp. Hand-written (like ripgrep's) rather than a logging framework:
//! it is all we need and adds no dependencies.

use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::config::LogFormat;

struct Logger {
    level: LevelFilter,
    format: LogFormat,
}

/// Installs the logger for the whole process; fails if one is already installed.
pub fn init(level: LevelFilter, format: LogFormat) -> Result<(), log::SetLoggerError> {
    log::set_boxed_logger(Box::new(Logger { level, format }))?;
    log::set_max_level(level);
    Ok(())
}

/// Our own targets log at the configured level; dependencies only at warn and above,
/// so their debug chatter does not drown ours.
fn enabled(target: &str, level: Level, max: LevelFilter) -> bool {
    level <= max && (level <= Level::Warn || target.starts_with("chatpulse"))
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        enabled(metadata.target(), metadata.level(), self.level)
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let ts = format_timestamp(unix_millis());
        let (level, target, msg) = (record.level(), record.target(), record.args().to_string());
        let line = match self.format {
            LogFormat::Text => format!("{ts} {:<5} {target}: {msg}\n", level.as_str()),
            LogFormat::Json => {
                let mut line = format!(
                    r#"{{"ts":"{ts}","level":"{}","target":"#,
                    level.as_str().to_ascii_lowercase()
                );
                push_json_string(&mut line, target);
                line.push_str(r#","msg":"#);
                push_json_string(&mut line, &msg);
                line.push_str("}\n");
                line
            }
        };
        // One write under the lock: lines from different threads never interleave.
        // A failed write to stderr has nowhere to be reported, so it is ignored.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

fn unix_millis() -> u64 {
    // A clock before 1970 is reported as 1970 rather than failing to log.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `2026-11-25T10:24:36.123Z` for milliseconds since the Unix epoch.
fn format_timestamp(unix_ms: u64) -> String {
    let (secs, ms) = (unix_ms / 1000, unix_ms % 1000);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    let (hh, mm, ss) = (rem / 3600, rem % 3600 / 60, rem % 60);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{ms:03}Z")
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`: eras of 400 years, years starting in March).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // 0..=365, from March 1st
    let mp = (5 * doy + 2) / 153; // 0..=11, March = 0
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Appends `s` as a quoted JSON string (RFC 8259 escaping).
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    crate::http::response::json_escape(s, out);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_civil_dates() {
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_timestamp(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            format_timestamp(1_700_000_000_000),
            "2023-11-14T22:13:20.000Z"
        );
        assert_eq!(
            format_timestamp(1_795_602_276_123),
            "2026-11-25T10:24:36.123Z"
        );
        assert_eq!(
            format_timestamp(4_107_542_399_999),
            "2100-02-28T23:59:59.999Z"
        );
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut out = String::new();
        push_json_string(&mut out, "a \"q\" \\ \n\r\t\u{1}é");
        assert_eq!(out, r#""a \"q\" \\ \n\r\t\u0001é""#);
    }

    #[test]
    fn dependencies_only_log_warnings() {
        let max = LevelFilter::Debug;
        assert!(enabled("chatpulse::server", Level::Debug, max));
        assert!(!enabled("chatpulse::server", Level::Trace, max));
        assert!(!enabled("async_tungstenite", Level::Info, max));
        assert!(enabled("async_tungstenite", Level::Warn, max));
        assert!(!enabled("chatpulse", Level::Error, LevelFilter::Off));
    }
}
