//! Key-value on NATS (`kind = "nats"`): a JetStream bucket behind `wasi:keyvalue`, with the
//! embedded store's semantics — persistent, atomic across hosts, namespaced per tenant — and
//! NATS going away as an error guests see at once, not a hang.

use crate::keyvalue::{
    concurrent_increments_lose_none, concurrent_swaps_lose_no_update, count, counter_tenant,
};
use hostel_tests::*;
use std::time::Duration;

const TOKEN: &str = "operator";

/// `[stores.default]` on `url`, with `extra` settings.
fn nats_store(url: &str, extra: &str) -> String {
    format!("[stores.default]\nkind = \"nats\"\nurl = \"{url}\"\n{extra}")
}

fn admin_section() -> String {
    format!(
        "[admin]\noperator_token_sha256 = \"{}\"\n",
        token_sha256(TOKEN)
    )
}

/// GETs `url` until it answers 200 (bounded), for a server that is coming back: the body.
async fn when_back(client: &HttpClient, url: &str) -> String {
    let reply = until_status(200, || get(client, url)).await;
    assert_eq!(reply.status, 200, "not served again: {}", reply.text());
    reply.text()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_counter_on_nats_persists_across_host_and_nats_restarts() {
    let mut nats = NatsServer::start().unwrap();
    let host = HostProcess::start(&counter_tenant(&nats_store(&nats.url(), ""))).unwrap();
    let client = http1_client();
    for expected in 1..=5 {
        assert_eq!(count(&client, &host.url("/a")).await, expected);
    }
    assert_eq!(
        count(&client, &host.url("/b")).await,
        1,
        "keys are separate"
    );
    assert_eq!(nats.streams(), ["KV_hostel-kv"], "the default bucket");

    let host = host.restart(false).unwrap();
    assert_eq!(count(&client, &host.url("/a?peek")).await, 5);

    // JetStream keeps the bucket on disk: the count outlives the server too.
    nats.restart().unwrap();
    assert_eq!(when_back(&client, &host.url("/a")).await, "6\n");
    let deleted = http::Request::delete(host.url("/a"))
        .body(Default::default())
        .unwrap();
    assert_eq!(send(&client, deleted).await.unwrap().status, 200);
    assert_eq!(count(&client, &host.url("/a?peek")).await, 0);
    assert_eq!(
        count(&client, &host.url("/a")).await,
        1,
        "counts again from 0"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_increments_on_nats_are_atomic() {
    let nats = NatsServer::start().unwrap();
    concurrent_increments_lose_none(&nats_store(&nats.url(), "")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn increments_from_two_hosts_on_one_bucket_are_atomic() {
    let nats = NatsServer::start().unwrap();
    let config = counter_tenant(&nats_store(&nats.url(), "bucket = \"shared\"\n"));
    let hosts = [
        HostProcess::start(&config).unwrap(),
        HostProcess::start(&config).unwrap(),
    ];
    let client = http1_client();
    let tasks: Vec<_> = (0..80)
        .map(|i| spawn_get(&client, hosts[i % 2].url("/hits")))
        .collect();
    let mut seen = Vec::new();
    for task in tasks {
        let reply = task.await.unwrap().unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        seen.push(reply.text().trim().parse::<u64>().unwrap());
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=80).collect::<Vec<_>>(),
        "no lost or doubled increment"
    );
    assert_eq!(nats.streams(), ["KV_shared"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn compare_and_swap_loses_no_update_on_nats() {
    let nats = NatsServer::start().unwrap();
    concurrent_swaps_lose_no_update(&nats_store(&nats.url(), "")).await;
}

/// Keys that are no NATS keys as they are, and their hex form as the guest lists them.
fn odd_keys() -> Vec<String> {
    let mut keys: Vec<String> = [
        "a.b",
        "*",
        ">",
        "",
        " spaced out ",
        "ünï.cödé ✓",
        "a.*.>",
        ".",
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    keys.push("k".repeat(1000));
    keys
}

fn hex(key: &str) -> String {
    key.bytes().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_share_the_bucket_but_not_their_keys_and_any_key_round_trips() {
    let nats = NatsServer::start().unwrap();
    let kv = toml_path(&guest("guest-kv-cas"));
    let config = format!(
        "[server]\ncode_cache = {cache}\n{store}\
         [tenants.a]\nhosts = [\"a.test\"]\ngrants = {{ stores = [\"default\"] }}\n\
         apps.kv = {{ route = \"/\", component = {kv} }}\n\
         [tenants.b]\nhosts = [\"b.test\"]\ngrants = {{ stores = [\"default\"] }}\n\
         apps.kv = {{ route = \"/\", component = {kv} }}\n",
        cache = toml_path(&shared_code_cache()),
        store = nats_store(&nats.url(), ""),
    );
    let host = HostProcess::start(&config).unwrap();
    let client = http1_client();
    let call = |tenant: &'static str, method: &str, path: &str, key: &str| {
        let request = http::Request::builder()
            .method(method)
            .uri(host.url(path))
            .header("host", tenant)
            .body(key.to_string().into())
            .unwrap();
        let client = client.clone();
        async move { send(&client, request).await.unwrap() }
    };
    let listed = |tenant: &'static str| {
        let call = &call;
        async move {
            let reply = call(tenant, "GET", "/keys", "").await;
            assert_eq!(reply.status, 200, "{}", reply.text());
            let mut keys: Vec<String> = reply.text().lines().map(str::to_string).collect();
            keys.sort();
            keys
        }
    };

    let keys = odd_keys();
    for key in &keys {
        let reply = call("a.test", "POST", "/set", key).await;
        assert_eq!(reply.status, 200, "{key:?}: {}", reply.text());
    }
    for key in &keys {
        let reply = call("a.test", "POST", "/get", key).await;
        assert_eq!(reply.status, 200, "{key:?}: {}", reply.text());
        assert_eq!(reply.text(), *key, "the value stored under {key:?}");
    }
    let mut expected: Vec<String> = keys.iter().map(|k| hex(k)).collect();
    expected.sort();
    assert_eq!(listed("a.test").await, expected, "every key, as written");

    // Tenant b sees none of them, by name or by listing, and writing its own changes none.
    assert!(listed("b.test").await.is_empty());
    for key in &keys {
        let reply = call("b.test", "POST", "/get", key).await;
        assert_eq!(reply.status, 404, "{key:?}: {}", reply.text());
    }
    assert_eq!(call("b.test", "POST", "/set", "a.b").await.status, 200);
    assert_eq!(call("b.test", "POST", "/delete", "*").await.status, 200);
    assert_eq!(listed("b.test").await, [hex("a.b")]);
    assert_eq!(listed("a.test").await, expected);

    // Deleted keys are gone from the listing (their purge markers are skipped).
    for key in ["*", ""] {
        assert_eq!(call("a.test", "POST", "/delete", key).await.status, 200);
        assert_eq!(call("a.test", "POST", "/get", key).await.status, 404);
    }
    expected.retain(|k| *k != hex("*") && *k != hex(""));
    assert_eq!(listed("a.test").await, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn nats_going_away_is_an_error_at_once_and_service_resumes_when_it_is_back() {
    let mut nats = NatsServer::start().unwrap();
    let config = format!(
        "[server]\ncode_cache = {cache}\n{store}\
         [grants]\nstores = [\"default\"]\n\
         [apps.counter]\nroute = \"/counter\"\ncomponent = {counter}\n\
         [apps.hello]\nroute = \"/hello\"\ncomponent = {hello}\n{admin}",
        cache = toml_path(&shared_code_cache()),
        store = nats_store(&nats.url(), ""),
        counter = toml_path(&guest("counter")),
        hello = toml_path(&guest("hello")),
        admin = admin_section(),
    );
    let host = HostProcess::start(&config).unwrap();
    let client = http1_client();
    assert_eq!(count(&client, &host.url("/counter")).await, 1);

    nats.kill();
    // The first call waits (up to 3 s) for the client to reach another node — there is none;
    // from then on every call fails at once, well before any NATS timeout.
    let first = get(&client, &host.url("/counter")).await.unwrap();
    assert_eq!(first.status, 500, "{}", first.text());
    for _ in 0..3 {
        let reply = get(&client, &host.url("/counter")).await.unwrap();
        assert_eq!(reply.status, 500, "{}", reply.text());
        // Refused for the disconnection, not after a timeout of its own.
        assert!(
            reply.text().contains("unavailable:") && reply.text().contains("not connected"),
            "{}",
            reply.text()
        );
    }
    // Other apps are served meanwhile.
    assert_eq!(get(&client, &host.url("/hello")).await.unwrap().status, 200);
    let metrics = scrape(&host, TOKEN).await;
    assert!(
        value(&metrics, "hostel_keyvalue_errors_total{store=\"default\"}") >= 3.0,
        "{metrics}"
    );

    // Back, with its data: served again without restarting the host.
    nats.restart().unwrap();
    assert_eq!(when_back(&client, &host.url("/counter")).await, "2\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bucket_is_made_at_startup_when_required_and_on_first_use_when_lazy() {
    let nats = NatsServer::start().unwrap();
    let lazy = nats_store(&nats.url(), "connect = \"lazy\"\nbucket = \"lazy-kv\"\n");
    let host = HostProcess::start(&counter_tenant(&lazy)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(nats.streams().is_empty(), "no bucket before its first use");
    let client = http1_client();
    assert_eq!(
        count(&client, &host.url("/")).await,
        1,
        "the first call connects"
    );
    assert_eq!(nats.streams(), ["KV_lazy-kv"]);
    drop(host);

    let required = nats_store(
        &nats.url(),
        "connect = \"required\"\nbucket = \"required-kv\"\n",
    );
    let _host = HostProcess::start(&counter_tenant(&required)).unwrap();
    let mut streams = nats.streams();
    streams.sort();
    assert_eq!(
        streams,
        ["KV_lazy-kv", "KV_required-kv"],
        "made before serving"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_required_nats_store_that_is_down_stops_startup_and_readiness_follows_it() {
    let mut nats = NatsServer::start().unwrap();
    let port = nats.port();
    nats.kill();
    let required = nats_store(&nats.url(), "connect = \"required\"\n");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hostel.toml"), counter_tenant(&required)).unwrap();
    let (status, stderr) = run_hostel(&["serve", "--config", "hostel.toml"], dir.path()).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("pool default"), "names the store: {stderr}");
    assert!(
        stderr.contains(&port.to_string()),
        "names the address: {stderr}"
    );

    nats.restart().unwrap();
    let config = format!("{}{}", counter_tenant(&required), admin_section());
    let host = HostProcess::start(&config).unwrap();
    let client = http1_client();
    let readyz = host.admin_url("/readyz");
    assert_eq!(get(&client, &readyz).await.unwrap().status, 200);
    nats.kill();
    let reply = until_status(503, || get(&client, &readyz)).await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    nats.restart().unwrap();
    let reply = until_status(200, || get(&client, &readyz)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(count(&client, &host.url("/")).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_on_nats_over_tls_with_a_password_works_and_an_unknown_ca_is_refused() {
    let ca = TestCa::new("nats").unwrap();
    let nats = NatsServer::start_tls(&ca, Some(("hostel", "s3cret-pass"))).unwrap();
    let url = format!("tls://hostel:s3cret-pass@127.0.0.1:{}", nats.port());
    let ca_file = toml_path(&ca.cert_file());
    let store = nats_store(
        &url,
        &format!("ca_file = {ca_file}\nconnect = \"required\"\n"),
    );
    let host = HostProcess::start(&counter_tenant(&store)).unwrap();
    let client = http1_client();
    assert_eq!(count(&client, &host.url("/tls")).await, 1);
    assert_eq!(count(&client, &host.url("/tls")).await, 2);
    assert!(
        !host.log().contains("s3cret-pass"),
        "the password stays out of the log"
    );
    drop(host);

    // A CA the server's certificate does not chain to: no connection, and a required store
    // stops the host at startup, naming the store's server.
    let stranger = TestCa::new("stranger").unwrap();
    let store = nats_store(
        &url,
        &format!(
            "ca_file = {}\nconnect = \"required\"\n",
            toml_path(&stranger.cert_file())
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hostel.toml"), counter_tenant(&store)).unwrap();
    let (status, _, stderr) = hostel_output(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            "hostel.toml",
        ],
        dir.path(),
    )
    .unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("unreachable") && stderr.contains(&nats.port().to_string()),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret-pass"), "{stderr}");
}
