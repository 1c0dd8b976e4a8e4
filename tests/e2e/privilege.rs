//! Least privilege: guests reach nothing outside their sandbox unless the config grants it;
//! their stdout/stderr land in the host log with the request id.

use crate::standard_config;
use hostel_tests::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn by_default_guests_see_no_env_files_or_outbound() {
    let host = HostProcess::start(&standard_config()).unwrap();
    let client = http1_client();
    let env = get(&client, &host.url("/probe/env")).await.unwrap();
    assert_eq!(env.status, 200);
    assert_eq!(env.text(), "", "no environment variables leak in");
    let files = get(&client, &host.url("/probe/files")).await.unwrap();
    assert_eq!(files.status, 403, "{}", files.text());
    let config = get(&client, &host.url("/probe/config")).await.unwrap();
    assert_eq!(config.text(), "\nnot-given: Ok(None)", "no config values");

    // Outbound to a real, listening server: still denied, quickly, with a clear error.
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = server.local_addr().unwrap().to_string();
    let reply = get(&client, &host.url(&format!("/probe/outbound?{target}")))
        .await
        .unwrap();
    assert_eq!(reply.text(), "error: ErrorCode::HttpRequestDenied");
    assert!(host.wait_for_log("outbound request denied"));
}

#[tokio::test(flavor = "multi_thread")]
async fn each_tenant_reads_its_own_variables_and_secrets() {
    // A secret names a host environment variable; HOME is set wherever the tests run.
    let home = std::env::var("HOME").unwrap();
    let config = format!(
        "[server]\ncode_cache = {cache}\n\
         [tenants.a]\nhosts = [\"a.test\"]\n\
         grants = {{ variables = {{ greeting = \"hi from a\" }}, secrets = {{ token = \"HOME\" }} }}\n\
         apps.probe = {{ route = \"/\", component = {probe} }}\n\
         [tenants.b]\nhosts = [\"b.test\"]\n\
         grants = {{ variables = {{ greeting = \"hi from b\" }} }}\n\
         apps.probe = {{ route = \"/\", component = {probe} }}\n",
        cache = toml_path(&shared_code_cache()),
        probe = toml_path(&guest("guest-probe")),
    );
    let host = HostProcess::start(&config).unwrap();
    let client = http1_client();
    let read = |tenant: &str| {
        http::Request::get(host.url("/config"))
            .header("host", format!("{tenant}.test"))
            .body(Default::default())
            .unwrap()
    };
    let a = send(&client, read("a")).await.unwrap().text();
    assert_eq!(
        a,
        format!("greeting=hi from a\ntoken={home}\nnot-given: Ok(None)")
    );
    let b = send(&client, read("b")).await.unwrap().text();
    assert_eq!(b, "greeting=hi from b\nnot-given: Ok(None)");
    assert!(
        !host.log().contains(&format!("token={home}")),
        "secrets are not logged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn grants_open_exactly_what_they_name() {
    let granted_addr = Upstream::start(Duration::ZERO).await.addr;
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("a.txt"), "a").unwrap();
    let config = format!(
        "[server]\ncode_cache = {cache}\n\
         [grants]\noutbound = [\"http://{granted_addr}\"]\nenv = {{ GREETING = \"hi\" }}\n\
         files = {{ \"/\" = {files} }}\n\
         [apps.probe]\nroute = \"/\"\ncomponent = {probe}\n",
        cache = toml_path(&shared_code_cache()),
        files = toml_path(files.path()),
        probe = toml_path(&guest("guest-probe")),
    );
    let host = HostProcess::start(&config).unwrap();
    let client = http1_client();
    assert_eq!(
        get(&client, &host.url("/env")).await.unwrap().text(),
        "GREETING=hi"
    );
    assert_eq!(
        get(&client, &host.url("/files")).await.unwrap().text(),
        "1 entries"
    );
    let reply = get(&client, &host.url(&format!("/outbound?{granted_addr}")))
        .await
        .unwrap();
    assert_eq!(reply.text(), "status: 200");
    let other = other.local_addr().unwrap();
    let reply = get(&client, &host.url(&format!("/outbound?{other}")))
        .await
        .unwrap();
    assert_eq!(
        reply.text(),
        "error: ErrorCode::HttpRequestDenied",
        "only the granted port"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn guest_output_goes_to_the_host_log_with_the_request_id() {
    let host = HostProcess::start(&standard_config()).unwrap();
    let reply = get(&http1_client(), &host.url("/probe/log")).await.unwrap();
    assert_eq!(reply.status, 200);
    let id = reply.request_id().unwrap().to_string();
    assert!(host.wait_for_log("probe says hello on stderr"));
    assert!(host.wait_for_log("probe says hello on stdout"));
    for stream in ["stdout", "stderr"] {
        let line = host
            .log()
            .lines()
            .find(|l| l.contains(&format!("probe says hello on {stream}")))
            .unwrap()
            .to_string();
        assert!(line.contains(&id), "{line}");
        assert!(line.contains("app=probe"), "{line}");
    }
}
