//! Requests in, responses out, for WASI 0.3: bodies read with `.await`, responses whole or
//! streamed from a task of their own.

use wasip3::http::types::{self, ErrorCode, Fields, Method, Scheme};
use wasip3::wit_bindgen::{StreamResult, StreamWriter};
use wasip3::{wit_future, wit_stream};

/// Largest chunk asked of the host per read.
const READ_CHUNK: usize = 64 << 10;

/// An incoming HTTP request. Method, path, scheme, authority and headers are read when it
/// arrives; the body is read when the handler asks for it.
pub struct Request {
    method: String,
    path_with_query: String,
    scheme: Option<String>,
    authority: Option<String>,
    headers: Vec<(String, Vec<u8>)>,
    /// `None` once the body was taken.
    wasi: Option<types::Request>,
}

impl Request {
    fn from_wasi(request: types::Request) -> Request {
        let method = match request.get_method() {
            Method::Get => "GET".to_string(),
            Method::Head => "HEAD".into(),
            Method::Post => "POST".into(),
            Method::Put => "PUT".into(),
            Method::Delete => "DELETE".into(),
            Method::Connect => "CONNECT".into(),
            Method::Options => "OPTIONS".into(),
            Method::Trace => "TRACE".into(),
            Method::Patch => "PATCH".into(),
            Method::Other(other) => other,
        };
        let scheme = request.get_scheme().map(|scheme| match scheme {
            Scheme::Http => "http".to_string(),
            Scheme::Https => "https".into(),
            Scheme::Other(other) => other,
        });
        Request {
            method,
            path_with_query: request.get_path_with_query().unwrap_or_else(|| "/".into()),
            scheme,
            authority: request.get_authority(),
            headers: request.get_headers().copy_all(),
            wasi: Some(request),
        }
    }

    /// `GET`, `POST`, …
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The path without the query string.
    pub fn path(&self) -> &str {
        self.path_with_query
            .split_once('?')
            .map_or(&self.path_with_query, |(path, _)| path)
    }

    /// The query string, without the `?`.
    pub fn query(&self) -> Option<&str> {
        self.path_with_query.split_once('?').map(|(_, q)| q)
    }

    pub fn path_with_query(&self) -> &str {
        &self.path_with_query
    }

    pub fn scheme(&self) -> Option<&str> {
        self.scheme.as_deref()
    }

    pub fn authority(&self) -> Option<&str> {
        self.authority.as_deref()
    }

    /// The first value of header `name` (case-insensitive), when it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    pub fn headers(&self) -> &[(String, Vec<u8>)] {
        &self.headers
    }

    /// The whole body (the host has already refused one over the tenant's limit). Empty once
    /// taken.
    pub async fn body_bytes(&mut self) -> Result<Vec<u8>, ErrorCode> {
        let Some(request) = self.wasi.take() else {
            return Ok(Vec::new());
        };
        let (_done, done_rx) = wit_future::new(|| Ok(()));
        let (mut body, trailers) = types::Request::consume_body(request, done_rx);
        let mut bytes = Vec::new();
        loop {
            let (result, chunk) = body.read(Vec::with_capacity(READ_CHUNK)).await;
            bytes.extend_from_slice(&chunk);
            match result {
                StreamResult::Complete(_) => {}
                StreamResult::Dropped | StreamResult::Cancelled => break,
            }
        }
        // The body ends for good (or with the host's error) when its trailers resolve.
        trailers.await?;
        Ok(bytes)
    }

    /// The body as UTF-8 text.
    pub async fn body_text(&mut self) -> Result<String, ErrorCode> {
        let bytes = self.body_bytes().await?;
        String::from_utf8(bytes)
            .map_err(|_| ErrorCode::InternalError(Some("the request body is not UTF-8".into())))
    }

    /// The WASI request itself, for streaming its body (`None` once the body was taken).
    pub fn into_wasi(self) -> Option<types::Request> {
        self.wasi
    }
}

/// An HTTP response: status, headers and a body given whole or written by a task.
pub struct Response {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Body,
}

enum Body {
    Bytes(Vec<u8>),
    Streamed(wasip3::wit_bindgen::StreamReader<u8>),
}

/// The writing end of a streamed response body ([`Response::stream`]). The body ends when it
/// is dropped.
pub struct BodyWriter(StreamWriter<u8>);

impl BodyWriter {
    /// Writes `bytes`; `false` once the client has gone (stop writing).
    pub async fn write(&mut self, bytes: impl Into<Vec<u8>>) -> bool {
        self.0.write_all(bytes.into()).await.is_empty()
    }
}

impl Response {
    /// An empty response.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Body::Bytes(Vec::new()),
        }
    }

    pub fn text(status: u16, text: impl Into<String>) -> Response {
        Response::new(status)
            .header("content-type", "text/plain; charset=utf-8")
            .body(text.into())
    }

    pub fn json(status: u16, json: impl Into<String>) -> Response {
        Response::new(status)
            .header("content-type", "application/json")
            .body(json.into())
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Response {
        self.body = Body::Bytes(body.into());
        self
    }

    /// A response whose body a task writes after the handler has returned it:
    /// `let (response, mut body) = Response::stream(200); spawn(async move { body.write(..).await; });`
    pub fn stream(status: u16) -> (Response, BodyWriter) {
        let (writer, reader) = wit_stream::new();
        let mut response = Response::new(status);
        response.body = Body::Streamed(reader);
        (response, BodyWriter(writer))
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    fn into_wasi(mut self) -> types::Response {
        // A body given whole has a known length: say so, as the WASI 0.2 SDK does, so clients
        // need no chunked framing.
        if let Body::Bytes(bytes) = &self.body
            && !self
                .headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        {
            let length = bytes.len().to_string().into_bytes();
            self.headers.push(("content-length".into(), length));
        }
        let headers = match Fields::from_list(&self.headers) {
            Ok(headers) => headers,
            Err(e) => {
                return Response::text(500, format!("the handler's headers are invalid: {e:?}\n"))
                    .into_wasi();
            }
        };
        let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
        drop(trailers_tx);
        let contents = match self.body {
            Body::Streamed(reader) => reader,
            Body::Bytes(bytes) => {
                let (mut writer, reader) = wit_stream::new();
                if !bytes.is_empty() {
                    crate::spawn(async move {
                        writer.write_all(bytes).await;
                    });
                }
                reader
            }
        };
        let (response, _sent) = types::Response::new(headers, Some(contents), trailers_rx);
        if response.set_status_code(self.status).is_err() {
            return Response::text(500, format!("invalid status {}\n", self.status)).into_wasi();
        }
        response
    }
}

/// What a handler may return.
pub trait IntoResponse {
    fn into_response(self) -> Response;
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

impl IntoResponse for String {
    fn into_response(self) -> Response {
        Response::text(200, self)
    }
}

impl IntoResponse for &'static str {
    fn into_response(self) -> Response {
        Response::text(200, self)
    }
}

/// Runs `handler` on the request and turns its answer into the WASI response (what
/// [`service!`](crate::service) expands to).
pub async fn serve<R: IntoResponse, F: Future<Output = R>>(
    request: types::Request,
    handler: impl FnOnce(Request) -> F,
) -> types::Response {
    handler(Request::from_wasi(request))
        .await
        .into_response()
        .into_wasi()
}
