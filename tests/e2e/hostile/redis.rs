//! Tenants cannot reach each other's data: a hostile guest of tenant B tries tenant A's
//! Redis and key-value keys by name, by A's prefix and through the generic command call, and
//! finds nothing; commands that could cross tenants are refused; A's data is untouched.

use hostel_tests::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_guest_cannot_read_write_or_scan_another_tenants_keys() {
    let redis = RedisServer::start().unwrap();
    let apps = format!(
        "apps.counter = {{ route = \"/counter\", component = {counter} }}\n\
         apps.rc = {{ route = \"/rc\", component = {rc} }}\n\
         apps.probe = {{ route = \"/probe\", component = {probe} }}\n\
         grants = {{ stores = [\"default\"], pools = [\"cache\"] }}\n",
        counter = toml_path(&guest("counter")),
        rc = toml_path(&guest("redis-counter")),
        probe = toml_path(&guest("guest-redis-probe")),
    );
    let config = format!(
        "[server]\ncode_cache = {cache}\n\
         [stores.default]\nkind = \"embedded\"\npath = \"kv.redb\"\n\
         [pools.cache]\nkind = \"redis\"\nurl = \"{url}\"\n\
         [tenants.a]\nhosts = [\"a.test\"]\n{apps}\
         [tenants.b]\nhosts = [\"b.test\"]\n{apps}",
        cache = toml_path(&shared_code_cache()),
        url = redis.url(),
    );
    let host = HostProcess::start(&config).unwrap();
    let client = http1_client();
    let call = |tenant: &str, path: &str, command: Option<&str>| {
        let mut request =
            http::Request::get(host.url(path)).header("host", format!("{tenant}.test"));
        if let Some(command) = command {
            request = request.header("x-command", command);
        }
        send(&client, request.body(Default::default()).unwrap())
    };

    // Tenant A counts to 3 in Redis and in the key-value store.
    for n in 1..=3 {
        assert_eq!(
            call("a", "/rc/x", None).await.unwrap().text(),
            format!("{n}\n")
        );
        assert_eq!(
            call("a", "/counter/x", None).await.unwrap().text(),
            format!("{n}\n")
        );
    }
    // The same paths in tenant B are B's own counters.
    assert_eq!(call("b", "/rc/x?peek", None).await.unwrap().text(), "0\n");
    assert_eq!(
        call("b", "/counter/x?peek", None).await.unwrap().text(),
        "0\n"
    );

    // B's guest names A's keys outright, through the generic call.
    for command in [
        "GET hits:/rc/x",
        "GET tenant:a:hits:/rc/x",
        "MGET hits:/rc/x tenant:a:hits:/rc/x",
    ] {
        let reply = call("b", "/probe/raw", Some(command)).await.unwrap();
        assert_eq!(reply.status, 200, "{command}: {}", reply.text());
        // Nothing there: B's namespace has no such keys.
        assert!(
            reply.text().contains("Nil") && !reply.text().contains("Data("),
            "{command} found a value: {}",
            reply.text()
        );
    }
    // Writes land in B's own namespace, whatever the key says.
    let reply = call("b", "/probe/raw", Some("SET tenant:a:hits:/rc/x 999"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    // Listing, scanning, flushing, scripting, switching databases: refused.
    for command in [
        "KEYS *",
        "SCAN 0",
        "FLUSHDB",
        "FLUSHALL",
        "EVAL return 1 0",
        "SELECT 1",
        "CONFIG GET *",
    ] {
        let reply = call("b", "/probe/raw", Some(command)).await.unwrap();
        assert_eq!(reply.status, 500, "{command}: {}", reply.text());
        assert!(
            reply.text().contains("Refused"),
            "{command}: {}",
            reply.text()
        );
    }

    // A's data is as A left it.
    assert_eq!(call("a", "/rc/x?peek", None).await.unwrap().text(), "3\n");
    assert_eq!(
        call("a", "/counter/x?peek", None).await.unwrap().text(),
        "3\n"
    );
    assert_eq!(
        redis.cli(&["GET", "tenant:a:hits:/rc/x"]).unwrap().trim(),
        "3"
    );
    assert_eq!(
        redis
            .cli(&["GET", "tenant:b:tenant:a:hits:/rc/x"])
            .unwrap()
            .trim(),
        "999"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_blocking_redis_cannot_stall_another_tenants_commands() {
    let redis = RedisServer::start().unwrap();
    let probe = toml_path(&guest("guest-redis-probe"));
    let config = format!(
        "[server]\ncode_cache = {cache}\n[defaults.limits]\ntimeout = \"4s\"\n\
         [pools.cache]\nkind = \"redis\"\nurl = \"{url}\"\n\
         [tenants.a]\nhosts = [\"a.test\"]\ngrants = {{ pools = [\"cache\"] }}\n\
         apps.probe = {{ route = \"/probe\", component = {probe} }}\n\
         [tenants.b]\nhosts = [\"b.test\"]\ngrants = {{ pools = [\"cache\"] }}\n\
         apps.probe = {{ route = \"/probe\", component = {probe} }}\n",
        cache = toml_path(&shared_code_cache()),
        url = redis.url(),
    );
    let host = HostProcess::start(&config).unwrap();
    let client = http1_client();
    let raw = |tenant: &str, command: &str| {
        let request = http::Request::get(host.url("/probe/raw"))
            .header("host", format!("{tenant}.test"))
            .header("x-command", command)
            .body(Default::default())
            .unwrap();
        send(&client, request)
    };
    // On the connection every tenant shares, blocking commands and WATCH are refused.
    for command in [
        "BLPOP q 0",
        "BRPOP q 0",
        "BLMOVE a b LEFT LEFT 0",
        "BZPOPMIN z 0",
        "WATCH k",
    ] {
        let reply = raw("b", command).await.unwrap();
        assert_eq!(reply.status, 500, "{command}: {}", reply.text());
        assert!(
            reply.text().contains("Refused") && reply.text().contains("transaction"),
            "{}",
            reply.text()
        );
    }
    // B blocks its own leased connections until its deadline; meanwhile A's commands flow.
    let blocked: Vec<_> = (0..4)
        .map(|_| {
            let request = http::Request::get(host.url("/probe/hold?n=1&then=block"))
                .header("host", "b.test")
                .body(Default::default())
                .unwrap();
            let client = client.clone();
            tokio::spawn(async move { send(&client, request).await })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for n in 1..=20 {
        let reply = raw("a", "INCR served").await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert!(
            reply.text().contains(&format!("Int({n})")),
            "{}",
            reply.text()
        );
    }
    for request in blocked {
        assert_eq!(request.await.unwrap().unwrap().status, 504);
    }
    assert_eq!(redis.cli(&["GET", "tenant:a:served"]).unwrap().trim(), "20");
}
