//! The node's clock: wall-clock milliseconds (vote buckets are compared across
//! nodes, so they are wall time) that never run backwards.
//!
//! A clock stepped forward (NTP after a Pi booted without a real-time clock)
//! is followed at once: votes then look as old as they are. A clock stepped
//! back would leave every vote "in the future" — counted in full by the window
//! and not decaying — until the wall clock caught up. Instead the returned time
//! keeps moving at half speed until the wall clock catches up with it (twice
//! the step): windows and decay keep aging, never backwards and at most half as
//! fast, and nothing counted is lost or counted twice.

use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Below this a backwards step is ordinary jitter and simply held.
const STEP_NOTICED_MS: u64 = 1_000;

/// The pure state machine behind [`now_ms`]: fed the wall clock and a
/// monotonic reading, returns the time to use.
#[derive(Debug, Clone, Copy, Default)]
pub struct SaneClock {
    last_ms: u64,
    /// Monotonic milliseconds at `last_ms`.
    mono_ms: u64,
    behind: bool,
}

/// What one reading did, for the caller to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Steady,
    /// The wall clock went back by this much: catching up at half speed.
    WentBack(u64),
    /// The wall clock caught up again.
    CaughtUp,
}

impl SaneClock {
    pub fn read(&mut self, wall_ms: u64, mono_ms: u64) -> (u64, Step) {
        let elapsed = mono_ms.saturating_sub(self.mono_ms);
        self.mono_ms = mono_ms;
        if wall_ms >= self.last_ms {
            self.last_ms = wall_ms;
            let step = if std::mem::take(&mut self.behind) {
                Step::CaughtUp
            } else {
                Step::Steady
            };
            return (wall_ms, step);
        }
        let gap = self.last_ms - wall_ms;
        self.last_ms += elapsed / 2;
        let step = if !self.behind && gap >= STEP_NOTICED_MS {
            self.behind = true;
            Step::WentBack(gap)
        } else {
            Step::Steady
        };
        (self.last_ms, step)
    }
}

/// Milliseconds since the Unix epoch, by the rules above (one clock per
/// process: every node in it reads the same wall clock).
pub fn now_ms() -> u64 {
    static CLOCK: Mutex<Option<(Instant, SaneClock)>> = Mutex::new(None);
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut guard = CLOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (origin, clock) = guard.get_or_insert_with(|| (Instant::now(), SaneClock::default()));
    let mono = origin.elapsed().as_millis() as u64;
    let (now, step) = clock.read(wall, mono);
    drop(guard);
    match step {
        Step::Steady => {}
        Step::WentBack(ms) => log::warn!(
            "clock: the system clock went back {:.1} s; vote windows keep aging at half \
             speed until it catches up",
            ms as f64 / 1000.0
        ),
        Step::CaughtUp => log::info!("clock: the system clock caught up; back to wall time"),
    }
    now
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sentiment::{Memory, VoteLog};

    const T0: u64 = 1_800_000_000_000;

    #[test]
    fn forward_steps_are_followed_and_backward_steps_never_seen() {
        let mut c = SaneClock::default();
        assert_eq!(c.read(T0, 0), (T0, Step::Steady));
        assert_eq!(c.read(T0 + 3_600_000, 10).0, T0 + 3_600_000);
        // Back one hour: time still moves on, at half speed.
        let (t, step) = c.read(T0, 1_010);
        assert_eq!((t, step), (T0 + 3_600_500, Step::WentBack(3_600_000)));
        let (t2, step) = c.read(T0 + 1_000, 2_010);
        assert_eq!((t2, step), (t + 500, Step::Steady));
        // The wall clock needs twice the step to catch up; then it is used again.
        let mono = 2_010 + 2 * 3_600_000;
        let wall = T0 + 1_000 + 2 * 3_600_000;
        assert_eq!(c.read(wall, mono), (wall, Step::CaughtUp));
        // Sub-second jitter backwards is held, not announced.
        assert_eq!(c.read(wall - 200, mono + 100), (wall + 50, Step::Steady));
    }

    /// Votes, then the clock steps back an hour: the bar is not frozen with
    /// "future" votes — they leave a 10 s window within twice its length of
    /// real time, and the decay value keeps falling, finite and in range.
    #[test]
    fn window_and_decay_stay_sane_across_clock_steps() {
        let node = 7;
        let mut c = SaneClock::default();
        let mut log = VoteLog::new();
        let mut mono = 0;
        for i in 0..20 {
            let (t, _) = c.read(T0 + i * 100, mono);
            log.record(node, crate::sentiment::Side::For, t);
            mono += 100;
        }
        let window = Memory::Seconds(10);
        let (t, step) = c.read(T0 - 3_600_000, mono);
        assert!(matches!(step, Step::WentBack(_)));
        assert_eq!(log.window(window, t).for_votes, 20);
        let mut last_decay = log.decay_value(1.0, t);
        let mut left_after = None;
        for s in 1..=40u64 {
            let (t, _) = c.read(T0 - 3_600_000 + s * 1000, mono + s * 1000);
            let decay = log.decay_value(1.0, t);
            assert!(decay.is_finite() && decay.abs() <= 100.0, "{decay}");
            assert!(
                decay <= last_decay,
                "decay keeps falling: {decay} > {last_decay}"
            );
            last_decay = decay;
            if left_after.is_none() && log.window(window, t).for_votes == 0 {
                left_after = Some(s);
            }
        }
        let left = left_after.expect("the votes left the window");
        assert!(left <= 2 * 10 + 2, "left after {left} s");
        // New votes after the step count at once.
        let (t, _) = c.read(T0 - 3_600_000 + 41_000, mono + 41_000);
        log.record(node, crate::sentiment::Side::Against, t);
        assert_eq!(log.window(window, t).against_votes, 1);

        // Forward a day: old votes are old at once, nothing overflows.
        let (t, _) = c.read(T0 + 86_400_000, mono + 42_000);
        assert_eq!(log.window(window, t).for_votes, 0);
        let decay = log.decay_value(1.0, t);
        assert!(decay.is_finite() && decay.abs() < 1e-6, "{decay}");
    }
}
