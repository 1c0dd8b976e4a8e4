//! The benchmarks' ceiling: the same answers served by hyper directly (HTTP/1.1 and h2c, same
//! server stack as Hostel) with no sandbox at all.
//!
//! Usage:
//! - `native-hello ADDR` answers hello;
//! - `native-hello ADDR REDIS_URL` is the redis-counter endpoint instead (INCR per path over one
//!   multiplexed redis-rs connection);
//! - `native-hello ADDR --fan-out URL,URL,...` is the aggregator endpoint: every request GETs
//!   all the URLs at once through one pooled keep-alive hyper-util client and answers the same
//!   JSON document as the `aggregator` component.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use redis::aio::MultiplexedConnection;
use std::convert::Infallible;
use std::sync::Arc;

/// What every request does besides answering.
#[derive(Clone)]
enum Backend {
    Hello,
    Redis(MultiplexedConnection),
    FanOut(Arc<FanOut>),
}

/// The aggregator's upstreams and the one pooled client that reaches them.
struct FanOut {
    client: Client<HttpConnector, Empty<Bytes>>,
    urls: Vec<hyper::Uri>,
}

fn text(status: u16, text: String) -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = hyper::StatusCode::from_u16(status).expect("valid status");
    response
}

async fn answer(path: &str, backend: Backend) -> hyper::Response<Full<Bytes>> {
    match backend {
        Backend::Hello => text(200, format!("Hello from Hostel! You asked for {path}\n")),
        Backend::Redis(mut redis) => {
            let hits: redis::RedisResult<i64> = redis::cmd("INCR")
                .arg(format!("native:hits:{path}"))
                .query_async(&mut redis)
                .await;
            match hits {
                Ok(n) => text(200, format!("{n}\n")),
                Err(e) => text(503, format!("Redis unavailable: {e}\n")),
            }
        }
        Backend::FanOut(fan_out) => {
            let calls: Vec<_> = fan_out
                .urls
                .iter()
                .map(|url| {
                    let (client, url) = (fan_out.client.clone(), url.clone());
                    tokio::spawn(async move {
                        let response = client.get(url).await.map_err(|e| e.to_string())?;
                        let status = response.status().as_u16();
                        let body = response.into_body().collect().await;
                        let body = body.map_err(|e| e.to_string())?.to_bytes();
                        Ok::<_, String>((status, String::from_utf8_lossy(&body).into_owned()))
                    })
                })
                .collect();
            let mut parts = Vec::with_capacity(calls.len());
            for (url, call) in fan_out.urls.iter().zip(calls) {
                let url = serde_json::to_string(&url.to_string()).expect("a string");
                parts.push(
                    match call.await.map_err(|e| e.to_string()).and_then(|r| r) {
                        Ok((status, body)) => format!(
                            r#"{{"url":{url},"status":{status},"body":{}}}"#,
                            serde_json::to_string(&body).expect("a string")
                        ),
                        Err(e) => format!(
                            r#"{{"url":{url},"error":{}}}"#,
                            serde_json::to_string(&e).expect("a string")
                        ),
                    },
                );
            }
            text(200, format!("[{}]\n", parts.join(",")))
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8090".into());
    let backend = match args.next().as_deref() {
        None => Backend::Hello,
        Some("--fan-out") => {
            let urls = args.next().ok_or("--fan-out needs URL,URL,...")?;
            let urls = urls.split(',').map(str::parse).collect::<Result<_, _>>()?;
            let mut connector = HttpConnector::new();
            connector.set_nodelay(true);
            Backend::FanOut(Arc::new(FanOut {
                client: Client::builder(TokioExecutor::new()).build(connector),
                urls,
            }))
        }
        Some(url) => Backend::Redis(
            redis::Client::open(url)?
                .get_multiplexed_async_connection()
                .await?,
        ),
    };
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "native-hello listening on http://{}",
        listener.local_addr()?
    );
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let backend = backend.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let backend = backend.clone();
                async move { Ok::<_, Infallible>(answer(req.uri().path(), backend).await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
