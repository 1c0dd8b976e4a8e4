//! Egress reaches only what the grant names, checked on the address connected to: a granted
//! name that resolves to loopback is refused unless the grant names the address or its range;
//! another notation of a granted address is that address; IPv6 literals parse.

use hostel_tests::*;
use std::time::Duration;

/// A tenant `t` whose probe may call out as `grants` says.
fn config(grants: &str) -> String {
    format!(
        "[server]\ncode_cache = {cache}\n\
         [tenants.t]\ngrants = {{ {grants} }}\n\
         apps.probe = {{ route = \"/probe\", component = {probe} }}\n",
        cache = toml_path(&shared_code_cache()),
        probe = toml_path(&guest("guest-probe")),
    )
}

/// What the probe got calling `http://{authority}/`.
async fn call(host: &HostProcess, authority: &str) -> String {
    let reply = get(
        &http1_client(),
        &host.url(&format!("/probe/outbound?{authority}")),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_granted_name_that_resolves_to_loopback_is_refused_unless_the_grant_names_the_range() {
    let upstream = Upstream::start(Duration::ZERO).await;
    let port = upstream.addr.port();
    let localhost = format!("localhost:{port}");

    // The name is granted; the address it resolves to is not public.
    let host =
        HostProcess::start(&config(&format!("outbound = [\"http://{localhost}\"]"))).unwrap();
    let refused = call(&host, &localhost).await;
    assert!(refused.contains("HttpRequestDenied"), "{refused}");
    assert!(
        host.wait_for_log("outbound_networks"),
        "the log says which grant would allow it: {}",
        host.log()
    );
    assert_eq!(upstream.accepted(), 0, "no connection was made");
    // Other notations of a loopback address are no way around it, granted or not.
    for other in [
        format!("127.0.0.1:{port}"),
        format!("2130706433:{port}"),
        format!("[::ffff:127.0.0.1]:{port}"),
    ] {
        let answer = call(&host, &other).await;
        assert!(answer.contains("HttpRequestDenied"), "{other}: {answer}");
    }
    assert_eq!(upstream.accepted(), 0);
    drop(host);

    // Naming the range lets the name through.
    let host = HostProcess::start(&config(&format!(
        "outbound = [\"http://{localhost}\"], outbound_networks = [\"127.0.0.0/8\", \"::1\"]"
    )))
    .unwrap();
    assert_eq!(call(&host, &localhost).await, "status: 200");
    drop(host);

    // Naming the address in a rule allows exactly it, in any notation of it.
    let host = HostProcess::start(&config(&format!(
        "outbound = [\"http://127.0.0.1:{port}\"]"
    )))
    .unwrap();
    assert_eq!(
        call(&host, &format!("127.0.0.1:{port}")).await,
        "status: 200"
    );
    assert_eq!(
        call(&host, &format!("2130706433:{port}")).await,
        "status: 200"
    );
    assert!(
        call(&host, &format!("127.0.0.2:{port}"))
            .await
            .contains("HttpRequestDenied")
    );
    assert!(call(&host, &localhost).await.contains("HttpRequestDenied"));
}

#[tokio::test(flavor = "multi_thread")]
async fn ipv6_rules_parse_and_bind_their_address() {
    // An IPv6 loopback upstream, where the machine has IPv6.
    let Ok(listener) = std::net::TcpListener::bind("[::1]:0") else {
        eprintln!("no IPv6 loopback on this machine: only the rule's parsing is checked");
        let host = HostProcess::start(&config("outbound = [\"http://[::1]:9000\"]")).unwrap();
        assert!(
            call(&host, "[::2]:9000")
                .await
                .contains("HttpRequestDenied")
        );
        return;
    };
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut stream in listener.incoming().flatten().take(4) {
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    let host =
        HostProcess::start(&config(&format!("outbound = [\"http://[::1]:{port}\"]"))).unwrap();
    assert_eq!(call(&host, &format!("[::1]:{port}")).await, "status: 200");
    assert!(
        call(&host, &format!("[::1]:{}", port + 1))
            .await
            .contains("HttpRequestDenied")
    );
    assert!(
        call(&host, &format!("127.0.0.1:{port}"))
            .await
            .contains("HttpRequestDenied")
    );
}

#[test]
fn malformed_egress_grants_are_refused_naming_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    for (grants, needle) in [
        ("outbound = [\"ftp://x\"]", "grants.outbound"),
        ("outbound = [\"http://x/path\"]", "no path"),
        ("outbound = [\"http://user:pw@x\"]", "no user"),
        ("outbound = [\"http://[::1\"]", "grants.outbound"),
        (
            "outbound_networks = [\"10.0.0.0/33\"]",
            "grants.outbound_networks",
        ),
        ("outbound_networks = [\"not-a-range\"]", "not-a-range"),
    ] {
        std::fs::write(dir.path().join("hostel.toml"), config(grants)).unwrap();
        let (status, stderr) =
            run_hostel(&["check", "--config", "hostel.toml"], dir.path()).unwrap();
        assert!(!status.success(), "{grants}");
        assert!(stderr.contains(needle), "{grants}: {stderr}");
        assert!(!stderr.contains(":pw@"), "no password in errors: {stderr}");
    }
}
