//! A WASI 0.3 service: `/` says hello; `/echo` streams the request body back with the
//! `x-echo` header; `/stream` writes its body after answering; `/trailers` ends with
//! trailers; `/log?TEXT` writes TEXT to the WASI 0.3 stdout; `/spin` never returns; `/grow`
//! allocates until stopped; `/panic` traps; `/fetch?URL` calls URL through
//! `wasi:http/client` and answers with its status; `/answer-then-spin` sends its headers and a
//! first line, then keeps the CPU in a task that never ends.

use wasip3::http::types::{ErrorCode, Fields, Method, Request, Response};
use wasip3::{wit_bindgen, wit_future, wit_stream};

wasip3::http::service::export!(Service);

struct Service;

impl wasip3::exports::http::handler::Guest for Service {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let path = request.get_path_with_query().unwrap_or_default();
        let (route, query) = path.split_once('?').unwrap_or((&path, ""));
        // Mounted at `/` or at `/p3`: the routes below are the same under either.
        let route = match route.strip_prefix("/p3") {
            Some(rest) if rest.starts_with('/') => rest,
            _ => route,
        };
        match route {
            "/" => Ok(text(200, "hello from a WASI 0.3 guest\n")),
            "/echo" => Ok(echo(request)),
            "/stream" => Ok(streamed()),
            "/trailers" => Ok(with_trailers()),
            "/spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "/grow" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "/panic" => panic!("the guest panicked on purpose"),
            "/answer-then-spin" => Ok(answer_then_spin()),
            "/fetch" => fetch(query).await,
            "/log" => {
                let (mut tx, rx) = wit_stream::new();
                let written = wasip3::cli::stdout::write_via_stream(rx);
                tx.write_all(format!("{query}\n").into_bytes()).await;
                drop(tx);
                match written.await {
                    Ok(()) => Ok(text(200, "logged\n")),
                    Err(code) => Ok(text(500, format!("stdout failed: {code:?}\n"))),
                }
            }
            _ => Ok(text(404, "no such route in the WASI 0.3 guest\n")),
        }
    }
}

/// A response whose whole body is `body`, written after the handler has returned.
fn text(status: u16, body: impl Into<String>) -> Response {
    let body: String = body.into();
    let (mut contents_tx, contents_rx) = wit_stream::new();
    let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    let headers = Fields::from_list(&[(
        "content-type".to_string(),
        b"text/plain; charset=utf-8".to_vec(),
    )])
    .expect("valid header");
    let (response, _sent) = Response::new(headers, Some(contents_rx), trailers_rx);
    response.set_status_code(status).expect("valid status");
    drop(trailers_tx);
    wit_bindgen::spawn_local(async move {
        contents_tx.write_all(body.into_bytes()).await;
    });
    response
}

/// The request body copied to the response as it arrives, chunk by chunk.
fn echo(request: Request) -> Response {
    let echoed = request.get_headers().get("x-echo");
    let (done_tx, done_rx) = wit_future::new(|| Ok(()));
    let (mut body_rx, request_trailers) = Request::consume_body(request, done_rx);
    let (mut contents_tx, contents_rx) = wit_stream::new();
    let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    let headers = Fields::new();
    for value in echoed {
        headers.append("x-echoed", &value).expect("valid header");
    }
    let (response, _sent) = Response::new(headers, Some(contents_rx), trailers_rx);
    wit_bindgen::spawn_local(async move {
        loop {
            let (result, chunk) = body_rx.read(Vec::with_capacity(16 * 1024)).await;
            if !matches!(result, wit_bindgen::StreamResult::Complete(_)) {
                break;
            }
            if !contents_tx.write_all(chunk).await.is_empty() {
                break;
            }
        }
        drop(contents_tx);
        let trailers = request_trailers.await;
        drop(done_tx);
        drop(trailers_tx.write(trailers.map(|_| None)).await);
    });
    response
}

/// Answers at once and writes ten lines afterwards, yielding between them.
fn streamed() -> Response {
    let (mut contents_tx, contents_rx) = wit_stream::new();
    let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    let (response, _sent) = Response::new(Fields::new(), Some(contents_rx), trailers_rx);
    drop(trailers_tx);
    wit_bindgen::spawn_local(async move {
        for line in 0..10 {
            contents_tx
                .write_all(format!("line {line}\n").into_bytes())
                .await;
            wit_bindgen::yield_async().await;
        }
    });
    response
}

/// Answers at once; the body's writer sends one line and then never yields again.
fn answer_then_spin() -> Response {
    let (mut contents_tx, contents_rx) = wit_stream::new();
    let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    let (response, _sent) = Response::new(Fields::new(), Some(contents_rx), trailers_rx);
    drop(trailers_tx);
    wit_bindgen::spawn_local(async move {
        contents_tx.write_all(b"partial\n".to_vec()).await;
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    });
    response
}

/// A body followed by the trailer `x-checksum: 42`.
fn with_trailers() -> Response {
    let (mut contents_tx, contents_rx) = wit_stream::new();
    let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    let (response, _sent) = Response::new(Fields::new(), Some(contents_rx), trailers_rx);
    wit_bindgen::spawn_local(async move {
        contents_tx
            .write_all(b"body before trailers\n".to_vec())
            .await;
        drop(contents_tx);
        let trailers = Fields::from_list(&[("x-checksum".to_string(), b"42".to_vec())])
            .expect("valid trailer");
        drop(trailers_tx.write(Ok(Some(trailers))).await);
    });
    response
}

/// Calls `url` and answers with `status N`, or with the error the host gave.
async fn fetch(url: &str) -> Result<Response, ErrorCode> {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (_, trailers_rx) = wit_future::new(|| Ok(None));
    let (request, _sent) = Request::new(Fields::new(), None, trailers_rx, None);
    request.set_method(&Method::Get).expect("GET");
    let scheme = match scheme {
        "https" => wasip3::http::types::Scheme::Https,
        _ => wasip3::http::types::Scheme::Http,
    };
    request.set_scheme(Some(&scheme)).expect("scheme");
    request.set_authority(Some(authority)).expect("authority");
    request.set_path_with_query(Some(path)).expect("path");
    match wasip3::http::client::send(request).await {
        Ok(response) => {
            let status = response.get_status_code();
            Ok(text(200, format!("status {status}\n")))
        }
        Err(code) => Ok(text(502, format!("error {code:?}\n"))),
    }
}
