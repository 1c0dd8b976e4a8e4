//! Secrets never leak into logs or errors: passwords in a pool URL's userinfo and in its query
//! (`?password=`), secret variables, admin tokens — not in the host's log, not in what guests
//! are told, not in `hostel check`'s errors, not when the config itself is malformed.

use hostel_tests::*;

const REDIS_PASSWORD: &str = "redis-pw-7f3a91";
const PG_PASSWORD: &str = "pg-pw-2b8c44";
const PG_QUERY_PASSWORD: &str = "pg-query-pw-9d1e07";
const SECRET_VALUE: &str = "secret-value-5e6f12";
const TOKEN: &str = "operator-token-c0ffee42";

fn assert_clean(what: &str, text: &str) {
    for secret in [
        REDIS_PASSWORD,
        PG_PASSWORD,
        PG_QUERY_PASSWORD,
        SECRET_VALUE,
        TOKEN,
    ] {
        assert!(!text.contains(secret), "{what} shows {secret}:\n{text}");
    }
}

/// Pools on servers that refuse or are not there, with credentials in every place a URL can
/// hold them.
fn config(redis_port: u16, pg_port: u16) -> String {
    let token_hash = token_sha256(TOKEN);
    format!(
        "[server]\ncode_cache = {cache}\n\
         [admin]\noperator_token_sha256 = \"{token_hash}\"\n\
         [pools.cache]\nkind = \"redis\"\nurl = \"redis://user:{REDIS_PASSWORD}@127.0.0.1:{redis_port}/0\"\nacquire_timeout = \"500ms\"\n\
         [pools.db]\nkind = \"postgres\"\n\
         url = \"postgres://app:{PG_PASSWORD}@127.0.0.1:{pg_port}/app?connect_timeout=1\"\nacquire_timeout = \"500ms\"\n\
         [pools.db2]\nkind = \"postgres\"\n\
         url = \"postgres://app@127.0.0.1:{pg_port}/app?password={PG_QUERY_PASSWORD}\"\nacquire_timeout = \"500ms\"\n\
         [stores.kv]\nkind = \"redis\"\nurl = \"redis://:{REDIS_PASSWORD}@127.0.0.1:{redis_port}\"\n\
         [grants]\npools = [\"cache\", \"db\", \"db2\"]\nstores = [\"kv\"]\nsecrets = {{ api-key = \"HOSTEL_TEST_SECRET\" }}\n\
         [apps.rc]\nroute = \"/rc\"\ncomponent = {rc}\n\
         [apps.todo]\nroute = \"/todo\"\ncomponent = {todo}\n\
         [apps.pg]\nroute = \"/pg\"\ncomponent = {pg}\n\
         [apps.counter]\nroute = \"/counter\"\ncomponent = {counter}\n\
         [apps.probe]\nroute = \"/probe\"\ncomponent = {probe}\n",
        cache = toml_path(&shared_code_cache()),
        rc = toml_path(&guest("redis-counter")),
        todo = toml_path(&guest("todo")),
        pg = toml_path(&guest("pg-probe")),
        counter = toml_path(&guest("counter")),
        probe = toml_path(&guest("guest-probe")),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn passwords_tokens_and_secret_values_appear_in_no_log_or_error() {
    // A Redis that wants another password, and no PostgreSQL at all.
    let redis = RedisServer::start_with_password("the-real-one").unwrap();
    let pg_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let host = HostProcess::start_with_env(
        dir,
        &config(redis.port, pg_port),
        &[("HOSTEL_TEST_SECRET", SECRET_VALUE)],
    )
    .unwrap();
    let client = http1_client();

    let mut answers = String::new();
    for path in [
        "/rc/x",
        "/todo",
        "/counter/x",
        "/pg/open?db",
        "/pg/open?db2",
        "/probe/config",
    ] {
        let reply = get(&client, &host.url(path)).await.unwrap();
        answers.push_str(&format!("{path}: {} {}\n", reply.status, reply.text()));
    }
    assert!(answers.contains("/rc/x: 503"), "{answers}");
    assert!(answers.contains("/todo: 503"), "{answers}");
    // The guest reads its secret through wasi:config (that is what it is for) — the probe
    // prints it; everything else stays clean.
    let config_answer = answers
        .lines()
        .find(|l| l.starts_with("/probe/config"))
        .unwrap()
        .to_string();
    assert!(config_answer.contains(SECRET_VALUE), "{config_answer}");
    let answers = answers.replace(&config_answer, "");
    assert_clean("guest answers", &answers);

    // Wrong token, right token: neither is echoed.
    for token in ["not-the-token", TOKEN] {
        let request = http::Request::get(host.admin_url("/v1/apps"))
            .header("authorization", format!("Bearer {token}"))
            .body(Default::default())
            .unwrap();
        let reply = send(&client, request).await.unwrap();
        assert_clean("admin answers", &reply.text());
    }
    assert!(host.wait_for_log("unavailable"), "{}", host.log());
    assert_clean("the host log", &host.log());

    // `hostel check` on a config whose pool URL is broken, and on a file that is not TOML
    // where the password sits on the offending line.
    let check_dir = tempfile::tempdir().unwrap();
    for broken in [
        format!(
            "[pools.db]\nkind = \"postgres\"\nurl = \"postgres://app:{PG_PASSWORD}@127.0.0.1:{pg_port}/app?sslmode=bogus\"\n"
        ),
        format!(
            "[pools.db]\nkind = \"redis\"\nurl = \"postgres://app:{PG_PASSWORD}@x/app?password={PG_QUERY_PASSWORD}\"\n"
        ),
        format!("[pools.db]\nkind = \"postgres\"\nurl = postgres://app:{PG_PASSWORD}@x/app\n"),
        format!(
            "[pools.db]\nkind = \"postgres\"\nurl = \"postgres://app:{PG_PASSWORD}@x/app\"\nmax_connections = \"many\"\n"
        ),
        format!("[stores.kv]\nkind = \"redis\"\nurl = \"memcached://:{REDIS_PASSWORD}@x\"\n"),
    ] {
        std::fs::write(check_dir.path().join("hostel.toml"), &broken).unwrap();
        let (status, stderr) =
            run_hostel(&["check", "--config", "hostel.toml"], check_dir.path()).unwrap();
        assert!(!status.success(), "{broken}");
        assert!(stderr.contains("hostel.toml"), "names the file: {stderr}");
        assert_clean("hostel check", &stderr);
    }
}
