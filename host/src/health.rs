//! Liveness and readiness, as a load balancer or Kubernetes probes them (`GET /healthz`,
//! `GET /readyz` on the admin listener, without a token).
//!
//! Ready means: the apps are loaded and the app listener serves, every pool configured
//! `connect = "required"` answers right now, in cluster mode the host has caught up with the
//! cluster's deployed set once, and the host is not draining. The answers say
//! which condition fails and nothing more — no tenant, pool name or address — because the
//! probes are unauthenticated; the log names the pool.

use crate::capabilities::servers::ServerPool;
use bytes::Bytes;
use futures_util::future::join_all;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long one probe of a required pool may take: a server that needs longer counts as down,
/// and a probe never waits for the pool's own (longer) timeouts.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a pool check's result is reused, so that probes — from several load balancers at
/// once, or a tight loop — cannot hammer the servers.
pub const CHECK_CACHE: Duration = Duration::from_secs(1);

/// A pool that must be reachable for the host to be ready.
struct RequiredPool {
    /// The config names sharing it and its address (redacted), for the log only.
    names: String,
    address: String,
    pool: Arc<dyn ServerPool>,
}

/// The last check of the required pools.
struct PoolCheck {
    at: Instant,
    /// Index into `required` of each pool that did not answer.
    down: Vec<usize>,
}

/// Whether the host should get traffic; owned by the [`crate::Host`].
pub struct Readiness {
    serving: AtomicBool,
    /// Cluster mode: false until the host serves the cluster's deployed set.
    caught_up: AtomicBool,
    draining: AtomicBool,
    required: Vec<RequiredPool>,
    /// An async lock: probes that arrive while a check runs wait for its result instead of
    /// starting checks of their own.
    last: tokio::sync::Mutex<Option<PoolCheck>>,
}

impl Readiness {
    /// `required`: (config names, redacted address, pool) of every `connect = "required"` pool.
    pub fn new(required: impl IntoIterator<Item = (String, String, Arc<dyn ServerPool>)>) -> Self {
        Readiness {
            serving: AtomicBool::new(false),
            caught_up: AtomicBool::new(true),
            draining: AtomicBool::new(false),
            required: required
                .into_iter()
                .map(|(names, address, pool)| RequiredPool {
                    names,
                    address,
                    pool,
                })
                .collect(),
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// The apps are loaded, the pools started and the app listener accepts.
    pub fn set_serving(&self) {
        self.serving.store(true, Ordering::Release);
    }

    /// Cluster mode: not ready until [`Readiness::set_caught_up`].
    pub fn expect_catch_up(&self) {
        self.caught_up.store(false, Ordering::Release);
    }

    /// The host serves the cluster's deployed set as it was when the host (re)connected.
    pub fn set_caught_up(&self) {
        self.caught_up.store(true, Ordering::Release);
    }

    /// From now on the host is not ready, for good: it is shutting down.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Ready, or every reason why not (short, and safe to show to anyone).
    pub async fn check(&self) -> Result<(), Vec<String>> {
        let mut reasons = Vec::new();
        if !self.serving.load(Ordering::Acquire) {
            reasons.push("starting: the apps are not served yet".to_string());
        }
        if !self.caught_up.load(Ordering::Acquire) {
            reasons.push("catching up: the cluster's deployed set is not served yet".to_string());
        }
        if self.is_draining() {
            // The answer is "no" whatever the pools say, and they are about to close.
            reasons.push("draining: the host is shutting down".to_string());
            return Err(reasons);
        }
        let down = self.pools_down().await;
        if down > 0 {
            reasons.push(format!(
                "{down} of {} required pools unreachable",
                self.required.len()
            ));
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }

    /// How many required pools did not answer, checked at most once per [`CHECK_CACHE`].
    async fn pools_down(&self) -> usize {
        if self.required.is_empty() {
            return 0;
        }
        let mut last = self.last.lock().await;
        if let Some(check) = last.as_ref()
            && check.at.elapsed() < CHECK_CACHE
        {
            return check.down.len();
        }
        let checks = self.required.iter().map(|required| async {
            match tokio::time::timeout(CHECK_TIMEOUT, required.pool.check()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(format!("{e:#}")),
                Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
            }
        });
        let results = join_all(checks).await;
        let was_down = last.as_ref().map(|c| c.down.clone()).unwrap_or_default();
        let mut down = Vec::new();
        for (i, (required, result)) in self.required.iter().zip(results).enumerate() {
            let (names, address) = (&required.names, &required.address);
            match result {
                // Logged when a pool changes state, not at every probe.
                Err(e) => {
                    if !was_down.contains(&i) {
                        tracing::warn!(pool = %names, %address, "not ready: required pool unreachable: {e}");
                    }
                    down.push(i);
                }
                Ok(()) if was_down.contains(&i) => {
                    tracing::info!(pool = %names, %address, "required pool reachable again");
                }
                Ok(()) => {}
            }
        }
        let count = down.len();
        *last = Some(PoolCheck {
            at: Instant::now(),
            down,
        });
        count
    }

    /// The answer to `GET /readyz`: 200, or 503 with the reasons.
    pub async fn response(&self) -> Response<Full<Bytes>> {
        match self.check().await {
            Ok(()) => answer(StatusCode::OK, json!({ "status": "ready" })),
            Err(reasons) => answer(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({ "status": "not ready", "reasons": reasons }),
            ),
        }
    }
}

/// The answer to `GET /healthz`: the process is alive and its admin listener answers.
pub fn liveness() -> Response<Full<Bytes>> {
    answer(StatusCode::OK, json!({ "status": "alive" }))
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut text = body.to_string();
    text.push('\n');
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        // A cached "ready" from before a drain would send traffic to a closing host.
        .header(CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from(text)))
        .expect("valid response")
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::{Result, bail};
    use std::pin::Pin;
    use std::sync::atomic::AtomicUsize;

    /// A pool whose server is up or down as the test says, counting the checks it gets.
    #[derive(Default)]
    struct Switch {
        down: AtomicBool,
        checks: AtomicUsize,
    }

    impl ServerPool for Switch {
        fn check(&self) -> Pin<Box<dyn Future<Output = Result<()>> + Send + '_>> {
            self.checks.fetch_add(1, Ordering::SeqCst);
            let down = self.down.load(Ordering::SeqCst);
            Box::pin(async move {
                if down {
                    bail!("connection refused (redis://user:pw@10.0.0.1:6379)")
                }
                Ok(())
            })
        }
        fn reap_idle(&self) {}
        fn close(&self) {}
    }

    fn readiness(pool: &Arc<Switch>) -> Readiness {
        let pool: Arc<dyn ServerPool> = pool.clone();
        Readiness::new([("cache".into(), "redis://10.0.0.1:6379".into(), pool)])
    }

    #[tokio::test]
    async fn ready_only_while_serving_with_every_required_pool_up_and_not_draining() {
        let pool = Arc::new(Switch::default());
        let ready = readiness(&pool);
        let reasons = ready.check().await.unwrap_err();
        assert!(reasons[0].starts_with("starting"), "{reasons:?}");
        ready.set_serving();
        assert_eq!(ready.check().await, Ok(()));

        pool.down.store(true, Ordering::SeqCst);
        tokio::time::sleep(CHECK_CACHE).await;
        let reasons = ready.check().await.unwrap_err();
        assert_eq!(reasons, ["1 of 1 required pools unreachable"]);
        // The reason shows neither the pool's name nor its address.
        let body = ready.response().await;
        assert_eq!(body.status(), StatusCode::SERVICE_UNAVAILABLE);
        let text = format!("{:?}", body.into_body());
        assert!(
            !text.contains("cache") && !text.contains("10.0.0.1"),
            "{text}"
        );

        ready.set_draining();
        let reasons = ready.check().await.unwrap_err();
        assert_eq!(reasons, ["draining: the host is shutting down"]);
    }

    #[tokio::test]
    async fn probes_in_a_tight_loop_check_the_pool_once_per_cache_period() {
        let pool = Arc::new(Switch::default());
        let ready = readiness(&pool);
        ready.set_serving();
        for _ in 0..50 {
            assert_eq!(ready.check().await, Ok(()));
        }
        // However slow the machine, 50 checks take less than 50 cache periods.
        assert!(pool.checks.load(Ordering::SeqCst) < 50);
    }
}
