//! `wasi:http/outgoing-handler`: guests call out through one pooled keep-alive client per
//! tenant, and only to the hosts and addresses their tenant was granted ([`egress`]).
//!
//! App-lifetime state is the tenant's [`OutboundClient`] (hyper-util's pooled client, HTTP/1.1
//! and HTTP/2, https through rustls with the webpki roots): connections are reused across
//! requests and never shared between tenants. Request-lifetime state is [`OutboundHttp`], the
//! `WasiHttpHooks` of one sandbox. The grant check happens before any connection is made, and
//! the client's resolver checks every address it connects to, so a denied call fails at once
//! with `HTTP-request-denied` instead of hanging.

pub mod egress;

use bytes::Bytes;
use egress::{Denial, Egress, EgressResolver};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// Used when the guest does not set its own `request-options` timeouts.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_BETWEEN_BYTES_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle pooled connections are closed after this long.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// A tenant's pooled outbound HTTP client (cheap to clone: the pool is shared).
#[derive(Clone)]
pub struct OutboundClient {
    client: Client<HttpsConnector<HttpConnector<EgressResolver>>, WasiBody>,
}

impl OutboundClient {
    /// A client that connects only where `egress` permits.
    pub fn new(egress: Arc<Egress>) -> OutboundClient {
        let mut http = HttpConnector::new_with_resolver(EgressResolver::new(egress));
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(DEFAULT_CONNECT_TIMEOUT));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(https);
        OutboundClient { client }
    }
}

/// The per-request hooks: the tenant's grants, its client and what is left of the request's
/// outbound-call quota.
pub struct OutboundHttp {
    egress: Arc<Egress>,
    client: OutboundClient,
    calls_left: u32,
    quota: u32,
}

impl OutboundHttp {
    pub fn new(egress: Arc<Egress>, client: OutboundClient, quota: u32) -> OutboundHttp {
        OutboundHttp {
            egress,
            client,
            calls_left: quota,
            quota,
        }
    }
}

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
type SendResult = Result<(http::Response<WasiBody>, IoFuture), Error>;

impl WasiHttpHooks for OutboundHttp {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: IoFuture,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        drop(fut);
        match self.egress.check(request.uri()) {
            Ok(()) => {}
            Err(Denial::NotGranted) => {
                tracing::warn!(uri = %request.uri(), "outbound request denied: host not granted to this tenant (grants.outbound)");
                return Box::new(async { Err(Error::HttpRequestDenied) });
            }
            Err(Denial::Address(address)) => {
                tracing::warn!(uri = %request.uri(), %address, "outbound request denied: the address is not public and not granted (grants.outbound_networks)");
                return Box::new(async { Err(Error::HttpRequestDenied) });
            }
        }
        let Some(left) = self.calls_left.checked_sub(1) else {
            let quota = self.quota;
            tracing::warn!(uri = %request.uri(), quota, "outbound request refused: the request's outbound-call quota is used up");
            return Box::new(async move {
                Err(Error::InternalError(Some(format!(
                    "outbound-call quota exceeded: at most {quota} per request (limits.outbound_calls)"
                ))))
            });
        };
        self.calls_left = left;
        let client = self.client.client.clone();
        let options = options.unwrap_or_default();
        let connect = options.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let first_byte = options
            .first_byte_timeout
            .unwrap_or(DEFAULT_FIRST_BYTE_TIMEOUT);
        let between_bytes = options
            .between_bytes_timeout
            .unwrap_or(DEFAULT_BETWEEN_BYTES_TIMEOUT);
        Box::new(async move {
            // A pooled connection may need no connecting at all, so the two budgets are one.
            let response = tokio::time::timeout(connect + first_byte, client.request(request))
                .await
                .map_err(|_| Error::HttpResponseTimeout)?
                .map_err(client_error)?;
            let response =
                response.map(|body| BetweenBytes::new(body, between_bytes).boxed_unsync());
            // The pooled client drives its connections itself: nothing for the caller to await.
            let io: IoFuture = Box::new(async { Ok(()) });
            Ok((response, io))
        })
    }
}

fn client_error(e: hyper_util::client::legacy::Error) -> Error {
    if let Some(refused) = egress::refusal_in(&e) {
        tracing::warn!("outbound request denied: {refused}");
        return Error::HttpRequestDenied;
    }
    if e.is_connect() {
        tracing::debug!("outbound connect failed: {e:?}");
        return Error::ConnectionRefused;
    }
    match std::error::Error::source(&e).and_then(|s| s.downcast_ref::<hyper::Error>()) {
        Some(_) => Error::HttpProtocolError,
        None => Error::InternalError(Some(e.to_string())),
    }
}

/// A response body that fails with `ConnectionReadTimeout` when the next frame takes longer
/// than the guest's between-bytes timeout.
struct BetweenBytes {
    inner: hyper::body::Incoming,
    timeout: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl BetweenBytes {
    fn new(inner: hyper::body::Incoming, timeout: Duration) -> BetweenBytes {
        BetweenBytes {
            inner,
            timeout,
            sleep: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl Body for BetweenBytes {
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
                Poll::Ready(frame.map(|f| f.map_err(Error::from)))
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
