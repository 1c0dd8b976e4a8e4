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
