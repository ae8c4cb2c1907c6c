//! Time stamps for the home monitor: one monotonic and one wall-clock reading per observation.
//!
//! The fall state machine never reads a clock: every call carries a [`Stamp`]. Timers run on
//! `mono` (seconds on a monotonic clock, any origin); the daily inactivity window uses the local
//! `day` and `second_of_day`; event records carry `unix`. [`HomeClock`] makes real stamps (the
//! local UTC offset comes from the C library's `localtime_r`, so `TZ` and `/etc/localtime` are
//! honoured); [`Stamp::synthetic`] makes reproducible ones for tests and replays. Nothing here
//! fails: a clock before 1970 reads as 0.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::home::config::SECONDS_PER_DAY;

/// The Unix time that [`Stamp::synthetic`] puts at `mono` = 0: 2026-01-01T00:00:00Z.
pub const SYNTHETIC_EPOCH_UNIX: f64 = 1_767_225_600.0;

/// When something happened, read from both clocks at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stamp {
    /// Seconds on a monotonic clock (any origin; only differences matter).
    pub mono: f64,
    /// Seconds since 1970-01-01 UTC, for records.
    pub unix: f64,
    /// Local calendar day number (days since 1970-01-01 in local time).
    pub day: i64,
    /// Seconds since local midnight, in [0, 86400).
    pub second_of_day: f64,
}

impl Stamp {
    /// A stamp for tests and replays: `mono` seconds after local midnight of day 0 plus
    /// `start_second_of_day`, with the local zone at UTC.
    pub fn synthetic(mono: f64, start_second_of_day: f64) -> Stamp {
        let local = start_second_of_day + mono;
        let day = (local / SECONDS_PER_DAY).floor();
        Stamp {
            mono,
            unix: SYNTHETIC_EPOCH_UNIX + local,
            day: day as i64,
            second_of_day: local - day * SECONDS_PER_DAY,
        }
    }
}

/// Makes [`Stamp`]s from the system clocks.
#[derive(Debug, Clone, Copy)]
pub struct HomeClock {
    origin: Instant,
}

impl Default for HomeClock {
    fn default() -> Self {
        HomeClock::new()
    }
}

impl HomeClock {
    /// A clock whose monotonic origin is now.
    pub fn new() -> HomeClock {
        HomeClock {
            origin: Instant::now(),
        }
    }

    /// The stamp of now.
    pub fn now(&self) -> Stamp {
        self.at(Instant::now())
    }

    /// The stamp of `instant` (a frame's capture time, say), with the wall clock read now and
    /// moved back by the difference.
    pub fn at(&self, instant: Instant) -> Stamp {
        let now = Instant::now();
        let unix_now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let back = now.saturating_duration_since(instant).as_secs_f64();
        let unix = unix_now - back;
        let mono = instant.saturating_duration_since(self.origin).as_secs_f64();
        let local = unix + utc_offset_seconds(unix) as f64;
        let day = (local / SECONDS_PER_DAY).floor();
        Stamp {
            mono,
            unix,
            day: day as i64,
            second_of_day: local - day * SECONDS_PER_DAY,
        }
    }
}

/// The local zone's offset from UTC at `unix`, in seconds east.
#[cfg(unix)]
fn utc_offset_seconds(unix: f64) -> i64 {
    let t = unix as libc::time_t;
    // SAFETY: `tm` is plain old data, fully written by localtime_r on success; both pointers
    // are valid for the call, and localtime_r (unlike localtime) keeps no shared state we read.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            0
        } else {
            #[allow(clippy::unnecessary_cast)] // c_long is i32 on 32-bit ARM
            let offset = tm.tm_gmtoff as i64;
            offset
        }
    }
}

#[cfg(not(unix))]
fn utc_offset_seconds(_unix: f64) -> i64 {
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_stamps_roll_over_midnight() {
        let s = Stamp::synthetic(3600.0, 23.5 * 3600.0);
        assert_eq!(s.day, 1);
        assert!((s.second_of_day - 0.5 * 3600.0).abs() < 1e-9);
        assert_eq!(s.mono, 3600.0);
    }

    #[test]
    fn real_stamps_are_sane() {
        let c = HomeClock::new();
        let a = c.now();
        let b = c.now();
        assert!(b.mono >= a.mono);
        assert!(a.unix > SYNTHETIC_EPOCH_UNIX - 10.0 * 365.0 * SECONDS_PER_DAY);
        assert!((0.0..SECONDS_PER_DAY).contains(&a.second_of_day));
    }
}
