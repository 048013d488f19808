//! Statistics the monitor keeps between ticks: windows over the hot path's
//! counts ([`window`]), the exhaustion forecast ([`forecast`]), the traffic
//! baseline ([`anomaly`]) and the scale hint ([`scale`]). Pure models: time
//! is passed in.

pub(crate) mod anomaly;
pub(crate) mod forecast;
pub(crate) mod scale;
pub(crate) mod window;
