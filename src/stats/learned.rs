//! [`Learned`]: what a guard has learned about its pool's load, to hand to
//! the guard that replaces it after a deploy (`PoolGuard::learned`,
//! `PoolGuardBuilder::resume`), so the new one does not start blind.

use std::time::{Duration, SystemTime};

/// What a guard has learned about its pool's load: the per-minute history
/// behind the traffic anomaly's baseline and a diagnosis' usual load (an
/// hour and ten minutes of it at most, a few kilobytes).
///
/// A new guard starts blind: the traffic anomaly needs 20 minutes of
/// history and a diagnosis an hour to know the usual load. Export this from
/// the old guard before a restart (or periodically), keep it (with the
/// `serde` feature it is `Serialize` and `Deserialize`), and give it to the
/// next guard's builder with
/// [`resume`](crate::PoolGuardBuilder::resume): the minutes the service
/// was down are a gap, the rest is the baseline. Minutes older than the
/// history keeps are dropped.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let pool = sqlx::sqlite::SqlitePoolOptions::new().connect("sqlite::memory:").await?;
/// let old = poolguard::PoolGuard::builder(pool.clone()).build()?;
/// let learned = old.learned(); // before shutting down
/// drop(old);
/// let new = poolguard::PoolGuard::builder(pool).resume(learned).build()?;
/// # drop(new); Ok(()) }
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Learned {
    /// Length of one minute of the history (one minute unless the guard is
    /// time-scaled); a guard with another length refuses it.
    pub bucket: Duration,
    /// When it was exported (wall clock): the minutes since are the gap.
    pub at: SystemTime,
    /// The minutes, oldest first.
    pub minutes: Vec<LearnedMinute>,
}

impl Learned {
    /// A learned history of `minutes` (oldest first), each `bucket` long,
    /// exported at `at`.
    pub fn new(bucket: Duration, at: SystemTime, minutes: Vec<LearnedMinute>) -> Self {
        Self {
            bucket,
            at,
            minutes,
        }
    }
}

/// One minute of a [`Learned`] history.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct LearnedMinute {
    /// Acquires that started per second (refused ones included).
    pub arrival_rate: f64,
    /// Mean hold (Little's W) in seconds, when any acquire completed.
    pub mean_hold: Option<f64>,
    /// Median hold of the holds that ended in the minute.
    pub hold_p50: Option<Duration>,
    /// 95th percentile hold of the holds that ended in the minute.
    pub hold_p95: Option<Duration>,
}

impl LearnedMinute {
    /// A minute with these figures.
    pub fn new(
        arrival_rate: f64,
        mean_hold: Option<f64>,
        hold_p50: Option<Duration>,
        hold_p95: Option<Duration>,
    ) -> Self {
        Self {
            arrival_rate,
            mean_hold,
            hold_p50,
            hold_p95,
        }
    }
}
