//! Exhaustion forecast: when will demand reach `max_connections`?
//!
//! Two estimates, each fed once per tick and each reported only when its
//! trend is statistically real (slope more than 4 standard errors above
//! zero, the standard error widened for the residuals' autocorrelation:
//! consecutive tick averages are not independent), so flat, noisy-flat and
//! slowly wandering load forecast nothing:
//!
//! - **trend**: least squares over the demand ratio's tick averages in the
//!   window, extrapolated to 1.0, as Prometheus' `predict_linear` does;
//! - **Little's law**: connections needed = arrival rate x mean hold time.
//!   The arrival rate's own trend is extrapolated to `max / mean_hold`, the
//!   rate at which the pool is full.
//!
//! The forecast's ETA is the earlier of the two; 0 when the pool is
//! exhausted now.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::hot::clock::Clock;

/// How many standard errors the slope must be above zero (3 let AR(1)
/// wander through too often in `slowly_wandering_*`).
const SIGNIFICANCE: f64 = 4.0;
/// Fewest points before a trend is fitted.
const MIN_POINTS: usize = 10;
/// Most points a trend keeps (a short tick thins them out).
const MAX_POINTS: f64 = 600.0;

/// The exhaustion forecast, from [`PoolGuard::forecast`](crate::PoolGuard::forecast)
/// and on alert events of the `exhaustion_forecast` rule.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Forecast {
    /// Time until demand reaches 100 %: the earlier of the two estimates;
    /// `None` when no exhaustion is in sight, zero when exhausted now.
    pub eta: Option<Duration>,
    /// From the demand ratio's linear trend (`predict_linear`).
    pub trend_eta: Option<Duration>,
    /// From the arrival rate's trend times the mean hold time (Little's law).
    pub littles_eta: Option<Duration>,
    /// Demand growth, ratio of `max_connections` per minute (fitted slope).
    pub demand_per_minute: f64,
    /// Connections the current load needs by Little's law (arrival rate x
    /// mean hold time), when known.
    pub offered_load: Option<f64>,
}

/// A line fitted to recent points.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Fit {
    slope: f64,
    /// Fitted value at the newest point.
    last: f64,
    /// Slope is significantly positive.
    rising: bool,
}

/// One observation: seconds since the forecaster started, and the value.
#[derive(Clone, Copy, Debug)]
struct Point {
    t: f64,
    y: f64,
}

/// Least squares over a sliding window of points.
#[derive(Debug)]
struct Trend {
    points: VecDeque<Point>,
    span: f64,
}

impl Trend {
    fn new(span: Duration) -> Self {
        Self {
            points: VecDeque::new(),
            span: span.as_secs_f64(),
        }
    }

    fn push(&mut self, t: f64, y: f64) {
        let spacing = self.span / MAX_POINTS;
        if self.points.back().is_some_and(|last| t - last.t < spacing) {
            return;
        }
        self.points.push_back(Point { t, y });
        while self
            .points
            .front()
            .is_some_and(|first| t - first.t > self.span)
        {
            self.points.pop_front();
        }
    }

    /// The trend of the window, or `None` when it has too few points, is
    /// too young, or its data is a level shift rather than a trend: when
    /// two flat levels split at one point explain the window better than a
    /// line (a step from 34 % to 94 % that stays there), only the points
    /// after the step are fitted, once they span half the window.
    fn fit(&self) -> Option<Fit> {
        let n = self.points.len();
        let (first, last) = (self.points.front()?.t, self.points.back()?.t);
        // A trend needs points and at least half the window behind it.
        if n < MIN_POINTS || last - first < self.span / 2.0 {
            return None;
        }
        let (line, ssr) = line_fit(self.points.iter())?;
        match best_step(&self.points) {
            Some((k, step_ssr)) if step_ssr < ssr => {
                let tail = self.points.range(k..);
                let span = last - self.points[k].t;
                if tail.len() < MIN_POINTS || span < self.span / 2.0 {
                    return None;
                }
                line_fit(self.points.range(k..)).map(|(fit, _)| fit)
            }
            _ => Some(line),
        }
    }
}

/// Least squares through `points`, with the residual sum of squares.
fn line_fit<'a>(points: impl Iterator<Item = &'a Point> + Clone) -> Option<(Fit, f64)> {
    let n = points.clone().count();
    let nf = n as f64;
    if n < 3 {
        return None;
    }
    let mt = points.clone().map(|p| p.t).sum::<f64>() / nf;
    let my = points.clone().map(|p| p.y).sum::<f64>() / nf;
    let (mut sxx, mut sxy) = (0.0, 0.0);
    for &Point { t, y } in points.clone() {
        sxx += (t - mt) * (t - mt);
        sxy += (t - mt) * (y - my);
    }
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let intercept = my - slope * mt;
    let residual = |p: &Point| p.y - (intercept + slope * p.t);
    let ssr: f64 = points.clone().map(|p| residual(p).powi(2)).sum();
    // Lag-1 autocorrelation of the residuals: n points carry only about
    // n (1 - rho) / (1 + rho) independent ones.
    let lagged: f64 = points
        .clone()
        .zip(points.clone().skip(1))
        .map(|(a, b)| residual(a) * residual(b))
        .sum();
    let rho = if ssr > 0.0 {
        (lagged / ssr).clamp(0.0, 0.99)
    } else {
        0.0
    };
    let stderr = (ssr / (nf - 2.0) / sxx).sqrt() * ((1.0 + rho) / (1.0 - rho)).sqrt();
    let last_t = points.clone().last()?.t;
    let fit = Fit {
        slope,
        last: intercept + slope * last_t,
        rising: slope > 0.0 && slope > SIGNIFICANCE * stderr,
    };
    Some((fit, ssr))
}

/// The best split of `points` into two flat levels (each side at least
/// `MIN_POINTS`): where the later part starts and the residual sum of
/// squares. Prefix sums, one pass.
fn best_step(points: &VecDeque<Point>) -> Option<(usize, f64)> {
    let n = points.len();
    let (total, total_sq) = points
        .iter()
        .fold((0.0, 0.0), |(s, q), p| (s + p.y, q + p.y * p.y));
    let mut best: Option<(usize, f64)> = None;
    let (mut s, mut q) = (0.0, 0.0);
    for (k, p) in points.iter().enumerate().take(n.saturating_sub(MIN_POINTS)) {
        s += p.y;
        q += p.y * p.y;
        if k + 1 < MIN_POINTS {
            continue;
        }
        let (left, right) = ((k + 1) as f64, (n - k - 1) as f64);
        let ssr = (q - s * s / left) + ((total_sq - q) - (total - s).powi(2) / right);
        if best.is_none_or(|(_, b)| ssr < b) {
            best = Some((k + 1, ssr));
        }
    }
    best
}

/// When a rising `fit` reaches `limit`, extrapolated from its line's
/// value now, or from the latest observed value `now` when the line
/// already ends past the limit though the observation does not (a line
/// through a jump overshoots it). `None` when the trend is not
/// significantly rising or the pool itself already reads past the limit
/// (exhaustion now is read from the pool, never from a fit).
fn eta_to(limit: f64, fit: Fit, now: f64) -> Option<Duration> {
    if !fit.rising || now >= limit {
        return None;
    }
    let from = if fit.last < limit { fit.last } else { now };
    Duration::try_from_secs_f64((limit - from) / fit.slope).ok()
}

/// Feeds both estimates once per tick.
#[derive(Debug)]
pub(crate) struct Forecaster {
    /// The guard's clock: the fits' time axis.
    clock: Clock,
    /// No trend before this: the first window after the guard is built sees
    /// the pool fill from empty (a service starting, an instance taking its
    /// share of traffic), a step any fit reads as a steep ramp.
    warm_until: Instant,
    demand: Trend,
    arrivals: Trend,
    last: Option<(Instant, u64)>,
}

/// One tick's inputs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TickInput {
    /// Time-weighted demand ratio over the tick.
    pub(crate) demand: f64,
    /// Arrivals (acquires started, refused ones included) so far (cumulative).
    pub(crate) arrivals_total: u64,
    /// Mean hold time over the recent window, seconds.
    pub(crate) mean_hold: Option<f64>,
    pub(crate) max: u32,
}

impl Forecaster {
    /// A forecaster warming up for `window` from the clock's origin.
    pub(crate) fn new(clock: Clock, window: Duration) -> Self {
        let origin = clock.origin();
        Self {
            clock,
            warm_until: origin.checked_add(window).unwrap_or(origin),
            demand: Trend::new(window),
            arrivals: Trend::new(window),
            last: None,
        }
    }

    pub(crate) fn observe(&mut self, now: Instant, input: TickInput) -> Forecast {
        if now < self.warm_until {
            self.last = Some((now, input.arrivals_total));
            return Forecast {
                eta: (input.demand >= 1.0).then_some(Duration::ZERO),
                ..Forecast::default()
            };
        }
        let t = self.clock.at(now).as_secs_f64();
        self.demand.push(t, input.demand);
        let rate = self.last.and_then(|(at, n)| {
            let dt = now.saturating_duration_since(at).as_secs_f64();
            (dt > 0.0).then(|| input.arrivals_total.saturating_sub(n) as f64 / dt)
        });
        self.last = Some((now, input.arrivals_total));
        if let Some(r) = rate {
            self.arrivals.push(t, r);
        }
        let rate_now = rate.unwrap_or(0.0);

        let demand_fit = self.demand.fit();
        let trend_eta = if input.demand >= 1.0 {
            Some(Duration::ZERO)
        } else {
            demand_fit.and_then(|f| eta_to(1.0, f, input.demand))
        };
        let hold = input.mean_hold.filter(|h| *h > 0.0);
        let arrival_fit = self.arrivals.fit();
        let offered_load = hold.zip(arrival_fit).map(|(h, f)| f.last.max(0.0) * h);
        let littles_eta = hold
            .zip(arrival_fit)
            .and_then(|(h, f)| eta_to(f64::from(input.max) / h, f, rate_now));
        let eta = match (trend_eta, littles_eta) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Forecast {
            eta,
            trend_eta,
            littles_eta,
            demand_per_minute: demand_fit.map_or(0.0, |f| f.slope * 60.0),
            offered_load,
        }
    }
}

#[cfg(test)]
mod tests;
