//! PostgreSQL: the `todo` component and the `pg-probe` guest on a real server, through the
//! real host — typed values, leases that come back after traps and timeouts, errors as values,
//! and a pool that rides out the server going away.

use hostel_tests::*;
use serde_json::Value as Json;
use std::time::Duration;

/// Connections the host's pool may open.
const MAX_CONNECTIONS: u64 = 4;

/// Host connections, as the server sees them (the pool names itself `hostel`).
const HOST_SESSIONS: &str =
    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'hostel'";

fn config(pg: &PostgresServer) -> String {
    config_waiting(pg, "1500ms")
}

/// [`config`] with `acquire_timeout` for the pools: short where a test exhausts the pool, long
/// where a CPU-heavy guest (Python), moved to the low-priority threads on a busy machine, may
/// take a while to open its connection.
fn config_waiting(pg: &PostgresServer, acquire_timeout: &str) -> String {
    format!(
        r#"
[server]
code_cache = {cache}

[defaults.limits]
timeout = "2s"

[pools.db]
kind = "postgres"
url = "{url}"
max_connections = {MAX_CONNECTIONS}
acquire_timeout = "{acquire_timeout}"

# Configured, never granted. Same settings, so the host shares one pool between the two
# names and the server sees only that pool's sessions.
[pools.secret]
kind = "postgres"
url = "{url}"
max_connections = {MAX_CONNECTIONS}
acquire_timeout = "{acquire_timeout}"

[grants]
pools = ["db"]

[apps.todo]
route = "/todo"
component = {todo}

[apps.probe]
route = "/probe"
component = {probe}

[apps.hello]
route = "/hello"
component = {hello}

[apps.python-probe]
route = "/python-probe"
component = {python_probe}

[apps.c-probe]
route = "/c-probe"
component = {c_probe}

[apps.python-p3-probe]
route = "/python-p3-probe"
component = {python_p3_probe}
"#,
        cache = toml_path(&shared_code_cache()),
        url = pg.url(),
        todo = toml_path(&guest("todo")),
        probe = toml_path(&guest("pg-probe")),
        hello = toml_path(&guest("hello")),
        python_probe = toml_path(&example("python", "pg-probe")),
        python_p3_probe = toml_path(&example("python-p3", "pg-probe")),
        c_probe = toml_path(&example("c", "pg-probe")),
    )
}

/// A fresh server with the probe's table, and a host serving the apps on it.
fn start() -> (PostgresServer, HostProcess) {
    let pg = PostgresServer::start().unwrap();
    pg.psql("CREATE TABLE probe_rows (tag text)").unwrap();
    let host = HostProcess::start(&config(&pg)).unwrap();
    (pg, host)
}

fn json(reply: &Reply) -> Json {
    serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}), status {}: {}", reply.status, reply.text()))
}

async fn request(client: &HttpClient, method: &str, url: &str, body: &str) -> Reply {
    let request = http::Request::builder()
        .method(method)
        .uri(url)
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .unwrap();
    send(client, request).await.unwrap()
}

/// What a probe endpoint answered: `{"ok": ...}` or `{"error": {"kind", "code", "message"}}`.
async fn probe(client: &HttpClient, host: &HostProcess, path: &str) -> Json {
    let reply = get(client, &host.url(&format!("/probe/{path}")))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    json(&reply)
}

/// Waits (bounded) until `sql` counts `expected`; the last count either way.
fn wait_for_count(pg: &PostgresServer, sql: &str, expected: u64) -> u64 {
    let mut count = pg.count(sql).unwrap();
    for _ in 0..100 {
        if count == expected {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        count = pg.count(sql).unwrap();
    }
    count
}

/// `max_connections` transactions at once, each holding its connection a moment, all served:
/// every lease of the pool is back.
async fn pool_serves_max_connections_transactions(client: &HttpClient, host: &HostProcess) {
    let replies = get_concurrently(client, &host.url("/probe/tx"), MAX_CONNECTIONS as usize).await;
    for reply in replies {
        let reply = reply.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(json(&reply)["ok"]["one"], 1, "{}", reply.text());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn todo_crud_answers_with_status_codes_and_json_and_persists() {
    let (pg, host) = start();
    let client = http1_client();
    let todo = host.url("/todo");

    let listed = get(&client, &todo).await.unwrap();
    assert_eq!(listed.status, 200, "{}", listed.text());
    assert_eq!(
        json(&listed),
        serde_json::json!([]),
        "the table is created on first use"
    );

    let created = post(&client, &todo, r#"{"title": "buy milk"}"#)
        .await
        .unwrap();
    assert_eq!(created.status, 201, "{}", created.text());
    let item = json(&created);
    assert_eq!(item["title"], "buy milk");
    assert_eq!(item["done"], false);
    let id = item["id"].as_i64().expect("a numeric id");
    let created_at = item["created_at"].as_str().unwrap();
    assert!(
        created_at.len() >= 20 && created_at.as_bytes()[10] == b'T' && created_at.ends_with('Z'),
        "RFC 3339 in UTC: {created_at}"
    );
    post(&client, &todo, r#"{"title": "walk the dog"}"#)
        .await
        .unwrap();

    // Every request is a new sandbox: what persists is in PostgreSQL.
    let list = json(&get(&client, &todo).await.unwrap());
    let titles: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["buy milk", "walk the dog"]);
    assert_eq!(
        pg.psql("SELECT title FROM todos ORDER BY id").unwrap(),
        "buy milk\nwalk the dog"
    );

    let one = get(&client, &format!("{todo}/{id}")).await.unwrap();
    assert_eq!(one.status, 200, "{}", one.text());
    assert_eq!(json(&one), item);

    let patched = request(
        &client,
        "PATCH",
        &format!("{todo}/{id}"),
        r#"{"done": true}"#,
    )
    .await;
    assert_eq!(patched.status, 200, "{}", patched.text());
    assert_eq!(json(&patched)["done"], true);
    assert_eq!(json(&patched)["title"], "buy milk");

    let deleted = request(&client, "DELETE", &format!("{todo}/{id}"), "").await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    let gone = get(&client, &format!("{todo}/{id}")).await.unwrap();
    assert_eq!(gone.status, 404);
    assert!(json(&gone)["error"].is_string());
    assert_eq!(
        request(&client, "DELETE", &format!("{todo}/{id}"), "")
            .await
            .status,
        404
    );
    assert_eq!(
        request(
            &client,
            "PATCH",
            &format!("{todo}/999"),
            r#"{"done": true}"#
        )
        .await
        .status,
        404
    );

    for bad in [
        "not json",
        r#"{"name": "no title"}"#,
        r#"{"title": 5}"#,
        r#"{"title": " "}"#,
    ] {
        let reply = post(&client, &todo, bad).await.unwrap();
        assert_eq!(reply.status, 400, "{bad}: {}", reply.text());
        assert!(json(&reply)["error"].is_string(), "{}", reply.text());
    }
    assert_eq!(
        json(&get(&client, &todo).await.unwrap())
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_value_type_round_trips_and_bad_conversions_are_errors() {
    let (_pg, host) = start();
    let client = http1_client();
    let reply = probe(&client, &host, "roundtrip").await;
    let ok = &reply["ok"];
    for result in ok["results"].as_array().expect("results") {
        assert_eq!(result["matched"], true, "{result}");
    }
    assert_eq!(ok["all_match"], true);
    let types: Vec<&str> = ok["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["column_type"].as_str().unwrap())
        .collect();
    for ty in [
        "bool",
        "int2",
        "int4",
        "int8",
        "float4",
        "float8",
        "text",
        "varchar",
        "bpchar",
        "name",
        "bytea",
        "json",
        "jsonb",
        "timestamp",
        "timestamptz",
        "uuid",
    ] {
        assert!(types.contains(&ty), "{ty} was tried: {types:?}");
    }
    let getters = &ok["getters"];
    assert_eq!(getters["n_as_i64"], 42);
    assert_eq!(getters["s"], "x");
    assert_eq!(getters["missing"], Json::Null);
    assert_eq!(getters["u"], "01234567-89ab-cdef-fedc-ba9876543210");
    assert!(
        getters["missing_as_i64"]
            .as_str()
            .unwrap()
            .contains("Option"),
        "{getters}"
    );
    assert!(
        getters["no_column"].as_str().unwrap().contains("nope"),
        "{getters}"
    );

    let refused = &probe(&client, &host, "conversions").await["ok"];
    for case in [
        "int4_overflow",
        "text_into_int",
        "numeric_param",
        "numeric_column",
        "param_count",
    ] {
        assert_eq!(refused[case]["kind"], "conversion", "{case}: {refused}");
    }
    let message = |case: &str| refused[case]["message"].as_str().unwrap().to_string();
    assert!(
        message("int4_overflow").contains("$1")
            && message("int4_overflow").contains("does not fit"),
        "{refused}"
    );
    assert!(
        message("numeric_param").contains("::text::numeric"),
        "says how to cast: {refused}"
    );
    assert!(
        message("numeric_column").contains("price::text"),
        "says how to cast: {refused}"
    );
    assert_eq!(
        refused["after"], 1,
        "the connection still works after refusals"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_requests_never_open_more_than_max_connections() {
    let (pg, host) = start();
    let pg = std::sync::Arc::new(pg);
    let client = http1_client();
    let created = post(&client, &host.url("/todo"), r#"{"title": "load"}"#)
        .await
        .unwrap();
    assert_eq!(created.status, 201, "{}", created.text());

    // Sample the server's view of the host's sessions while the load runs.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (stop, pg) = (stop.clone(), pg.clone());
        std::thread::spawn(move || {
            let mut most = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                most = most.max(pg.count(HOST_SESSIONS).unwrap());
                std::thread::sleep(Duration::from_millis(20));
            }
            most
        })
    };
    let mut served = 0;
    for _ in 0..20 {
        for reply in get_concurrently(&client, &host.url("/todo"), 50).await {
            let reply = reply.unwrap();
            assert_eq!(reply.status, 200, "{}", reply.text());
            assert_eq!(json(&reply)[0]["title"], "load");
            served += 1;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let most_during = sampler.join().unwrap();
    assert_eq!(served, 1000);
    assert!(most_during >= 1, "the sampler saw the host's sessions");
    assert!(
        most_during <= MAX_CONNECTIONS,
        "{most_during} sessions at once during the load"
    );
    let after = pg.count(HOST_SESSIONS).unwrap();
    assert!(
        (1..=MAX_CONNECTIONS).contains(&after),
        "{after} sessions after the load"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_trapping_mid_transaction_is_rolled_back_and_its_lease_returned() {
    let (pg, host) = start();
    let client = http1_client();
    // More traps than the pool has connections: a lease that did not come back would starve it.
    for _ in 0..MAX_CONNECTIONS + 2 {
        let reply = get(&client, &host.url("/probe/trap?trapped"))
            .await
            .unwrap();
        assert_eq!(reply.status, 500, "{}", reply.text());
    }
    assert!(host.wait_for_log("trapped"), "the trap is in the host log");
    let idle_in_tx = format!("{HOST_SESSIONS} AND state = 'idle in transaction'");
    assert_eq!(
        wait_for_count(&pg, &idle_in_tx, 0),
        0,
        "no session left inside a transaction"
    );
    assert_eq!(
        pg.count("SELECT count(*) FROM probe_rows WHERE tag = 'trapped'")
            .unwrap(),
        0,
        "the insert was rolled back"
    );
    pool_serves_max_connections_transactions(&client, &host).await;
    // Had a connection gone back still inside the trapped transaction, these COMMITs would
    // have committed its insert.
    assert_eq!(
        pg.count("SELECT count(*) FROM probe_rows").unwrap(),
        0,
        "no later commit carried the trapped insert"
    );
    assert!(
        host.wait_for_log("rolled back a transaction left open"),
        "the host rolled back the open transaction: {}",
        host.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_timing_out_inside_a_transaction_frees_its_connection() {
    let (pg, host) = start();
    let client = http1_client();
    // Cut off mid-statement (waiting on the server) and mid-guest-code (spinning), as many
    // at once as the pool has connections.
    let held = host.url("/probe/hold?held");
    for reply in get_concurrently(&client, &held, MAX_CONNECTIONS as usize).await {
        assert_eq!(reply.unwrap().status, 504);
    }
    for _ in 0..2 {
        let spun = get(&client, &host.url("/probe/spin?spun")).await.unwrap();
        assert_eq!(spun.status, 504, "{}", spun.text());
    }
    let busy = format!(
        "{HOST_SESSIONS} AND (state = 'idle in transaction' OR query LIKE '%pg_sleep(30)%')"
    );
    assert_eq!(
        wait_for_count(&pg, &busy, 0),
        0,
        "cut-off statements were cancelled, open transactions ended"
    );
    assert!(
        host.wait_for_log("statement cut off"),
        "the statement in flight at the deadline was cancelled"
    );
    assert_eq!(
        pg.count("SELECT count(*) FROM probe_rows").unwrap(),
        0,
        "nothing they inserted was committed"
    );
    assert!(wait_for_count(&pg, HOST_SESSIONS, MAX_CONNECTIONS) <= MAX_CONNECTIONS);
    pool_serves_max_connections_transactions(&client, &host).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_sql_is_a_typed_error_with_its_sqlstate_and_the_host_keeps_serving() {
    let (_pg, host) = start();
    let client = http1_client();
    let syntax = probe(&client, &host, "bad-sql").await;
    assert_eq!(syntax["error"]["kind"], "db", "{syntax}");
    assert_eq!(syntax["error"]["code"], "42601", "{syntax}");
    let missing = probe(&client, &host, "missing-table").await;
    assert_eq!(missing["error"]["code"], "42P01", "{missing}");
    assert!(
        missing["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no_such_table"),
        "{missing}"
    );
    assert!(host.wait_for_log("42P01"), "logged with its code");

    pool_serves_max_connections_transactions(&client, &host).await;
    assert_eq!(get(&client, &host.url("/hello")).await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn pools_not_granted_unknown_or_finished_transactions_are_errors() {
    let (_pg, host) = start();
    let client = http1_client();
    let secret = probe(&client, &host, "open?secret").await;
    assert_eq!(secret["error"]["kind"], "not-granted", "{secret}");
    let unknown = probe(&client, &host, "open?nope").await;
    assert_eq!(unknown["error"]["kind"], "no-such-pool", "{unknown}");
    assert_eq!(probe(&client, &host, "open?db").await["ok"], "opened");
    let finished = probe(&client, &host, "finished").await;
    assert_eq!(finished["error"]["kind"], "finished", "{finished}");
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_stopping_makes_todo_unavailable_and_it_recovers_without_a_host_restart() {
    let (mut pg, host) = start();
    let client = http1_client();
    let todo = host.url("/todo");
    assert_eq!(
        post(&client, &todo, r#"{"title": "survives"}"#)
            .await
            .unwrap()
            .status,
        201
    );

    pg.stop();
    for _ in 0..3 {
        let reply = get(&client, &todo).await.unwrap();
        assert_eq!(reply.status, 503, "{}", reply.text());
        let message = json(&reply)["error"].as_str().unwrap().to_string();
        assert!(
            message.contains("\"db\"") && message.contains(&pg.port.to_string()),
            "names the pool and address: {message}"
        );
    }
    let unavailable = probe(&client, &host, "tx").await;
    assert_eq!(unavailable["error"]["kind"], "unavailable", "{unavailable}");
    assert_eq!(
        get(&client, &host.url("/hello")).await.unwrap().status,
        200,
        "other apps keep answering"
    );

    pg.resume().unwrap();
    let reply = until_status(200, || get(&client, &todo)).await;
    assert_eq!(
        reply.status, 200,
        "todo answers again after the server is back"
    );
    let list = json(&reply);
    assert_eq!(list[0]["title"], "survives");
    assert_eq!(
        post(&client, &todo, r#"{"title": "after"}"#)
            .await
            .unwrap()
            .status,
        201
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_down_at_startup_is_a_warning_and_the_pool_connects_when_it_starts() {
    let mut pg = PostgresServer::start().unwrap();
    pg.stop();
    let host = HostProcess::start(&config(&pg)).unwrap();
    assert!(
        host.wait_for_log("unreachable at startup"),
        "{}",
        host.log()
    );
    let log = host.log();
    let line = log
        .lines()
        .find(|l| l.contains("unreachable at startup"))
        .unwrap();
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("db"), "names the pool: {line}");
    assert!(
        line.contains(&format!("127.0.0.1:{}", pg.port)),
        "names the address: {line}"
    );

    let client = http1_client();
    assert_eq!(get(&client, &host.url("/todo")).await.unwrap().status, 503);
    assert_eq!(get(&client, &host.url("/hello")).await.unwrap().status, 200);

    pg.resume().unwrap();
    let url = host.url("/todo");
    let reply = until_status(201, || post(&client, &url, r#"{"title": "late"}"#)).await;
    assert_eq!(reply.status, 201, "served once the server is up");
}

#[tokio::test(flavor = "multi_thread")]
async fn python_and_c_guests_reach_postgres_with_the_same_types_and_transactions() {
    let pg = PostgresServer::start().unwrap();
    let host = HostProcess::start(&config_waiting(&pg, "10s")).unwrap();
    // The WASI 0.3 Python probe makes the same checks, and one of two statements awaited
    // together.
    for (language, checks) in [("python", 11), ("c", 11), ("python-p3", 12)] {
        let reply = get(&http1_client(), &host.url(&format!("/{language}-probe")))
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{language}: {}", reply.text());
        assert_eq!(
            reply.text(),
            format!("all {checks} checks passed\n"),
            "{language}"
        );
    }
}
