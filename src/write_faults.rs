//! Failed writes per store, for readiness and for the log. A store that fails
//! to write keeps the node unready until it writes again; the log gets one line
//! when the failing starts, a reminder at most once a minute while it lasts
//! (the vote-log flush retries every second: a full disk must not write the
//! same error into a log on that same disk sixty times a minute), and one line
//! when it ends.

use std::time::{Duration, Instant};

/// While a store keeps failing, the log hears about it this often.
pub const REMIND_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Fault {
    store: &'static str,
    error: String,
    since: Instant,
    /// Failed writes since `since`, the first included.
    failures: u64,
    /// When the log last heard of it.
    told_at: Instant,
}

/// What a write's outcome asks the log to say.
#[derive(Debug, PartialEq, Eq)]
pub enum Tell {
    Nothing,
    /// The first failure after writes worked.
    Failing {
        error: String,
    },
    /// Still failing, `REMIND_EVERY` after the last line.
    StillFailing {
        error: String,
        failures: u64,
        for_s: u64,
    },
    /// Writes again after `failures` failed writes over `for_s` seconds.
    Recovered {
        failures: u64,
        for_s: u64,
    },
}

impl Tell {
    /// Writes the line (if any) to the log.
    pub fn log(self, store: &str) {
        match self {
            Tell::Nothing => {}
            Tell::Failing { error } => log::error!("health: writing to {store} failed: {error}"),
            Tell::StillFailing {
                error,
                failures,
                for_s,
            } => log::error!(
                "health: writing to {store} still fails ({failures} failed writes in {for_s} s): {error}"
            ),
            Tell::Recovered { failures, for_s } => log::info!(
                "health: {store} takes writes again ({failures} failed writes over {for_s} s)"
            ),
        }
    }
}

#[derive(Debug, Default)]
pub struct WriteFaults {
    faults: Vec<Fault>,
}

impl WriteFaults {
    /// Records how a write to `store` went at `now`; returns what to log.
    pub fn note(&mut self, store: &'static str, result: Result<(), String>, now: Instant) -> Tell {
        let known = self.faults.iter().position(|f| f.store == store);
        match (result, known) {
            (Err(error), None) => {
                self.faults.push(Fault {
                    store,
                    error: error.clone(),
                    since: now,
                    failures: 1,
                    told_at: now,
                });
                Tell::Failing { error }
            }
            (Err(error), Some(i)) => {
                let f = &mut self.faults[i];
                f.failures += 1;
                f.error = error;
                if now.saturating_duration_since(f.told_at) < REMIND_EVERY {
                    return Tell::Nothing;
                }
                f.told_at = now;
                Tell::StillFailing {
                    error: f.error.clone(),
                    failures: f.failures,
                    for_s: now.saturating_duration_since(f.since).as_secs(),
                }
            }
            (Ok(()), Some(i)) => {
                let f = self.faults.remove(i);
                Tell::Recovered {
                    failures: f.failures,
                    for_s: now.saturating_duration_since(f.since).as_secs(),
                }
            }
            (Ok(()), None) => Tell::Nothing,
        }
    }

    pub fn failing(&self, store: &str) -> bool {
        self.faults.iter().any(|f| f.store == store)
    }

    /// The first store still failing, with its last error.
    pub fn first(&self) -> Option<(&'static str, String)> {
        self.faults.first().map(|f| (f.store, f.error.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_is_told_once_then_once_a_minute_then_its_end() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut w = WriteFaults::default();
        let fail = |w: &mut WriteFaults, s| w.note("state", Err(format!("full at {s}")), at(s));
        assert_eq!(
            fail(&mut w, 0),
            Tell::Failing {
                error: "full at 0".into()
            }
        );
        // A flush a second for the next 59 s: the log hears nothing of them.
        for s in 1..60 {
            assert_eq!(fail(&mut w, s), Tell::Nothing, "second {s}");
        }
        assert!(w.failing("state") && !w.failing("sqlite"));
        assert_eq!(w.first(), Some(("state", "full at 59".into())));
        assert_eq!(
            fail(&mut w, 60),
            Tell::StillFailing {
                error: "full at 60".into(),
                failures: 61,
                for_s: 60
            }
        );
        assert_eq!(fail(&mut w, 61), Tell::Nothing);
        assert_eq!(
            w.note("state", Ok(()), at(90)),
            Tell::Recovered {
                failures: 62,
                for_s: 90
            }
        );
        assert!(!w.failing("state"));
        assert_eq!(w.note("state", Ok(()), at(91)), Tell::Nothing);
        // A new fault starts its own count.
        assert!(matches!(fail(&mut w, 92), Tell::Failing { .. }));
    }

    #[test]
    fn stores_fail_and_recover_independently_and_the_first_names_readiness() {
        let now = Instant::now();
        let mut w = WriteFaults::default();
        w.note("sqlite", Err("read-only".into()), now);
        w.note("state", Err("full".into()), now);
        assert_eq!(w.first(), Some(("sqlite", "read-only".into())));
        assert!(matches!(
            w.note("sqlite", Ok(()), now),
            Tell::Recovered { failures: 1, .. }
        ));
        assert_eq!(w.first(), Some(("state", "full".into())));
        assert!(w.failing("state") && !w.failing("sqlite"));
    }
}
