//! Traces over OTLP: the host exports to a real OTLP/HTTP receiver (this file's), W3C trace
//! context comes in, reaches the guest and goes out with its calls; without the `OTEL_*`
//! variables nothing is exported and `traceparent` passes through untouched.

use bytes::Bytes;
use hostel_tests::*;
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

fn incoming_traceparent() -> String {
    format!("00-{TRACE_ID}-{PARENT_ID}-01")
}

/// A test server on a free loopback port: an OTLP/HTTP receiver at `POST /v1/traces` (its
/// spans decoded and kept, with the resource's `service.name`), and an upstream for outbound
/// calls everywhere else (each request's `traceparent` kept; it answers `ok`).
struct Receiver {
    addr: std::net::SocketAddr,
    spans: Arc<Mutex<Vec<Span>>>,
    services: Arc<Mutex<Vec<String>>>,
    traceparents: Arc<Mutex<Vec<Option<String>>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let receiver = Receiver {
            addr,
            spans: Default::default(),
            services: Default::default(),
            traceparents: Default::default(),
        };
        let (spans, services, traceparents) = (
            receiver.spans.clone(),
            receiver.services.clone(),
            receiver.traceparents.clone(),
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (spans, services, traceparents) =
                    (spans.clone(), services.clone(), traceparents.clone());
                let service = hyper::service::service_fn(
                    move |request: http::Request<hyper::body::Incoming>| {
                        let (spans, services, traceparents) =
                            (spans.clone(), services.clone(), traceparents.clone());
                        async move {
                            let is_export = request.method() == http::Method::POST
                                && request.uri().path() == "/v1/traces";
                            if !is_export {
                                let traceparent = (request.headers().get("traceparent"))
                                    .map(|v| v.to_str().unwrap().to_string());
                                traceparents.lock().unwrap().push(traceparent);
                                return Ok::<_, hyper::Error>(hyper::Response::new(Full::new(
                                    Bytes::from("ok"),
                                )));
                            }
                            let body = request.into_body().collect().await?.to_bytes();
                            let export = ExportTraceServiceRequest::decode(body)
                                .expect("the host sends OTLP protobuf");
                            for resource in export.resource_spans {
                                let attributes = resource.resource.map(|r| r.attributes);
                                let name = attributes.into_iter().flatten().find_map(|kv| {
                                    (kv.key == "service.name").then(|| text_of(kv.value.as_ref()))
                                });
                                services.lock().unwrap().extend(name.flatten());
                                for scope in resource.scope_spans {
                                    spans.lock().unwrap().extend(scope.spans);
                                }
                            }
                            let answer = ExportTraceServiceResponse::default().encode_to_vec();
                            let mut response = hyper::Response::new(Full::new(Bytes::from(answer)));
                            response.headers_mut().insert(
                                "content-type",
                                http::HeaderValue::from_static("application/x-protobuf"),
                            );
                            Ok(response)
                        }
                    },
                );
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        receiver
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }

    /// Waits (bounded: the batch exporter sends on its schedule) until `found` picks spans out
    /// of everything received so far.
    async fn wait_for<T>(&self, what: &str, found: impl Fn(&[Span]) -> Option<T>) -> T {
        for _ in 0..300 {
            if let Some(found) = found(&self.spans()) {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let names: Vec<String> = self.spans().iter().map(describe).collect();
        panic!("no {what} among the spans received: {names:#?}");
    }
}

fn text_of(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> Option<String> {
    match value?.value.as_ref()? {
        Value::StringValue(text) => Some(text.clone()),
        Value::IntValue(n) => Some(n.to_string()),
        Value::BoolValue(b) => Some(b.to_string()),
        other => Some(format!("{other:?}")),
    }
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    let kv = span.attributes.iter().find(|kv| kv.key == key)?;
    text_of(kv.value.as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn describe(span: &Span) -> String {
    format!(
        "{} trace {} span {} parent {} kind {}",
        span.name,
        hex(&span.trace_id),
        hex(&span.span_id),
        hex(&span.parent_span_id),
        span.kind
    )
}

/// The spans of `trace` whose parent is `parent`.
fn children<'a>(spans: &'a [Span], parent: &Span) -> Vec<&'a Span> {
    (spans.iter())
        .filter(|s| s.trace_id == parent.trace_id && s.parent_span_id == parent.span_id)
        .collect()
}

/// The server span of the request with this id.
fn server_span(spans: &[Span], request_id: &str) -> Option<Span> {
    spans
        .iter()
        .find(|s| {
            s.kind == SpanKind::Server as i32
                && attribute(s, "request_id").as_deref() == Some(request_id)
        })
        .cloned()
}

/// The parts of a `traceparent`: (trace id, parent id).
fn parts(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!((parts[0], parts[3].len()), ("00", 2), "{traceparent}");
    (parts[1].to_string(), parts[2].to_string())
}

/// The environment that sends the host's spans to `receiver`, soon after they end.
fn exporting_to(receiver: &Receiver) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
        ("OTEL_SERVICE_NAME", "hostel-under-test".into()),
    ]
}

fn start(config: &str, env: &[(&'static str, String)]) -> HostProcess {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    HostProcess::start_with_env(tempfile::tempdir().unwrap(), config, &env).unwrap()
}

/// Tenant `acme`: the echo guest at `/echo`, the probe (outbound calls to `upstream`) at
/// `/probe`, and with `redis`, the Redis counters of both WASI releases.
fn config(upstream: std::net::SocketAddr, redis: Option<&RedisServer>) -> String {
    let mut config = format!(
        "[server]\ncode_cache = {cache}\ndrain_delay = \"0s\"\n\
         [tenants.acme]\ngrants = {{ outbound = [\"http://{upstream}\"]{pools} }}\n\
         apps.echo = {{ route = \"/echo\", component = {echo} }}\n\
         apps.probe = {{ route = \"/probe\", component = {probe} }}\n",
        cache = toml_path(&shared_code_cache()),
        echo = toml_path(&guest("guest-echo")),
        probe = toml_path(&guest("guest-probe")),
        pools = if redis.is_some() {
            ", pools = [\"cache\"]"
        } else {
            ""
        },
    );
    if let Some(redis) = redis {
        config.push_str(&format!(
            "apps.counter = {{ route = \"/counter\", component = {counter} }}\n\
             apps.counter3 = {{ route = \"/counter3\", component = {counter3} }}\n\
             [pools.cache]\nkind = \"redis\"\nurl = \"{url}\"\n",
            counter = toml_path(&guest("redis-counter")),
            counter3 = toml_path(&guest("redis-counter-p3")),
            url = redis.url(),
        ));
    }
    config
}

/// GET `path` with these headers.
async fn get_with(host: &HostProcess, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = http::Request::get(host.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let reply = send(
        &http1_client(),
        request.body(Full::new(Bytes::new())).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    reply
}

#[tokio::test(flavor = "multi_thread")]
async fn an_incoming_traceparent_parents_the_request_span_and_reaches_the_guest_renamed() {
    let receiver = Receiver::start().await;
    let host = start(&config(receiver.addr, None), &exporting_to(&receiver));
    assert!(
        host.log().contains("exporting traces over OTLP"),
        "{}",
        host.log()
    );

    let traceparent = incoming_traceparent();
    let headers = [
        ("traceparent", traceparent.as_str()),
        ("tracestate", "vendor=1"),
    ];
    let reply = get_with(&host, "/echo/header?traceparent", &headers).await;
    let request_id = reply.request_id().unwrap().to_string();
    // The guest sees the host's span as its parent, in the client's trace.
    let (trace, seen_parent) = parts(reply.text().trim());
    assert_eq!(trace, TRACE_ID);
    assert_ne!(seen_parent, PARENT_ID);
    let reply = get_with(&host, "/echo/header?tracestate", &headers).await;
    assert_eq!(
        reply.text(),
        "vendor=1",
        "tracestate goes on with the trace"
    );

    let server = receiver
        .wait_for("server span", |spans| server_span(spans, &request_id))
        .await;
    assert_eq!(hex(&server.trace_id), TRACE_ID);
    assert_eq!(hex(&server.parent_span_id), PARENT_ID);
    assert_eq!(
        hex(&server.span_id),
        seen_parent,
        "the guest's parent is the server span"
    );
    assert_eq!(server.name, "GET /echo");
    assert_eq!(attribute(&server, "tenant").as_deref(), Some("acme"));
    assert_eq!(attribute(&server, "app").as_deref(), Some("echo"));
    assert_eq!(
        attribute(&server, "http.request.method").as_deref(),
        Some("GET")
    );
    assert_eq!(attribute(&server, "http.route").as_deref(), Some("/echo"));
    assert_eq!(
        attribute(&server, "http.response.status_code").as_deref(),
        Some("200")
    );
    let spans = receiver
        .wait_for("instantiate and guest spans", |spans| {
            let names: Vec<&str> = (children(spans, &server).iter())
                .map(|s| s.name.as_str())
                .collect();
            (names.contains(&"instantiate") && names.contains(&"guest")).then(|| spans.to_vec())
        })
        .await;
    assert_eq!(
        children(&spans, &server).len(),
        2,
        "one instantiation, one guest call: {:#?}",
        spans.iter().map(describe).collect::<Vec<_>>()
    );
    assert!(
        receiver
            .services
            .lock()
            .unwrap()
            .iter()
            .all(|s| s == "hostel-under-test"),
        "OTEL_SERVICE_NAME names the service"
    );
    // The request's log lines are as they were: the trace-only fields stay out of them.
    let log = host.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(&request_id)).collect();
    assert!(!lines.is_empty(), "{log}");
    assert!(lines.iter().all(|l| !l.contains("otel.")), "{lines:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_or_repeated_traceparent_starts_a_new_trace() {
    let receiver = Receiver::start().await;
    let host = start(&config(receiver.addr, None), &exporting_to(&receiver));
    let cases: [&[(&str, &str)]; 3] = [
        &[("traceparent", "00-not-a-trace-01")],
        &[(
            "traceparent",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        )],
        // Which of two would be the parent is not the client's to leave open.
        &[
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b7-01",
            ),
        ],
    ];
    for headers in cases {
        let reply = get_with(&host, "/echo/header?traceparent", headers).await;
        let request_id = reply.request_id().unwrap().to_string();
        let (trace, parent) = parts(reply.text().trim());
        assert!(
            !trace.starts_with("4bf92f3577b34da6a3ce929d0e0e473"),
            "{headers:?}"
        );
        assert_ne!(trace, "0".repeat(32));
        let server = receiver
            .wait_for("server span", |spans| server_span(spans, &request_id))
            .await;
        assert!(server.parent_span_id.is_empty(), "{headers:?}: a root span");
        assert_eq!(
            (hex(&server.trace_id), hex(&server.span_id)),
            (trace, parent)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outbound_call_is_a_client_span_whose_context_the_upstream_gets() {
    let receiver = Receiver::start().await;
    let host = start(&config(receiver.addr, None), &exporting_to(&receiver));
    let traceparent = incoming_traceparent();
    let path = format!("/probe/outbound?{}", receiver.addr);
    let reply = get_with(&host, &path, &[("traceparent", traceparent.as_str())]).await;
    assert_eq!(reply.text(), "status: 200");
    let request_id = reply.request_id().unwrap().to_string();

    let sent = receiver.traceparents.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let (trace, parent) = parts(sent[0].as_deref().expect("the upstream got a traceparent"));
    assert_eq!(trace, TRACE_ID, "the upstream continues the client's trace");

    let (server, outbound) = receiver
        .wait_for("outbound span", |spans| {
            let server = server_span(spans, &request_id)?;
            let outbound = (spans.iter())
                .find(|s| s.trace_id == server.trace_id && s.name == "GET")?
                .clone();
            Some((server, outbound))
        })
        .await;
    assert_eq!(outbound.kind, SpanKind::Client as i32);
    assert_eq!(
        hex(&outbound.span_id),
        parent,
        "the upstream's parent is the call's span"
    );
    assert_eq!(
        attribute(&outbound, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(
        attribute(&outbound, "url.full"),
        Some(format!("http://{}/", receiver.addr))
    );
    // Made during the guest's call, under it.
    let guest = receiver
        .wait_for("guest span", |spans| {
            children(spans, &server)
                .into_iter()
                .find(|s| s.name == "guest")
                .cloned()
        })
        .await;
    assert_eq!(outbound.parent_span_id, guest.span_id);
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_calls_are_spans_of_the_guest_call_in_both_wasi_releases() {
    let receiver = Receiver::start().await;
    let redis = RedisServer::start().unwrap();
    let host = start(
        &config(receiver.addr, Some(&redis)),
        &exporting_to(&receiver),
    );
    for path in ["/counter", "/counter3"] {
        let reply = get_with(&host, path, &[]).await;
        assert_eq!(reply.text(), "1\n");
        let request_id = reply.request_id().unwrap().to_string();
        let (call, guest) = receiver
            .wait_for("Redis call span", |spans| {
                let server = server_span(spans, &request_id)?;
                let guest = (children(spans, &server).into_iter())
                    .find(|s| s.name == "guest")?
                    .clone();
                let call = (children(spans, &guest).into_iter())
                    .find(|s| s.name == "redis incr")?
                    .clone();
                Some((call, guest))
            })
            .await;
        assert_eq!(call.kind, SpanKind::Client as i32, "{path}");
        assert_eq!(attribute(&call, "db.system.name").as_deref(), Some("redis"));
        assert_eq!(
            attribute(&call, "db.operation.name").as_deref(),
            Some("incr")
        );
        assert!(call.start_time_unix_nano >= guest.start_time_unix_nano);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_still_queued_are_sent_at_shutdown() {
    let receiver = Receiver::start().await;
    let mut env = exporting_to(&receiver);
    // Never on the schedule within this test: only the flush at shutdown sends them.
    env.retain(|(name, _)| *name != "OTEL_BSP_SCHEDULE_DELAY");
    env.push(("OTEL_BSP_SCHEDULE_DELAY", "3600000".into()));
    let mut host = start(&config(receiver.addr, None), &env);
    let reply = get_with(&host, "/echo/header?x", &[]).await;
    let request_id = reply.request_id().unwrap().to_string();
    host.signal(libc::SIGTERM);
    let status = host.wait_exit(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "{status}: {}", host.log());
    let spans = receiver.spans();
    assert!(
        server_span(&spans, &request_id).is_some(),
        "{:#?}",
        spans.iter().map(describe).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_otlp_endpoint_nothing_is_exported_and_traceparent_passes_through() {
    let receiver = Receiver::start().await;
    // Empty is unset: whatever the test's own environment has, no endpoint is configured.
    let unset = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", String::new()),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", String::new()),
        ("OTEL_SERVICE_NAME", "hostel-under-test".into()),
    ];
    // And an endpoint, turned off the standard way: were it exported, the flush at shutdown
    // would bring the receiver the spans.
    let mut disabled = exporting_to(&receiver);
    disabled.push(("OTEL_SDK_DISABLED", "true".into()));
    for env in [unset, disabled] {
        let mut host = start(&config(receiver.addr, None), &env);
        assert!(!host.log().contains("exporting traces"), "{}", host.log());
        let traceparent = incoming_traceparent();
        let headers = [
            ("traceparent", traceparent.as_str()),
            ("tracestate", "vendor=1"),
        ];
        let reply = get_with(&host, "/echo/header?traceparent", &headers).await;
        assert_eq!(
            reply.text(),
            traceparent,
            "the guest sees the client's header as sent"
        );
        let reply = get_with(&host, "/echo/header?tracestate", &headers).await;
        assert_eq!(reply.text(), "vendor=1");
        // An outbound call carries no traceparent the guest did not set.
        let path = format!("/probe/outbound?{}", receiver.addr);
        let reply = get_with(&host, &path, &[("traceparent", traceparent.as_str())]).await;
        assert_eq!(reply.text(), "status: 200");
        host.signal(libc::SIGTERM);
        let status = host.wait_exit(Duration::from_secs(30)).unwrap();
        assert!(status.success(), "{status}: {}", host.log());
    }
    assert_eq!(
        *receiver.traceparents.lock().unwrap(),
        [None, None],
        "outbound calls went out as the guest made them"
    );
    assert!(receiver.spans().is_empty(), "nothing was exported");
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_statements_and_their_transaction_are_spans_of_the_guest_call() {
    let receiver = Receiver::start().await;
    let pg = PostgresServer::start().unwrap();
    let config = format!(
        "[server]\ncode_cache = {cache}\n\
         [pools.db]\nkind = \"postgres\"\nurl = \"{url}\"\n\
         [grants]\npools = [\"db\"]\n\
         [apps.probe]\nroute = \"/probe\"\ncomponent = {probe}\n",
        cache = toml_path(&shared_code_cache()),
        url = pg.url(),
        probe = toml_path(&guest("pg-probe")),
    );
    let host = start(&config, &exporting_to(&receiver));
    // BEGIN, a statement, a query, COMMIT: one span each, in order, under the guest call.
    let reply = get_with(&host, "/probe/tx", &[]).await;
    assert_eq!(reply.text(), r#"{"ok":{"one":1}}"#);
    let request_id = reply.request_id().unwrap().to_string();
    let calls = receiver
        .wait_for("PostgreSQL call spans", |spans| {
            let server = server_span(spans, &request_id)?;
            let guest = (children(spans, &server).into_iter()).find(|s| s.name == "guest")?;
            let mut calls: Vec<Span> = children(spans, guest).into_iter().cloned().collect();
            calls.sort_by_key(|s| s.start_time_unix_nano);
            (calls.len() == 4).then_some(calls)
        })
        .await;
    let names: Vec<&str> = calls.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "postgresql begin",
            "postgresql execute",
            "postgresql query",
            "postgresql commit"
        ]
    );
    for call in &calls {
        assert_eq!(call.kind, SpanKind::Client as i32);
        assert_eq!(
            attribute(call, "db.system.name").as_deref(),
            Some("postgresql")
        );
    }
}
