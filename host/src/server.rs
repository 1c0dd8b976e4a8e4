//! A listener: accepts TCP connections and serves HTTP/1.1 and HTTP/2 (h2c, detected from
//! the connection preface) with keep-alive, until shutdown; then drains in-flight requests
//! for at most the grace period. The apps' listener and the admin API's run on it.

use anyhow::Result;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::time::Duration;
use tokio::net::TcpListener;

/// A client has this long to send a request's headers; slow-loris connections are closed.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Keeps a timer due within half a second on the runtime, for as long as it lives.
///
/// tokio wakes its parked I/O driver (a write to an eventfd, and a thread woken on another
/// core) whenever a timer is registered that is due before every timer it already has. A
/// request's deadline timers, seconds away, are then never the earliest: without this, each
/// WASI 0.3 request — whose guest always waits once, for the client to read its body, and so
/// registers its deadline — woke the driver twice.
pub struct TimerWheelKeeper(tokio::task::JoinHandle<()>);

impl TimerWheelKeeper {
    pub fn start() -> TimerWheelKeeper {
        TimerWheelKeeper(tokio::spawn(async {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
            }
        }))
    }
}

impl Drop for TimerWheelKeeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serves every request on `listener` with `handle`; `name` tells the listeners apart in the
/// log.
pub async fn serve<F, Fut, B>(
    name: &'static str,
    listener: TcpListener,
    handle: F,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> Result<()>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true)
        // A client that shuts its writing side after the request still gets the answer.
        .half_close(true);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    let _near = TimerWheelKeeper::start();

    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Usually EMFILE: back off briefly instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = service_fn(handle.clone());
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }

    drop(listener);
    tracing::info!(
        listener = name,
        "shutting down: no new connections; waiting up to {grace:?} for requests in flight"
    );
    match tokio::time::timeout(grace, graceful.shutdown()).await {
        Ok(()) => tracing::info!(listener = name, "all requests finished"),
        Err(_) => tracing::warn!(
            listener = name,
            "grace period over: closing the remaining connections"
        ),
    }
    Ok(())
}
