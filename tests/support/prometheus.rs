//! A real Prometheus server (Debian's `prometheus`) on a free loopback port, scraping one
//! target every second, stopped when dropped; and `promtool check metrics`.

use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct PrometheusServer {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl PrometheusServer {
    /// Scrapes `target` (`host:port`, path `/metrics`) every second, with `token` as its
    /// bearer token when given.
    pub fn start(target: &str, token: Option<&str>) -> Result<PrometheusServer> {
        let dir = tempfile::tempdir()?;
        let authorization = match token {
            Some(token) => {
                std::fs::write(dir.path().join("token"), token)?;
                format!(
                    "    authorization:\n      credentials_file: {}\n",
                    dir.path().join("token").display()
                )
            }
            None => String::new(),
        };
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: hostel\n{authorization}    static_configs:\n      \
             - targets: [\"{target}\"]\n"
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start prometheus (Debian package `prometheus`)")?;
        Ok(PrometheusServer {
            child,
            port,
            _dir: dir,
        })
    }

    /// The result of an instant query: each series' labels and value.
    pub async fn query(&self, promql: &str) -> Result<Vec<(Value, f64)>> {
        let url = format!(
            "http://127.0.0.1:{}/api/v1/query?query={}",
            self.port,
            url_escape(promql)
        );
        let reply = crate::get(&crate::http1_client(), &url).await?;
        let answer: Value = serde_json::from_slice(&reply.body)
            .with_context(|| format!("prometheus answered {}: {}", reply.status, reply.text()))?;
        if answer["status"] != "success" {
            bail!("prometheus refused {promql:?}: {answer}");
        }
        let series = answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(series
            .into_iter()
            .map(|s| {
                let value = s["value"][1]
                    .as_str()
                    .unwrap_or("nan")
                    .parse()
                    .unwrap_or(f64::NAN);
                (s["metric"].clone(), value)
            })
            .collect())
    }

    /// Polls `promql` (at most a minute) until `done` holds for its result, which it returns.
    pub async fn until(
        &self,
        promql: &str,
        done: impl Fn(&[(Value, f64)]) -> bool,
    ) -> Result<Vec<(Value, f64)>> {
        let mut last = Vec::new();
        for _ in 0..120 {
            if let Ok(result) = self.query(promql).await {
                if done(&result) {
                    return Ok(result);
                }
                last = result;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        bail!("prometheus never answered {promql:?} as expected; last: {last:?}")
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET /metrics` from `host`'s admin API with the operator's `token`: the exposition.
pub async fn scrape(host: &crate::HostProcess, token: &str) -> String {
    let request = http::Request::get(host.admin_url("/metrics"))
        .header("authorization", format!("Bearer {token}"))
        .body(Default::default())
        .expect("a valid request");
    let reply = crate::send(&crate::http1_client(), request)
        .await
        .expect("the admin API answers");
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text()
}

/// The value of one series in an exposition, by its full name and labels as written.
pub fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.parse().ok()
    })
}

/// [`sample`], which must be there.
pub fn value(exposition: &str, series: &str) -> f64 {
    sample(exposition, series).unwrap_or_else(|| panic!("no {series} in\n{exposition}"))
}

/// `promtool check metrics` on an exposition: its exit status and what it said.
pub fn promtool_check(exposition: &str) -> Result<(bool, String)> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run promtool (Debian package `prometheus`)")?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(exposition.as_bytes())?;
    let output = child.wait_with_output()?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((output.status.success(), said))
}

fn url_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
