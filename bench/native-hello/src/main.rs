//! The benchmarks' ceiling: the same answers served by hyper directly (HTTP/1.1 and h2c, same
//! server stack as Hostel) with no sandbox at all.
//!
//! Usage: `native-hello ADDR` answers hello; `native-hello ADDR REDIS_URL` is the
//! redis-counter endpoint instead (INCR per path over one multiplexed redis-rs connection).

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use redis::aio::MultiplexedConnection;
use std::convert::Infallible;

async fn answer(path: &str, redis: Option<MultiplexedConnection>) -> hyper::Response<Full<Bytes>> {
    let Some(mut redis) = redis else {
        let text = format!("Hello from Hostel! You asked for {path}\n");
        return hyper::Response::new(Full::new(Bytes::from(text)));
    };
    let hits: redis::RedisResult<i64> = redis::cmd("INCR")
        .arg(format!("native:hits:{path}"))
        .query_async(&mut redis)
        .await;
    let (status, text) = match hits {
        Ok(n) => (200, format!("{n}\n")),
        Err(e) => (503, format!("Redis unavailable: {e}\n")),
    };
    let mut response = hyper::Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = hyper::StatusCode::from_u16(status).expect("valid status");
    response
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8090".into());
    let redis = match args.next() {
        Some(url) => Some(
            redis::Client::open(url)?
                .get_multiplexed_async_connection()
                .await?,
        ),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "native-hello listening on http://{}",
        listener.local_addr()?
    );
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let redis = redis.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let redis = redis.clone();
                async move { Ok::<_, Infallible>(answer(req.uri().path(), redis).await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
