//! One conformance suite for every guest language, and for Rust and Python as WASI 0.2 handlers
//! and as WASI 0.3 services (`rust-p3`, `python-p3`: the `*-p3` examples): the same requests against each
//! language's examples (`hello`, a key-value `counter` and a Redis `redis-counter` that count
//! by a `wasi:config` variable, an outbound `aggregator`), the same expected answers. Adding a language means adding it to
//! [`LANGUAGES`] and building its examples; a missing example fails the suite.

use hostel_tests::*;

/// Every language with examples under `components/` (`rust-p3`, `python-p3`: the examples
/// built as WASI 0.3 services, `components/NAME-p3`, `components/python/NAME-p3`).
const LANGUAGES: &[&str] = &["rust", "rust-p3", "python", "python-p3", "js", "c"];

/// The example apps every language provides, mounted at `/LANGUAGE/APP`.
const APPS: &[&str] = &["hello", "counter", "redis-counter", "aggregator"];

/// One host serving every language's examples, with the key-value store, a Redis pool and an
/// upstream for the aggregators granted.
struct Suite {
    host: HostProcess,
    redis: RedisServer,
    upstream: Upstream,
    client: HttpClient,
}

impl Suite {
    async fn start() -> Suite {
        let redis = RedisServer::start().unwrap();
        let upstream = Upstream::start(std::time::Duration::ZERO).await;
        let server = upstream.addr;
        let mut apps = String::new();
        for language in LANGUAGES {
            for app in APPS {
                apps += &format!(
                    "[apps.{language}-{app}]\nroute = \"/{language}/{app}\"\ncomponent = {}\n",
                    toml_path(&example(language, app))
                );
            }
        }
        let config = format!(
            "[server]\ncode_cache = {cache}\n\
             [defaults.limits]\nmemory = \"128MiB\"\n\
             [stores.default]\nkind = \"embedded\"\npath = \"data/kv.redb\"\n\
             [pools.cache]\nkind = \"redis\"\nurl = \"{redis}\"\n\
             [grants]\nstores = [\"default\"]\npools = [\"cache\"]\n\
             outbound = [\"http://{server}\"]\n\
             env = {{ UPSTREAMS = \"http://{server}/a,http://{server}/b,http://{server}/c\" }}\n\
             variables = {{ step = \"2\" }}\n\
             {apps}",
            cache = toml_path(&shared_code_cache()),
            redis = redis.url(),
        );
        let host = HostProcess::start(&config).unwrap();
        Suite {
            host,
            redis,
            upstream,
            client: http1_client(),
        }
    }

    async fn call(&self, method: &str, path: &str) -> Reply {
        let request = http::Request::builder()
            .method(method)
            .uri(self.host.url(path))
            .body(Default::default())
            .unwrap();
        send(&self.client, request).await.unwrap()
    }

    /// Sends `method path` to `language`'s app and checks status and body.
    async fn expect(&self, language: &str, method: &str, path: &str, status: u16, body: &str) {
        let reply = self.call(method, &format!("/{language}{path}")).await;
        assert_eq!(
            (reply.status, reply.text().as_str()),
            (status, body),
            "{language}: {method} {path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_language_answers_alike() {
    let suite = Suite::start().await;
    for &language in LANGUAGES {
        // hello
        let path = format!("/{language}/hello/some/where");
        let reply = suite.call("GET", &path).await;
        assert_eq!(reply.status, 200, "{language}");
        assert_eq!(
            reply.text(),
            format!("Hello from Hostel! You asked for {path}\n")
        );
        assert_eq!(
            reply.headers["content-type"], "text/plain; charset=utf-8",
            "{language}"
        );
        assert!(reply.request_id().is_some(), "{language}");

        // The key-value counter and the Redis counter behave the same, counting by the
        // tenant's `step` variable (2), which each language reads through wasi:config.
        for app in ["counter", "redis-counter"] {
            let at = format!("/{app}/x");
            for n in 1..=3 {
                suite
                    .expect(language, "GET", &at, 200, &format!("{}\n", 2 * n))
                    .await;
            }
            suite
                .expect(language, "GET", &format!("{at}?peek"), 200, "6\n")
                .await;
            suite.expect(language, "DELETE", &at, 200, "0\n").await;
            suite.expect(language, "GET", &at, 200, "2\n").await;
            suite
                .expect(language, "POST", &at, 405, "use GET or DELETE\n")
                .await;
        }

        // The aggregator: every upstream's answer, in order, as JSON.
        let reply = suite.call("GET", &format!("/{language}/aggregator")).await;
        assert_eq!(reply.status, 200, "{language}: {}", reply.text());
        assert_eq!(
            reply.headers["content-type"], "application/json",
            "{language}"
        );
        let answer: serde_json::Value = serde_json::from_str(&reply.text())
            .unwrap_or_else(|e| panic!("{language}: not JSON ({e}): {}", reply.text()));
        let server = suite.upstream.addr;
        let expected: serde_json::Value = ["a", "b", "c"]
            .iter()
            .map(|p| {
                serde_json::json!({
                    "url": format!("http://{server}/{p}"),
                    "status": 200,
                    "body": format!("ok /{p}"),
                })
            })
            .collect();
        assert_eq!(answer, expected, "{language}");
    }
    // The Redis counters wrote under the tenant's prefix, never a bare key.
    for key in suite.redis.cli(&["KEYS", "*"]).unwrap().lines() {
        assert!(key.starts_with("tenant:default:"), "{key}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_language_reports_an_unavailable_redis_as_503() {
    let mut suite = Suite::start().await;
    suite.redis.kill();
    for &language in LANGUAGES {
        let reply = suite
            .call("GET", &format!("/{language}/redis-counter/y"))
            .await;
        assert_eq!(reply.status, 503, "{language}: {}", reply.text());
        assert!(
            reply.text().starts_with("Redis unavailable: "),
            "{language}: {}",
            reply.text()
        );
        suite
            .expect(
                language,
                "GET",
                "/hello/",
                200,
                &format!("Hello from Hostel! You asked for /{language}/hello/\n"),
            )
            .await;
    }
}
