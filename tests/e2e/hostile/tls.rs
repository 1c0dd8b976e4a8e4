//! Backends over TLS: a real TLS-only `redis-server` and a PostgreSQL that takes logins over
//! TLS only, with a CA and certificates the test makes. A trusted certificate connects; an
//! untrusted one, a wrong name or no TLS at all is a clear error value naming what to fix —
//! or, for a pool that must connect at startup, a clear refusal to start.

use hostel_tests::postgres::SUPERUSER_PASSWORD;
use hostel_tests::*;
use serde_json::Value as Json;

fn cache() -> String {
    toml_path(&shared_code_cache())
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_over_tls_checks_the_servers_certificate() {
    let ca = TestCa::new("redis").unwrap();
    let stranger = TestCa::new("stranger").unwrap();
    let redis = RedisServer::start_tls(&ca).unwrap();
    let config = format!(
        "[server]\ncode_cache = {cache}\n\
         [pools.trusted]\nkind = \"redis\"\nurl = \"{url}\"\nca_file = {ca}\n\
         [pools.public-roots]\nkind = \"redis\"\nurl = \"{url}\"\nacquire_timeout = \"1s\"\n\
         [pools.stranger]\nkind = \"redis\"\nurl = \"{url}\"\nca_file = {stranger}\nacquire_timeout = \"1s\"\n\
         [stores.default]\nkind = \"redis\"\nurl = \"{url}\"\nca_file = {ca}\n\
         [grants]\npools = [\"trusted\", \"public-roots\", \"stranger\"]\nstores = [\"default\"]\n\
         [apps.probe]\nroute = \"/probe\"\ncomponent = {probe}\n\
         [apps.counter]\nroute = \"/counter\"\ncomponent = {counter}\n",
        cache = cache(),
        url = redis.url(),
        ca = toml_path(&ca.cert_file()),
        stranger = toml_path(&stranger.cert_file()),
        probe = toml_path(&guest("guest-redis-probe")),
        counter = toml_path(&guest("counter")),
    );
    let host = HostProcess::start(&config).unwrap();
    let client = http1_client();
    let raw = |pool: &str| {
        let request = http::Request::get(host.url("/probe/raw"))
            .header("x-pool", pool)
            .header("x-command", "INCR hits")
            .body(Default::default())
            .unwrap();
        send(&client, request)
    };
    let trusted = raw("trusted").await.unwrap();
    assert_eq!(trusted.status, 200, "{}", trusted.text());
    assert!(trusted.text().contains("Int(1)"), "{}", trusted.text());
    assert_eq!(
        redis.cli(&["GET", "tenant:default:hits"]).unwrap().trim(),
        "1"
    );
    for pool in ["public-roots", "stranger"] {
        let refused = raw(pool).await.unwrap();
        assert!(
            refused.status == 503 && refused.text().contains("ca_file"),
            "{pool}: says the certificate is not trusted and what to set: {}",
            refused.text()
        );
    }
    // The key-value store on the same TLS server.
    let counted = get(&client, &host.url("/counter/x")).await.unwrap();
    assert_eq!((counted.status, counted.text()), (200, "1\n".to_string()));
}

#[test]
fn a_ca_file_that_is_not_a_certificate_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), "not a certificate").unwrap();
    std::fs::write(
        dir.path().join("hostel.toml"),
        "[pools.p]\nkind = \"redis\"\nurl = \"rediss://127.0.0.1:1\"\nca_file = \"ca.pem\"\n",
    )
    .unwrap();
    let (status, stderr) = run_hostel(&["check", "--config", "hostel.toml"], dir.path()).unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("ca_file") && stderr.contains("ca.pem"),
        "{stderr}"
    );
}

/// The probe's `open?POOL` answer: `{"ok": "opened"}` or the error.
async fn open(client: &HttpClient, host: &HostProcess, pool: &str) -> Json {
    let reply = get(client, &host.url(&format!("/probe/open?{pool}")))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{pool}: {}", reply.text());
    serde_json::from_slice(&reply.body).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_sslmodes_check_what_they_say_and_failures_say_what_to_fix() {
    let ca = TestCa::new("postgres").unwrap();
    let stranger = TestCa::new("stranger").unwrap();
    // The certificate names `localhost` only: connecting to 127.0.0.1 is a name mismatch.
    let pg = PostgresServer::start_secure(&ca, &["localhost"]).unwrap();
    let url = |mode: &str| {
        pg.url_as(
            "postgres",
            SUPERUSER_PASSWORD,
            postgres::DATABASE,
            &format!("sslmode={mode}"),
        )
    };
    let localhost = format!(
        "postgres://postgres:{SUPERUSER_PASSWORD}@localhost:{}/{}?sslmode=verify-full",
        pg.port,
        postgres::DATABASE
    );
    let pool = |name: &str, url: &str, ca_file: Option<&std::path::Path>| {
        let ca_line = ca_file
            .map(|f| format!("ca_file = {}\n", toml_path(f)))
            .unwrap_or_default();
        format!(
            "[pools.{name}]\nkind = \"postgres\"\nurl = \"{url}\"\n{ca_line}acquire_timeout = \"2s\"\n"
        )
    };
    let pools = [
        ("full-by-name", localhost.clone(), Some(ca.cert_file())),
        ("ca-only", url("verify-ca"), Some(ca.cert_file())),
        ("require", url("require"), None),
        ("full-by-address", url("verify-full"), Some(ca.cert_file())),
        ("public-roots", url("verify-full"), None),
        ("stranger", url("verify-ca"), Some(stranger.cert_file())),
        ("plain", url("disable"), None),
    ];
    let mut config = format!("[server]\ncode_cache = {}\n", cache());
    for (name, url, ca_file) in &pools {
        config.push_str(&pool(name, url, ca_file.as_deref()));
    }
    let names: Vec<String> = pools.iter().map(|(n, _, _)| format!("\"{n}\"")).collect();
    config.push_str(&format!(
        "[grants]\npools = [{}]\n[apps.probe]\nroute = \"/probe\"\ncomponent = {}\n",
        names.join(", "),
        toml_path(&guest("pg-probe"))
    ));
    let host = HostProcess::start(&config).unwrap();
    let client = http1_client();
    for ok in ["full-by-name", "ca-only", "require"] {
        assert_eq!(open(&client, &host, ok).await["ok"], "opened", "{ok}");
    }
    // These pools log in as the superuser: the host says what that lets their tenant do.
    assert!(
        host.wait_for_log("superuser or has CREATEROLE"),
        "{}",
        host.log()
    );
    for (refused, needle) in [
        ("full-by-address", "does not name the host"),
        ("public-roots", "ca_file"),
        ("stranger", "ca_file"),
        ("plain", "no encryption"),
    ] {
        let answer = open(&client, &host, refused).await;
        assert_eq!(
            answer["error"]["kind"], "unavailable",
            "{refused}: {answer}"
        );
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{refused}: {message}");
        assert!(!message.contains(SUPERUSER_PASSWORD), "{message}");
    }
    drop(host);

    // A pool that must connect at startup and cannot trust the server: the host refuses to
    // start, saying why.
    let required = format!(
        "[server]\ncode_cache = {}\n{}connect = \"required\"\n[grants]\npools = [\"strict\"]\n",
        cache(),
        pool("strict", &url("verify-full"), Some(&stranger.cert_file())),
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hostel.toml"), &required).unwrap();
    let started = HostProcess::start_in(dir, &required);
    let Err(refusal) = started else {
        panic!("the host started with an untrusted required pool");
    };
    let refusal = format!("{refusal:#}");
    assert!(
        refusal.contains("strict")
            && refusal.contains("connect = \"required\"")
            && refusal.contains("ca_file"),
        "{refusal}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_on_a_tls_server_get_their_own_logins_over_tls_and_keep_them() {
    let ca = TestCa::new("postgres").unwrap();
    let pg = PostgresServer::start_secure(&ca, &["127.0.0.1", "localhost"]).unwrap();
    pg.psql_in(
        "postgres",
        "CREATE ROLE hostel_admin LOGIN CREATEROLE CREATEDB PASSWORD 'admin-over-tls'",
    )
    .unwrap();
    let admin_url = pg.url_as(
        "hostel_admin",
        "admin-over-tls",
        "postgres",
        "sslmode=verify-full",
    );
    let config = format!(
        "[server]\ncode_cache = {cache}\n\
         [pools.shared]\nkind = \"postgres\"\nadmin_url = \"{admin_url}\"\nca_file = {ca}\nmax_connections = 1\n\
         [tenants.a]\nhosts = [\"a.test\"]\ngrants = {{ pools = [\"shared\"] }}\n\
         apps.probe = {{ route = \"/probe\", component = {probe} }}\n",
        cache = cache(),
        ca = toml_path(&ca.cert_file()),
        probe = toml_path(&guest("pg-probe")),
    );
    let host = HostProcess::start(&config).unwrap();
    let client = http1_client();
    let ask = |sql: &'static str| {
        let body = serde_json::json!({ "pool": "shared", "statements": [{ "sql": sql }] });
        let request = http::Request::post(host.url("/probe/sql"))
            .header("host", "a.test")
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.to_string(),
            )))
            .unwrap();
        let client = client.clone();
        async move {
            let reply = send(&client, request).await.unwrap();
            let answer: Json = serde_json::from_slice(&reply.body).unwrap();
            answer["ok"]["results"][0].clone()
        }
    };
    let tls = ask("SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()").await;
    assert_eq!(tls["ok"], serde_json::json!([["true"]]), "{tls}");
    // The tenant changes its own password (PostgreSQL lets a role do that) ...
    let changed = ask("ALTER ROLE CURRENT_USER PASSWORD 'locked-out'").await;
    assert!(changed.get("ok").is_some(), "{changed}");
    // ... and its session is cut: the next login fails, the host provisions it again and
    // the request is served.
    pg.psql_in(
        "postgres",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'hostel_a'",
    )
    .unwrap();
    // A request racing the cut may find its connection gone (unavailable); the next ones
    // log in afresh.
    let mut back = ask("SELECT current_user::text").await;
    for _ in 0..20 {
        if back.get("ok").is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        back = ask("SELECT current_user::text").await;
    }
    assert_eq!(back["ok"], serde_json::json!([["hostel_a"]]), "{back}");
    assert!(host.wait_for_log("provisioning it again"), "{}", host.log());
}
