//! Outbound HTTP through the host's pooled client (`wasi:http/outgoing-handler`).
//!
//! ```ignore
//! let reply = hostel_guest::outbound::get("https://api.example.com/items")?;
//! let replies = hostel_guest::outbound::send_all(urls.iter().map(|u| Fetch::get(u)).collect());
//! ```
//!
//! The host decides which hosts a tenant may reach (`grants.outbound`); a denied call returns
//! `ErrorCode::HttpRequestDenied` at once. `send_all` sends every request before waiting for
//! any, so a fan-out takes as long as its slowest call, not the sum.

use crate::bindings::wasi::http::outgoing_handler;
use crate::bindings::wasi::http::types::{
    ErrorCode, Fields, FutureIncomingResponse, IncomingResponse, Method, OutgoingBody,
    OutgoingRequest, Scheme,
};
use crate::bindings::wasi::io::poll;
use crate::bindings::wasi::io::streams::StreamError;

mod fetch;

pub use fetch::{Fetch, Reply};

/// GET `url` and read the whole answer.
pub fn get(url: &str) -> Result<Reply, ErrorCode> {
    send(Fetch::get(url))
}

pub fn send(fetch: Fetch) -> Result<Reply, ErrorCode> {
    send_all(vec![fetch]).pop().expect("one reply per request")
}

/// Sends every request, then waits for all of them; replies come back in request order.
pub fn send_all(fetches: Vec<Fetch>) -> Vec<Result<Reply, ErrorCode>> {
    let mut pending: Vec<Result<FutureIncomingResponse, ErrorCode>> =
        fetches.into_iter().map(start).collect();
    let mut replies: Vec<Option<Result<Reply, ErrorCode>>> = pending.iter().map(|_| None).collect();
    loop {
        let waiting: Vec<usize> = (0..pending.len())
            .filter(|&i| replies[i].is_none())
            .collect();
        if waiting.is_empty() {
            break;
        }
        for &i in &waiting {
            match &pending[i] {
                Err(e) => replies[i] = Some(Err(e.clone())),
                Ok(future) => {
                    if let Some(outcome) = future.get() {
                        replies[i] = Some(match outcome {
                            Ok(Ok(response)) => read(response),
                            Ok(Err(e)) => Err(e),
                            Err(()) => Err(ErrorCode::InternalError(Some(
                                "response already taken".into(),
                            ))),
                        });
                    }
                }
            }
        }
        let still: Vec<_> = waiting
            .iter()
            .filter(|&&i| replies[i].is_none())
            .filter_map(|&i| pending[i].as_ref().ok().map(|f| f.subscribe()))
            .collect();
        if !still.is_empty() {
            poll::poll(&still.iter().collect::<Vec<_>>());
        }
    }
    pending.clear();
    replies
        .into_iter()
        .map(|r| r.expect("every reply set"))
        .collect()
}

fn start(fetch: Fetch) -> Result<FutureIncomingResponse, ErrorCode> {
    let (scheme, rest) = fetch
        .url
        .split_once("://")
        .ok_or_else(|| invalid_url("no scheme"))?;
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        _ => return Err(invalid_url("scheme must be http or https")),
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    let headers = Fields::from_list(&fetch.headers)
        .map_err(|e| ErrorCode::InternalError(Some(format!("invalid header: {e:?}"))))?;
    let request = OutgoingRequest::new(headers);
    // A new request is a GET already; each call into the host costs the request time.
    if !matches!(fetch.method, Method::Get) {
        let _ = request.set_method(&fetch.method);
    }
    let _ = request.set_scheme(Some(&scheme));
    request
        .set_authority(Some(authority))
        .map_err(|()| invalid_url("bad authority"))?;
    request
        .set_path_with_query(Some(&path))
        .map_err(|()| invalid_url("bad path"))?;
    let body = request.body().expect("a new request has a body");
    let future = outgoing_handler::handle(request, None)?;
    if let Some(bytes) = &fetch.body {
        let stream = body.write().expect("a new body has a stream");
        for chunk in bytes.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| ErrorCode::InternalError(Some(format!("{e:?}"))))?;
        }
        drop(stream);
    }
    OutgoingBody::finish(body, None)?;
    Ok(future)
}

fn read(response: IncomingResponse) -> Result<Reply, ErrorCode> {
    let status = response.status();
    let headers = response.headers().entries();
    let body = response.consume().expect("a response body, consumed once");
    let mut bytes = Vec::new();
    {
        let stream = body.stream().expect("a body stream, taken once");
        loop {
            match stream.blocking_read(64 << 10) {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(ErrorCode::InternalError(Some(e.to_debug_string())));
                }
            }
        }
    }
    drop(body);
    Ok(Reply {
        status,
        headers,
        body: bytes,
    })
}

/// URI errors carry no detail in WIT, so say what was wrong on stderr (the host log).
fn invalid_url(detail: &str) -> ErrorCode {
    eprintln!("outbound request: invalid URL: {detail}");
    ErrorCode::HttpRequestUriInvalid
}
