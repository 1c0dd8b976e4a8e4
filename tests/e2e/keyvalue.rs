//! Key-value: the embedded store behind `wasi:keyvalue`, persistent, atomic, per tenant.

use hostel_tests::*;

fn counter_config(extra: &str) -> String {
    format!(
        "[server]\ncode_cache = {cache}\n\
         [stores.default]\nkind = \"embedded\"\npath = \"data/kv.redb\"\n\
         {extra}",
        cache = toml_path(&shared_code_cache()),
    )
}

fn one_tenant() -> String {
    counter_config(&format!(
        "[grants]\nstores = [\"default\"]\n[apps.counter]\nroute = \"/\"\ncomponent = {}\n",
        toml_path(&guest("counter"))
    ))
}

async fn count(client: &HttpClient, url: &str) -> u64 {
    let reply = get(client, url).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text().trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn counts_persist_across_requests_and_restarts() {
    let host = HostProcess::start(&one_tenant()).unwrap();
    let client = http1_client();
    for expected in 1..=20 {
        assert_eq!(count(&client, &host.url("/a")).await, expected);
    }
    assert_eq!(
        count(&client, &host.url("/b")).await,
        1,
        "keys are separate"
    );
    let host = host.restart(false).unwrap();
    assert_eq!(count(&client, &host.url("/a?peek")).await, 20);
    assert_eq!(count(&client, &host.url("/a")).await, 21);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_increments_are_atomic() {
    let host = HostProcess::start(&one_tenant()).unwrap();
    let client = http1_client();
    let mut seen: Vec<u64> = get_concurrently(&client, &host.url("/c"), 100)
        .await
        .into_iter()
        .map(|r| r.unwrap().text().trim().parse().unwrap())
        .collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=100).collect::<Vec<_>>(),
        "no lost or doubled increment"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_writes_survive_kill_9() {
    let host = HostProcess::start(&one_tenant()).unwrap();
    let client = http1_client();
    let mut last = 0;
    for _ in 0..30 {
        last = count(&client, &host.url("/d")).await;
    }
    let host = host.restart(true).unwrap();
    assert_eq!(count(&client, &host.url("/d?peek")).await, last);
}

#[tokio::test(flavor = "multi_thread")]
async fn stores_are_granted_per_tenant_and_keys_kept_apart() {
    let counter = toml_path(&guest("counter"));
    let config = counter_config(&format!(
        "[tenants.a]\nhosts = [\"a.test\"]\ngrants = {{ stores = [\"default\"] }}\n\
         apps.counter = {{ route = \"/\", component = {counter} }}\n\
         [tenants.b]\nhosts = [\"b.test\"]\ngrants = {{ stores = [\"default\"] }}\n\
         apps.counter = {{ route = \"/\", component = {counter} }}\n\
         [tenants.nogrant]\nhosts = [\"c.test\"]\n\
         apps.counter = {{ route = \"/\", component = {counter} }}\n"
    ));
    let host = HostProcess::start(&config).unwrap();
    let client = http1_client();
    let at = |tenant: &'static str| {
        http::Request::get(host.url("/same-key"))
            .header("host", tenant)
            .body(Default::default())
            .unwrap()
    };
    for _ in 0..3 {
        send(&client, at("a.test")).await.unwrap();
    }
    let b = send(&client, at("b.test")).await.unwrap();
    assert_eq!(b.text(), "1\n", "tenant b does not see tenant a's counter");
    let denied = send(&client, at("c.test")).await.unwrap();
    assert_eq!(denied.status, 500);
    assert!(denied.text().contains("AccessDenied"), "{}", denied.text());
}
