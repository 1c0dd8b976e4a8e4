//! The request path, start to end: request id → route → admission → sandbox → response.
//! Every response the host makes itself says why, and carries the request id.

use crate::Host;
use crate::access::{self, Served};
use crate::apps::App;
use crate::body::LimitedBody;
use crate::metrics::{BodyMeter, GuestCpu, HostAnswer, InFlight};
use crate::request_id::RequestId;
use crate::routes::normalize_host;
use crate::sandbox::{self, Failure};
use crate::traces;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderValue, RETRY_AFTER};
use http::{Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tracing::Instrument;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// hyper's service function: never fails; every problem becomes a response.
pub async fn handle(
    host: Arc<Host>,
    request: Request<Incoming>,
) -> Result<Response<HyperOutgoingBody>, Infallible> {
    let id = RequestId::next();
    let id_header = HeaderValue::from_str(&id.to_string()).expect("request ids are ASCII");
    let (method, uri) = (request.method().clone(), request.uri().clone());
    let started = Instant::now();
    let routed = route(&host, &request);
    // At ERROR level so the span is enabled whatever the log filter: every line logged for this
    // request, warnings from the guest included, carries its id. Made once routing has named
    // the tenant and app, so that its fields are formatted once.
    // `otel.*` are recorded only for traces (see `traces`), and never written to the log.
    let span = match &routed {
        Ok(app) => tracing::error_span!(
            "request",
            request_id = %id,
            tenant = %app.tenant.name,
            app = %app.name,
            otel.name = tracing::field::Empty,
            otel.kind = tracing::field::Empty,
        ),
        Err(_) => tracing::error_span!(
            "request",
            request_id = %id,
            otel.name = tracing::field::Empty,
            otel.kind = tracing::field::Empty,
        ),
    };
    if traces::on() {
        let route = routed.as_ref().ok().map(|app| app.route.as_str());
        traces::serve(&span, &method, request.headers(), route);
    }
    let in_flight = match &routed {
        Ok(app) => app.meter.arrived(),
        Err(_) => host.unrouted().arrived(),
    };
    // Only the access log reads a request's own guest CPU time.
    let guest_cpu = host.access_log().then(GuestCpu::default);
    let mut response = match routed {
        Ok(app) => {
            let limit = app.tenant.limits.response_body;
            match run(app, request, id, &id_header, guest_cpu.as_ref())
                .instrument(span.clone())
                .await
            {
                Answered::ByApp(response) => {
                    span.in_scope(|| limit_response(response, limit, id, in_flight))
                }
                Answered::ByHost(answer, response) => host_answered(in_flight, answer, response),
            }
        }
        Err((status, reason)) => {
            let answer = if status == StatusCode::NOT_FOUND {
                HostAnswer::NotFound
            } else {
                HostAnswer::BadRequest
            };
            host_answered(in_flight, answer, host_error(status, reason, id))
        }
    };
    response.headers_mut().insert(REQUEST_ID_HEADER, id_header);
    let served = Served {
        method: &method,
        path: uri.path(),
        status: response.status(),
        duration: started.elapsed(),
        bytes: declared_length(response.headers()).or(response.body().size_hint().exact()),
        guest_cpu: guest_cpu.and_then(|cpu| cpu.so_far()),
    };
    access::log(&span, &served, host.access_log());
    if traces::on() {
        traces::served(&span, served.status);
    }
    Ok(response)
}

/// The app a request goes to (by host and path), or why there is none. The host is the URI's
/// authority (HTTP/2, or an absolute-form HTTP/1.1 target), else the one `Host` header; a
/// request with several `Host` headers is refused (RFC 9112 §3.2), as one whose host names
/// no host, so that no two readers of a request can disagree on where it goes.
fn route(host: &Host, request: &Request<Incoming>) -> Result<Arc<App>, (StatusCode, &'static str)> {
    let mut host_headers = request.headers().get_all(HOST).iter();
    let header = host_headers.next();
    if host_headers.next().is_some() {
        return Err((
            StatusCode::BAD_REQUEST,
            "the request has more than one Host header",
        ));
    }
    let authority = match (request.uri().authority(), header) {
        (Some(authority), _) => authority.as_str(),
        (None, Some(header)) => header.to_str().map_err(|_| {
            (
                StatusCode::BAD_REQUEST,
                "the Host header is not a host name",
            )
        })?,
        (None, None) => return Err((StatusCode::BAD_REQUEST, "the request has no Host header")),
    };
    let Some(name) = normalize_host(authority) else {
        return Err((
            StatusCode::BAD_REQUEST,
            "the Host header is not a host name",
        ));
    };
    host.router()
        .find(&name, request.uri().path())
        .cloned()
        .ok_or((StatusCode::NOT_FOUND, "no app is mounted at this path"))
}

/// Who made a request's response.
enum Answered {
    ByApp(Response<HyperOutgoingBody>),
    /// The host, for this reason.
    ByHost(HostAnswer, Response<HyperOutgoingBody>),
}

/// Counts a response the host made itself; its body is whole, so the request ends here.
fn host_answered(
    in_flight: Option<InFlight>,
    answer: HostAnswer,
    response: Response<HyperOutgoingBody>,
) -> Response<HyperOutgoingBody> {
    let Some(in_flight) = in_flight else {
        return response;
    };
    in_flight.headers(response.status().as_u16());
    in_flight.meter().host_answered(answer);
    let bytes = response.body().size_hint().exact().unwrap_or(0);
    in_flight.finished(bytes);
    response
}

/// Admission, limits and the app's sandbox, in the request's span: the app's response, or
/// the host's own when the app gave none it may send.
async fn run(
    app: Arc<App>,
    mut request: Request<Incoming>,
    id: RequestId,
    id_header: &HeaderValue,
    guest_cpu: Option<&GuestCpu>,
) -> Answered {
    tracing::debug!(route = %app.route, "routed");
    let limits = app.tenant.limits;
    let Ok(permit) = app.tenant.admission.clone().try_acquire_owned() else {
        // The tenant's own quota, not the host's capacity (that is a 503): 429, as other
        // hosts answer a throttled function.
        let mut response = host_error(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "too many requests in flight for this tenant (limit {})",
                limits.concurrency
            ),
            id,
        );
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        return Answered::ByHost(HostAnswer::Throttled, response);
    };
    let declared = declared_length(request.headers());
    if declared.is_some_and(|len| len > limits.request_body) {
        return too_large(limits.request_body, id);
    }
    // The guest sees the same id, to put in its own logs or pass on.
    request
        .headers_mut()
        .insert(REQUEST_ID_HEADER, id_header.clone());
    // And, with traces on, a `traceparent` naming this request's span, to continue the trace.
    if traces::on() {
        traces::inject_current(request.headers_mut());
    }
    let (parts, body) = request.into_parts();
    let (body, exceeded) = LimitedBody::new(body, limits.request_body);
    let body = match app.meter.counting() {
        true => body.metered(BodyMeter::Request(app.meter.clone())),
        false => body,
    };
    let request = Request::from_parts(parts, body);

    let outcome = sandbox::run(
        &app.handler,
        &app.tenant,
        &app.meter,
        guest_cpu,
        request,
        permit,
    )
    .await;
    if exceeded.load(Ordering::Acquire) {
        return too_large(limits.request_body, id);
    }
    match outcome {
        Ok(response) => Answered::ByApp(response),
        Err(failure) => failure_response(failure, &app.name, id),
    }
}

/// The body length a message declares (`content-length`), if it declares one.
fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Holds the app's response to `limit` bytes: a larger declared length is refused before
/// anything is sent; a streamed body is cut off where it crosses the limit. The request is
/// in flight until the body has ended.
fn limit_response(
    response: Response<HyperOutgoingBody>,
    limit: u64,
    id: RequestId,
    in_flight: Option<InFlight>,
) -> Response<HyperOutgoingBody> {
    if declared_length(response.headers()).is_some_and(|len| len > limit) {
        tracing::warn!(limit, "the app's response body is over the tenant's limit");
        let response = host_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the app's response is larger than its limit of {limit} bytes"),
            id,
        );
        return host_answered(in_flight, HostAnswer::ResponseTooLarge, response);
    }
    let Some(in_flight) = in_flight else {
        return response.map(|body| LimitedBody::response(body, limit).boxed_unsync());
    };
    in_flight.headers(response.status().as_u16());
    response.map(|body| {
        LimitedBody::response(body, limit)
            .metered(BodyMeter::Response(in_flight))
            .boxed_unsync()
    })
}

fn failure_response(failure: Failure, app: &str, id: RequestId) -> Answered {
    // A host failure is ours to fix; the others are the app's doing.
    let host_fault = matches!(failure, Failure::Host(_));
    let answer = match &failure {
        Failure::Timeout(_) => HostAnswer::Timeout,
        Failure::MemoryLimit(_) => HostAnswer::MemoryLimit,
        Failure::Overloaded(_) => HostAnswer::Overloaded,
        Failure::Trap(_) => HostAnswer::Trap,
        Failure::GuestError(_) => HostAnswer::GuestError,
        Failure::NoResponse => HostAnswer::NoResponse,
        Failure::Host(_) => HostAnswer::HostError,
    };
    // (status, what the client is told, what the log says)
    let (status, reason, log) = match failure {
        Failure::Timeout(limit) => (
            StatusCode::GATEWAY_TIMEOUT,
            format!("the app did not finish within its time limit of {limit:?}"),
            format!("app {app} stopped at its deadline of {limit:?}"),
        ),
        Failure::MemoryLimit(detail) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the app exceeded its memory limit".into(),
            format!("app {app} stopped: {detail}"),
        ),
        Failure::Overloaded(detail) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the host is at its sandbox limit; try again".into(),
            format!("no sandbox slot free: {detail}"),
        ),
        Failure::Trap(detail) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the app crashed (wasm trap); see the host log for this request id".into(),
            format!("app {app} trapped: {detail}"),
        ),
        Failure::GuestError(code) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the app failed: {code:?}"),
            format!("app {app} answered with an error instead of a response: {code:?}"),
        ),
        Failure::NoResponse => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the app returned without a response".into(),
            format!("app {app} returned without setting a response"),
        ),
        Failure::Host(detail) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the host could not run the app".into(),
            format!("cannot run app {app}: {detail}"),
        ),
    };
    if host_fault {
        tracing::error!("{log}");
    } else {
        tracing::warn!("{log}");
    }
    let mut response = host_error(status, &reason, id);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    Answered::ByHost(answer, response)
}

fn too_large(limit: u64, id: RequestId) -> Answered {
    let response = host_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("the request body is larger than this app's limit of {limit} bytes"),
        id,
    );
    Answered::ByHost(HostAnswer::TooLarge, response)
}

/// A response made by the host itself: a short plain-text reason and the request id.
pub fn host_error(status: StatusCode, reason: &str, id: RequestId) -> Response<HyperOutgoingBody> {
    let body = format!(
        "{} {}: {reason}\nrequest id: {id}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
