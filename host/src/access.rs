//! The one log line per request, and the one place it is made.
//!
//! With `server.access_log = true` every request — routed or not, 404s and host errors
//! included — gets an INFO line with target `hostel::access` (this module's path). Without
//! it (or while that target is filtered out) failures and over-quota answers get a WARN
//! `request failed` line and the rest a DEBUG line, both with target `hostel::request`, as
//! before there was an access log. Never both: a failure logged in the access log is not
//! logged again as a warning. The request's span adds `request_id`, `tenant` and `app`.

use http::{Method, StatusCode};
use std::time::Duration;
use tracing::{Level, Span};

/// What the line says about a request, once its response is made.
pub struct Served<'a> {
    pub method: &'a Method,
    /// The path only: a query may carry tokens.
    pub path: &'a str,
    pub status: StatusCode,
    /// From the request's arrival to its response's head (the body streams on after).
    pub duration: Duration,
    /// The response body's length when it is known before it is sent (declared, or a body
    /// the host made); absent for a streamed one.
    pub bytes: Option<u64>,
    /// The time the request's guest ran until the response's head: all of it for a guest
    /// that finished answering (most do); the metrics have the whole of a streaming one's.
    pub guest_cpu: Option<Duration>,
}

/// Logs `served` in the request's `span`; `access_log` is the config's `server.access_log`.
pub fn log(span: &Span, served: &Served<'_>, access_log: bool) {
    let Served {
        method,
        path,
        status,
        bytes,
        ..
    } = *served;
    let status_code = status.as_u16();
    // Checked first so that nothing is formatted for a line no one reads.
    if access_log && tracing::enabled!(Level::INFO) {
        let duration_ms = millis(served.duration);
        let guest_cpu_us = served.guest_cpu.map(|cpu| cpu.as_micros() as u64);
        span.in_scope(|| {
            tracing::info!(
                %method,
                path,
                status = status_code,
                duration_ms,
                bytes,
                guest_cpu_us,
                "request"
            );
        });
    // Over-quota answers are logged like failures: the operator sees a tenant hitting its limit.
    } else if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        let duration_ms = millis(served.duration);
        span.in_scope(|| {
            tracing::warn!(
                target: "hostel::request",
                %method,
                path,
                status = status_code,
                duration_ms,
                "request failed"
            );
        });
    } else if tracing::enabled!(target: "hostel::request", Level::DEBUG) {
        let duration_ms = millis(served.duration);
        span.in_scope(|| {
            tracing::debug!(
                target: "hostel::request",
                %method,
                path,
                status = status_code,
                duration_ms,
                "request"
            );
        });
    }
}

/// Milliseconds to the microsecond.
fn millis(duration: Duration) -> f64 {
    duration.as_micros() as f64 / 1e3
}
