//! `GET /metrics`: a real Prometheus server scrapes the host and is asked for the per-tenant
//! series; `promtool check metrics` passes on the exposition; the token rule; what the host
//! counts when it answers for a guest that failed.

use crate::standard_config;
use hostel_tests::*;

const OPERATOR: &str = "operator-token-for-metrics";
const ACME: &str = "acme-token-for-metrics";

/// Two tenants on their own host names, a metrics listener of its own that needs the
/// operator's token.
fn two_tenants() -> String {
    format!(
        "[server]\ncode_cache = {cache}\n\
         [admin]\noperator_token_sha256 = \"{operator}\"\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n\
         [tenants.acme]\nhosts = [\"acme.test\"]\nadmin_token_sha256 = \"{acme}\"\n\
         [tenants.acme.apps.hello]\nroute = \"/\"\ncomponent = {hello}\n\
         [tenants.globex]\nhosts = [\"globex.test\"]\n\
         [tenants.globex.apps.hello]\nroute = \"/\"\ncomponent = {hello}\n",
        cache = toml_path(&shared_code_cache()),
        operator = token_sha256(OPERATOR),
        acme = token_sha256(ACME),
        hello = toml_path(&guest("hello")),
    )
}

async fn get_as(url: &str, host: Option<&str>, token: Option<&str>) -> Reply {
    let mut request = http::Request::get(url);
    if let Some(host) = host {
        request = request.header("host", host);
    }
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    send(&http1_client(), request.body(Default::default()).unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_scrapes_each_tenants_requests_from_the_host() {
    let host = HostProcess::start(&two_tenants()).unwrap();
    let target = host.metrics_addr.clone().expect("a metrics listener");
    let prometheus = PrometheusServer::start(&target, Some(OPERATOR)).unwrap();
    for _ in 0..5 {
        assert_eq!(
            get_as(&host.url("/"), Some("acme.test"), None).await.status,
            200
        );
    }
    for _ in 0..3 {
        assert_eq!(
            get_as(&host.url("/"), Some("globex.test"), None)
                .await
                .status,
            200
        );
    }
    for _ in 0..2 {
        assert_eq!(
            get_as(&host.url("/"), Some("nobody.test"), None)
                .await
                .status,
            404
        );
    }

    let by_tenant = |result: &[(serde_json::Value, f64)], tenant: &str| {
        result
            .iter()
            .find(|(labels, _)| labels["tenant"] == tenant)
            .map(|(_, value)| *value)
    };
    let requests = prometheus
        .until("hostel_requests_total{class=\"2xx\"}", |result| {
            by_tenant(result, "acme") == Some(5.0) && by_tenant(result, "globex") == Some(3.0)
        })
        .await
        .unwrap();
    for (labels, _) in &requests {
        assert_eq!(labels["app"], "hello", "{labels}");
        assert_eq!(labels["job"], "hostel", "{labels}");
    }
    let cpu = prometheus
        .until("hostel_guest_cpu_seconds_count", |result| {
            by_tenant(result, "acme") == Some(5.0) && by_tenant(result, "globex") == Some(3.0)
        })
        .await
        .unwrap();
    assert_eq!(
        cpu.len(),
        2,
        "no sandbox series for requests no app took: {cpu:?}"
    );
    prometheus
        .until(
            "hostel_host_answers_total{answer=\"not_found\"}",
            |result| result.len() == 1 && result[0].1 == 2.0,
        )
        .await
        .unwrap();
    prometheus
        .until("hostel_requests_in_flight", |result| {
            result.len() == 3 && result.iter().all(|(_, value)| *value == 0.0)
        })
        .await
        .unwrap();

    // What Prometheus read, promtool accepts.
    let scraped = get_as(&format!("http://{target}/metrics"), None, Some(OPERATOR)).await;
    assert_eq!(scraped.status, 200);
    let (valid, said) = promtool_check(&scraped.text()).unwrap();
    assert!(valid, "promtool check metrics: {said}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scrape_needs_the_operators_token_unless_metrics_are_open() {
    let host = HostProcess::start(&two_tenants()).unwrap();
    let admin = host.admin_url("/metrics");
    let own = format!("http://{}/metrics", host.metrics_addr.clone().unwrap());
    for url in [&admin, &own] {
        assert_eq!(get_as(url, None, None).await.status, 401, "{url}");
        // A tenant's token manages its own apps; the metrics name every tenant.
        assert_eq!(get_as(url, None, Some(ACME)).await.status, 401, "{url}");
        let reply = get_as(url, None, Some(OPERATOR)).await;
        assert_eq!(reply.status, 200, "{url}");
        assert_eq!(
            reply.headers["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        assert!(
            reply.text().contains("hostel_build_info{version="),
            "{}",
            reply.text()
        );
    }
    // The rest of the admin API still needs a token; the metrics listener serves nothing else.
    assert_eq!(
        get_as(&host.admin_url("/v1/apps"), None, None).await.status,
        401
    );
    let other = own.replace("/metrics", "/v1/apps");
    assert_eq!(get_as(&other, None, Some(OPERATOR)).await.status, 404);

    // Open to anyone, and with requests not counted.
    let open = HostProcess::start(&format!(
        "[server]\ncode_cache = {cache}\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\nopen = true\nenabled = false\n\
         [apps.hello]\nroute = \"/\"\ncomponent = {hello}\n",
        cache = toml_path(&shared_code_cache()),
        hello = toml_path(&guest("hello")),
    ))
    .unwrap();
    let url = format!("http://{}/metrics", open.metrics_addr.clone().unwrap());
    assert_eq!(get_as(&open.url("/"), None, None).await.status, 200);
    let exposition = get_as(&url, None, None).await;
    assert_eq!(exposition.status, 200);
    let text = exposition.text();
    assert!(text.contains("hostel_code_cache_total{outcome="), "{text}");
    assert!(!text.contains("hostel_requests_total{"), "{text}");

    // A listener whose scrapes would need a token no one can have is a config error.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hostel.toml"),
        "[metrics]\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let (status, output) = run_hostel(&["check", "--config", "hostel.toml"], dir.path()).unwrap();
    assert!(!status.success());
    assert!(output.contains("metrics.listen"), "{output}");
    assert!(output.contains("metrics.open"), "{output}");
}

#[tokio::test(flavor = "multi_thread")]
async fn what_the_host_answers_for_a_failing_guest_is_counted_by_kind() {
    let config = format!(
        "{}\n[admin]\noperator_token_sha256 = \"{}\"\n",
        standard_config(),
        token_sha256(OPERATOR)
    );
    let host = HostProcess::start(&config).unwrap();
    let client = http1_client();
    assert_eq!(get(&client, &host.url("/panic")).await.unwrap().status, 500);
    assert_eq!(get(&client, &host.url("/bomb")).await.unwrap().status, 500);
    assert_eq!(get(&client, &host.url("/spin")).await.unwrap().status, 504);
    let big = vec![b'x'; (1 << 20) + 1];
    // Refused before the body is read; the client may see the connection close first.
    if let Ok(refused) = post(&http1_client(), &host.url("/echo"), big).await {
        assert_eq!(refused.status, 413);
    }
    let echoed = post(&client, &host.url("/echo"), vec![b'y'; 1000])
        .await
        .unwrap();
    assert_eq!(echoed.status, 200);

    let exposition = get_as(&host.admin_url("/metrics"), None, Some(OPERATOR))
        .await
        .text();
    let answer = |app: &str, answer: &str| {
        sample(
            &exposition,
            &format!(
                "hostel_host_answers_total{{tenant=\"main\",app=\"{app}\",answer=\"{answer}\"}}"
            ),
        )
    };
    assert_eq!(answer("panic", "trap"), Some(1.0), "{exposition}");
    assert_eq!(answer("bomb", "memory_limit"), Some(1.0), "{exposition}");
    assert_eq!(answer("spin", "timeout"), Some(1.0), "{exposition}");
    assert_eq!(answer("echo", "too_large"), Some(1.0), "{exposition}");
    let series = |name: &str, app: &str| {
        sample(
            &exposition,
            &format!("{name}{{tenant=\"main\",app=\"{app}\"}}"),
        )
    };
    // What the host sent: the echo, and its own 413 (a few lines of text).
    let sent = series("hostel_response_body_bytes_total", "echo").unwrap();
    assert!((1100.0..1500.0).contains(&sent), "{sent}");
    // The 413's body was refused before the guest ran: only what the guest read counts.
    assert_eq!(
        series("hostel_request_body_bytes_total", "echo"),
        Some(1000.0)
    );
    // The bomb's memory grew to its 32 MiB limit.
    let peak_sum = series("hostel_guest_memory_peak_bytes_sum", "bomb").unwrap();
    assert!(peak_sum >= (16 << 20) as f64, "{peak_sum}");
    assert_eq!(
        series("hostel_instantiation_seconds_count", "spin"),
        Some(1.0)
    );
    // The spinner turned out CPU-bound: it moved to the background threads and queued for
    // its tenant's CPU slots; the panic before it ran as an ordinary request.
    assert_eq!(series("hostel_fair_share_moved_total", "spin"), Some(1.0));
    assert!(series("hostel_fair_share_slot_waits_total", "spin").unwrap() >= 1.0);
    assert_eq!(series("hostel_fair_share_moved_total", "panic"), None);
    let (valid, said) = promtool_check(&exposition).unwrap();
    assert!(valid, "promtool check metrics: {said}");
}
