//! Bodies with a limit the host holds them to: how much a request or response body may carry
//! ([`LimitedBody`]), and how long an outbound response may go without a byte
//! ([`BetweenBytes`]).

use crate::metrics::BodyMeter;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use prometheus_client::metrics::counter::Counter;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use wasmtime_wasi_http::Error;

/// A body that stops with an error once more than `limit` bytes passed, and records that it
/// did: for a request body (`HttpRequestBodySize`) so the host can answer 413 rather than
/// whatever the guest makes of the error; for a response body (`HttpResponseBodySize`) the
/// response is cut off. Nothing beyond the limit is buffered.
pub struct LimitedBody<B> {
    inner: B,
    remaining: u64,
    limit: u64,
    exceeded: Arc<AtomicBool>,
    too_large: fn(Option<u64>) -> Error,
    /// Told how many bytes passed when the body is dropped.
    meter: Option<BodyMeter>,
}

impl<B> LimitedBody<B> {
    /// Reports the bytes that passed to `meter` when the body is dropped.
    pub fn metered(mut self, meter: BodyMeter) -> LimitedBody<B> {
        self.meter = Some(meter);
        self
    }

    /// A request body: at most `limit` bytes for the guest.
    pub fn new(inner: B, limit: u64) -> (LimitedBody<B>, Arc<AtomicBool>) {
        Self::with_error(inner, limit, Error::HttpRequestBodySize)
    }

    /// A response body: at most `limit` bytes from the guest.
    pub fn response(inner: B, limit: u64) -> LimitedBody<B> {
        Self::with_error(inner, limit, Error::HttpResponseBodySize).0
    }

    fn with_error(
        inner: B,
        limit: u64,
        too_large: fn(Option<u64>) -> Error,
    ) -> (LimitedBody<B>, Arc<AtomicBool>) {
        let exceeded = Arc::new(AtomicBool::new(false));
        let body = LimitedBody {
            inner,
            remaining: limit,
            limit,
            exceeded: exceeded.clone(),
            too_large,
            meter: None,
        };
        (body, exceeded)
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Error>,
{
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > this.remaining {
                        this.exceeded.store(true, Ordering::Release);
                        this.remaining = 0;
                        return Poll::Ready(Some(Err((this.too_large)(Some(this.limit)))));
                    }
                    this.remaining -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for LimitedBody<B> {
    fn drop(&mut self) {
        if let Some(meter) = self.meter.take() {
            meter.ended(self.limit - self.remaining);
        }
    }
}

/// A response body that fails with `ConnectionReadTimeout` when the next frame takes longer
/// than the guest's between-bytes timeout.
pub struct BetweenBytes<B> {
    inner: B,
    timeout: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl<B> BetweenBytes<B> {
    pub fn new(inner: B, timeout: Duration) -> BetweenBytes<B> {
        BetweenBytes {
            inner,
            timeout,
            sleep: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl<B> Body for BetweenBytes<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Error>,
{
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let deadline = tokio::time::Instant::now() + this.timeout;
                this.sleep.as_mut().reset(deadline);
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Error::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A body whose data bytes are counted as they pass.
pub struct CountedBody<B> {
    inner: B,
    bytes: Counter,
}

impl<B> CountedBody<B> {
    pub fn new(inner: B, bytes: Counter) -> CountedBody<B> {
        CountedBody { inner, bytes }
    }
}

impl<B> Body for CountedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
        {
            this.bytes.inc_by(data.len() as u64);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    fn full(bytes: &'static [u8]) -> Full<Bytes> {
        Full::new(Bytes::from_static(bytes))
    }

    #[tokio::test]
    async fn passes_bodies_within_the_limit() {
        let (body, exceeded) = LimitedBody::new(full(b"hello"), 5);
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"hello");
        assert!(!exceeded.load(Ordering::Acquire));
    }

    #[tokio::test]
    async fn stops_and_records_a_body_over_the_limit() {
        let (body, exceeded) = LimitedBody::new(full(b"hello!"), 5);
        let Err(err) = body.collect().await else {
            panic!("a body over the limit must fail");
        };
        assert!(matches!(err, Error::HttpRequestBodySize(Some(5))));
        assert!(exceeded.load(Ordering::Acquire));
    }
}
