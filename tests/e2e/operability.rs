//! Operating the host: the health probes, the drain on SIGTERM, the JSON log and the access
//! log.

use crate::standard_config;
use hostel_tests::*;
use serde_json::Value;
use std::time::Duration;

const TOKEN: &str = "operability-operator-token";

fn admin_section() -> String {
    format!(
        "[admin]\noperator_token_sha256 = \"{}\"\n",
        token_sha256(TOKEN)
    )
}

/// `standard_config` with `extra` added to its `[server]` section, and an `[admin]` section.
fn standard_with(extra: &str) -> String {
    let config = standard_config().replacen("[server]\n", &format!("[server]\n{extra}\n"), 1);
    format!("{config}\n{}", admin_section())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_probes_need_no_token_and_the_admin_api_still_does() {
    let host = HostProcess::start(&standard_with("")).unwrap();
    let client = http1_client();
    for path in ["/healthz", "/readyz"] {
        let reply = get(&client, &host.admin_url(path)).await.unwrap();
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        // Nothing about the tenants or their apps.
        for tenant_or_app in ["main", "slow", "hello", "echo"] {
            assert!(!reply.text().contains(tenant_or_app), "{}", reply.text());
        }
    }
    let reply = get(&client, &host.admin_url("/v1/apps")).await.unwrap();
    assert_eq!(reply.status, 401, "{}", reply.text());
    // A probe path with another method is the API's, and wants the token.
    let reply = post(&client, &host.admin_url("/readyz"), "").await.unwrap();
    assert_eq!(reply.status, 401, "{}", reply.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_is_503_while_a_required_pool_is_down_and_200_once_it_is_back() {
    let mut redis = RedisServer::start().unwrap();
    let config = format!(
        "[server]\ncode_cache = {cache}\n\
         [pools.cache]\nkind = \"redis\"\nurl = \"{url}\"\nconnect = \"required\"\n\
         [grants]\npools = [\"cache\"]\n\
         [apps.hello]\nroute = \"/\"\ncomponent = {hello}\n{admin}",
        cache = toml_path(&shared_code_cache()),
        url = redis.url(),
        hello = toml_path(&guest("hello")),
        admin = admin_section(),
    );
    let host = HostProcess::start(&config).unwrap();
    let client = http1_client();
    let readyz = host.admin_url("/readyz");
    let reply = get(&client, &readyz).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());

    redis.kill();
    let reply = until_status(503, || get(&client, &readyz)).await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    let body: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["status"], "not ready");
    assert_eq!(body["reasons"][0], "1 of 1 required pools unreachable");
    // The unauthenticated answer names no pool and no address; the log does.
    for detail in ["cache", "127.0.0.1", &redis.port.to_string()] {
        assert!(!reply.text().contains(detail), "{}", reply.text());
    }
    assert!(host.wait_for_log("not ready: required pool unreachable"));
    // The apps that do not need the pool are served meanwhile.
    assert_eq!(get(&client, &host.url("/")).await.unwrap().status, 200);

    redis.resume().unwrap();
    let reply = until_status(200, || get(&client, &readyz)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(host.wait_for_log("required pool reachable again"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_flips_readiness_keeps_accepting_for_the_drain_delay_then_drains() {
    let config =
        standard_with("drain_delay = \"3s\"").replace("timeout = \"2s\"", "timeout = \"10s\"");
    let mut host = HostProcess::start(&config).unwrap();
    let admin = http1_client();
    let readyz = host.admin_url("/readyz");
    assert_eq!(get(&admin, &readyz).await.unwrap().status, 200);

    host.signal(libc::SIGTERM);
    let reply = until_status(503, || get(&admin, &readyz)).await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(reply.text().contains("draining"), "{}", reply.text());
    // Not ready, yet the app listener still takes new connections.
    let fresh = http1_client();
    let reply = get(&fresh, &host.url("/hello")).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    // A request that outlasts the delay, to keep the drain going.
    let slow = spawn_get(&http1_client(), host.url("/echo/slow?ms=6000"));
    assert!(host.wait_for_log("app=echo"));

    // Then the app listener closes...
    let mut refused = false;
    for _ in 0..400 {
        if std::net::TcpStream::connect(&host.addr).is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "the app listener still accepts:\n{}", host.log());
    // ...while the admin listener answers, not ready, until the drain is over.
    let reply = get(&admin, &readyz).await.unwrap();
    assert_eq!(reply.status, 503, "{}", reply.text());

    let reply = slow.await.unwrap().unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "slept 6000 ms\n");
    let status = host.wait_exit(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "exit status {status}\n{}", host.log());
    let log = host.log();
    for line in ["no new connections", "all requests finished"] {
        assert!(log.contains(line), "{line}: {log}");
    }
}

/// The stderr lines of `host` as JSON objects; panics, naming it, on a line that is not one.
fn json_lines(host: &HostProcess) -> Vec<Value> {
    host.log()
        .lines()
        .map(|line| match serde_json::from_str::<Value>(line) {
            Ok(value @ Value::Object(_)) => value,
            _ => panic!("not a JSON object: {line}"),
        })
        .collect()
}

fn line_of<'a>(lines: &'a [Value], target: &str, id: &str) -> &'a Value {
    let found: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == target && l["request_id"] == id)
        .collect();
    assert_eq!(found.len(), 1, "one {target} line for {id}: {found:#?}");
    found[0]
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_are_one_object_per_line_with_the_request_fields_and_no_secret() {
    let redis = RedisServer::start_with_password("pool-s3cret-pw").unwrap();
    assert!(redis.url().contains("pool-s3cret-pw"));
    let config = format!(
        "[server]\ncode_cache = {cache}\naccess_log = true\n\
         [pools.cache]\nkind = \"redis\"\nurl = \"{url}\"\n\
         [grants]\npools = [\"cache\"]\n\
         [apps.hello]\nroute = \"/hello\"\ncomponent = {hello}\n\
         [apps.probe]\nroute = \"/probe\"\ncomponent = {probe}\n\
         [apps.counter]\nroute = \"/counter\"\ncomponent = {counter}\n",
        cache = toml_path(&shared_code_cache()),
        url = redis.url(),
        hello = toml_path(&guest("hello")),
        probe = toml_path(&guest("guest-probe")),
        counter = toml_path(&guest("redis-counter")),
    );
    let dir = tempfile::tempdir().unwrap();
    let host = HostProcess::start_with_env(dir, &config, &[("HOSTEL_LOG_FORMAT", "json")]).unwrap();
    let client = http1_client();
    let id = |reply: &Reply| reply.request_id().unwrap().to_string();

    let hello = get(&client, &host.url("/hello")).await.unwrap();
    assert_eq!(hello.status, 200);
    let missing = get(&client, &host.url("/nope")).await.unwrap();
    assert_eq!(missing.status, 404);
    let logged = get(&client, &host.url("/probe/log")).await.unwrap();
    assert_eq!(logged.text(), "logged");
    assert_eq!(ok_text(&client, &host.url("/counter/hits")).await, "1\n");
    // A password in a request's path reaches the log only redacted.
    let url_in_path = get(
        &client,
        &host.url("/hello/redis://:path-s3cret@example.com/x"),
    )
    .await
    .unwrap();
    assert_eq!(url_in_path.status, 200);
    assert!(host.wait_for_log(&id(&url_in_path)));
    // Each access line is written once its response is done, which can be after the client
    // has it: wait (bounded) until all three are in.
    let ids = [id(&hello), id(&missing), id(&url_in_path)];
    for _ in 0..200 {
        let lines = json_lines(&host);
        let access = |id: &str| {
            (lines.iter()).any(|l| l["target"] == "hostel::access" && l["request_id"] == id)
        };
        if ids.iter().all(|id| access(id)) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let lines = json_lines(&host);
    for line in &lines {
        for key in ["time", "level", "target", "message"] {
            assert!(line.get(key).is_some(), "no {key}: {line}");
        }
        let time = line["time"].as_str().unwrap();
        assert!(
            time.ends_with('Z') && time.get(10..11) == Some("T"),
            "{time}"
        );
    }
    let served = line_of(&lines, "hostel::access", &id(&hello));
    assert_eq!(served["level"], "INFO");
    assert_eq!(served["tenant"], "default");
    assert_eq!(served["app"], "hello");
    assert_eq!(served["method"], "GET");
    assert_eq!(served["path"], "/hello");
    assert_eq!(served["status"], 200);
    assert!(served["duration_ms"].is_number(), "{served}");

    let not_found = line_of(&lines, "hostel::access", &id(&missing));
    assert_eq!(not_found["status"], 404);
    assert!(not_found.get("app").is_none(), "{not_found}");
    assert!(not_found["bytes"].as_u64().unwrap() > 0, "{not_found}");

    // The guest's own lines, stdout and stderr, carry the request's fields too.
    let guest_lines: Vec<&Value> = (lines.iter())
        .filter(|l| l["target"] == "guest" && l["request_id"] == id(&logged).as_str())
        .collect();
    assert_eq!(guest_lines.len(), 2, "{guest_lines:#?}");
    for (line, stream) in guest_lines.iter().zip(["stdout", "stderr"]) {
        assert_eq!(line["stream"], stream);
        assert_eq!(line["message"], format!("probe says hello on {stream}"));
        assert_eq!(line["app"], "probe");
        assert_eq!(line["tenant"], "default");
    }

    let redacted = line_of(&lines, "hostel::access", &id(&url_in_path));
    assert_eq!(redacted["path"], "/hello/redis://:REDACTED@example.com/x");
    let log = host.log();
    assert!(!log.contains("s3cret"), "{log}");
}

/// Sends a 200, a 404 and a 500, then a 404 whose line, once in, follows all of theirs;
/// returns the first three request ids.
async fn three_requests_and_a_marker(host: &HostProcess) -> Vec<String> {
    let client = http1_client();
    let mut ids = Vec::new();
    for (path, status) in [
        ("/hello", 200),
        ("/nope", 404),
        ("/panic", 500),
        ("/nope", 404),
    ] {
        let reply = get(&client, &host.url(path)).await.unwrap();
        assert_eq!(reply.status, status, "{path}");
        ids.push(reply.request_id().unwrap().to_string());
    }
    let marker = ids.pop().unwrap();
    assert!(host.wait_for_log(&format!("request_id={marker}")));
    ids
}

fn lines_with<'a>(log: &'a str, needles: &[&str]) -> Vec<&'a str> {
    log.lines()
        .filter(|line| needles.iter().all(|n| line.contains(n)))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_access_log_has_one_line_per_request_when_on_and_none_when_off() {
    let on = HostProcess::start(&standard_with("access_log = true")).unwrap();
    let ids = three_requests_and_a_marker(&on).await;
    let log = on.log();
    for id in &ids {
        let field = format!("request_id={id}");
        let access = lines_with(&log, &["hostel::access", &field]);
        assert_eq!(access.len(), 1, "{id}: {log}");
        assert!(access[0].contains(" INFO "), "{}", access[0]);
        // The access line is the request's one line: not logged again as a failure.
        assert!(
            lines_with(&log, &["request failed", &field]).is_empty(),
            "{log}"
        );
    }
    let failed = lines_with(&log, &["hostel::access", &format!("request_id={}", ids[2])]);
    assert!(failed[0].contains("status=500") && failed[0].contains("app=panic"));
    // The guests' CPU time: the hello's and the panicking one's; a 404 ran no guest.
    let hello = lines_with(&log, &["hostel::access", &format!("request_id={}", ids[0])]);
    for line in [hello[0], failed[0]] {
        let cpu: u64 = line
            .split("guest_cpu_us=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no guest_cpu_us in {line}"))
            .parse()
            .unwrap();
        assert!(cpu > 0, "{line}");
    }
    let not_found = lines_with(&log, &["hostel::access", &format!("request_id={}", ids[1])]);
    assert!(!not_found[0].contains("guest_cpu_us"), "{}", not_found[0]);

    let off = HostProcess::start(&standard_with("")).unwrap();
    let ids = three_requests_and_a_marker(&off).await;
    let log = off.log();
    assert!(lines_with(&log, &["hostel::access"]).is_empty(), "{log}");
    // Without it a failure is still a warning, once.
    let field = format!("request_id={}", ids[2]);
    let failed = lines_with(&log, &["request failed", &field]);
    assert_eq!(failed.len(), 1, "{log}");
    assert!(failed[0].contains(" WARN "), "{}", failed[0]);
}
