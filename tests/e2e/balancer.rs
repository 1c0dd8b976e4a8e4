//! Hosts behind a load balancer (a real HAProxy, `tests/support/haproxy.rs`): both hosts serve,
//! a host killed with SIGKILL under a stream of GETs costs the clients no request (HAProxy
//! retries what failed on the other host), and a host stopped with SIGTERM leaves through its
//! readiness probe.

use hostel_tests::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TOKEN: &str = "balancer-operator-token";

/// The hello at `/` and the echo guest (`/echo/slow?ms=N` answers after N ms), with an
/// `[admin]` section for `/readyz`, which the balancer checks.
fn host_config(server: &str) -> String {
    format!(
        "[server]\ncode_cache = {cache}\n{server}\n\
         [apps.hello]\nroute = \"/\"\ncomponent = {hello}\n\
         [apps.echo]\nroute = \"/echo\"\ncomponent = {echo}\n\
         [admin]\noperator_token_sha256 = \"{hash}\"\n",
        cache = toml_path(&shared_code_cache()),
        hello = toml_path(&guest("hello")),
        echo = toml_path(&guest("guest-echo")),
        hash = token_sha256(TOKEN),
    )
}

/// Two hosts on `server` settings and a balancer in front of them, both servers UP.
async fn two_hosts_behind_haproxy(server: &str) -> (HostProcess, HostProcess, Haproxy) {
    let first = HostProcess::start(&host_config(server)).unwrap();
    let second = HostProcess::start(&host_config(server)).unwrap();
    let haproxy = Haproxy::start(&[Backend::of(&first), Backend::of(&second)]).unwrap();
    haproxy
        .wait_until_up(2, Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e:#}\nhaproxy:\n{}", haproxy.log()));
    (first, second, haproxy)
}

/// Clients sending GETs through the balancer, one after another each, until told to stop (or
/// `MAX_PER_CLIENT` each): half to the hello, half to a 100 ms echo, so that some requests
/// are always in flight on each host. Every answer that is not the expected 200 is kept.
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    clients: Vec<tokio::task::JoinHandle<()>>,
}

const MAX_PER_CLIENT: usize = 3000;

impl Load {
    fn start(haproxy: &Haproxy, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let clients = (0..clients)
            .map(|i| {
                let (path, expected) = if i % 2 == 0 {
                    ("/", "Hello from Hostel!")
                } else {
                    ("/echo/slow?ms=100", "slept 100 ms")
                };
                let url = haproxy.url(path);
                let (stop, sent, failures) = (stop.clone(), sent.clone(), failures.clone());
                tokio::spawn(async move {
                    let client = http1_client();
                    for _ in 0..MAX_PER_CLIENT {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let reply =
                            tokio::time::timeout(Duration::from_secs(15), get(&client, &url)).await;
                        let failure = match reply {
                            Ok(Ok(reply)) if reply.status == 200 => {
                                (!reply.text().starts_with(expected))
                                    .then(|| format!("{url}: unexpected body {:?}", reply.text()))
                            }
                            Ok(Ok(reply)) => {
                                Some(format!("{url}: {} {}", reply.status, reply.text()))
                            }
                            Ok(Err(e)) => Some(format!("{url}: {e:#}")),
                            Err(_) => Some(format!("{url}: no answer within 15 s")),
                        };
                        if let Some(failure) = failure {
                            failures.lock().unwrap().push(failure);
                        }
                        sent.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        Load {
            stop,
            sent,
            failures,
            clients,
        }
    }

    /// Waits (at most 30 s) until `more` requests beyond those answered so far are answered.
    async fn answered(&self, more: usize) {
        let target = self.sent.load(Ordering::SeqCst) + more;
        for _ in 0..600 {
            if self.sent.load(Ordering::SeqCst) >= target {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the clients did not get {more} more answers within 30 s");
    }

    /// Stops the clients: how many requests they sent, and every failure.
    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        for client in self.clients {
            client.await.expect("a client panicked");
        }
        let failures = self.failures.lock().unwrap().clone();
        (self.sent.load(Ordering::SeqCst), failures)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn both_hosts_serve_and_a_host_killed_under_load_costs_no_request() {
    let (first, mut second, haproxy) = two_hosts_behind_haproxy("").await;

    // Round robin: both hosts answer.
    let client = http1_client();
    for _ in 0..20 {
        let text = ok_text(&client, &haproxy.url("/")).await;
        assert!(text.starts_with("Hello from Hostel!"), "{text}");
    }
    let servers = haproxy.servers().await.unwrap();
    assert_eq!(servers.len(), 2, "{servers:?}");
    for server in &servers {
        assert!(
            server.responses_2xx > 0,
            "{} served nothing: {servers:?}",
            server.name
        );
    }
    assert_eq!(
        servers.iter().map(|s| s.responses_2xx).sum::<u64>(),
        20,
        "{servers:?}"
    );

    // SIGKILL one host while clients keep sending: what it had in flight and what reached it
    // before its checks failed are retried on the other one.
    let load = Load::start(&haproxy, 4);
    load.answered(40).await;
    second.signal(libc::SIGKILL);
    second.wait_exit(Duration::from_secs(10)).unwrap();
    haproxy
        .wait_until_up(1, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(haproxy.up_servers().await.unwrap(), ["s0"]);
    // And on, with one host.
    load.answered(40).await;
    let (sent, failures) = load.finish().await;
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed through the balancer:\n{}\nhaproxy:\n{}\nthe host left:\n{}",
        failures.len(),
        failures.join("\n"),
        haproxy.log(),
        first.log()
    );
    // The retries did happen: the test went through the path it is about.
    let backend = haproxy.backend().await.unwrap();
    assert!(
        backend.retries + backend.redispatches > 0,
        "no request was retried: {backend:?}"
    );
    eprintln!("{sent} requests, none failed; backend {backend:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_stopped_with_sigterm_leaves_through_readyz_without_a_failed_request() {
    // The drain delay outlasts two failed checks 200 ms apart: the balancer has stopped sending
    // before the listener closes.
    let (_first, mut second, haproxy) = two_hosts_behind_haproxy("drain_delay = \"1s\"").await;
    let load = Load::start(&haproxy, 4);
    load.answered(40).await;
    second.signal(libc::SIGTERM);
    haproxy
        .wait_until_up(1, Duration::from_secs(10))
        .await
        .unwrap();
    let status = second.wait_exit(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "{status}\n{}", second.log());
    load.answered(40).await;
    let (sent, failures) = load.finish().await;
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed through the balancer:\n{}\nhaproxy:\n{}",
        failures.len(),
        failures.join("\n"),
        haproxy.log()
    );
}

#[test]
fn a_balancer_that_cannot_start_says_why() {
    let backend = Backend {
        app: "127.0.0.1:not-a-port".into(),
        admin: "127.0.0.1:1".into(),
    };
    let error = format!("{:#}", Haproxy::start(&[backend]).err().expect("no start"));
    assert!(
        error.contains("haproxy exited at startup") && error.contains("not-a-port"),
        "{error}"
    );
}
