//! Traces: the spans a request makes for OpenTelemetry, and W3C trace context in and out.
//!
//! Off unless the process installs an exporter (the CLI does when an OTLP endpoint is set) and
//! calls [`enable`]. Off, a request pays for a relaxed load of one flag at each place below and
//! for the child spans' disabled callsites (target [`TARGET`], which the log filter never
//! enables), and the guest's and the client's `traceparent` headers pass untouched.
//!
//! On, the request's own span (`request`, with `request_id`, `tenant` and `app`: the one its
//! log lines carry) is the server span: its parent is the incoming `traceparent`, when that is
//! a valid one; it gets the HTTP semantic-convention attributes as OpenTelemetry attributes
//! (not span fields, so that log lines stay as they were); and the guest sees a `traceparent`
//! naming it. Its children: [`instantiation`], [`guest`], one per pool call ([`pool_call`]) and
//! one per outbound HTTP call ([`outbound`]), whose context the called server gets.
//!
//! Nothing a client or guest sends is read but as a parent context: a malformed or repeated
//! `traceparent` starts a new trace, and a `tracestate` is kept only within the size W3C asks
//! every system to pass on.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::Status;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing::instrument::Instrumented;
use tracing::{Instrument, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The target of the spans made only for traces: the log filter turns it off, the exporter's
/// filter takes it (with the request span).
pub const TARGET: &str = "hostel::otel";

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";
/// W3C Trace Context §3.3.1.5: a system passes on at least 512 characters of `tracestate`, and
/// may drop a longer one.
const TRACESTATE_MAX: usize = 512;

static ON: AtomicBool = AtomicBool::new(false);

/// Says an exporter is installed: spans, attributes and `traceparent` headers from now on.
pub fn enable() {
    ON.store(true, Ordering::Relaxed);
}

/// Whether traces are exported: everything here that costs anything asks first.
#[inline]
pub fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Makes the request's `span` the server span of its trace: the incoming `traceparent` as its
/// parent, its name and kind, and the request's method and route. Call before the span is
/// first entered (a span's parent is fixed when it starts).
pub fn serve(span: &Span, method: &Method, headers: &HeaderMap, route: Option<&str>) {
    let parent = TraceContextPropagator::new().extract(&Incoming(headers));
    // No layer (traces enabled without one) leaves the span as it is: nothing to do.
    let _ = span.set_parent(parent);
    let method = method_name(method);
    span.record("otel.kind", "server");
    match route {
        Some(route) => {
            span.record("otel.name", format!("{method} {route}"));
            span.set_attribute("http.route", route.to_string());
        }
        None => {
            span.record("otel.name", method);
        }
    }
    span.set_attribute("http.request.method", method);
}

/// The response's status on the server span; a 5xx is an error of the server's (client errors
/// are not, for a server span).
pub fn served(span: &Span, status: StatusCode) {
    span.set_attribute("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.set_status(Status::error(status.to_string()));
    }
}

/// Puts the current span's context in `headers` as `traceparent` (and `tracestate`), replacing
/// what was there: what the guest sees of its request, and what an outbound call carries.
pub fn inject_current(headers: &mut HeaderMap) {
    inject(&Span::current(), headers);
}

fn inject(span: &Span, headers: &mut HeaderMap) {
    TraceContextPropagator::new().inject_context(&span.context(), &mut Outgoing(headers));
}

/// The span around instantiating the guest.
pub fn instantiation() -> Span {
    tracing::info_span!(target: TARGET, "instantiate")
}

/// The span around the guest's handler call.
pub fn guest() -> Span {
    tracing::info_span!(target: TARGET, "guest")
}

/// `call` — a call of a pool capability (`module` is its module's path, so that its macros
/// can name it) — in a span of its own when traces are on.
pub fn pool_call<F: Future>(
    module: &'static str,
    call: &'static str,
    future: F,
) -> Instrumented<F> {
    let span = tracing::info_span!(
        target: TARGET,
        "pool call",
        otel.name = format!("{} {call}", db_system(module)),
        otel.kind = "client",
        db.system.name = db_system(module),
        db.operation.name = call,
    );
    future.instrument(span)
}

/// The OpenTelemetry `db.system.name` of a capability module.
fn db_system(module: &str) -> &'static str {
    match module.rsplit("::").next() {
        Some("postgres") => "postgresql",
        Some("redis") => "redis",
        _ => "other_sql",
    }
}

/// The span of an outbound HTTP call, with its context put in `request`'s headers (replacing
/// any the guest set); `Span::none()`, and `request` untouched, when traces are off.
pub fn outbound<B>(request: &mut http::Request<B>) -> Span {
    if !on() {
        return Span::none();
    }
    let uri = request.uri();
    let method = method_name(request.method());
    let port = uri.port_u16().map(i64::from).or(match uri.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    });
    // Without the query: it may carry tokens.
    let url = format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or("http"),
        uri.authority().map_or("", |a| a.as_str()),
        uri.path()
    );
    let span = tracing::info_span!(
        target: TARGET,
        "outbound",
        otel.name = method,
        otel.kind = "client",
        http.request.method = method,
        server.address = uri.host().unwrap_or(""),
        server.port = port,
        url.full = url,
    );
    inject(&span, request.headers_mut());
    span
}

/// The outbound call's outcome on its span.
pub fn outbound_done<T, E: std::fmt::Debug>(span: &Span, outcome: &Result<http::Response<T>, E>) {
    if span.is_none() {
        return;
    }
    match outcome {
        Ok(response) => {
            let status = response.status();
            span.set_attribute("http.response.status_code", i64::from(status.as_u16()));
            if status.is_client_error() || status.is_server_error() {
                span.set_status(Status::error(status.to_string()));
            }
        }
        Err(error) => {
            let error = format!("{error:?}");
            span.set_attribute("error.type", error.clone());
            span.set_status(Status::error(error));
        }
    }
}

/// The method as the semantic conventions name it: one of the known methods, else `_OTHER`
/// (a method is the client's to choose, and a span name must not be).
fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => "_OTHER",
    }
}

/// An incoming request's headers as the propagator reads them: a `traceparent` only when
/// there is exactly one, a `tracestate` only when one short enough.
struct Incoming<'a>(&'a HeaderMap);

impl Extractor for Incoming<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let mut values = self.0.get_all(key).iter();
        let value = values.next()?;
        if values.next().is_some() {
            return None;
        }
        match key {
            TRACEPARENT => value.to_str().ok(),
            TRACESTATE if value.len() <= TRACESTATE_MAX => value.to_str().ok(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
}

/// Headers the propagator writes: each value replaces all before it, and an empty one (no
/// `tracestate` to pass on) removes them, so that no `tracestate` of the guest's stays beside a
/// `traceparent` of the host's.
struct Outgoing<'a>(&'a mut HeaderMap);

impl Injector for Outgoing<'_> {
    fn set(&mut self, key: &str, value: String) {
        let Ok(name) = HeaderName::from_bytes(key.as_bytes()) else {
            return;
        };
        match HeaderValue::from_str(&value) {
            Ok(value) if !value.is_empty() => {
                self.0.insert(name, value);
            }
            _ => {
                self.0.remove(name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceContextExt;

    fn parent_of(headers: &[(&str, &str)]) -> opentelemetry::trace::SpanContext {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let cx = TraceContextPropagator::new().extract(&Incoming(&map));
        cx.span().span_context().clone()
    }

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn one_valid_traceparent_is_the_parent() {
        let parent = parent_of(&[(TRACEPARENT, PARENT), (TRACESTATE, "a=b")]);
        assert!(parent.is_valid() && parent.is_remote());
        assert_eq!(
            parent.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(parent.trace_state().header(), "a=b");
    }

    #[test]
    fn malformed_repeated_or_oversized_headers_are_no_parent() {
        for bad in [
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert!(!parent_of(&[(TRACEPARENT, bad)]).is_valid(), "{bad}");
        }
        assert!(!parent_of(&[(TRACEPARENT, PARENT), (TRACEPARENT, PARENT)]).is_valid());
        let long = format!("a={}", "b".repeat(TRACESTATE_MAX));
        let parent = parent_of(&[(TRACEPARENT, PARENT), (TRACESTATE, &long)]);
        assert!(parent.is_valid());
        assert_eq!(parent.trace_state().header(), "");
    }

    #[test]
    fn an_empty_value_removes_the_guests_header() {
        let mut headers = HeaderMap::new();
        headers.insert(TRACESTATE, HeaderValue::from_static("guest=1"));
        headers.append(TRACEPARENT, HeaderValue::from_static("guest"));
        headers.append(TRACEPARENT, HeaderValue::from_static("guest2"));
        Outgoing(&mut headers).set(TRACESTATE, String::new());
        Outgoing(&mut headers).set(TRACEPARENT, PARENT.to_string());
        assert!(headers.get(TRACESTATE).is_none());
        let values: Vec<_> = headers.get_all(TRACEPARENT).iter().collect();
        assert_eq!(values, [PARENT]);
    }

    #[test]
    fn unknown_methods_are_other() {
        assert_eq!(method_name(&Method::GET), "GET");
        let custom = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_name(&custom), "_OTHER");
    }

    #[test]
    fn pool_modules_name_their_database() {
        assert_eq!(db_system("hostel::capabilities::postgres"), "postgresql");
        assert_eq!(db_system("hostel::capabilities::redis"), "redis");
    }
}
