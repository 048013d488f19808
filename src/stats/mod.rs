//! Statistics the monitor keeps between ticks: windows over the hot path's
//! counts ([`window`]), the one per-minute history ([`history`]) and the
//! traffic anomaly judged on it ([`anomaly`]), the exhaustion forecast
//! ([`forecast`]) and the scale hint ([`scale`]). Pure models: time is
//! passed in.

pub(crate) mod anomaly;
pub(crate) mod forecast;
pub(crate) mod history;
pub(crate) mod learned;
pub(crate) mod scale;
pub(crate) mod window;
