//! WASI 0.3 `wasi:http/service` components, served beside WASI 0.2 handlers by the same host:
//! routing, bodies streamed both ways, trailers, limits and outbound calls; and a component
//! built with another project's SDK (Spin's), served unchanged.

use super::standard_config;
use bytes::Bytes;
use hostel_tests::*;
use http_body_util::{BodyExt, Full};
use std::time::Duration;

/// The standard config, with the WASI 0.3 guest at `/` of a tenant of its own (`p3.test`)
/// and at `/p3` of the main tenant (which any host name reaches: HTTP/2 requests below).
fn config_with_p3(extra_grants: &str) -> String {
    format!(
        "{standard}\n[tenants.main.apps.p3]\nroute = \"/p3\"\ncomponent = {service}\n\
         [tenants.p3]\nhosts = [\"p3.test\"]\n\
         limits = {{ timeout = \"2s\", memory = \"32MiB\", request_body = \"1MiB\" }}\n\
         grants = {{ {extra_grants} }}\n\
         apps.service = {{ route = \"/\", component = {service} }}\n",
        standard = standard_config(),
        service = toml_path(&guest("guest-service-p3")),
    )
}

fn p3_request(
    host: &HostProcess,
    method: &str,
    path: &str,
    body: Bytes,
) -> http::Request<Full<Bytes>> {
    http::Request::builder()
        .method(method)
        .uri(host.url(path))
        .header(http::header::HOST, "p3.test")
        .body(Full::new(body))
        .unwrap()
}

async fn p3_get(host: &HostProcess, path: &str) -> Reply {
    send(&http1_client(), p3_request(host, "GET", path, Bytes::new()))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wasi_0_3_service_is_served_beside_wasi_0_2_handlers() {
    let host = HostProcess::start(&config_with_p3("")).unwrap();
    let reply = p3_get(&host, "/").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "hello from a WASI 0.3 guest\n");
    assert!(
        reply.request_id().is_some(),
        "every answer carries a request id"
    );
    let reply = get(&http1_client(), &host.url("/hello")).await.unwrap();
    assert_eq!(reply.status, 200);
    assert!(reply.text().contains("Hello"), "{}", reply.text());
    assert_eq!(
        p3_get(&host, "/nowhere").await.status,
        404,
        "the guest's own 404"
    );

    // What the guest writes to its WASI 0.3 stdout lands in the host log, under its request.
    let reply = p3_get(&host, "/log?a-line-from-wasi-0-3").await;
    assert_eq!(reply.text(), "logged\n");
    assert!(host.wait_for_log("a-line-from-wasi-0-3"), "{}", host.log());
}

#[tokio::test]
async fn hostel_check_says_which_wasi_each_app_is() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hostel.toml"), config_with_p3("")).unwrap();
    let (status, stdout, stderr) =
        hostel_output(&["check", "--config", "hostel.toml"], dir.path()).unwrap();
    assert!(status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("p3/service  /  wasi:http/service (WASI 0.3)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("main/hello  /hello  wasi:http/proxy (WASI 0.2)"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wasi_0_3_bodies_stream_both_ways_and_end_with_trailers() {
    let host = HostProcess::start(&config_with_p3("")).unwrap();
    let client = http1_client();

    // 256 KiB in, the same 256 KiB out, copied chunk by chunk by a task of the guest's.
    let body: Bytes = (0..256 * 1024)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    let mut request = p3_request(&host, "POST", "/echo", body.clone());
    request
        .headers_mut()
        .insert("x-echo", "ping".parse().unwrap());
    let reply = send(&client, request).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.headers["x-echoed"], "ping");
    assert_eq!(reply.body.len(), body.len());
    assert!(reply.body == body, "the echoed body differs");

    // Written after the handler returned its response.
    let reply = p3_get(&host, "/stream").await;
    let expected: String = (0..10).map(|i| format!("line {i}\n")).collect();
    assert_eq!(reply.text(), expected);

    // Trailers reach the client (over HTTP/2, where no `TE: trailers` is needed).
    let request = http::Request::get(host.url("/p3/trailers"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = http2_client().request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers");
    assert_eq!(trailers["x-checksum"], "42");
    assert_eq!(collected.to_bytes(), "body before trailers\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn wasi_0_3_guests_get_the_limits_wasi_0_2_guests_get() {
    let host = HostProcess::start(&config_with_p3("")).unwrap();

    let spin = p3_get(&host, "/spin").await;
    assert_eq!(spin.status, 504, "{}", spin.text());
    assert!(spin.request_id().is_some());

    let grow = p3_get(&host, "/grow").await;
    assert_eq!(grow.status, 500, "{}", grow.text());
    assert!(grow.text().contains("memory limit"), "{}", grow.text());

    let panic = p3_get(&host, "/panic").await;
    assert_eq!(panic.status, 500, "{}", panic.text());
    assert!(panic.text().contains("trap"), "{}", panic.text());

    let too_large = send(
        &http1_client(),
        p3_request(
            &host,
            "POST",
            "/echo",
            Bytes::from(vec![0u8; (1 << 20) + 1]),
        ),
    )
    .await
    .unwrap();
    assert_eq!(too_large.status, 413, "{}", too_large.text());

    // A guest that answers and then keeps the CPU in a task of its own is stopped at its
    // deadline all the same, and its sandbox freed; the client can tell that the body was
    // cut short (HTTP/1.1: no last chunk), as for a WASI 0.2 guest.
    let response = http1_client()
        .request(p3_request(&host, "GET", "/answer-then-spin", Bytes::new()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "partial\n");
    let end = body.frame().await;
    assert!(
        matches!(end, Some(Err(_))),
        "the body ended as if complete: {end:?}"
    );
    assert!(
        host.wait_for_log("the guest failed while streaming its response: Timeout"),
        "{}",
        host.log()
    );

    // The host goes on serving, WASI 0.3 and 0.2 alike.
    assert_eq!(p3_get(&host, "/").await.status, 200);
    assert_eq!(
        get(&http1_client(), &host.url("/hello"))
            .await
            .unwrap()
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wasi_0_3_outbound_calls_go_through_the_tenants_allow_list() {
    let granted = Upstream::start(Duration::ZERO).await;
    let other = Upstream::start(Duration::ZERO).await;
    let grants = format!("outbound = [\"http://{}\"]", granted.addr);
    let host = HostProcess::start(&config_with_p3(&grants)).unwrap();

    let reply = p3_get(&host, &format!("/fetch?http://{}/item", granted.addr)).await;
    assert_eq!(reply.text(), "status 200\n");
    assert_eq!(granted.accepted(), 1);

    let reply = p3_get(&host, &format!("/fetch?http://{}/item", other.addr)).await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert!(
        reply.text().contains("HttpRequestDenied"),
        "{}",
        reply.text()
    );
    assert_eq!(
        other.accepted(),
        0,
        "a call the grant does not name never connects"
    );
}

/// The WASI 0.3 pools probe at `/probe` on Redis pool `cache` and PostgreSQL pool `db`, with a
/// 2 s deadline.
fn pools_config(redis: &RedisServer, pg: &PostgresServer, redis_settings: &str) -> String {
    format!(
        "[server]\ncode_cache = {cache}\n\
         [defaults.limits]\ntimeout = \"2s\"\n\
         [pools.cache]\nkind = \"redis\"\nurl = \"{redis}\"\n{redis_settings}\n\
         [pools.db]\nkind = \"postgres\"\nurl = \"{pg}\"\nmax_connections = 4\n\
         [grants]\npools = [\"cache\", \"db\"]\n\
         [apps.probe]\nroute = \"/probe\"\ncomponent = {probe}\n\
         [apps.hello]\nroute = \"/hello\"\ncomponent = {hello}\n",
        cache = toml_path(&shared_code_cache()),
        redis = redis.url(),
        pg = pg.url(),
        probe = toml_path(&guest("guest-pools-p3")),
        hello = toml_path(&guest("hello-p3")),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wasi_0_3_guest_awaits_redis_and_sql_calls_at_once() {
    let redis = RedisServer::start().unwrap();
    let pg = PostgresServer::start().unwrap();
    let host = HostProcess::start(&pools_config(&redis, &pg, "")).unwrap();
    let client = http1_client();
    // The BLPOP gets the value only if the SQL query and the RPUSH ran while it waited.
    assert_eq!(
        ok_text(&client, &host.url("/probe/fanout?fan:1")).await,
        "popped fan:1 42\n"
    );
    assert_eq!(
        ok_text(&client, &host.url("/probe/typed")).await,
        "incr Ok(5)\nget Ok(Some(\"1\"))\nmissing Ok(None)\nrpush Ok(2)\n"
    );
    assert_eq!(
        ok_text(&client, &host.url("/probe/pg")).await,
        "inserted 2\nbodies a,b\nsum 42\n"
    );
    // Namespaced per tenant, as for WASI 0.2 guests.
    for key in redis.cli(&["KEYS", "*"]).unwrap().lines() {
        assert!(key.starts_with("tenant:default:"), "{key}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wasi_0_3_transaction_runs_one_call_at_a_time_and_says_so() {
    let redis = RedisServer::start().unwrap();
    let pg = PostgresServer::start().unwrap();
    let host = HostProcess::start(&pools_config(&redis, &pg, "")).unwrap();
    let client = http1_client();
    assert_eq!(
        ok_text(&client, &host.url("/probe/redis-busy")).await,
        "busy ok\nafter Ok(\"OK\")\n"
    );
    assert_eq!(
        ok_text(&client, &host.url("/probe/pg-busy")).await,
        "busy ok\nafter Ok(2)\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wasi_0_3_leases_come_back_after_a_trap_a_timeout_and_an_exhausted_pool() {
    let redis = RedisServer::start().unwrap();
    let pg = PostgresServer::start().unwrap();
    let host = HostProcess::start(&pools_config(&redis, &pg, super::redis::TWO_LEASES)).unwrap();
    super::redis::leases_come_back(&redis, &host).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wasi_0_3_guest_cannot_make_the_host_hold_more_than_its_memory_limit_in_calls() {
    let redis = RedisServer::start().unwrap();
    let pg = PostgresServer::start().unwrap();
    let mut config = pools_config(&redis, &pg, "");
    // A deadline well past Redis' 1.5 s pause: 40,000 calls on a loaded CI machine need it.
    config = config.replace("timeout = \"2s\"", "timeout = \"10s\"\nmemory = \"32MiB\"");
    let host = HostProcess::start(&config).unwrap();
    let client = http1_client();
    // Within the limit: every call runs.
    assert_eq!(
        ok_text(&client, &host.url("/probe/flood?n=8&size=1048576")).await,
        "ok 8 refused 0\n"
    );
    // 64 MiB of arguments started at once from a guest that frees each value once the host
    // has it, while Redis holds every write (so none finishes before the last has started):
    // the calls past 32 MiB are refused as values, the others run once Redis resumes.
    redis.cli(&["CLIENT", "PAUSE", "1500", "WRITE"]).unwrap();
    let flood = ok_text(&client, &host.url("/probe/flood?n=64&size=1048576")).await;
    let (ok, refused) = counts(&flood);
    // Each call holds its 1 MiB value and a little more (key, lengths, the host's state for
    // the call): 31 fit in 32 MiB.
    assert_eq!((ok, refused), (31, 33), "{flood}");
    // Small calls count what the host holds for each too: 40,000 empty SETs started at once
    // do not all get in either.
    redis.cli(&["CLIENT", "PAUSE", "1500", "WRITE"]).unwrap();
    let flood = ok_text(&client, &host.url("/probe/flood?n=40000&size=0")).await;
    let (ok, refused) = counts(&flood);
    assert_eq!(ok + refused, 40000, "{flood}");
    assert!(ok > 0 && refused > 0, "{flood}");
    // The budget is the request's: the next request starts with all of it.
    assert_eq!(
        ok_text(&client, &host.url("/probe/flood?n=8&size=1048576")).await,
        "ok 8 refused 0\n"
    );
}

/// `ok A refused B` as (A, B).
fn counts(flood: &str) -> (u32, u32) {
    flood
        .trim()
        .strip_prefix("ok ")
        .and_then(|rest| rest.split_once(" refused "))
        .map(|(ok, refused)| (ok.parse().unwrap(), refused.parse().unwrap()))
        .unwrap_or_else(|| panic!("{flood}"))
}

/// The standard config, with the guest built with the Spin Rust SDK 7 at `/spin-sdk7` of the
/// main tenant.
fn config_with_spin_sdk7() -> String {
    format!(
        "{standard}\n[tenants.main.apps.spin-sdk7]\nroute = \"/spin-sdk7\"\ncomponent = {spin}\n",
        standard = standard_config(),
        spin = toml_path(&guest("guest-spin-sdk7")),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_built_with_the_spin_sdk_7_is_served_as_a_wasi_0_3_service() {
    let config = config_with_spin_sdk7();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hostel.toml"), &config).unwrap();
    let (status, stdout, stderr) =
        hostel_output(&["check", "--config", "hostel.toml"], dir.path()).unwrap();
    assert!(status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("main/spin-sdk7  /spin-sdk7  wasi:http/service (WASI 0.3)"),
        "{stdout}"
    );

    let host = HostProcess::start(&config).unwrap();
    let client = http1_client();

    let hello = get(&client, &host.url("/spin-sdk7")).await.unwrap();
    assert_eq!(hello.status, 200, "{}", hello.text());
    assert_eq!(hello.text(), "hello from the Spin SDK 7\n");
    assert!(
        hello.request_id().is_some(),
        "Hostel's request id is on the Spin guest's answer too"
    );

    // Read whole by the SDK's `IncomingBodyExt::bytes`, then sent back: more than one chunk.
    let body: Bytes = (0..64 * 1024)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    let echo = post(&client, &host.url("/spin-sdk7/echo"), body.clone())
        .await
        .unwrap();
    assert_eq!(echo.status, 200, "{}", echo.text());
    assert_eq!(echo.body.len(), body.len());
    assert!(echo.body == body, "the echoed body differs");
    assert!(echo.request_id().is_some());

    let header = get(&client, &host.url("/spin-sdk7/header")).await.unwrap();
    assert_eq!(header.status, 200, "{}", header.text());
    assert_eq!(header.headers["x-spin-sdk"], "7");
    assert_eq!(header.text(), "a header from the Spin SDK 7\n");
    assert!(header.request_id().is_some());
}
