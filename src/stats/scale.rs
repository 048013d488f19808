//! Scale hint: the pool size that would bring utilization back to a target
//! (the post-mortem's P1 "auto-scaling on pool metrics (>75% -> scale)"),
//! and the database server's connection capacity it must fit in.

/// The server's connection slots, read by
/// `PoolGuardBuilder::watch_server` (feature `postgres`) (PostgreSQL).
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerCapacity {
    /// `max_connections`.
    pub max_connections: u32,
    /// Slots reserved for superusers and reserved roles
    /// (`superuser_reserved_connections` + `reserved_connections`).
    pub reserved: u32,
    /// Client backends connected now, from every application instance
    /// (the watcher's own connection included).
    pub backends: u32,
}

impl ServerCapacity {
    /// Slots ordinary clients can use: `max_connections - reserved`.
    pub fn available(&self) -> u32 {
        self.max_connections.saturating_sub(self.reserved)
    }

    /// `backends / available`: server-wide saturation across instances.
    pub fn utilization(&self) -> f64 {
        match self.available() {
            0 => 1.0,
            n => f64::from(self.backends) / f64::from(n),
        }
    }
}

/// What the pool should be resized to.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct ScaleHint {
    /// The pool's `max_connections` now.
    pub current_max: u32,
    /// Connections the load needs now: the larger of in-use + waiters
    /// (averaged over the last tick) and arrival rate x mean hold time.
    pub needed: f64,
    /// Utilization the recommendation aims for (default 0.60).
    pub target: f64,
    /// `ceil(needed / target)`.
    pub recommended_max: u32,
    /// Application instances sharing the server (from the builder).
    pub instances: u32,
    /// The server's capacity, when watched.
    pub server: Option<ServerCapacity>,
    /// `recommended_max * instances` would exceed the server's available
    /// slots: scaling the pool alone cannot fix this.
    pub exceeds_server: bool,
}

pub(crate) fn recommend(
    needed: f64,
    target: f64,
    current_max: u32,
    instances: u32,
    server: Option<ServerCapacity>,
) -> ScaleHint {
    let recommended = (needed / target).ceil();
    let recommended_max = if recommended.is_finite() && recommended >= 1.0 {
        recommended.min(f64::from(u32::MAX)) as u32
    } else {
        1
    };
    let exceeds_server = server.is_some_and(|s| {
        u64::from(recommended_max) * u64::from(instances) > u64::from(s.available())
    });
    ScaleHint {
        current_max,
        needed,
        target,
        recommended_max,
        instances,
        server,
        exceeds_server,
    }
}

#[cfg(test)]
mod tests;
