//! Cluster mode with real parts: a 3-node `nats-server` cluster with JetStream (replicas 3),
//! `hostel` hosts running one config, and HAProxy health-checking them in front. Deploys
//! through one host are served by all, a late host catches up before it is ready, increments
//! through every host lose nothing, and neither a host killed with `kill -9`, a NATS node lost
//! nor NATS lost entirely costs a client a request or an acknowledged write.

use crate::admin::{ACME, OPERATOR, admin, deploy};
use hostel_tests::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The config every host of a test runs. `extra` is appended (tenants).
fn cluster_config(nats: &NatsCluster, extra: &str) -> String {
    format!(
        "[server]\ncode_cache = {cache}\n\
         [admin]\noperator_token_sha256 = \"{operator}\"\n\
         [cluster]\nurl = \"{urls}\"\nreplicas = 3\n\
         [stores.default]\nkind = \"nats\"\nurl = \"{urls}\"\nreplicas = 3\n\
         [tenants.acme]\nadmin_token_sha256 = \"{acme}\"\ngrants = {{ stores = [\"default\"] }}\n\
         [tenants.acme.apps.hello]\nroute = \"/hello\"\ncomponent = {hello}\n\
         {extra}",
        cache = toml_path(&shared_code_cache()),
        operator = token_sha256(OPERATOR),
        acme = token_sha256(ACME),
        urls = nats.urls(),
        hello = toml_path(&guest("hello")),
    )
}

/// One cluster at a time: three NATS nodes and three or four hosts per test are as much as two
/// cores carry beside the other tests (with several at once, JetStream's meta group was seen
/// to lose its peers for minutes: "no suitable peers for placement").
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// NATS, and `hosts` hosts on one config, each ready.
struct Cluster {
    // Dropped in this order: hosts, then NATS, then the turn.
    hosts: Vec<HostProcess>,
    nats: NatsCluster,
    config: String,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Cluster {
    async fn start(hosts: usize, extra: &str) -> Cluster {
        let turn = ONE_AT_A_TIME.lock().await;
        let nats = NatsCluster::start(3).unwrap();
        let config = cluster_config(&nats, extra);
        let mut cluster = Cluster {
            nats,
            config,
            hosts: Vec::new(),
            _turn: turn,
        };
        for _ in 0..hosts {
            cluster.add_host(None).await;
        }
        cluster
    }

    /// Starts one more host (on `config`, else the cluster's) and waits until it is ready.
    async fn add_host(&mut self, config: Option<&str>) -> &HostProcess {
        let host = HostProcess::start(config.unwrap_or(&self.config)).unwrap();
        ready(&host).await;
        self.hosts.push(host);
        self.hosts.last().unwrap()
    }

    /// Deploys the counter through host 1, waits until every host serves it and returns
    /// HAProxy in front of them all, every host UP.
    async fn serving_counter(&self) -> Haproxy {
        let (status, body) = deploy(
            &self.hosts[0],
            OPERATOR,
            "acme",
            "counter",
            "/counter",
            &counter(),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        on_every_host(&self.hosts, "/counter?peek", 200).await;
        let balancer = self.balancer();
        let up = balancer.wait_until_up(self.hosts.len(), Duration::from_secs(10));
        up.await.unwrap();
        balancer
    }

    fn balancer(&self) -> Haproxy {
        let backends: Vec<Backend> = self.hosts.iter().map(Backend::of).collect();
        Haproxy::start(&backends).unwrap()
    }
}

/// Waits (bounded: generous, as three NATS nodes and hosts share two cores with the other
/// tests) until `host` answers `/readyz` with 200.
async fn ready(host: &HostProcess) {
    let (client, url) = (http1_client(), host.admin_url("/readyz"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let reply = get(&client, &url).await.unwrap();
        if reply.status == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not ready: {}\n{}",
            reply.text(),
            host.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (at most 20 s) until `path` answers `status` on every host.
async fn on_every_host(hosts: &[HostProcess], path: &str, status: u16) {
    let client = http1_client();
    for host in hosts {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let reply = get(&client, &host.url(path)).await.unwrap();
            if reply.status == status {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{path} on {} answers {} ({}), not {status}\n{}",
                host.addr,
                reply.status,
                reply.text(),
                host.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn cluster_status(host: &HostProcess) -> Value {
    let (status, body) = admin(host, "GET", "/v1/cluster", Some(OPERATOR), "").await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits until every one of `hosts` reports the cluster's revision to the cluster.
async fn converged(host: &HostProcess, hosts: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = cluster_status(host).await;
        let revision = &status["revision"];
        let current = (status["hosts"].as_array().unwrap().iter())
            .filter(|h| &h["revision"] == revision)
            .count();
        if current >= hosts {
            return status;
        }
        assert!(Instant::now() < deadline, "not converged: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn counter() -> Vec<u8> {
    std::fs::read(guest("counter")).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deploy_through_one_host_is_served_by_all_and_a_late_host_is_ready_only_once_caught_up() {
    let mut cluster = Cluster::start(3, "").await;
    let hosts = &cluster.hosts;
    let (status, body) = deploy(
        &hosts[0],
        OPERATOR,
        "acme",
        "counter",
        "/counter",
        &counter(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // The host that took the deploy serves it when it answers; the others follow.
    let reply = get(&http1_client(), &hosts[0].url("/counter?peek"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    on_every_host(hosts, "/counter?peek", 200).await;

    let hello = std::fs::read(guest("hello")).unwrap();
    let (status, body) = deploy(&hosts[1], OPERATOR, "acme", "greeter", "/greet", &hello).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = admin(
        &hosts[2],
        "DELETE",
        "/v1/tenants/acme/apps/counter",
        Some(OPERATOR),
        "",
    )
    .await;
    assert_eq!(status, 204, "{body}");
    on_every_host(hosts, "/greet", 200).await;
    on_every_host(hosts, "/counter?peek", 404).await;
    // An app from the config is the config's, on every host.
    let (status, _) = admin(
        &hosts[0],
        "DELETE",
        "/v1/tenants/acme/apps/hello",
        Some(OPERATOR),
        "",
    )
    .await;
    assert_eq!(status, 409);
    let status = converged(&hosts[0], 3).await;
    assert!(
        (status["hosts"].as_array().unwrap().iter()).all(|h| h["failed"] == serde_json::json!([])),
        "{status}"
    );

    // A fourth host, joining now, says it is not ready until it serves the whole set.
    let late = HostProcess::start(&cluster.config).unwrap();
    let client = http1_client();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let probe = get(&client, &late.admin_url("/readyz")).await.unwrap();
        if probe.status == 200 {
            break;
        }
        assert!(
            probe.text().contains("catching up") || probe.text().contains("starting"),
            "{}",
            probe.text()
        );
        assert!(Instant::now() < deadline, "never ready: {}", late.log());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let reply = get(&client, &late.url("/greet")).await.unwrap();
    assert_eq!(
        reply.status,
        200,
        "ready, so it serves the set: {}",
        reply.text()
    );
    assert_eq!(
        get(&client, &late.url("/counter")).await.unwrap().status,
        404
    );
    cluster.hosts.push(late);
    converged(&cluster.hosts[3], 4).await;
    // Each host shows its own progress in its own series.
    for host in &cluster.hosts {
        let metrics = scrape(host, OPERATOR).await;
        assert!(
            value(&metrics, "hostel_cluster_manifest_revision") > 0.0,
            "{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deployment_a_host_cannot_serve_is_reported_there_and_the_rest_of_the_set_still_applies()
{
    // The third host runs an older config, without tenant globex (a rolling config change).
    let globex = "[tenants.globex]\nhosts = [\"globex.test\"]\n";
    let mut cluster = Cluster::start(2, globex).await;
    let older = cluster.config.replace(globex, "");
    cluster.add_host(Some(&older)).await;
    let hosts = &cluster.hosts;
    let hello = std::fs::read(guest("hello")).unwrap();
    let (status, body) = deploy(&hosts[0], OPERATOR, "globex", "site", "/", &hello).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = deploy(&hosts[0], OPERATOR, "acme", "greeter", "/greet", &hello).await;
    assert_eq!(status, 201, "{body}");
    on_every_host(hosts, "/greet", 200).await;
    let status = converged(&hosts[0], 3).await;
    let third = (status["hosts"].as_array().unwrap().iter())
        .find(|h| h["failed"] != serde_json::json!([]))
        .unwrap_or_else(|| panic!("no host reports a failure: {status}"));
    assert_eq!(third["failed"][0]["tenant"], "globex", "{status}");
    assert!(
        third["failed"][0]["error"]
            .as_str()
            .unwrap()
            .contains("not in this host's config"),
        "{status}"
    );
    let metrics = scrape(&hosts[2], OPERATOR).await;
    assert_eq!(
        value(&metrics, "hostel_cluster_apply_failures_total"),
        1.0,
        "{metrics}"
    );
    // The hosts that have the tenant serve its app.
    for host in &hosts[..2] {
        let request = http::Request::get(host.url("/"))
            .header("host", "globex.test")
            .body(Default::default())
            .unwrap();
        assert_eq!(send(&http1_client(), request).await.unwrap().status, 200);
    }
}

/// `clients` clients, `each` GETs of `path` through `balancer` each; the replies' statuses and
/// bodies. `midway` runs once a third of them are done.
async fn load<F: std::future::Future<Output = ()>>(
    balancer: &Haproxy,
    path: &str,
    clients: usize,
    each: usize,
    midway: impl FnOnce() -> F,
) -> Vec<(u16, String)> {
    let third = Arc::new(AtomicBool::new(false));
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (url, done, third) = (balancer.url(path), done.clone(), third.clone());
            tokio::spawn(async move {
                let client = http1_client();
                let mut replies = Vec::new();
                for _ in 0..each {
                    let reply = get(&client, &url).await;
                    replies.push(match reply {
                        Ok(reply) => (reply.status, reply.text()),
                        Err(e) => (0, format!("{e:#}")),
                    });
                    if done.fetch_add(1, Ordering::SeqCst) + 1 == clients * each / 3 {
                        third.store(true, Ordering::SeqCst);
                    }
                }
                replies
            })
        })
        .collect();
    while !third.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    midway().await;
    let mut replies = Vec::new();
    for task in tasks {
        replies.extend(task.await.unwrap());
    }
    replies
}

/// The counts the counter answered; panics, showing them, if any request failed.
fn counts(replies: &[(u16, String)]) -> Vec<u64> {
    let failed: Vec<_> = replies
        .iter()
        .filter(|(status, _)| *status != 200)
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        replies.len()
    );
    replies
        .iter()
        .map(|(_, text)| text.trim().parse().unwrap())
        .collect()
}

async fn peek(host: &HostProcess) -> u64 {
    let reply = get(&http1_client(), &host.url("/counter?peek"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text().trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn increments_through_three_hosts_lose_nothing_and_usage_and_metrics_add_up_across_hosts() {
    let cluster = Cluster::start(3, "").await;
    let hosts = &cluster.hosts;
    let balancer = cluster.serving_counter().await;

    let replies = load(&balancer, "/counter", 12, 20, || async {}).await;
    let counts = counts(&replies);
    // Every increment saw a count of its own: none was lost or applied twice.
    let distinct: BTreeSet<u64> = counts.iter().copied().collect();
    assert_eq!(distinct, (1..=240).collect(), "{counts:?}");
    for host in hosts {
        assert_eq!(peek(host).await, 240);
    }

    // Each host counts its own requests; together they are all of them. Usage, asked of any
    // host, is the cluster's: once every host has flushed (every 10 s), it has them all.
    let mut per_host = Vec::new();
    for host in hosts {
        let metrics = scrape(host, OPERATOR).await;
        let series = "hostel_requests_total{tenant=\"acme\",app=\"counter\",class=\"2xx\"}";
        per_host.push(sample(&metrics, series).unwrap_or(0.0) as u64);
    }
    let total: u64 = per_host.iter().sum();
    assert!(
        per_host.iter().all(|n| *n >= 40),
        "round robin: {per_host:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (status, usage) = admin(&hosts[1], "GET", "/v1/usage", Some(OPERATOR), "").await;
        assert_eq!(status, 200, "{usage}");
        let requests: u64 = (usage["usage"].as_array().unwrap().iter())
            .filter(|row| row["tenant"] == "acme" && row["app"] == "counter")
            .map(|row| row["requests"].as_u64().unwrap())
            .sum();
        assert!(
            requests <= total,
            "usage counts more than was served: {requests} > {total}"
        );
        if requests == total {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "usage {requests} of {total}: {usage}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // A tenant's token sees its own, over any range (all of time is read from what is stored,
    // not hour by hour), and not the cluster's hosts.
    let all_time = "/v1/usage?from=0&to=253402300799";
    let (status, usage) = admin(&hosts[2], "GET", all_time, Some(ACME), "").await;
    assert_eq!(status, 200, "{usage}");
    let rows = usage["usage"].as_array().unwrap();
    assert!(rows.iter().all(|row| row["tenant"] == "acme"), "{usage}");
    let requests: u64 = (rows.iter())
        .filter(|row| row["app"] == "counter")
        .map(|row| row["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(requests, total, "{usage}");
    let (status, _) = admin(&hosts[2], "GET", "/v1/cluster", Some(ACME), "").await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_killed_under_load_fails_no_request_through_haproxy_and_loses_no_write() {
    let mut cluster = Cluster::start(3, "").await;
    let balancer = cluster.serving_counter().await;

    let victim = cluster.hosts.remove(1);
    let replies = load(&balancer, "/counter", 8, 40, || async move {
        let mut victim = victim;
        victim.signal(libc::SIGKILL);
        victim.wait_exit(Duration::from_secs(10)).unwrap();
    })
    .await;
    let counts = counts(&replies);
    let answered = counts.len() as u64;
    let stored = peek(&cluster.hosts[0]).await;
    // Every acknowledged increment is stored. HAProxy replays a request whose host died
    // before answering, so one the dead host had already stored can count twice.
    assert!(
        stored >= answered,
        "lost writes: {stored} stored, {answered} acknowledged"
    );
    let distinct: BTreeSet<u64> = counts.iter().copied().collect();
    assert_eq!(distinct.len(), counts.len(), "two answers saw one count");
    eprintln!(
        "{answered} acknowledged, {stored} stored, {} replayed",
        stored - answered
    );
    assert!(
        stored - answered <= 8,
        "at most one replay per client in flight"
    );
    balancer
        .wait_until_up(2, Duration::from_secs(10))
        .await
        .unwrap();
    // A host restarted on the same config catches up and serves again.
    cluster.add_host(None).await;
    assert_eq!(peek(cluster.hosts.last().unwrap()).await, stored);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nats_node_lost_and_restarted_changes_nothing_a_client_sees() {
    let mut cluster = Cluster::start(3, "").await;
    let balancer = cluster.serving_counter().await;

    let nats = &mut cluster.nats;
    let hello = std::fs::read(guest("hello")).unwrap();
    let host = &cluster.hosts[2];
    let replies = load(&balancer, "/counter", 8, 40, move || async move {
        nats.kill(0);
        // Two of three nodes: JetStream still has a quorum, so deploys go on too.
        let (status, body) = deploy(host, OPERATOR, "acme", "greeter", "/greet", &hello).await;
        assert_eq!(status, 201, "{body}");
        nats.restart(0).unwrap();
    })
    .await;
    let counts = counts(&replies);
    let distinct: BTreeSet<u64> = counts.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        counts.len(),
        "two answers saw one count: {counts:?}"
    );
    assert_eq!(
        peek(&cluster.hosts[1]).await,
        counts.len() as u64,
        "every write once"
    );
    on_every_host(&cluster.hosts, "/greet", 200).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_nats_gone_hosts_serve_the_last_set_refuse_deploys_and_recover_without_a_restart() {
    let mut cluster = Cluster::start(2, "").await;
    let hosts = &cluster.hosts;
    let (status, body) = deploy(
        &hosts[0],
        OPERATOR,
        "acme",
        "counter",
        "/counter",
        &counter(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    on_every_host(hosts, "/counter?peek", 200).await;
    let client = http1_client();
    for i in 0..3 {
        cluster.nats.kill(i);
    }
    let hosts = &cluster.hosts;
    for host in hosts {
        // The last set is served: the app from the config and the deployed one.
        assert_eq!(get(&client, &host.url("/hello")).await.unwrap().status, 200);
        let reply = get(&client, &host.url("/counter")).await.unwrap();
        assert_eq!(reply.status, 500, "{}", reply.text());
        assert!(reply.text().contains("unavailable"), "{}", reply.text());
        assert!(reply.request_id().is_some());
        // Still ready: with NATS gone for every host, taking them out would serve no one.
        assert_eq!(
            get(&client, &host.admin_url("/readyz"))
                .await
                .unwrap()
                .status,
            200
        );
    }
    let hello = std::fs::read(guest("hello")).unwrap();
    let (status, body) = deploy(&hosts[1], OPERATOR, "acme", "greeter", "/greet", &hello).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("unavailable"),
        "{body}"
    );
    let (status, _) = admin(
        &hosts[1],
        "DELETE",
        "/v1/tenants/acme/apps/counter",
        Some(OPERATOR),
        "",
    )
    .await;
    assert_eq!(status, 503);

    cluster.nats.restart_all().unwrap();
    let hosts = &cluster.hosts;
    on_every_host(hosts, "/counter?peek", 200).await;
    let reply = until_status(201, || async {
        let (status, body) = deploy(&hosts[1], OPERATOR, "acme", "greeter", "/greet", &hello).await;
        Ok(Reply {
            status,
            headers: Default::default(),
            body: body.to_string().into(),
        })
    })
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    on_every_host(hosts, "/greet", 200).await;
    assert_eq!(
        peek(&hosts[0]).await,
        0,
        "the failed increments stored nothing"
    );
}
