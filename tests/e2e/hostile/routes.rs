//! Routes are owned: a tenant can never be given traffic another tenant was serving — not by
//! deploying under or above another tenant's route on a host they share, not by listing
//! another tenant's host, not with a Host header that two readers of a request could read
//! two ways.

use hostel_tests::*;
use serde_json::Value;
use std::io::{Read, Write};

const OPERATOR: &str = "operator-token-for-route-tests";
const SHOP: &str = "shop-token-for-route-tests";
const MALL: &str = "mall-token-for-route-tests";
const LOOSE: &str = "loose-token-for-route-tests";

/// `shop` and `mall` share the host `shared.test` (the operator says so); `shop` also owns
/// `shop.test`. `root` and `loose` serve the hosts no tenant lists.
fn config() -> String {
    format!(
        "[server]\ncode_cache = {cache}\nshared_hosts = [\"shared.test\"]\n\
         [admin]\noperator_token_sha256 = \"{operator}\"\n\
         [tenants.shop]\nhosts = [\"shared.test\", \"shop.test\"]\nadmin_token_sha256 = \"{shop}\"\n\
         apps.api = {{ route = \"/api\", component = {echo} }}\n\
         [tenants.mall]\nhosts = [\"shared.test\"]\nadmin_token_sha256 = \"{mall}\"\n\
         [tenants.root]\napps.site = {{ route = \"/\", component = {hello} }}\n\
         [tenants.loose]\nadmin_token_sha256 = \"{loose}\"\n",
        cache = toml_path(&shared_code_cache()),
        operator = token_sha256(OPERATOR),
        shop = token_sha256(SHOP),
        mall = token_sha256(MALL),
        loose = token_sha256(LOOSE),
        echo = toml_path(&guest("guest-echo")),
        hello = toml_path(&guest("hello")),
    )
}

/// Deploys the hello component as `tenant`'s app `app` at `route`.
async fn deploy(
    host: &HostProcess,
    token: &str,
    tenant: &str,
    app: &str,
    route: &str,
) -> (u16, Value) {
    let wasm = std::fs::read(guest("hello")).unwrap();
    crate::admin::deploy(host, token, tenant, app, route, &wasm).await
}

/// Who answers `path` on `host_name`: the body's first line.
async fn who(host: &HostProcess, host_name: &str, path: &str) -> (u16, String) {
    let request = http::Request::get(host.url(path))
        .header("host", host_name)
        .body(Default::default())
        .unwrap();
    let reply = send(&http1_client(), request).await.unwrap();
    (reply.status, reply.text())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_cannot_deploy_into_or_over_another_tenants_route() {
    let host = HostProcess::start(&config()).unwrap();
    // Shop's echo guest answers an empty GET with an empty body; hello would greet.
    let shops = (200, String::new());
    assert_eq!(who(&host, "shared.test", "/api/x").await, shops);

    // Mall, on the host it shares with shop, tries to take shop's traffic: below, at, above.
    for route in ["/api/admin", "/api", "/", "/api/admin/deeper"] {
        let (status, body) = deploy(&host, MALL, "mall", "grab", route).await;
        assert_eq!(status, 409, "{route}: {body}");
        let message = body["error"].as_str().unwrap();
        assert!(
            message.contains("tenant `shop`")
                && message.contains("`api`")
                && message.contains("shared.test"),
            "names the owner: {message}"
        );
    }
    // Beside it is fine, and shop's users still reach shop.
    let (status, body) = deploy(&host, MALL, "mall", "web", "/web").await;
    assert_eq!(status, 201, "{body}");
    assert!(
        who(&host, "shared.test", "/web")
            .await
            .1
            .starts_with("Hello from Hostel")
    );
    assert_eq!(who(&host, "shared.test", "/api/admin").await, shops);
    // The operator is held to the same rule.
    let (status, body) = deploy(&host, OPERATOR, "mall", "grab", "/api/v2").await;
    assert_eq!(status, 409, "{body}");
    // Shop nests its own routes as it likes.
    let (status, body) = deploy(&host, SHOP, "shop", "admin", "/api/admin").await;
    assert_eq!(status, 201, "{body}");

    // On shop's own host, nobody else is ever served: a path shop does not route is a 404,
    // not the catch-all tenant's page.
    let (status, text) = who(&host, "shop.test", "/nothing-here").await;
    assert_eq!(status, 404, "{text}");
    assert!(
        who(&host, "other.test", "/nothing-here")
            .await
            .1
            .starts_with("Hello from Hostel")
    );
    // Tenants without hosts share the catch-all space: loose may not nest under root's `/`.
    let (status, body) = deploy(&host, LOOSE, "loose", "api", "/api").await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("tenant `root`"),
        "{body}"
    );
}

#[test]
fn a_host_listed_by_two_tenants_is_refused_unless_the_operator_shares_it() {
    let dir = tempfile::tempdir().unwrap();
    let hello = toml_path(&guest("hello"));
    let config = format!(
        "[server]\ncode_cache = {cache}\n\
         [tenants.a]\nhosts = [\"shop.test\"]\napps.x = {{ route = \"/a\", component = {hello} }}\n\
         [tenants.b]\nhosts = [\"SHOP.test:8080\"]\napps.y = {{ route = \"/b\", component = {hello} }}\n",
        cache = toml_path(&shared_code_cache()),
    );
    std::fs::write(dir.path().join("hostel.toml"), &config).unwrap();
    let (status, stderr) = run_hostel(&["check", "--config", "hostel.toml"], dir.path()).unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("\"shop.test\"") && stderr.contains("shared_hosts"),
        "{stderr}"
    );
    // Shared, with overlapping routes: refused, naming the key and the owner.
    let overlapping = config
        .replace("[server]\n", "[server]\nshared_hosts = [\"shop.test\"]\n")
        .replace("route = \"/b\"", "route = \"/a/b\"");
    std::fs::write(dir.path().join("hostel.toml"), &overlapping).unwrap();
    let (status, stderr) = run_hostel(&["check", "--config", "hostel.toml"], dir.path()).unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("tenants.b.apps.y.route") && stderr.contains("tenant `a`"),
        "{stderr}"
    );
}

/// Sends raw bytes and reads the whole answer (the host closes after a 400).
fn raw(host: &HostProcess, request: &str) -> String {
    let mut stream = std::net::TcpStream::connect(&host.addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

#[tokio::test(flavor = "multi_thread")]
async fn host_headers_that_two_readers_could_read_two_ways_are_refused() {
    let host = HostProcess::start(&config()).unwrap();
    for (request, why) in [
        (
            "GET /api HTTP/1.1\r\nHost: shop.test\r\nHost: other.test\r\nConnection: close\r\n\r\n",
            "two Host headers",
        ),
        (
            "GET /api HTTP/1.1\r\nHost: evil@shop.test\r\nConnection: close\r\n\r\n",
            "userinfo",
        ),
        (
            "GET /api HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n",
            "empty",
        ),
    ] {
        let answer = raw(&host, request);
        assert!(answer.starts_with("HTTP/1.1 400"), "{why}: {answer}");
    }
    // A trailing dot and a port are the same host.
    for name in ["shop.test.", "SHOP.test:443"] {
        let answer = raw(
            &host,
            &format!("GET /nothing HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n"),
        );
        assert!(answer.starts_with("HTTP/1.1 404"), "{name}: {answer}");
    }
}
