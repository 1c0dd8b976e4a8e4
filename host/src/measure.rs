//! `hostel measure`: the cost of the sandbox itself — instantiate, handle, tear down — with
//! no network in the way, for benchmarks and profiling.

use crate::Host;
use crate::apps::App;
use crate::routes::normalize_host;
use crate::sandbox;
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Per-request figures in microseconds.
pub struct SandboxCost {
    pub requests: usize,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// Serves `requests` GETs of `path` (Host `host`) one after another, each in a fresh sandbox,
/// reading the whole response body, and reports how long each took.
pub async fn sandbox_cost(
    host: &Host,
    authority: &str,
    path: &str,
    requests: usize,
) -> Result<SandboxCost> {
    let name =
        normalize_host(authority).with_context(|| format!("{authority:?} is not a host name"))?;
    let app = host
        .router()
        .find(&name, path)
        .cloned()
        .with_context(|| format!("no app is mounted at {path} for host {authority}"))?;
    // As when serving.
    let _near = crate::server::TimerWheelKeeper::start();
    let mut samples = Vec::with_capacity(requests);
    for _ in 0..requests {
        let started = Instant::now();
        one_request(&app, authority, path).await?;
        samples.push(started.elapsed());
    }
    samples.sort_unstable();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let mean = samples.iter().map(|d| us(*d)).sum::<f64>() / requests as f64;
    Ok(SandboxCost {
        requests,
        mean_us: mean,
        p50_us: us(samples[requests / 2]),
        p99_us: us(samples[(requests * 99 / 100).min(requests - 1)]),
    })
}

async fn one_request(app: &Arc<App>, authority: &str, path: &str) -> Result<()> {
    let body = Empty::<Bytes>::new();
    let request = http::Request::get(path)
        .header(http::header::HOST, authority)
        .body(body)?;
    let permit = app.tenant.admission.clone().try_acquire_owned()?;
    let response =
        match sandbox::run(&app.handler, &app.tenant, &app.meter, None, request, permit).await {
            Ok(response) => response,
            Err(failure) => bail!("the guest failed: {failure:?}"),
        };
    if !response.status().is_success() {
        bail!("the guest answered {}", response.status());
    }
    response
        .into_body()
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("response body: {e:?}"))?;
    Ok(())
}
