//! The admin API and `hostel deploy|apps|remove`: tokens (operator, tenant), validation before
//! a swap, zero-downtime swaps under load, and a deployed set that survives restarts and
//! kill -9 in the middle of a deploy.

use bytes::Bytes;
use hostel_tests::*;
use serde_json::Value;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

pub const OPERATOR: &str = "operator-token-for-tests";
pub const ACME: &str = "acme-token-for-tests";
pub const GLOBEX: &str = "globex-token-for-tests";

/// Two tenants on their own host names, each with an admin token; acme has one app from the
/// config.
pub fn config() -> String {
    format!(
        "[server]\ncode_cache = {cache}\n\
         [admin]\noperator_token_sha256 = \"{operator}\"\n\
         [tenants.acme]\nhosts = [\"acme.test\"]\nadmin_token_sha256 = \"{acme}\"\n\
         [tenants.acme.apps.fixed]\nroute = \"/fixed\"\ncomponent = {hello}\n\
         [tenants.globex]\nhosts = [\"globex.test\"]\nadmin_token_sha256 = \"{globex}\"\n",
        cache = toml_path(&shared_code_cache()),
        operator = token_sha256(OPERATOR),
        acme = token_sha256(ACME),
        globex = token_sha256(GLOBEX),
        hello = toml_path(&guest("hello")),
    )
}

/// An admin API call with `token` (None: no Authorization header).
pub async fn admin(
    host: &HostProcess,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: impl Into<Bytes>,
) -> (u16, Value) {
    let mut request = http::Request::builder()
        .method(method)
        .uri(host.admin_url(path));
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let reply = send(&http1_client(), request.body(body.into().into()).unwrap())
        .await
        .unwrap();
    let json = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    (reply.status, json)
}

pub async fn deploy(
    host: &HostProcess,
    token: &str,
    tenant: &str,
    app: &str,
    route: &str,
    wasm: &[u8],
) -> (u16, Value) {
    let path = format!("/v1/tenants/{tenant}/apps/{app}?route={route}");
    admin(
        host,
        "PUT",
        &path,
        Some(token),
        Bytes::copy_from_slice(wasm),
    )
    .await
}

/// GET `path` as the tenant whose host name is `host_name`.
async fn call(client: &HttpClient, host: &HostProcess, host_name: &str, path: &str) -> Reply {
    let request = http::Request::get(host.url(path))
        .header("host", host_name)
        .body(Default::default())
        .unwrap();
    send(client, request).await.unwrap()
}

fn wasm(path: std::path::PathBuf) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// A valid component made from `wit` (package `test:bad`, world `w`) by wit-component.
fn synthesized_component(wit: &str) -> Vec<u8> {
    let mut resolve = wit_parser::Resolve::default();
    let package = resolve.push_str("bad.wit", wit).unwrap();
    let world = resolve.select_world(&[package], Some("w")).unwrap();
    let mut module =
        wit_component::dummy_module(&resolve, world, wit_parser::ManglingAndAbi::Standard32);
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .unwrap();
    wit_component::ComponentEncoder::default()
        .module(&module)
        .unwrap()
        .validate(true)
        .encode()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_decide_who_may_do_what() {
    let host = HostProcess::start(&config()).unwrap();
    let hello = wasm(guest("hello"));

    let (status, body) = admin(&host, "GET", "/v1/apps", None, "").await;
    assert_eq!(status, 401, "no token: {body}");
    let (status, _) = admin(&host, "GET", "/v1/apps", Some("not-a-token"), "").await;
    assert_eq!(status, 401, "unknown token");

    // A tenant token manages its own tenant only.
    let (status, body) = deploy(&host, ACME, "globex", "x", "/x", &hello).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("globex"), "{body}");
    let (status, _) = admin(&host, "DELETE", "/v1/tenants/globex/apps/x", Some(ACME), "").await;
    assert_eq!(status, 403);
    let (status, _) = admin(&host, "GET", "/v1/tenants/globex/apps/x", Some(ACME), "").await;
    assert_eq!(status, 403);

    let (status, body) = deploy(&host, GLOBEX, "globex", "api", "/api", &hello).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = deploy(&host, ACME, "acme", "api", "/api", &hello).await;
    assert_eq!(status, 201, "{body}");

    // Each tenant lists its own apps; the operator sees all of them.
    let names = |body: &Value| -> Vec<String> {
        body["apps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                format!(
                    "{}/{}",
                    a["tenant"].as_str().unwrap(),
                    a["app"].as_str().unwrap()
                )
            })
            .collect()
    };
    let (_, body) = admin(&host, "GET", "/v1/apps", Some(ACME), "").await;
    assert_eq!(names(&body), ["acme/api", "acme/fixed"]);
    let (_, body) = admin(&host, "GET", "/v1/apps", Some(GLOBEX), "").await;
    assert_eq!(names(&body), ["globex/api"]);
    let (_, body) = admin(&host, "GET", "/v1/apps", Some(OPERATOR), "").await;
    assert_eq!(names(&body), ["acme/api", "acme/fixed", "globex/api"]);

    // The operator manages any tenant; apps from the config are the config's.
    let (status, _) = admin(
        &host,
        "DELETE",
        "/v1/tenants/globex/apps/api",
        Some(OPERATOR),
        "",
    )
    .await;
    assert_eq!(status, 204);
    let (status, body) = admin(
        &host,
        "DELETE",
        "/v1/tenants/acme/apps/fixed",
        Some(OPERATOR),
        "",
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = deploy(&host, OPERATOR, "acme", "fixed", "/fixed", &hello).await;
    assert_eq!(status, 409, "{body}");
    let (status, _) = deploy(&host, OPERATOR, "nobody", "x", "/x", &hello).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn deploys_are_validated_before_anything_changes() {
    let host = HostProcess::start(&config()).unwrap();
    let no_handler = synthesized_component("package test:bad;\nworld w { export run: func(); }\n");
    let unknown_import = synthesized_component(
        "package test:bad;\ninterface secret-sauce { stir: func(); }\n\
         world w { import secret-sauce; export run: func(); }\n",
    );
    let command = synthesized_component(
        "package wasi:cli@0.2.6;\ninterface run { run: func() -> result; }\n\
         world w { export run; }\n",
    );
    let core_module = b"\0asm\x01\0\0\0".to_vec();
    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("garbage", b"this is not wasm".to_vec(), "not a WebAssembly"),
        ("core", core_module, "not a component"),
        ("no-handler", no_handler, "wasi:http/incoming-handler"),
        ("command", command, "it is a WASI command"),
        ("unknown-import", unknown_import, "test:bad/secret-sauce"),
    ];
    for (name, bytes, reason) in cases {
        let (status, body) = deploy(&host, ACME, "acme", name, &format!("/{name}"), &bytes).await;
        assert_eq!(status, 400, "{name}: {body}");
        let error = body["error"].as_str().unwrap();
        assert!(
            error.contains(reason),
            "{name}: the reason says {reason:?}: {error}"
        );
    }
    let hello = wasm(guest("hello"));
    let (status, body) = deploy(&host, ACME, "acme", "x", "no-slash", &hello).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = deploy(&host, ACME, "acme", "bad%20name", "/y", &hello).await;
    assert_eq!(status, 400, "{body}");
    // Nothing was deployed by any of it.
    let (_, body) = admin(&host, "GET", "/v1/apps", Some(OPERATOR), "").await;
    assert_eq!(body["apps"].as_array().unwrap().len(), 1, "{body}");
    // A route another app serves on the same hosts is a conflict.
    let (status, body) = deploy(&host, ACME, "acme", "other", "/fixed", &hello).await;
    assert_eq!(status, 409, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_swaps_under_load_fail_no_request() {
    let host = Arc::new(HostProcess::start(&config()).unwrap());
    let versions = [wasm(guest("hello")), wasm(guest("guest-echo"))];
    // hello answers a greeting, echo the (empty) body: each request shows which one served it.
    let is_hello = |reply: &Reply| reply.text().starts_with("Hello from Hostel!");
    let (status, body) = deploy(&host, ACME, "acme", "live", "/live", &versions[0]).await;
    assert_eq!(status, 201, "{body}");

    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..8 {
        let (host, stop, served) = (host.clone(), stop.clone(), served.clone());
        load.push(tokio::spawn(async move {
            let client = http1_client();
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let reply = call(&client, &host, "acme.test", "/live").await;
                if reply.status != 200 {
                    failures.push(format!("{} {}", reply.status, reply.text()));
                }
                served.fetch_add(1, Ordering::Relaxed);
            }
            failures
        }));
    }
    let client = http1_client();
    for swap in 1..=20 {
        let version = &versions[swap % 2];
        let (status, body) = deploy(&host, ACME, "acme", "live", "/live", version).await;
        assert_eq!(status, 200, "swap {swap}: {body}");
        // The swap is atomic: the next request gets the new version.
        let reply = call(&client, &host, "acme.test", "/live").await;
        assert_eq!(
            is_hello(&reply),
            swap % 2 == 0,
            "swap {swap}: {}",
            reply.text()
        );
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for task in load {
        failures.extend(task.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "failed requests during swaps: {failures:?}"
    );
    assert!(served.load(Ordering::Relaxed) > 100, "the load ran");

    // Every version counted in the app's one series: each request once, none in flight.
    let request = http::Request::get(host.admin_url("/metrics"))
        .header("authorization", format!("Bearer {OPERATOR}"))
        .body(Default::default())
        .unwrap();
    let metrics = send(&client, request).await.unwrap().text();
    let value = |series: &str| {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
            .to_string()
    };
    let answered = served.load(Ordering::Relaxed) + 20;
    assert_eq!(
        value("hostel_requests_total{tenant=\"acme\",app=\"live\",class=\"2xx\"}"),
        answered.to_string()
    );
    assert_eq!(
        value("hostel_requests_in_flight{tenant=\"acme\",app=\"live\"}"),
        "0"
    );
    assert_eq!(value("hostel_app_changes_total{change=\"deploy\"}"), "1");
    assert_eq!(value("hostel_app_changes_total{change=\"swap\"}"), "20");
}

/// Starts deploying `wasm` as acme's app `app` (route `/app`) over a raw connection, sending
/// only the first `sent` bytes of the body; the connection is returned open.
fn start_upload(host: &HostProcess, app: &str, wasm: &[u8], sent: usize) -> std::net::TcpStream {
    let addr = host.admin_addr.clone().unwrap();
    let mut upload = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        upload,
        "PUT /v1/tenants/acme/apps/{app}?route=/{app} HTTP/1.1\r\nhost: {addr}\r\n\
         authorization: Bearer {ACME}\r\ncontent-length: {}\r\n\r\n",
        wasm.len()
    )
    .unwrap();
    upload.write_all(&wasm[..sent]).unwrap();
    upload.flush().unwrap();
    upload
}

#[tokio::test(flavor = "multi_thread")]
async fn hostel_check_checks_the_deployed_set_and_changes_nothing() {
    let host = HostProcess::start(&config()).unwrap();
    let (status, body) = deploy(&host, ACME, "acme", "kept", "/kept", &wasm(guest("hello"))).await;
    assert_eq!(status, 201, "{body}");
    let dir = host.dir.path();
    let blobs = dir.join("state/blobs");
    // A deploy in flight on the running host: its component is stored, the manifest does not
    // name it yet. A check must not take it for debris and remove it.
    let in_flight = blobs.join(format!("{}.wasm", "0".repeat(64)));
    std::fs::write(&in_flight, b"not yet named").unwrap();

    let (status, out) = run_hostel(&["check", "--config", "hostel.toml"], dir).unwrap();
    assert!(status.success(), "{out}");
    assert!(
        out.contains("deployed app ready tenant=acme app=kept"),
        "{out}"
    );
    assert!(in_flight.exists(), "hostel check removed a blob");

    // A deployed component changed on disk is reported, naming the file.
    let deployed = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| *p != in_flight)
        .unwrap();
    std::fs::write(&deployed, b"tampered").unwrap();
    let (status, out) = run_hostel(&["check", "--config", "hostel.toml"], dir).unwrap();
    assert!(!status.success(), "{out}");
    assert!(out.contains("does not match its digest"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_deployed_set_survives_restarts_and_kill_9() {
    let host = HostProcess::start(&config()).unwrap();
    let (status, body) = deploy(&host, ACME, "acme", "kept", "/kept", &wasm(guest("hello"))).await;
    assert_eq!(status, 201, "{body}");
    let client = http1_client();

    let host = host.restart(false).unwrap();
    assert_eq!(
        call(&client, &host, "acme.test", "/kept/a").await.status,
        200,
        "after SIGTERM"
    );
    let host = host.restart(true).unwrap();
    assert_eq!(
        call(&client, &host, "acme.test", "/kept/a").await.status,
        200,
        "after kill -9"
    );
    // Another tenant's host name does not reach it.
    assert_eq!(
        call(&client, &host, "globex.test", "/kept/a").await.status,
        404
    );

    // kill -9 while a deploy is half uploaded: the set stays the last completed one.
    let echo = wasm(guest("guest-echo"));
    let _upload = start_upload(&host, "cut", &echo, echo.len() / 2);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let host = host.restart(true).unwrap();
    assert_eq!(call(&client, &host, "acme.test", "/cut").await.status, 404);
    assert_eq!(call(&client, &host, "acme.test", "/kept").await.status, 200);

    // kill -9 while a large component compiles: either it completed or it never happened.
    let python = wasm(example("python", "hello"));
    let _upload = start_upload(&host, "big", &python, python.len());
    std::thread::sleep(std::time::Duration::from_millis(300));
    let state = host.dir.path().join("state");
    let host = host.restart(true).unwrap();
    let (_, body) = admin(&host, "GET", "/v1/apps", Some(OPERATOR), "").await;
    let apps: Vec<&str> = body["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["app"].as_str().unwrap())
        .collect();
    let big = call(&client, &host, "acme.test", "/big").await.status;
    if apps.contains(&"big") {
        assert_eq!(big, 200, "a completed deploy serves");
    } else {
        assert_eq!(big, 404);
    }
    assert!(apps.contains(&"kept") && !apps.contains(&"cut"), "{apps:?}");
    // Nothing half-written is left: one blob per deployed app, no temporary files.
    let blobs: Vec<_> = std::fs::read_dir(state.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        blobs.len(),
        apps.len() - 1,
        "blobs {blobs:?} for apps {apps:?}"
    );
    assert!(
        blobs
            .iter()
            .all(|b| b.ends_with(".wasm") && !b.starts_with('.')),
        "{blobs:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_deploys_lists_and_removes_and_explains_refusals() {
    let host = HostProcess::start(&config()).unwrap();
    let admin_url = host.admin_url("");
    let hello = guest("hello");
    let hello = hello.to_str().unwrap();
    let cli = |args: &[&str], token: &str| {
        let output = std::process::Command::new(hostel_bin())
            .args(args)
            .env("HOSTEL_ADMIN", &admin_url)
            .env("HOSTEL_TOKEN", token)
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, out, err) = cli(
        &[
            "deploy", hello, "--tenant", "acme", "--app", "web", "--route", "/web",
        ],
        ACME,
    );
    assert!(ok, "{err}");
    assert!(out.contains("deployed acme/web at /web (sha256:"), "{out}");
    let reply = call(&http1_client(), &host, "acme.test", "/web/x").await;
    assert_eq!(reply.text(), "Hello from Hostel! You asked for /web/x\n");

    let (ok, out, err) = cli(&["apps"], ACME);
    assert!(ok, "{err}");
    assert!(
        out.contains("acme") && out.contains("web") && out.contains("deployed"),
        "{out}"
    );
    assert!(out.contains("fixed") && out.contains("config"), "{out}");

    let (ok, _, err) = cli(&["remove", "--tenant", "acme", "--app", "web"], GLOBEX);
    assert!(!ok);
    assert!(
        err.contains("403") && err.contains("only that tenant's apps"),
        "{err}"
    );
    let (ok, _, err) = cli(&["apps"], "wrong");
    assert!(!ok);
    assert!(err.contains("401") && err.contains("HOSTEL_TOKEN"), "{err}");
    let (ok, _, err) = cli(
        &[
            "deploy",
            "/dev/null",
            "--tenant",
            "acme",
            "--app",
            "n",
            "--route",
            "/n",
        ],
        ACME,
    );
    assert!(!ok);
    assert!(err.contains("400"), "{err}");

    let (ok, out, err) = cli(&["remove", "--tenant", "acme", "--app", "web"], ACME);
    assert!(ok, "{err}");
    assert!(out.contains("removed acme/web"), "{out}");
    assert_eq!(
        call(&http1_client(), &host, "acme.test", "/web/x")
            .await
            .status,
        404
    );
}

#[test]
fn token_prints_a_token_and_its_hash() {
    let output = std::process::Command::new(hostel_bin())
        .arg("token")
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .to_string()
    };
    let token = field("token: ");
    assert_eq!(token.len(), 64);
    assert_eq!(field("sha256: "), token_sha256(&token));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wasi_0_3_service_is_deployed_and_swapped_like_any_app() {
    let host = HostProcess::start(&config()).unwrap();
    let client = http1_client();
    let service = wasm(guest("guest-service-p3"));
    let (status, body) = deploy(&host, ACME, "acme", "svc", "/p3", &service).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["world"], "wasi:http/service (WASI 0.3)", "{body}");
    let reply = call(&client, &host, "acme.test", "/p3/").await;
    assert_eq!(reply.text(), "hello from a WASI 0.3 guest\n");

    // Swapped for a WASI 0.2 handler under the same name and route, and back.
    let (status, body) = deploy(&host, ACME, "acme", "svc", "/p3", &wasm(guest("hello"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["world"], "wasi:http/proxy (WASI 0.2)", "{body}");
    let reply = call(&client, &host, "acme.test", "/p3/").await;
    assert_ne!(reply.text(), "hello from a WASI 0.3 guest\n");
    assert_eq!(reply.status, 200);
    let (status, _) = deploy(&host, ACME, "acme", "svc", "/p3", &service).await;
    assert_eq!(status, 200);
    let reply = call(&client, &host, "acme.test", "/p3/").await;
    assert_eq!(reply.text(), "hello from a WASI 0.3 guest\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_cannot_deploy_more_apps_than_its_limit() {
    // acme has its config app and may have two apps in all.
    let config = config().replace(
        "[tenants.acme]\n",
        "[tenants.acme]\nlimits = { apps = 2 }\n",
    );
    let host = HostProcess::start(&config).unwrap();
    let hello = wasm(guest("hello"));
    let (status, body) = deploy(&host, ACME, "acme", "one", "/one", &hello).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = deploy(&host, ACME, "acme", "two", "/two", &hello).await;
    assert_eq!(status, 403, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("limits.apps") && error.contains("2 apps"),
        "{body}"
    );
    // A new version of an app it has is no new app; another tenant has its own limit.
    let (status, body) = deploy(&host, ACME, "acme", "one", "/one", &hello).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = deploy(&host, GLOBEX, "globex", "two", "/two", &hello).await;
    assert_eq!(status, 201, "{body}");
    // Once one goes, another fits.
    let (status, _) = admin(&host, "DELETE", "/v1/tenants/acme/apps/one", Some(ACME), "").await;
    assert_eq!(status, 204);
    let (status, body) = deploy(&host, ACME, "acme", "two", "/two", &hello).await;
    assert_eq!(status, 201, "{body}");
}
