//! PostgreSQL, as a hostile tenant uses it: arbitrary SQL through the `pg-probe` guest's `sql`
//! endpoint. Tenants sharing a pool get a login role and database each and cannot reach each
//! other's objects or raise their privileges; a dedicated login cannot be shared; and whatever
//! a request leaves in its session, the next borrower of the connection gets a clean one and
//! no acknowledged write is lost.

use hostel_tests::*;
use serde_json::{Value as Json, json};

/// The admin login the host provisions tenants through: CREATEROLE and CREATEDB, no superuser.
const ADMIN: &str = "hostel_admin";
const ADMIN_PASSWORD: &str = "admin-secret";

fn create_admin(pg: &PostgresServer) {
    pg.psql_in(
        "postgres",
        &format!("CREATE ROLE {ADMIN} LOGIN CREATEROLE CREATEDB PASSWORD '{ADMIN_PASSWORD}'"),
    )
    .unwrap();
}

/// Tenants `a` and `b` (hosts `a.test`, `b.test`) share the pool `shared`, with `pool`'s
/// settings, each serving the probe at `/probe`.
fn shared_config(pool: &str) -> String {
    let probe = toml_path(&guest("pg-probe"));
    format!(
        "[server]\ncode_cache = {cache}\n\
         [defaults.limits]\ntimeout = \"5s\"\n\
         [pools.shared]\nkind = \"postgres\"\n{pool}\n\
         [tenants.a]\nhosts = [\"a.test\"]\ngrants = {{ pools = [\"shared\"] }}\n\
         apps.probe = {{ route = \"/probe\", component = {probe} }}\n\
         [tenants.b]\nhosts = [\"b.test\"]\ngrants = {{ pools = [\"shared\"] }}\n\
         apps.probe = {{ route = \"/probe\", component = {probe} }}\n",
        cache = toml_path(&shared_code_cache()),
    )
}

/// Runs `statements` (SQL text, or `{sql, params, rows}` objects) as `tenant`, optionally in
/// a transaction (`commit`, `rollback`, `open`); every statement's outcome, and the finish's.
async fn sql(
    client: &HttpClient,
    host: &HostProcess,
    tenant: &str,
    transaction: Option<&str>,
    statements: &[Json],
) -> (Vec<Json>, Json) {
    let statements: Vec<Json> = statements
        .iter()
        .map(|s| match s {
            Json::String(sql) => json!({ "sql": sql }),
            other => other.clone(),
        })
        .collect();
    let body = json!({ "pool": "shared", "transaction": transaction, "statements": statements });
    let request = http::Request::post(host.url("/probe/sql"))
        .header("host", format!("{tenant}.test"))
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .unwrap();
    let reply = send(client, request).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let answer: Json = serde_json::from_slice(&reply.body).unwrap();
    let ok = answer
        .get("ok")
        .unwrap_or_else(|| panic!("the script failed: {answer}"));
    (
        ok["results"].as_array().unwrap().clone(),
        ok["finished"].clone(),
    )
}

/// The one result of one statement.
async fn one(client: &HttpClient, host: &HostProcess, tenant: &str, statement: &str) -> Json {
    sql(client, host, tenant, None, &[json!(statement)])
        .await
        .0
        .remove(0)
}

/// The SQLSTATE of a failed statement (panics, naming it, if it succeeded).
fn code(result: &Json, what: &str) -> String {
    result["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("{what} was not refused: {result}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_sharing_a_pool_cannot_reach_each_others_objects_or_raise_their_privileges() {
    let pg = PostgresServer::start().unwrap();
    create_admin(&pg);
    let url = pg.url_as(ADMIN, ADMIN_PASSWORD, "postgres", "");
    let host = HostProcess::start(&shared_config(&format!("admin_url = \"{url}\""))).unwrap();
    let client = http1_client();

    // Tenant A keeps a secret in a table of its own.
    let (created, _) = sql(
        &client,
        &host,
        "a",
        None,
        &[
            json!("CREATE TABLE secrets (v text)"),
            json!("INSERT INTO secrets VALUES ('a-secret')"),
            json!("SELECT current_user, current_database()"),
        ],
    )
    .await;
    assert!(created[0].get("ok").is_some(), "{created:?}");
    assert_eq!(created[2]["ok"], json!([["hostel_a", "hostel_a"]]));

    // Tenant B, with the same pool and any SQL it likes, finds nothing of it.
    let who = one(
        &client,
        &host,
        "b",
        "SELECT current_user, current_database()",
    )
    .await;
    assert_eq!(who["ok"], json!([["hostel_b", "hostel_b"]]));
    assert_eq!(
        code(
            &one(&client, &host, "b", "SELECT * FROM secrets").await,
            "read"
        ),
        "42P01"
    );
    assert_eq!(
        code(
            &one(&client, &host, "b", "SELECT * FROM hostel_a.public.secrets").await,
            "cross-database"
        ),
        "0A000"
    );
    // Every way up is shut, by PostgreSQL itself.
    for attack in [
        "SET ROLE hostel_a",
        "SET ROLE hostel_admin",
        "SET ROLE postgres",
        "SELECT set_config('role', 'hostel_a', false)",
        "SET SESSION AUTHORIZATION hostel_a",
        "SET SESSION AUTHORIZATION postgres",
        "ALTER ROLE hostel_a PASSWORD 'taken'",
        "ALTER ROLE CURRENT_USER SUPERUSER",
        "ALTER ROLE CURRENT_USER CREATEROLE",
        "ALTER ROLE CURRENT_USER BYPASSRLS",
        "GRANT hostel_a TO CURRENT_USER",
        "CREATE ROLE evil LOGIN",
        "CREATE DATABASE evil",
        "DROP DATABASE hostel_a",
        "ALTER DATABASE hostel_a OWNER TO hostel_b",
        "COPY (SELECT 1) TO PROGRAM 'id'",
        "COPY (SELECT 1) TO '/tmp/hostile'",
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT pg_ls_dir('.')",
        "SELECT lo_import('/etc/passwd')::text",
        "CREATE EXTENSION dblink",
        "CREATE EXTENSION file_fdw",
        "LOAD 'auto_explain'",
    ] {
        let result = one(&client, &host, "b", attack).await;
        let refused = code(&result, attack);
        // 42501 insufficient_privilege, 0A000 feature_not_supported, 42704 undefined object;
        // pg_terminate_backend answers `false` for another role's backend instead.
        assert!(
            ["42501", "0A000", "42704", "58P01"].contains(&refused.as_str()),
            "{attack}: {result}"
        );
    }
    let terminated = one(
        &client,
        &host,
        "b",
        "SELECT bool_or(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = 'hostel_a'",
    )
    .await;
    assert_ne!(terminated["ok"], json!([[true]]), "{terminated}");

    // A's table is as A left it; B's role is as the host made it; nothing new exists.
    let kept = one(&client, &host, "a", "SELECT v FROM secrets").await;
    assert_eq!(kept["ok"], json!([["a-secret"]]));
    assert_eq!(
        pg.psql_in(
            "postgres",
            "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles \
             WHERE rolname LIKE 'hostel_%' OR rolname = 'evil' ORDER BY 1"
        )
        .unwrap(),
        "hostel_a|f|f|f|f\nhostel_admin|f|t|t|f\nhostel_b|f|f|f|f"
    );
    assert_eq!(
        pg.count("SELECT count(*) FROM pg_database WHERE datname = 'evil'")
            .unwrap(),
        0
    );
    // Not even a session of B's role can be opened on A's database.
    let crossed = pg.psql_as("hostel_b", "hostel_a", "SELECT 1").unwrap_err();
    assert!(
        format!("{crossed:#}").contains("permission denied"),
        "{crossed:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn provisioning_is_idempotent_and_repairs_what_a_tenant_changed() {
    let pg = PostgresServer::start().unwrap();
    create_admin(&pg);
    let url = pg.url_as(ADMIN, ADMIN_PASSWORD, "postgres", "");
    let config = shared_config(&format!("admin_url = \"{url}\"\nmax_connections = 1"));
    let host = HostProcess::start(&config).unwrap();
    let client = http1_client();
    assert!(
        one(&client, &host, "a", "CREATE TABLE kept (v int)")
            .await
            .get("ok")
            .is_some()
    );
    // Somebody with rights widens tenant A's role and opens its database to everyone.
    pg.psql_in(
        "postgres",
        "ALTER ROLE hostel_a CREATEDB; GRANT CONNECT ON DATABASE hostel_a TO PUBLIC",
    )
    .unwrap();
    // A restart provisions again: the same role and database, narrowed again, data kept.
    let host = host.restart(false).unwrap();
    assert!(
        one(&client, &host, "a", "INSERT INTO kept VALUES (1)")
            .await
            .get("ok")
            .is_some()
    );
    assert_eq!(
        pg.psql_in(
            "postgres",
            "SELECT rolcreatedb FROM pg_roles WHERE rolname = 'hostel_a'"
        )
        .unwrap(),
        "f"
    );
    let crossed = pg.psql_as("hostel_b", "hostel_a", "SELECT 1").unwrap_err();
    assert!(
        format!("{crossed:#}").contains("permission denied"),
        "{crossed:#}"
    );
    assert_eq!(
        pg.psql_as("postgres", "hostel_a", "SELECT count(*) FROM kept")
            .unwrap(),
        "1"
    );
}

#[test]
fn a_login_granted_to_two_tenants_is_refused_at_startup() {
    let pg = PostgresServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The same pool; then two pools with different settings but the same login.
    for pools in [
        format!(
            "[pools.shared]\nkind = \"postgres\"\nurl = \"{}\"\n",
            pg.url()
        ),
        format!(
            "[pools.one]\nkind = \"postgres\"\nurl = \"{url}\"\n\
             [pools.two]\nkind = \"postgres\"\nurl = \"{url}\"\nmax_connections = 3\n",
            url = pg.url()
        ),
    ] {
        let config = format!(
            "{pools}[tenants.a]\ngrants = {{ pools = [\"{first}\"] }}\nhosts = [\"a.test\"]\n\
             [tenants.b]\ngrants = {{ pools = [\"{second}\"] }}\nhosts = [\"b.test\"]\n",
            first = if pools.contains("pools.one") {
                "one"
            } else {
                "shared"
            },
            second = if pools.contains("pools.two") {
                "two"
            } else {
                "shared"
            },
        );
        std::fs::write(dir.path().join("hostel.toml"), config).unwrap();
        let (status, stderr) =
            run_hostel(&["check", "--config", "hostel.toml"], dir.path()).unwrap();
        assert!(!status.success(), "{stderr}");
        assert!(
            stderr.contains("tenants a, b") && stderr.contains("admin_url"),
            "names the tenants and the way out: {stderr}"
        );
    }
}

/// A dedicated pool of one connection: every request borrows the very same session.
fn one_connection_config(pg: &PostgresServer) -> String {
    format!(
        "[server]\ncode_cache = {cache}\n\
         [defaults.limits]\ntimeout = \"5s\"\n\
         [pools.shared]\nkind = \"postgres\"\nurl = \"{url}\"\nmax_connections = 1\n\
         [tenants.a]\nhosts = [\"a.test\"]\ngrants = {{ pools = [\"shared\"] }}\n\
         apps.probe = {{ route = \"/probe\", component = {probe} }}\n",
        cache = toml_path(&shared_code_cache()),
        url = pg.url(),
        probe = toml_path(&guest("pg-probe")),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn whatever_a_request_leaves_in_its_session_the_next_borrower_gets_a_clean_one() {
    let pg = PostgresServer::start().unwrap();
    pg.psql("CREATE TABLE writes (n int); CREATE TABLE shape (a int); CREATE ROLE lowly")
        .unwrap();
    let host = HostProcess::start(&one_connection_config(&pg)).unwrap();
    let client = http1_client();
    let run = |sql: &'static str| one(&client, &host, "a", sql);
    let ok = |result: Json, what: &str| {
        assert!(result.get("ok").is_some(), "{what}: {result}");
        result["ok"].clone()
    };

    // Each left-behind state, then what the next request (same connection) sees.
    let cases: &[(&str, &str, Json)] = &[
        (
            "SET statement_timeout = 1",
            "SELECT pg_sleep(0.05)::text",
            json!([[""]]),
        ),
        (
            "SET search_path = nowhere",
            "SHOW search_path",
            json!([["\"$user\", public"]]),
        ),
        (
            "SET ROLE lowly",
            "SELECT current_user::text",
            json!([["postgres"]]),
        ),
        (
            "SET SESSION AUTHORIZATION lowly",
            "SELECT session_user::text",
            json!([["postgres"]]),
        ),
        (
            "SET client_encoding = 'LATIN1'",
            "SELECT 'héllo ✓'::text",
            json!([["héllo ✓"]]),
        ),
        (
            "SET default_transaction_read_only = on",
            "INSERT INTO writes VALUES (0) RETURNING n",
            json!([[0]]),
        ),
        (
            "PREPARE mine AS SELECT 1",
            "PREPARE mine AS SELECT 2",
            json!([]),
        ),
        (
            "DO $$ BEGIN EXECUTE 'PREPARE sneaky AS SELECT 1'; END $$",
            "SELECT count(*)::int FROM pg_prepared_statements WHERE from_sql",
            json!([[0]]),
        ),
        (
            "LISTEN channel",
            "SELECT count(*)::int FROM pg_listening_channels()",
            json!([[0]]),
        ),
        (
            "CREATE TEMP TABLE scratch (x int)",
            "SELECT to_regclass('pg_temp.scratch')::text",
            json!([[null]]),
        ),
        (
            "SELECT pg_advisory_lock(42)",
            "SELECT count(*)::int FROM pg_locks WHERE locktype = 'advisory'",
            json!([[0]]),
        ),
        (
            "DECLARE held CURSOR WITH HOLD FOR SELECT 1",
            "SELECT count(*)::int FROM pg_cursors WHERE is_holdable",
            json!([[0]]),
        ),
        // The host's own cached statements, dropped or outdated by the guest, are made again.
        ("DEALLOCATE ALL", "SELECT 1 AS one", json!([[1]])),
        ("DISCARD ALL", "SELECT 1 AS one", json!([[1]])),
        (
            "ALTER TABLE shape ADD COLUMN b int",
            "SELECT * FROM shape",
            json!([]),
        ),
    ];
    assert_eq!(ok(run("SELECT 1 AS one").await, "warm"), json!([[1]]));
    assert_eq!(ok(run("SELECT * FROM shape").await, "warm"), json!([]));
    for (left, then, expected) in cases {
        let result = one(&client, &host, "a", left).await;
        assert!(result.get("ok").is_some(), "{left}: {result}");
        let after = one(&client, &host, "a", then).await;
        assert_eq!(
            after.get("ok"),
            Some(expected),
            "after {left:?}, {then:?}: {after}"
        );
    }
    // The ALTER changed the cached statement's columns: the answer has both.
    let shape = sql(
        &client,
        &host,
        "a",
        None,
        &[
            json!("INSERT INTO shape VALUES (1, 2)"),
            json!("SELECT * FROM shape"),
        ],
    )
    .await
    .0;
    assert_eq!(shape[1]["ok"], json!([[1, 2]]), "{shape:?}");
    assert_eq!(
        pg.count("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'hostel'")
            .unwrap(),
        1,
        "every case ran on the one connection"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_acknowledged_write_is_lost_to_a_transaction_another_request_left_open() {
    let pg = PostgresServer::start().unwrap();
    pg.psql("CREATE TABLE writes (n int)").unwrap();
    let host = HostProcess::start(&one_connection_config(&pg)).unwrap();
    let client = http1_client();

    // Transaction control outside the transaction API is refused, before it is sent.
    for statement in [
        "BEGIN",
        "start transaction",
        "/* hi */ BEGIN ISOLATION LEVEL SERIALIZABLE",
        "COMMIT",
        "END",
        "ROLLBACK",
        "ABORT",
    ] {
        let result = one(&client, &host, "a", statement).await;
        assert_eq!(code(&result, statement), "25000", "{statement}: {result}");
        assert!(
            result["error"]["message"]
                .as_str()
                .unwrap()
                .contains("transaction"),
            "{result}"
        );
    }
    // Inside the API, statements may not end the host's transaction behind its back, but
    // savepoints are the guest's.
    let (inside, finished) = sql(
        &client,
        &host,
        "a",
        Some("commit"),
        &[
            json!("INSERT INTO writes VALUES (1)"),
            json!("COMMIT"),
            json!("SAVEPOINT s"),
            json!("INSERT INTO writes VALUES (-1)"),
            json!("ROLLBACK TO SAVEPOINT s"),
            json!("SET statement_timeout = 1"),
        ],
    )
    .await;
    assert_eq!(code(&inside[1], "COMMIT inside"), "25000");
    assert!(
        inside[2].get("ok").is_some() && inside[4].get("ok").is_some(),
        "{inside:?}"
    );
    assert_eq!(finished, json!("ok"));
    // A transaction left open — the request ends with it uncommitted — is rolled back.
    let (_, left_open) = sql(
        &client,
        &host,
        "a",
        Some("open"),
        &[json!("INSERT INTO writes VALUES (-2)")],
    )
    .await;
    assert_eq!(left_open, Json::Null);
    // Every write the next requests are told succeeded is there, and nothing else.
    for n in 2..=20 {
        let result = one(
            &client,
            &host,
            "a",
            &format!("INSERT INTO writes VALUES ({n})"),
        )
        .await;
        assert!(result.get("ok").is_some(), "{result}");
    }
    let long = one(&client, &host, "a", "SELECT pg_sleep(0.05)::text").await;
    assert!(
        long.get("ok").is_some(),
        "the SET inside the committed transaction was reset: {long}"
    );
    assert_eq!(
        pg.psql("SELECT string_agg(n::text, ',' ORDER BY n) FROM writes")
            .unwrap(),
        (1..=20)
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(","),
    );
    assert_eq!(
        pg.count(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'hostel' \
             AND state LIKE 'idle in transaction%'"
        )
        .unwrap(),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_changed_under_a_statement_the_pool_knows_is_served_in_its_new_shape() {
    let pg = PostgresServer::start().unwrap();
    pg.psql("CREATE TABLE kinds (v int4)").unwrap();
    let host = HostProcess::start(&one_connection_config(&pg)).unwrap();
    let client = http1_client();
    let insert = |value: Json| json!({ "sql": "INSERT INTO kinds VALUES ($1)", "params": [value], "rows": false });
    let (first, _) = sql(&client, &host, "a", None, &[insert(json!(5))]).await;
    assert_eq!(first[0]["ok"], json!(1), "{first:?}");
    // The column becomes text: the remembered shape (an int4 parameter) no longer fits.
    pg.psql("ALTER TABLE kinds ALTER COLUMN v TYPE text")
        .unwrap();
    let (second, _) = sql(
        &client,
        &host,
        "a",
        None,
        &[
            insert(json!("five")),
            json!("SELECT v FROM kinds ORDER BY v"),
        ],
    )
    .await;
    assert_eq!(second[0]["ok"], json!(1), "{second:?}");
    assert_eq!(second[1]["ok"], json!([["5"], ["five"]]), "{second:?}");
    // A column added under a remembered SELECT * comes back with the rest.
    pg.psql("ALTER TABLE kinds ADD COLUMN n int4 DEFAULT 7")
        .unwrap();
    let (third, _) = sql(
        &client,
        &host,
        "a",
        None,
        &[json!("SELECT * FROM kinds ORDER BY v")],
    )
    .await;
    assert_eq!(third[0]["ok"], json!([["5", 7], ["five", 7]]), "{third:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_result_larger_than_the_guest_could_take_in_is_refused_without_the_host_holding_it() {
    let pg = PostgresServer::start().unwrap();
    let host = HostProcess::start(&one_connection_config(&pg)).unwrap();
    let client = http1_client();
    // 200 MB of rows, against the tenant's 64 MiB memory limit.
    let huge = one(
        &client,
        &host,
        "a",
        "SELECT repeat('x', 1000000) FROM generate_series(1, 200)",
    )
    .await;
    assert_eq!(code(&huge, "the huge result"), "54000", "{huge}");
    assert!(
        huge["error"]["message"]
            .as_str()
            .unwrap()
            .contains("memory limit"),
        "{huge}"
    );
    // The host read no more than the limit, and the one connection serves the next request.
    assert!(
        host.peak_rss() < 200 << 20,
        "peak RSS {} MiB",
        host.peak_rss() >> 20
    );
    let next = one(&client, &host, "a", "SELECT 1 AS one").await;
    assert_eq!(next["ok"], json!([[1]]), "{next}");
}
