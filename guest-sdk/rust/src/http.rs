//! Requests in, responses out, bodies as blocking streams.

use crate::bindings::wasi::http::types::{
    ErrorCode, Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse,
    ResponseOutparam, Scheme,
};
use crate::bindings::wasi::io::streams::{InputStream, OutputStream, StreamError};
use std::cell::OnceCell;
use std::fmt::Display;
use std::io::{self, Read, Write};

/// Largest chunk asked of the host per read.
const READ_CHUNK: u64 = 64 << 10;
/// Bodies up to this size go out in one `blocking-write-and-flush` call (its limit in WASI).
const ONE_CALL_WRITE: usize = 4096;

/// An incoming HTTP request. The method and path are read up front; the scheme, authority,
/// headers and body are asked of the host only when the handler first uses them, since every
/// call into the host costs the request time and most handlers need only a few of them.
pub struct Request {
    method: String,
    path_with_query: String,
    scheme: OnceCell<Option<String>>,
    authority: OnceCell<Option<String>>,
    headers: OnceCell<Vec<(String, Vec<u8>)>>,
    body: BodyReader,
}

impl Request {
    fn from_wasi(request: IncomingRequest) -> Request {
        let method = match request.method() {
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
        Request {
            method,
            path_with_query: request.path_with_query().unwrap_or_else(|| "/".into()),
            scheme: OnceCell::new(),
            authority: OnceCell::new(),
            headers: OnceCell::new(),
            body: BodyReader {
                stream: None,
                body: None,
                opened: false,
                request,
            },
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
        self.scheme
            .get_or_init(|| {
                self.body.request.scheme().map(|s| match s {
                    Scheme::Http => "http".to_string(),
                    Scheme::Https => "https".into(),
                    Scheme::Other(other) => other,
                })
            })
            .as_deref()
    }

    pub fn authority(&self) -> Option<&str> {
        self.authority
            .get_or_init(|| self.body.request.authority())
            .as_deref()
    }

    /// The first value of header `name` (case-insensitive), if it is valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers()
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    pub fn headers(&self) -> &[(String, Vec<u8>)] {
        self.headers
            .get_or_init(|| self.body.request.headers().entries())
    }

    /// The body as a reader; read it as it arrives.
    pub fn body(&mut self) -> &mut BodyReader {
        &mut self.body
    }

    /// Takes the body reader, e.g. to move it into a streaming response.
    pub fn into_body(self) -> BodyReader {
        self.body
    }

    /// Reads the whole body into memory.
    pub fn body_bytes(&mut self) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.body.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    /// Reads the whole body as UTF-8 text.
    pub fn body_text(&mut self) -> io::Result<String> {
        String::from_utf8(self.body_bytes()?)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// The request body as a blocking `Read`. It is taken from the host on the first read.
pub struct BodyReader {
    // Field order is drop order: a WASI child resource must go before its parent.
    stream: Option<InputStream>,
    body: Option<IncomingBody>,
    opened: bool,
    request: IncomingRequest,
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.opened {
            self.opened = true;
            self.body = self.request.consume().ok();
            self.stream = self.body.as_ref().and_then(|b| b.stream().ok());
        }
        let Some(stream) = &self.stream else {
            return Ok(0);
        };
        if buf.is_empty() {
            return Ok(0);
        }
        let want = (buf.len() as u64).min(READ_CHUNK);
        match stream.blocking_read(want) {
            Ok(chunk) => {
                buf[..chunk.len()].copy_from_slice(&chunk);
                Ok(chunk.len())
            }
            Err(StreamError::Closed) => Ok(0),
            Err(StreamError::LastOperationFailed(e)) => Err(io::Error::other(e.to_debug_string())),
        }
    }
}

/// The response body as a blocking `Write`; flow control comes from the host.
pub struct BodyWriter {
    stream: OutputStream,
}

impl Write for BodyWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let permit = self.stream.check_write().map_err(stream_error)?;
            if permit == 0 {
                self.stream.subscribe().block();
                continue;
            }
            let n = buf.len().min(usize::try_from(permit).unwrap_or(usize::MAX));
            self.stream.write(&buf[..n]).map_err(stream_error)?;
            return Ok(n);
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.blocking_flush().map_err(stream_error)
    }
}

fn stream_error(e: StreamError) -> io::Error {
    match e {
        StreamError::Closed => io::Error::new(io::ErrorKind::BrokenPipe, "stream closed"),
        StreamError::LastOperationFailed(e) => io::Error::other(e.to_debug_string()),
    }
}

type StreamFn = Box<dyn FnOnce(&mut BodyWriter) -> io::Result<()>>;

enum Body {
    Bytes(Vec<u8>),
    Stream(StreamFn),
}

/// An outgoing HTTP response: status, headers and a body of bytes or a streaming writer.
pub struct Response {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Body,
}

impl Response {
    /// An empty response with this status.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Body::Bytes(Vec::new()),
        }
    }

    /// A `text/plain` response.
    pub fn text(status: u16, text: impl Into<String>) -> Response {
        Response::new(status)
            .header("content-type", "text/plain; charset=utf-8")
            .body(text.into())
    }

    /// An `application/json` response from already-serialised JSON.
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

    /// Streams the body: `write` runs after the headers are sent and writes as it goes.
    pub fn stream(
        mut self,
        write: impl FnOnce(&mut BodyWriter) -> io::Result<()> + 'static,
    ) -> Response {
        self.body = Body::Stream(Box::new(write));
        self
    }

    pub fn status(&self) -> u16 {
        self.status
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

/// An `Err` becomes a 500 whose body is the error's message.
impl<T: IntoResponse, E: Display> IntoResponse for Result<T, E> {
    fn into_response(self) -> Response {
        match self {
            Ok(ok) => ok.into_response(),
            Err(e) => Response::text(500, format!("{e}\n")),
        }
    }
}

/// Runs `handler` on a WASI request and sends what it returns. Used by [`crate::http_handler!`].
pub fn serve<R: IntoResponse>(
    request: IncomingRequest,
    out: ResponseOutparam,
    handler: impl FnOnce(Request) -> R,
) {
    let response = handler(Request::from_wasi(request)).into_response();
    let mut headers = response.headers;
    if let Body::Bytes(bytes) = &response.body
        && !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        headers.push((
            "content-length".into(),
            bytes.len().to_string().into_bytes(),
        ));
    }
    let fields = match Fields::from_list(&headers) {
        Ok(fields) => fields,
        Err(e) => {
            let message = format!("invalid response header: {e:?}");
            eprintln!("{message}");
            ResponseOutparam::set(out, Err(ErrorCode::InternalError(Some(message))));
            return;
        }
    };
    let outgoing = OutgoingResponse::new(fields);
    // A new response is 200 already; each call into the host costs the request time.
    if response.status != 200 && outgoing.set_status_code(response.status).is_err() {
        let message = format!("invalid status code {}", response.status);
        ResponseOutparam::set(out, Err(ErrorCode::InternalError(Some(message))));
        return;
    }
    let body = outgoing.body().expect("a new response has a body");
    ResponseOutparam::set(out, Ok(outgoing));
    let mut writer = BodyWriter {
        stream: body.write().expect("a new body has a stream"),
    };
    let written = match response.body {
        Body::Bytes(bytes) if bytes.len() <= ONE_CALL_WRITE => writer
            .stream
            .blocking_write_and_flush(&bytes)
            .map_err(stream_error),
        Body::Bytes(bytes) => writer.write_all(&bytes).and_then(|()| writer.flush()),
        Body::Stream(write) => write(&mut writer).and_then(|()| writer.flush()),
    };
    drop(writer);
    match written {
        // Finishing tells the host the body is complete; without it the client sees an error.
        Ok(()) => {
            let _ = OutgoingBody::finish(body, None);
        }
        Err(e) => eprintln!("response body not completed: {e}"),
    }
}
