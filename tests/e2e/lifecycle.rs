//! Process lifecycle: the compiled-code cache across restarts, graceful shutdown.

use crate::standard_config;
use hostel_tests::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn restart_loads_compiled_code_from_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let config = format!(
        "[server]\ncode_cache = {}\n[apps.hello]\nroute = \"/\"\ncomponent = {}\n",
        toml_path(cache.path()),
        toml_path(&guest("hello"))
    );
    let first = HostProcess::start(&config).unwrap();
    assert!(first.log().contains("code cache miss"), "{}", first.log());
    assert!(!first.log().contains("code cache hit"));
    drop(first);

    let second = HostProcess::start(&config).unwrap();
    assert!(second.log().contains("code cache hit"), "{}", second.log());
    assert!(!second.log().contains("code cache miss"));
    let reply = get(&http1_client(), &second.url("/")).await.unwrap();
    assert_eq!(reply.status, 200);

    // A damaged entry is recompiled, not trusted.
    drop(second);
    for entry in std::fs::read_dir(cache.path()).unwrap() {
        std::fs::write(entry.unwrap().path(), b"not compiled code").unwrap();
    }
    let third = HostProcess::start(&config).unwrap();
    assert!(
        third.log().contains("unusable, recompiling"),
        "{}",
        third.log()
    );
    assert_eq!(
        get(&http1_client(), &third.url("/")).await.unwrap().status,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_requests_in_flight_then_exits_zero() {
    let mut host = HostProcess::start(&standard_config()).unwrap();
    let client = http1_client();
    let in_flight: Vec<_> = (0..3)
        .map(|_| spawn_get(&client, host.url("/echo/slow?ms=1500")))
        .collect();
    assert!(host.wait_for_log("app=echo"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    host.signal(libc::SIGTERM);
    assert!(host.wait_for_log("shutting down"));
    // New connections are refused once the listener is closed.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(std::net::TcpStream::connect(&host.addr).is_err());
    for request in in_flight {
        let reply = request.await.unwrap().unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), "slept 1500 ms\n");
    }
    let status = host.wait_exit(Duration::from_secs(20)).unwrap();
    assert!(status.success(), "exit status {status}");
}

#[test]
fn measure_reports_the_sandbox_cost_of_an_app() {
    let dir = folder_serving_hello();
    let (status, stdout, stderr) = hostel_output(
        &["measure", "--config", "hostel.toml", "--requests", "50"],
        dir.path(),
    )
    .unwrap();
    assert!(status.success(), "{stderr}");
    assert!(
        stdout.contains("sandbox per request over 50 requests"),
        "{stdout}"
    );
}
