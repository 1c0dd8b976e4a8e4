//! Redis through the host's pools: typed commands, the generic call, pipelines and
//! transactions, all namespaced per tenant; connections shared and leases always returned.

use hostel_tests::*;
use std::time::Duration;

/// A host with the `redis-counter` example at `/counter`, the Redis probe guest at `/probe`
/// and `hello` at `/hello`, on pool `cache` (granted) and pool `other` (not granted).
fn config(redis: &RedisServer, pool_settings: &str, extra: &str) -> String {
    format!(
        "[server]\ncode_cache = {cache}\n\
         [defaults.limits]\ntimeout = \"2s\"\n\
         [pools.cache]\nkind = \"redis\"\nurl = \"{url}\"\n{pool_settings}\n\
         [pools.other]\nkind = \"redis\"\nurl = \"{url}/1\"\n\
         [grants]\npools = [\"cache\"]\n\
         [apps.counter]\nroute = \"/counter\"\ncomponent = {counter}\n\
         [apps.probe]\nroute = \"/probe\"\ncomponent = {probe}\n\
         [apps.hello]\nroute = \"/hello\"\ncomponent = {hello}\n{extra}",
        cache = toml_path(&shared_code_cache()),
        url = redis.url(),
        counter = toml_path(&guest("redis-counter")),
        probe = toml_path(&guest("guest-redis-probe")),
        hello = toml_path(&guest("hello")),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn typed_commands_answer_as_redis_does_under_the_tenant_prefix() {
    let redis = RedisServer::start().unwrap();
    let host = HostProcess::start(&config(&redis, "", "")).unwrap();
    let client = http1_client();
    let text = ok_text(&client, &host.url("/probe/typed")).await;
    let expected = "get v1\nincr 5\nexists 2\nexpire true\nhset true false\nhget 2\n\
                    hgetall a=2,b=3\nhdel 1\nrpush 3\nlpush 4\nlrange z,a,b,c\n\
                    lpop z rpop c\nllen 2\nsadd 2\nsrem 1\nsmembers x\nsismember true false\n\
                    publish 0\ndel 1\nwrongtype true\n";
    assert_eq!(text, expected);
    // The host put every key under the tenant's prefix; the guest never saw it.
    let keys = redis.cli(&["KEYS", "*"]).unwrap();
    assert!(!keys.trim().is_empty());
    for key in keys.lines() {
        assert!(key.starts_with("tenant:default:"), "unprefixed key {key:?}");
    }
    assert_eq!(
        redis
            .cli(&["HGET", "tenant:default:h", "b"])
            .unwrap()
            .trim(),
        "3"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_generic_call_is_namespaced_and_refuses_what_it_cannot_namespace() {
    let redis = RedisServer::start().unwrap();
    let host = HostProcess::start(&config(&redis, "", "")).unwrap();
    let client = http1_client();
    let text = ok_text(&client, &host.url("/probe/execute")).await;
    assert_eq!(
        text,
        "zrange alice,10,bob,20\nBLPOP refused on the shared connection\nblpop queue,job\n\
         KEYS refused\nFLUSHDB refused\nSCAN refused\n\
         EVAL refused\nCONFIG refused\n"
    );
    assert_eq!(
        redis
            .cli(&["ZSCORE", "tenant:default:board", "bob"])
            .unwrap()
            .trim(),
        "20"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_answers_each_command_and_its_errors_are_values() {
    let redis = RedisServer::start().unwrap();
    let host = HostProcess::start(&config(&redis, "", "")).unwrap();
    let text = ok_text(&http1_client(), &host.url("/probe/pipeline")).await;
    assert_eq!(text, "1 server-error 11 11\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watched_key_changed_elsewhere_aborts_exec_and_an_unchanged_one_applies() {
    let redis = RedisServer::start().unwrap();
    let host = HostProcess::start(&config(&redis, "", "")).unwrap();
    let text = ok_text(&http1_client(), &host.url("/probe/watch")).await;
    assert_eq!(
        text,
        "conflict applied=false\nsecond applied=true read=changed elsewhere replies=2\n\
         w=from tx\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pools_are_granted_per_tenant() {
    let redis = RedisServer::start().unwrap();
    let host = HostProcess::start(&config(&redis, "", "")).unwrap();
    let client = http1_client();
    for (pool, expected) in [("other", "NotGranted"), ("nope", "NoSuchPool")] {
        let request = http::Request::get(host.url("/probe/typed"))
            .header("x-pool", pool)
            .body(Default::default())
            .unwrap();
        let reply = send(&client, request).await.unwrap();
        assert_eq!(reply.status, 500);
        assert!(
            reply.text().starts_with("open: Error::"),
            "{}",
            reply.text()
        );
        assert!(reply.text().contains(expected), "{}", reply.text());
    }
    assert!(host.wait_for_log("Redis pool \"other\" not granted to this tenant"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_requests_use_no_more_connections_than_the_pool_holds() {
    let redis = RedisServer::start().unwrap();
    let host = HostProcess::start(&config(&redis, "max_connections = 3", "")).unwrap();
    let client = http1_client();
    for _ in 0..10 {
        for reply in get_concurrently(&client, &host.url("/counter/hits"), 100).await {
            assert_eq!(reply.unwrap().status, 200);
        }
    }
    assert_eq!(
        ok_text(&client, &host.url("/counter/hits?peek")).await,
        "1000\n"
    );
    // Guests that wait on Redis are never taken for CPU-bound ones: the host never even
    // started the background threads for those.
    let threads = host.threads();
    assert!(
        threads.iter().all(|t| t.name != "hostel-cpubound"),
        "{threads:?}"
    );
    // Plain commands all went over the one shared connection (pool `other` is on db 1).
    let clients = redis.clients_of_db(0).unwrap();
    assert_eq!(clients.len(), 1, "{clients:#?}");

    // Transactions lease connections: never more than `max_connections` of them.
    for _ in 0..4 {
        for reply in get_concurrently(&client, &host.url("/probe/hold?n=1"), 50).await {
            assert_eq!(reply.unwrap().status, 200);
        }
    }
    let clients = redis.clients_of_db(0).unwrap();
    assert!(
        (2..=1 + 3).contains(&clients.len()),
        "shared + at most 3 leased: {clients:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn leases_come_back_after_a_trap_a_timeout_and_an_exhausted_pool() {
    let redis = RedisServer::start().unwrap();
    let host = HostProcess::start(&config(&redis, TWO_LEASES, "")).unwrap();
    leases_come_back(&redis, &host).await;
}

/// Pool settings for [`leases_come_back`]: two connections, a short wait for one.
pub const TWO_LEASES: &str = "max_connections = 2\nacquire_timeout = \"300ms\"";

/// With a probe at `/probe` whose `hold?n=N[&then=trap|block]` leases N connections of a
/// pool of [`TWO_LEASES`] (the WASI 0.2 and the WASI 0.3 probe alike): both leases come back
/// after a trap, a timeout (the connection blocked in BLPOP closed) and an exhausted pool.
pub async fn leases_come_back(redis: &RedisServer, host: &HostProcess) {
    let client = http1_client();
    let both = host.url("/probe/hold?n=2");
    assert_eq!(ok_text(&client, &both).await, "held 2\n");

    let trapped = get(&client, &host.url("/probe/hold?n=2&then=trap"))
        .await
        .unwrap();
    assert_eq!(trapped.status, 500, "{}", trapped.text());
    assert_eq!(
        ok_text(&client, &both).await,
        "held 2\n",
        "both back after the trap"
    );

    let timed_out = get(&client, &host.url("/probe/hold?n=1&then=block"))
        .await
        .unwrap();
    assert_eq!(timed_out.status, 504, "{}", timed_out.text());
    assert_eq!(
        ok_text(&client, &both).await,
        "held 2\n",
        "back after the timeout"
    );
    // The connection blocked in BLPOP was closed, not handed to the next request.
    assert!(
        redis.no_client_blocks().await,
        "a connection still blocks: {:#?}",
        redis.clients()
    );

    // Asking for more than the pool holds waits the acquire timeout, then is an error.
    let exhausted = get(&client, &host.url("/probe/hold?n=3")).await.unwrap();
    assert_eq!(exhausted.status, 503, "{}", exhausted.text());
    assert!(
        exhausted.text().contains("unavailable"),
        "{}",
        exhausted.text()
    );
    assert_eq!(
        ok_text(&client, &both).await,
        "held 2\n",
        "back after exhaustion"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pool_entries_with_equal_settings_share_one_pool() {
    let redis = RedisServer::start().unwrap();
    // `cache`, `twin` and the key-value store `kv` all name the same server and settings.
    let extra = format!(
        "[pools.twin]\nkind = \"redis\"\nurl = \"{url}\"\n\
         [stores.default]\nkind = \"redis\"\nurl = \"{url}\"\n\
         [tenants.t]\nhosts = [\"t.test\"]\ngrants = {{ pools = [\"twin\"], stores = [\"default\"] }}\n\
         apps.probe = {{ route = \"/probe\", component = {probe} }}\n\
         apps.kv = {{ route = \"/kv\", component = {kv} }}\n",
        url = redis.url(),
        probe = toml_path(&guest("guest-redis-probe")),
        kv = toml_path(&guest("counter")),
    );
    let host = HostProcess::start(&config(&redis, "", &extra)).unwrap();
    let client = http1_client();
    ok_text(&client, &host.url("/counter/x")).await;
    let at_t = |path: &str, pool: &str| {
        http::Request::get(host.url(path))
            .header("host", "t.test")
            .header("x-pool", pool)
            .body(Default::default())
            .unwrap()
    };
    assert_eq!(
        send(&client, at_t("/probe/pipeline", "twin"))
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(send(&client, at_t("/kv/y", "")).await.unwrap().status, 200);
    let clients = redis.clients_of_db(0).unwrap();
    assert_eq!(
        clients.len(),
        1,
        "one shared connection for all three: {clients:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_killed_mid_run_is_a_503_while_others_are_served_then_service_resumes() {
    let mut redis = RedisServer::start().unwrap();
    let admin = format!(
        "[admin]\noperator_token_sha256 = \"{}\"\n",
        token_sha256("operator")
    );
    let host = HostProcess::start(&config(&redis, "", &admin)).unwrap();
    let client = http1_client();
    assert_eq!(ok_text(&client, &host.url("/counter/k")).await, "1\n");
    // A leased connection, back in the pool when Redis goes.
    let leased = get(&client, &host.url("/probe/hold?n=1")).await.unwrap();
    assert_eq!(leased.status, 200, "{}", leased.text());

    redis.kill();
    let reply = get(&client, &host.url("/counter/k")).await.unwrap();
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(
        reply.text().contains("Redis unavailable"),
        "{}",
        reply.text()
    );
    assert!(reply.request_id().is_some());
    assert_eq!(get(&client, &host.url("/hello")).await.unwrap().status, 200);

    redis.resume().unwrap();
    let url = host.url("/counter/k");
    let reply = until_status(200, || get(&client, &url)).await;
    assert_eq!(
        reply.status, 200,
        "served again without restarting the host"
    );

    // The lease after it finds its connection broken and opens another: a reconnect.
    let hold = host.url("/probe/hold?n=1");
    let leased = until_status(200, || get(&client, &hold)).await;
    assert_eq!(leased.status, 200, "{}", leased.text());
    let metrics = scrape(&host, "operator").await;
    let value = |series: &str| value(&metrics, series);
    assert!(
        value("hostel_pool_reconnects_total{pool=\"cache\"}") >= 1.0,
        "{metrics}"
    );
    assert!(
        value("hostel_pool_errors_total{pool=\"cache\"}") >= 1.0,
        "{metrics}"
    );
    assert!(value("hostel_pool_acquire_wait_seconds_count{pool=\"cache\"}") >= 2.0);
    assert!(value("hostel_pool_connections_opened_total{pool=\"cache\"}") >= 3.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_down_at_startup_is_a_warning_naming_pool_and_address_unless_required() {
    let mut redis = RedisServer::start().unwrap();
    redis.kill();
    let host = HostProcess::start(&config(&redis, "", "")).unwrap();
    // Each pool warns from its own task: wait for this one's line.
    assert!(host.wait_for_log("retrying in the background pool=cache"));
    let line = host
        .log()
        .lines()
        .find(|l| l.contains("unreachable at startup") && l.contains("pool=cache"))
        .map(str::to_string);
    let line = line.unwrap_or_else(|| panic!("no warning for pool cache:\n{}", host.log()));
    assert!(
        line.contains(&redis.port.to_string()),
        "names the address: {line}"
    );
    let client = http1_client();
    assert_eq!(
        get(&client, &host.url("/counter/k")).await.unwrap().status,
        503
    );
    assert_eq!(get(&client, &host.url("/hello")).await.unwrap().status, 200);
    redis.resume().unwrap();
    let url = host.url("/counter/k");
    let reply = until_status(200, || get(&client, &url)).await;
    assert_eq!(reply.status, 200, "recovers once Redis is up");
    drop(host);

    // With `connect = "required"` the host refuses to start instead.
    redis.kill();
    let dir = tempfile::tempdir().unwrap();
    let required = config(&redis, "connect = \"required\"", "");
    std::fs::write(dir.path().join("hostel.toml"), required).unwrap();
    let (status, stderr) = run_hostel(
        &[
            "serve",
            "--config",
            "hostel.toml",
            "--listen",
            "127.0.0.1:0",
        ],
        dir.path(),
    )
    .unwrap();
    assert!(!status.success());
    assert!(stderr.contains("pool cache"), "{stderr}");
    assert!(stderr.contains("required"), "{stderr}");
    assert!(stderr.contains(&redis.port.to_string()), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn at_shutdown_pools_close_only_after_requests_in_flight_finish() {
    let redis = RedisServer::start().unwrap();
    let mut host = HostProcess::start(&config(&redis, "", "")).unwrap();
    let client = http1_client();
    // Busy on a leased connection for a second, then using the shared one.
    let in_flight = spawn_get(&client, host.url("/probe/hold?n=1&then=wait"));
    assert!(host.wait_for_log("app=probe"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    host.signal(libc::SIGTERM);
    assert!(host.wait_for_log("shutting down"));
    let reply = in_flight.await.unwrap().unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "waited, then counted 1\n");
    assert!(host.wait_exit(Duration::from_secs(20)).unwrap().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_leased_connections_are_closed_after_the_idle_timeout() {
    let redis = RedisServer::start().unwrap();
    let settings = "max_connections = 4\nidle_timeout = \"1s\"";
    let host = HostProcess::start(&config(&redis, settings, "")).unwrap();
    let client = http1_client();
    assert_eq!(
        ok_text(&client, &host.url("/probe/hold?n=3")).await,
        "held 3\n"
    );
    let with_leases = redis.clients_of_db(0).unwrap().len();
    assert_eq!(with_leases, 4, "the shared connection and 3 leased ones");
    let mut open = with_leases;
    for _ in 0..100 {
        open = redis.clients_of_db(0).unwrap().len();
        if open == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        open, 1,
        "only the shared connection is left once the leased ones idled"
    );
    // And the pool opens new ones when asked again.
    assert_eq!(
        ok_text(&client, &host.url("/probe/hold?n=2")).await,
        "held 2\n"
    );
}
