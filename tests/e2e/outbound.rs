//! Outbound HTTP goes through one pooled keep-alive client per tenant.

use hostel_tests::*;
use std::sync::atomic::Ordering;

#[tokio::test(flavor = "multi_thread")]
async fn outbound_calls_reuse_pooled_connections_per_tenant() {
    let (server, accepted) = counting_server().await;
    let probe = toml_path(&guest("guest-probe"));
    let config = format!(
        "[server]\ncode_cache = {cache}\n\
         [tenants.a]\nhosts = [\"a.test\"]\ngrants = {{ outbound = [\"http://{server}\"] }}\n\
         apps.probe = {{ route = \"/\", component = {probe} }}\n\
         [tenants.b]\nhosts = [\"b.test\"]\ngrants = {{ outbound = [\"http://{server}\"] }}\n\
         apps.probe = {{ route = \"/\", component = {probe} }}\n",
        cache = toml_path(&shared_code_cache()),
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
        accepted.load(Ordering::SeqCst),
        1,
        "100 sequential outbound calls, each from a fresh sandbox, share one pooled connection"
    );
    for _ in 0..20 {
        assert_eq!(call("b.test").await.unwrap().text(), "status: 200");
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "tenant b has its own pool: one more connection, never tenant a's"
    );
}
