//! What an operator reads of a running edge: Prometheus [`metrics`] (gathered at scrape time
//! from what each part keeps) and the [`access_log`]. It may read every part below the edge
//! (the served view, apps, WAF, runtime), never the proxy or the control plane.

pub(crate) mod access_log;
pub(crate) mod metrics;
