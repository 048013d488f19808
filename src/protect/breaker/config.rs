//! The breaker's settings (validated in `build/validate.rs`).

use std::time::Duration;

/// Settings of the breaker (validated by the guard's builder).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// Start in MetricsOnly (shadow) mode instead of Closed.
    pub metrics_only: bool,
    /// Length of the sliding window ...
    pub window: Duration,
    /// ... made of this many fixed buckets.
    pub buckets: u32,
    /// No decision before the window holds this many calls.
    pub minimum_calls: u32,
    /// Open when failures / calls reaches this ratio.
    pub failure_rate: f64,
    /// A call slower than this is slow ...
    pub slow_call_duration: Duration,
    /// ... and the breaker opens when slow / calls reaches this ratio.
    pub slow_call_rate: f64,
    /// Wait in Open before the first half-open trial ...
    pub base_wait: Duration,
    /// ... multiplied by this for each consecutive opening ...
    pub multiplier: f64,
    /// ... up to this.
    pub max_wait: Duration,
    /// Randomness of the wait: +-this fraction.
    pub jitter: f64,
    /// Trial calls allowed in HalfOpen.
    pub half_open_calls: u32,
}

impl Default for BreakerConfig {
    /// Window 10 s in 10 buckets, at least 20 calls, open at 50 % failures or
    /// 80 % calls slower than 2 s; wait 5 s doubling up to 60 s with +-20 %
    /// jitter; 5 trial calls.
    fn default() -> Self {
        Self {
            metrics_only: false,
            window: Duration::from_secs(10),
            buckets: 10,
            minimum_calls: 20,
            failure_rate: 0.5,
            slow_call_duration: Duration::from_secs(2),
            slow_call_rate: 0.8,
            base_wait: Duration::from_secs(5),
            multiplier: 2.0,
            max_wait: Duration::from_secs(60),
            jitter: 0.2,
            half_open_calls: 5,
        }
    }
}

/// Chained setters, one per field.
///
/// ```
/// use std::time::Duration;
/// let c = poolguard::BreakerConfig::default()
///     .minimum_calls(10)
///     .base_wait(Duration::from_secs(2))
///     .half_open_calls(3);
/// assert_eq!(c.minimum_calls, 10);
/// ```
impl BreakerConfig {
    /// Starts in MetricsOnly (shadow) mode.
    pub fn metrics_only(mut self, v: bool) -> Self {
        self.metrics_only = v;
        self
    }

    /// Sets the sliding window's length.
    pub fn window(mut self, v: Duration) -> Self {
        self.window = v;
        self
    }

    /// Sets the number of buckets.
    pub fn buckets(mut self, v: u32) -> Self {
        self.buckets = v;
        self
    }

    /// Sets the minimum number of calls before a decision.
    pub fn minimum_calls(mut self, v: u32) -> Self {
        self.minimum_calls = v;
        self
    }

    /// Sets the failure-rate threshold.
    pub fn failure_rate(mut self, v: f64) -> Self {
        self.failure_rate = v;
        self
    }

    /// Sets what counts as a slow call.
    pub fn slow_call_duration(mut self, v: Duration) -> Self {
        self.slow_call_duration = v;
        self
    }

    /// Sets the slow-call-rate threshold.
    pub fn slow_call_rate(mut self, v: f64) -> Self {
        self.slow_call_rate = v;
        self
    }

    /// Sets the first wait in Open.
    pub fn base_wait(mut self, v: Duration) -> Self {
        self.base_wait = v;
        self
    }

    /// Sets the backoff multiplier.
    pub fn multiplier(mut self, v: f64) -> Self {
        self.multiplier = v;
        self
    }

    /// Sets the longest wait in Open.
    pub fn max_wait(mut self, v: Duration) -> Self {
        self.max_wait = v;
        self
    }

    /// Sets the jitter fraction.
    pub fn jitter(mut self, v: f64) -> Self {
        self.jitter = v;
        self
    }

    /// Sets the number of half-open trial calls.
    pub fn half_open_calls(mut self, v: u32) -> Self {
        self.half_open_calls = v;
        self
    }
}
