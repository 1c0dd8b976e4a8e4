//! Serving: hello, routing, HTTP/2, request ids, a fresh instance per request.

use crate::standard_config;
use hostel_tests::*;

#[tokio::test(flavor = "multi_thread")]
async fn hello_answers_with_a_request_id() {
    let host = HostProcess::start(&standard_config()).unwrap();
    let reply = get(&http1_client(), &host.url("/hello/world"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.text(),
        "Hello from Hostel! You asked for /hello/world\n"
    );
    assert!(reply.request_id().is_some_and(|id| !id.is_empty()));
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_route_gets_404_from_the_host() {
    let host = HostProcess::start(&standard_config()).unwrap();
    let client = http1_client();
    for path in ["/", "/nothing", "/hellox"] {
        let reply = get(&client, &host.url(path)).await.unwrap();
        assert_eq!(reply.status, 404, "{path}");
        let id = reply.request_id().expect("request id header").to_string();
        assert!(
            reply.text().contains(&id),
            "body names the request id: {}",
            reply.text()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_hosts_fall_through_to_the_any_host_tenant() {
    let host = HostProcess::start(&standard_config()).unwrap();
    let client = http1_client();
    // Only `slow.test` is claimed by a tenant; any other host is served by the tenant without
    // hosts. (Host-specific tenants are exercised by the keyvalue and outbound tests.)
    let request = http::Request::get(host.url("/hello"))
        .header("host", "other.test")
        .body(Default::default())
        .unwrap();
    assert_eq!(send(&client, request).await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_cleartext_works() {
    let host = HostProcess::start(&standard_config()).unwrap();
    let client = http2_client();
    let response = client
        .request(
            http::Request::get(host.url("/hello/h2"))
                .body(Default::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    // Several streams on the one connection.
    for reply in get_concurrently(&client, &host.url("/hello/h2"), 20).await {
        assert_eq!(reply.unwrap().status, 200);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_gets_a_fresh_instance() {
    every_request_gets_a_fresh_instance_with(&standard_config()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_gets_a_fresh_instance_with_no_memory_kept_resident() {
    // Recycled slots are then reset by madvise alone, not memset.
    let config = standard_config().replace(
        "shutdown_grace = \"10s\"",
        "shutdown_grace = \"10s\"\nmemory_keep_resident = \"0\"",
    );
    assert!(config.contains("memory_keep_resident"));
    every_request_gets_a_fresh_instance_with(&config).await;
}

async fn every_request_gets_a_fresh_instance_with(config: &str) {
    let host = HostProcess::start(config).unwrap();
    let client = http1_client();
    for _ in 0..50 {
        let reply = get(&client, &host.url("/counter")).await.unwrap();
        assert_eq!(
            reply.text(),
            "1",
            "a global survived from an earlier request"
        );
    }
    for reply in get_concurrently(&client, &host.url("/counter"), 200).await {
        assert_eq!(
            reply.unwrap().text(),
            "1",
            "instance shared under concurrency"
        );
    }
}
