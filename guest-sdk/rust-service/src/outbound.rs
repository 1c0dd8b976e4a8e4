//! Outbound HTTP through the host's pooled client (`wasi:http/client@0.3`).
//!
//! ```ignore
//! let reply = hostel_service::outbound::get("https://api.example.com/items").await?;
//! let replies = hostel_service::outbound::send_all(urls.iter().map(Fetch::get).collect()).await;
//! ```
//!
//! The host decides which hosts a tenant may reach (`grants.outbound`); a denied call returns
//! `ErrorCode::HttpRequestDenied` at once. `send_all` awaits every request together, so a
//! fan-out takes as long as its slowest call, not the sum.

use wasip3::http::types::{ErrorCode, Fields, Method, Request, Scheme};
use wasip3::wit_bindgen::StreamResult;
use wasip3::{wit_future, wit_stream};

#[path = "../../rust/src/outbound/fetch.rs"]
mod fetch;

pub use fetch::{Fetch, Reply};

/// GET `url` and read the whole answer.
pub async fn get(url: &str) -> Result<Reply, ErrorCode> {
    send(Fetch::get(url)).await
}

/// Sends one request and reads its response whole.
pub async fn send(fetch: Fetch) -> Result<Reply, ErrorCode> {
    let request = request(fetch)?;
    let response = wasip3::http::client::send(request).await?;
    let status = response.get_status_code();
    let headers = response.get_headers().copy_all();
    let (_done, done_rx) = wit_future::new(|| Ok(()));
    let (mut body_rx, trailers) = wasip3::http::types::Response::consume_body(response, done_rx);
    let mut body = Vec::new();
    loop {
        let (result, chunk) = body_rx.read(Vec::with_capacity(64 << 10)).await;
        body.extend_from_slice(&chunk);
        if !matches!(result, StreamResult::Complete(_)) {
            break;
        }
    }
    trailers.await?;
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// Sends every request at once and waits for all: one result per request, in order.
pub async fn send_all(fetches: Vec<Fetch>) -> Vec<Result<Reply, ErrorCode>> {
    join_all(fetches.into_iter().map(send).collect()).await
}

/// Awaits every future together, their outputs in order.
pub(crate) async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}

fn request(fetch: Fetch) -> Result<Request, ErrorCode> {
    let invalid = |why: &str| ErrorCode::InternalError(Some(format!("{}: {why}", fetch.url)));
    let (scheme, rest) = fetch
        .url
        .split_once("://")
        .ok_or_else(|| invalid("not an absolute URL"))?;
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.to_string()),
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    let headers = Fields::from_list(&fetch.headers).map_err(|e| invalid(&format!("{e:?}")))?;
    let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    drop(trailers_tx);
    let contents = fetch.body.map(|body| {
        let (mut writer, reader) = wit_stream::new();
        crate::spawn(async move {
            writer.write_all(body).await;
        });
        reader
    });
    let (request, _sent) = Request::new(headers, contents, trailers_rx, None);
    let set = |ok: Result<(), ()>, what: &str| ok.map_err(|()| invalid(what));
    set(request.set_method(&fetch.method), "invalid method")?;
    set(request.set_scheme(Some(&scheme)), "invalid scheme")?;
    set(request.set_authority(Some(authority)), "invalid authority")?;
    set(request.set_path_with_query(Some(&path)), "invalid path")?;
    Ok(request)
}
