//! Per-tenant usage: what each tenant's apps used, by hour, from the admin API and `hostel
//! usage`; who may see whose; kept across a restart and a `kill -9` (which loses at most what
//! was counted since the last flush).

use hostel_tests::*;
use serde_json::Value;

const OPERATOR: &str = "operator-token-for-usage";
const ACME: &str = "acme-token-for-usage";
const GLOBEX: &str = "globex-token-for-usage";

fn config(redis: &RedisServer) -> String {
    format!(
        "[server]\ncode_cache = {cache}\n\
         [admin]\noperator_token_sha256 = \"{operator}\"\n\
         [pools.cache]\nkind = \"redis\"\nurl = \"{url}\"\n\
         [tenants.acme]\nhosts = [\"acme.test\"]\nadmin_token_sha256 = \"{acme}\"\n\
         grants = {{ pools = [\"cache\"] }}\n\
         [tenants.acme.apps.echo]\nroute = \"/echo\"\ncomponent = {echo}\n\
         [tenants.acme.apps.counter]\nroute = \"/counter\"\ncomponent = {counter}\n\
         [tenants.globex]\nhosts = [\"globex.test\"]\nadmin_token_sha256 = \"{globex}\"\n\
         [tenants.globex.apps.hello]\nroute = \"/\"\ncomponent = {hello}\n",
        cache = toml_path(&shared_code_cache()),
        operator = token_sha256(OPERATOR),
        acme = token_sha256(ACME),
        globex = token_sha256(GLOBEX),
        url = redis.url(),
        echo = toml_path(&guest("guest-echo")),
        counter = toml_path(&guest("redis-counter")),
        hello = toml_path(&guest("hello")),
    )
}

async fn call(host: &HostProcess, name: &str, method: &str, path: &str, body: &[u8]) -> Reply {
    let request = http::Request::builder()
        .method(method)
        .uri(host.url(path))
        .header("host", name)
        .body(bytes::Bytes::copy_from_slice(body).into())
        .unwrap();
    send(&http1_client(), request).await.unwrap()
}

async fn usage(host: &HostProcess, token: &str, query: &str) -> (u16, Value) {
    let request = http::Request::get(host.admin_url(&format!("/v1/usage{query}")))
        .header("authorization", format!("Bearer {token}"))
        .body(Default::default())
        .unwrap();
    let reply = send(&http1_client(), request).await.unwrap();
    let json = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    (reply.status, json)
}

/// The usage rows of `tenant`'s `app`, added up over the hours.
fn total(report: &Value, tenant: &str, app: &str, field: &str) -> f64 {
    report["usage"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["tenant"] == tenant && row["app"] == app)
        .map(|row| row[field].as_f64().unwrap())
        .sum()
}

async fn globex_hellos(host: &HostProcess, n: usize) {
    for _ in 0..n {
        assert_eq!(call(host, "globex.test", "GET", "/", b"").await.status, 200);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_tenant_is_billed_for_what_its_apps_used_and_sees_only_its_own() {
    let redis = RedisServer::start().unwrap();
    let host = HostProcess::start(&config(&redis)).unwrap();
    for _ in 0..3 {
        let echoed = call(&host, "acme.test", "POST", "/echo", &[b'x'; 1000]).await;
        assert_eq!(echoed.status, 200);
    }
    for _ in 0..2 {
        let counted = call(&host, "acme.test", "GET", "/counter", b"").await;
        assert_eq!(counted.status, 200, "{}", counted.text());
    }
    globex_hellos(&host, 4).await;

    let (status, all) = usage(&host, OPERATOR, "").await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(total(&all, "acme", "echo", "requests"), 3.0, "{all}");
    assert_eq!(total(&all, "acme", "echo", "bytes_in"), 3000.0, "{all}");
    assert!(total(&all, "acme", "echo", "bytes_out") >= 3000.0, "{all}");
    assert_eq!(total(&all, "acme", "counter", "requests"), 2.0, "{all}");
    assert!(
        total(&all, "acme", "counter", "pool_seconds") > 0.0,
        "{all}"
    );
    assert_eq!(total(&all, "acme", "echo", "pool_seconds"), 0.0, "{all}");
    assert_eq!(total(&all, "globex", "hello", "requests"), 4.0, "{all}");
    assert!(
        total(&all, "globex", "hello", "guest_cpu_seconds") > 0.0,
        "{all}"
    );
    assert!(
        total(&all, "globex", "hello", "memory_mib_seconds") > 0.0,
        "{all}"
    );
    for row in all["usage"].as_array().unwrap() {
        assert!(row["hour"].as_str().unwrap().ends_with(":00:00Z"), "{row}");
    }

    // The pool the counter used: its shared connection, opened once.
    let request = http::Request::get(host.admin_url("/metrics"))
        .header("authorization", format!("Bearer {OPERATOR}"))
        .body(Default::default())
        .unwrap();
    let metrics = send(&http1_client(), request).await.unwrap().text();
    for line in [
        "hostel_pool_connections_opened_total{pool=\"cache\"} 1",
        "hostel_pool_connections_in_use{pool=\"cache\"} 1",
        "hostel_pool_connections_opening{pool=\"cache\"} 0",
        "hostel_pool_errors_total{pool=\"cache\"} 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in\n{metrics}"
        );
    }

    // A tenant's token sees its own tenant only.
    let (_, own) = usage(&host, ACME, "").await;
    let tenants: Vec<&str> = (own["usage"].as_array().unwrap().iter())
        .map(|row| row["tenant"].as_str().unwrap())
        .collect();
    assert!(
        !tenants.is_empty() && tenants.iter().all(|t| *t == "acme"),
        "{own}"
    );
    let (_, own) = usage(&host, GLOBEX, "").await;
    assert_eq!(total(&own, "acme", "echo", "requests"), 0.0, "{own}");
    assert_eq!(total(&own, "globex", "hello", "requests"), 4.0, "{own}");

    // Time ranges: the future holds nothing; a malformed time is a 400 that says why.
    let (status, later) = usage(
        &host,
        OPERATOR,
        "?from=2999-01-01T00:00:00Z&to=2999-01-02T00:00:00Z",
    )
    .await;
    assert_eq!(status, 200);
    assert!(later["usage"].as_array().unwrap().is_empty(), "{later}");
    let (status, refused) = usage(&host, OPERATOR, "?from=yesterday").await;
    assert_eq!(status, 400);
    assert!(refused.to_string().contains("RFC 3339"), "{refused}");
    // Times no calendar can write, and a range backwards, are refused the same way (they
    // once panicked the admin handler).
    for query in [
        "?to=18446744073709551615",
        "?from=99999999999999&to=1",
        "?from=10000-01-01T00:00:00Z",
        "?from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z",
    ] {
        let (status, refused) = usage(&host, OPERATOR, query).await;
        assert_eq!(status, 400, "{query}: {refused}");
    }
    let (status, _) = usage(&host, OPERATOR, "?to=9999-12-31T23:59:59Z").await;
    assert_eq!(status, 200);
    let request = http::Request::get(host.admin_url("/v1/usage"))
        .body(Default::default())
        .unwrap();
    assert_eq!(send(&http1_client(), request).await.unwrap().status, 401);

    // The command line shows the same.
    let admin = format!("http://{}", host.admin_addr.clone().unwrap());
    let (status, out, err) = hostel_output(
        &["usage", "--admin", &admin, "--token", GLOBEX],
        host.dir.path(),
    )
    .unwrap();
    assert!(status.success(), "{err}");
    let line = out
        .lines()
        .find(|l| l.contains("globex"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.split_whitespace().any(|w| w == "4"), "{out}");
    assert!(!out.contains("acme"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_survives_a_restart_whole_and_a_kill_9_up_to_the_last_flush() {
    let redis = RedisServer::start().unwrap();
    let host = HostProcess::start(&config(&redis)).unwrap();
    globex_hellos(&host, 5).await;
    // A clean stop writes everything counted.
    let host = host.restart(false).unwrap();
    let (_, report) = usage(&host, OPERATOR, "").await;
    assert_eq!(
        total(&report, "globex", "hello", "requests"),
        5.0,
        "{report}"
    );

    globex_hellos(&host, 2).await;
    // A query writes what was counted before it answers…
    let (_, report) = usage(&host, OPERATOR, "").await;
    assert_eq!(
        total(&report, "globex", "hello", "requests"),
        7.0,
        "{report}"
    );
    // … and a crash loses at most what was counted since the last write.
    globex_hellos(&host, 3).await;
    let host = host.restart(true).unwrap();
    let (_, report) = usage(&host, OPERATOR, "").await;
    let kept = total(&report, "globex", "hello", "requests");
    assert!((7.0..=10.0).contains(&kept), "{report}");

    // Without a query, the ledger is written every flush interval (10 s): once it has been,
    // a crash loses nothing.
    globex_hellos(&host, 4).await;
    let ledger = host.dir.path().join("state").join("usage.redb");
    let written = || std::fs::metadata(&ledger).unwrap().modified().unwrap();
    // Every request is counted before its response is sent: a write after this has them all.
    let answered = std::time::SystemTime::now();
    let mut flushed = false;
    for _ in 0..300 {
        if written() >= answered {
            flushed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(flushed, "the ledger was not written within 30 s");
    let host = host.restart(true).unwrap();
    let (_, report) = usage(&host, OPERATOR, "").await;
    assert_eq!(
        total(&report, "globex", "hello", "requests"),
        kept + 4.0,
        "{report}"
    );
}
