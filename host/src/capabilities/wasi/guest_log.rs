//! Guest stdout and stderr, line by line into the host's log, tagged with tenant, app and
//! request id (the request's tracing span carries those).

use bytes::Bytes;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// A guest may log at most this much per stream per request; the rest is dropped (and said so)
/// so that a chatty or hostile guest cannot flood the host's log.
const MAX_BYTES_PER_REQUEST: usize = 256 << 10;
/// Lines longer than this are cut.
const MAX_LINE: usize = 8 << 10;

#[derive(Clone, Copy, Debug)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// The `StdoutStream` handed to the guest's WASI context.
pub struct GuestLog {
    stream: Stream,
    span: tracing::Span,
}

impl GuestLog {
    pub fn new(stream: Stream, span: tracing::Span) -> GuestLog {
        GuestLog { stream, span }
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LineWriter::new(self.stream, self.span.clone()))
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(LineWriter::new(self.stream, self.span.clone()))
    }
}

struct LineWriter {
    stream: Stream,
    span: tracing::Span,
    line: Vec<u8>,
    written: usize,
}

impl LineWriter {
    fn new(stream: Stream, span: tracing::Span) -> LineWriter {
        LineWriter {
            stream,
            span,
            line: Vec::new(),
            written: 0,
        }
    }

    fn push(&mut self, mut bytes: &[u8]) {
        if self.written >= MAX_BYTES_PER_REQUEST {
            return;
        }
        self.written += bytes.len();
        if self.written >= MAX_BYTES_PER_REQUEST {
            self.emit();
            self.line.extend_from_slice(b"[guest output truncated]");
            self.emit();
            return;
        }
        while let Some(pos) = bytes.iter().position(|&b| b == b'\n') {
            self.append(&bytes[..pos]);
            self.emit();
            bytes = &bytes[pos + 1..];
        }
        self.append(bytes);
    }

    fn append(&mut self, bytes: &[u8]) {
        let room = MAX_LINE.saturating_sub(self.line.len());
        self.line.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn emit(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.line);
        let text = printable(text.trim_end_matches('\r'));
        let _enter = self.span.enter();
        match self.stream {
            Stream::Stdout => tracing::info!(target: "guest", stream = "stdout", "{text}"),
            Stream::Stderr => tracing::warn!(target: "guest", stream = "stderr", "{text}"),
        }
        self.line.clear();
    }
}

/// A guest's line as the log shows it: control characters (terminal escapes, carriage
/// returns, backspaces) would let a guest rewrite or forge the host's log lines, so they are
/// written as escapes (`\u{1b}`).
fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let hidden = |c: char| c.is_control() && c != '\t';
    if !text.chars().any(hidden) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if hidden(c) {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    std::borrow::Cow::Owned(shown)
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.emit();
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 << 10)
    }
}

impl tokio::io::AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn a_guest_cannot_write_terminal_escapes_or_carriage_returns_into_the_log() {
        assert_eq!(printable("plain\ttext ✓"), "plain\ttext ✓");
        assert_eq!(
            printable("ok\r2026-12-01 INFO forged\u{1b}[2K"),
            "ok\\r2026-12-01 INFO forged\\u{1b}[2K"
        );
    }
}
