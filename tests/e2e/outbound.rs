//! Outbound HTTP goes through one pooled keep-alive client per tenant.

use hostel_tests::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn outbound_calls_reuse_pooled_connections_per_tenant() {
    let upstream = Upstream::start(Duration::ZERO).await;
    let server = upstream.addr;
    let probe = toml_path(&guest("guest-probe"));
    let config = format!(
        "[server]\ncode_cache = {cache}\n\
         [admin]\noperator_token_sha256 = \"{operator}\"\n\
         [tenants.a]\nhosts = [\"a.test\"]\ngrants = {{ outbound = [\"http://{server}\"] }}\n\
         apps.probe = {{ route = \"/\", component = {probe} }}\n\
         [tenants.b]\nhosts = [\"b.test\"]\ngrants = {{ outbound = [\"http://{server}\"] }}\n\
         apps.probe = {{ route = \"/\", component = {probe} }}\n",
        cache = toml_path(&shared_code_cache()),
        operator = token_sha256("operator"),
    );
    let host = HostProcess::start(&config).unwrap();
    let client = http1_client();
    let call = |tenant: &'static str| {
        let request = http::Request::get(host.url(&format!("/outbound?{server}")))
            .header("host", tenant)
            .body(Default::default())
            .unwrap();
        send(&client, request)
    };
    for _ in 0..100 {
        assert_eq!(call("a.test").await.unwrap().text(), "status: 200");
    }
    assert_eq!(
        upstream.accepted(),
        1,
        "100 sequential outbound calls, each from a fresh sandbox, share one pooled connection"
    );
    for _ in 0..20 {
        assert_eq!(call("b.test").await.unwrap().text(), "status: 200");
    }
    assert_eq!(
        upstream.accepted(),
        2,
        "tenant b has its own pool: one more connection, never tenant a's"
    );
    // A call the grants deny is an error of the tenant's, and opens nothing.
    let request = http::Request::get(host.url("/outbound?127.0.0.1:1"))
        .header("host", "b.test")
        .body(Default::default())
        .unwrap();
    assert_eq!(send(&client, request).await.unwrap().status, 200);

    // What each tenant's client did, in its own series.
    let metrics = scrape(&host, "operator").await;
    let value = |series: &str| value(&metrics, series);
    assert_eq!(value("hostel_outbound_requests_total{tenant=\"a\"}"), 100.0);
    assert_eq!(value("hostel_outbound_requests_total{tenant=\"b\"}"), 20.0);
    assert_eq!(
        value("hostel_outbound_connections_opened_total{tenant=\"a\"}"),
        1.0
    );
    assert_eq!(
        value("hostel_outbound_connections_opened_total{tenant=\"b\"}"),
        1.0
    );
    assert_eq!(value("hostel_outbound_errors_total{tenant=\"a\"}"), 0.0);
    assert_eq!(value("hostel_outbound_errors_total{tenant=\"b\"}"), 1.0);
    // The probe reads the status only: no body bytes came in.
    assert_eq!(
        value("hostel_outbound_received_bytes_total{tenant=\"a\"}"),
        0.0
    );
}

/// The aggregator example fanning out to `/item/0` … `/item/4` of `server`.
fn aggregator_config(server: std::net::SocketAddr) -> String {
    let urls: Vec<String> = (0..5)
        .map(|i| format!("http://{server}/item/{i}"))
        .collect();
    format!(
        "[server]\ncode_cache = {cache}\n\
         [grants]\noutbound = [\"http://{server}\"]\nenv = {{ UPSTREAMS = \"{urls}\" }}\n\
         [apps.aggregator]\nroute = \"/\"\ncomponent = {aggregator}\n",
        cache = toml_path(&shared_code_cache()),
        urls = urls.join(","),
        aggregator = toml_path(&guest("aggregator")),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn aggregator_fans_out_concurrently_over_pooled_connections() {
    let upstream = Upstream::start(Duration::from_millis(50)).await;
    let server = upstream.addr;
    let config = format!(
        "{}[admin]\noperator_token_sha256 = \"{}\"\n",
        aggregator_config(server),
        token_sha256("operator")
    );
    let host = HostProcess::start(&config).unwrap();
    let client = http1_client();
    for _ in 0..10 {
        let reply = get(&client, &host.url("/")).await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        let text = reply.text();
        for i in 0..5 {
            let expected =
                format!(r#""url":"http://{server}/item/{i}","status":200,"body":"ok /item/{i}""#);
            assert!(text.contains(&expected), "{text}");
        }
    }
    assert!(
        upstream.max_in_flight() >= 2,
        "the five upstream calls overlapped (max in flight {})",
        upstream.max_in_flight()
    );
    assert!(
        upstream.accepted() <= 5,
        "50 outbound calls, at most 5 at a time, reuse pooled connections: {} accepted",
        upstream.accepted()
    );
    // Counted as the tenant's: 50 calls, each body ("ok /item/N") 10 bytes; billed to the app.
    let admin = |path: &str| {
        http::Request::get(host.admin_url(path))
            .header("authorization", "Bearer operator")
            .body(Default::default())
            .unwrap()
    };
    let metrics = send(&client, admin("/metrics")).await.unwrap().text();
    for line in [
        "hostel_outbound_requests_total{tenant=\"default\"} 50",
        "hostel_outbound_received_bytes_total{tenant=\"default\"} 500",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in\n{metrics}"
        );
    }
    let usage: serde_json::Value =
        serde_json::from_slice(&send(&client, admin("/v1/usage")).await.unwrap().body).unwrap();
    let calls: u64 = (usage["usage"].as_array().unwrap().iter())
        .filter(|row| row["app"] == "aggregator")
        .map(|row| row["outbound_calls"].as_u64().unwrap())
        .sum();
    assert_eq!(calls, 50, "{usage}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_fan_outs_reuse_the_pools_connections() {
    let upstream = Upstream::start(Duration::ZERO).await;
    let server = upstream.addr;
    let host = HostProcess::start(&aggregator_config(server)).unwrap();
    let client = http1_client();
    // 1,000 requests, 10 at a time: 5,000 outbound calls, at most 50 in flight at once.
    for _ in 0..100 {
        for reply in get_concurrently(&client, &host.url("/"), 10).await {
            let reply = reply.unwrap();
            assert_eq!(reply.status, 200, "{}", reply.text());
            assert_eq!(reply.text().matches(r#""status":200"#).count(), 5);
        }
    }
    assert!(
        upstream.accepted() <= 50,
        "5,000 calls, at most 50 at a time, over at most 50 pooled connections: {} accepted",
        upstream.accepted()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn outbound_calls_beyond_the_per_request_quota_fail_as_values() {
    let upstream = Upstream::start(Duration::ZERO).await;
    let config = aggregator_config(upstream.addr).replace(
        "[grants]",
        "[defaults.limits]\noutbound_calls = 3\n[grants]",
    );
    let host = HostProcess::start(&config).unwrap();
    let client = http1_client();
    // Twice: the quota is per request, not per tenant.
    for _ in 0..2 {
        let reply = get(&client, &host.url("/")).await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        let answer: serde_json::Value = serde_json::from_str(&reply.text()).unwrap();
        let parts = answer.as_array().unwrap();
        let served = parts.iter().filter(|p| p["status"] == 200).count();
        let refused: Vec<_> = parts.iter().filter_map(|p| p["error"].as_str()).collect();
        assert_eq!((served, refused.len()), (3, 2), "{answer}");
        assert!(
            refused
                .iter()
                .all(|e| e.contains("outbound-call quota exceeded")),
            "{refused:?}"
        );
    }
}
