//! Test support: start the real `hostel` binary on a config, talk to it over real HTTP.
//!
//! Guests are the real components under `components/` and `tests/guests/`, built by
//! `scripts/test` before `cargo test` runs (cargo holds its build lock while tests run, so
//! tests cannot build them themselves).

pub mod haproxy;
pub mod nats;
pub mod postgres;
pub mod prometheus;
pub mod tls;

pub use haproxy::{Backend, Haproxy};
pub use nats::{NatsCluster, NatsServer};
pub use postgres::PostgresServer;
pub use prometheus::{PrometheusServer, promtool_check, sample, scrape, value};
pub use tls::TestCa;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How a fuzz target runs: `cases` cases (bounded, for CI), or `HOSTEL_FUZZ_CASES` for a
/// longer run (`scripts/fuzz`); failures are kept as seeds in `proptest-regressions/` beside
/// the crate, named after `source_file` (pass `file!()`), and replayed first on every run.
pub fn fuzz_config(cases: u32, source_file: &'static str) -> proptest::test_runner::Config {
    let cases = std::env::var("HOSTEL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    proptest::test_runner::Config {
        cases,
        source_file: Some(source_file),
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::SourceParallel("proptest-regressions"),
        )),
        ..proptest::test_runner::Config::default()
    }
}

/// The SHA-256 (hex) of an admin token, as the config holds it.
pub fn token_sha256(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository")
        .to_path_buf()
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// One thread of a host process (see [`HostProcess::threads`]).
#[derive(Debug)]
pub struct ThreadInfo {
    pub name: String,
    /// 0 is `SCHED_OTHER`.
    pub policy: u32,
    pub nice: i64,
    /// User and system time, in clock ticks.
    pub cpu_ticks: u64,
}

/// The `hostel` binary cargo built next to this test executable (or `$HOSTEL_BIN`).
pub fn hostel_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("HOSTEL_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("tests run from target/<profile>/deps");
    let bin = profile_dir.join("hostel");
    assert!(
        bin.is_file(),
        "{} is missing: run the tests with `scripts/test`, which builds it (crate hostel-cli)",
        bin.display()
    );
    bin
}

/// The built component of a guest crate, e.g. `hello` or `guest-spin`.
pub fn guest(crate_name: &str) -> PathBuf {
    let file = format!("{}.wasm", crate_name.replace('-', "_"));
    let path = target_dir()
        .join("wasm32-wasip2")
        .join("release")
        .join(file);
    assert!(
        path.is_file(),
        "{} is missing: build the guests first (`scripts/test` does: cargo build --target \
         wasm32-wasip2 --release)",
        path.display()
    );
    path
}

/// A guest of `language` (`rust`, `python`, …, or `rust-p3`, `python-p3` for their WASI 0.3 examples) from `components/` or the test guests, e.g.
/// `example("python", "counter")`. Panics, naming the file, when that language's build has not
/// produced it: a missing example fails the test that wanted it.
pub fn example(language: &str, name: &str) -> PathBuf {
    // `LANGUAGE-p3`: that language's examples as WASI 0.3 services, named `NAME-p3`.
    let (language, name) = match language.strip_suffix("-p3") {
        Some(base) => (base, format!("{name}-p3")),
        None => (language, name.to_string()),
    };
    if language == "rust" {
        return guest(&name);
    }
    // An example, else a test guest; `hostel build` leaves it in its folder's build/.
    let mut folder = repo_root().join(format!("components/{language}/{name}"));
    if !folder.is_dir() {
        folder = repo_root().join(format!("tests/guests-{language}/{name}"));
    }
    let path = folder.join("build").join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: the {language} example `components/{language}/{name}` was not built \
         (scripts/test builds every language's examples)",
        path.display()
    );
    path
}

/// A compiled-code cache shared by the tests in this run, so each guest compiles once.
pub fn shared_code_cache() -> PathBuf {
    target_dir().join("e2e-code-cache")
}

/// A TOML string literal for a path.
pub fn toml_path(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// A running `hostel serve`, killed when dropped.
pub struct HostProcess {
    child: Child,
    pub addr: String,
    /// The admin API's address, when the config has an `[admin]` section.
    pub admin_addr: Option<String>,
    /// The metrics listener's address, when the config sets `metrics.listen`.
    pub metrics_addr: Option<String>,
    log: Arc<Mutex<String>>,
    pub dir: tempfile::TempDir,
}

impl HostProcess {
    /// Writes `config` into a fresh folder (as `hostel.toml`) and serves it on a free port.
    /// A `[server]` section without `listen` is fine: the port is chosen with `--listen`.
    pub fn start(config: &str) -> Result<HostProcess> {
        let dir = tempfile::tempdir()?;
        Self::start_in(dir, config)
    }

    pub fn start_in(dir: tempfile::TempDir, config: &str) -> Result<HostProcess> {
        Self::start_with_env(dir, config, &[])
    }

    /// As [`HostProcess::start_in`], with these environment variables set for the host.
    pub fn start_with_env(
        dir: tempfile::TempDir,
        config: &str,
        env: &[(&str, &str)],
    ) -> Result<HostProcess> {
        let config_path = dir.path().join("hostel.toml");
        std::fs::write(&config_path, config)?;
        let mut command = Command::new(hostel_bin());
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config_path);
        if config.contains("[admin]") {
            command.args(["--admin-listen", "127.0.0.1:0"]);
        }
        command.envs(env.iter().copied());
        let mut child = command
            .env("HOSTEL_LOG", "info,hostel=debug")
            .env("XDG_CACHE_HOME", dir.path().join("xdg-cache"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start hostel")?;
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut admin, mut metrics) = (None, None);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("hostel admin listening on http://") {
                    admin = Some(addr.to_string());
                }
                if let Some(addr) = line.strip_prefix("hostel metrics listening on http://") {
                    metrics = Some(addr.to_string());
                }
                if let Some(addr) = line.strip_prefix("hostel listening on http://") {
                    let _ = tx.send((addr.to_string(), admin.clone(), metrics.clone()));
                }
            }
        });
        // Generous: the first start may compile every guest (the conformance suite's host
        // compiles eight interpreter components of 15-18 MB, ~20 s each on a loaded 2-core
        // machine with a cold code cache).
        match rx.recv_timeout(Duration::from_secs(900)) {
            Ok((addr, admin_addr, metrics_addr)) => {
                let host = HostProcess {
                    child,
                    addr,
                    admin_addr,
                    metrics_addr,
                    log,
                    dir,
                };
                // stderr is read by another thread: make sure the startup lines are in.
                host.wait_for_log("listening on http://");
                Ok(host)
            }
            Err(_) => {
                let _ = child.kill();
                let status = child.wait()?;
                std::thread::sleep(Duration::from_millis(100));
                bail!(
                    "hostel did not start ({status}); its log:\n{}",
                    log.lock().unwrap()
                )
            }
        }
    }

    /// Stops the host (SIGKILL when `kill_9`, else SIGTERM and a clean exit) and starts it again
    /// on the same folder and config: for persistence and crash tests.
    pub fn restart(mut self, kill_9: bool) -> Result<HostProcess> {
        if kill_9 {
            self.child.kill()?;
            self.child.wait()?;
        } else {
            self.signal(libc::SIGTERM);
            let status = self.wait_exit(Duration::from_secs(30))?;
            if !status.success() {
                bail!("hostel exited with {status} on SIGTERM");
            }
        }
        let config = std::fs::read_to_string(self.dir.path().join("hostel.toml"))?;
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir()?);
        HostProcess::start_in(dir, &config)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A URL on the admin API (the config must have an `[admin]` section).
    pub fn admin_url(&self, path: &str) -> String {
        let addr = self
            .admin_addr
            .as_ref()
            .expect("the config has no [admin] section");
        format!("http://{addr}{path}")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The host's threads: name, scheduling policy, nice level and CPU time, from
    /// `/proc/PID/task/*/stat`.
    pub fn threads(&self) -> Vec<ThreadInfo> {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.pid())).unwrap();
        tasks
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("stat")).ok())
            .map(|stat| {
                // `pid (comm) state ...`: the name may hold spaces, the fields after it do not.
                let (head, rest) = stat.rsplit_once(')').unwrap();
                let name = head.split_once('(').unwrap().1.to_string();
                let fields: Vec<&str> = rest.split_whitespace().collect();
                // Fields 14-15 (utime, stime), 19 (nice) and 41 (policy) of proc(5), counted
                // from `state` (3).
                let field = |n: usize| fields[n - 3].parse::<i64>().unwrap();
                ThreadInfo {
                    name,
                    policy: field(41) as u32,
                    nice: field(19),
                    cpu_ticks: (field(14) + field(15)) as u64,
                }
            })
            .collect()
    }

    /// Everything the host wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits (bounded) until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str) -> bool {
        for _ in 0..200 {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        false
    }

    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits");
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(pid, signal) };
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Result<ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if std::time::Instant::now() > deadline {
                bail!("hostel did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Peak resident memory of the host process so far, in bytes (Linux VmHWM).
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `hostel` with arguments to completion (bounded), returning status and stderr.
pub fn run_hostel(args: &[&str], dir: &Path) -> Result<(ExitStatus, String)> {
    let mut child = Command::new(hostel_bin())
        .args(args)
        .current_dir(dir)
        .env("XDG_CACHE_HOME", dir.join("xdg-cache"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut stderr)?;
    Ok((child.wait()?, stderr))
}

/// Runs `hostel` with arguments to completion, returning status, stdout and stderr.
pub fn hostel_output(args: &[&str], dir: &Path) -> Result<(ExitStatus, String, String)> {
    let output = Command::new(hostel_bin())
        .args(args)
        .current_dir(dir)
        .env("XDG_CACHE_HOME", dir.join("xdg-cache"))
        .stdin(Stdio::null())
        .output()?;
    let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
    Ok((output.status, text(output.stdout), text(output.stderr)))
}

/// A response read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn request_id(&self) -> Option<&str> {
        self.headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
    }
}

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// An HTTP/1.1 keep-alive client.
pub fn http1_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An HTTP/2 client over cleartext (h2c, prior knowledge).
pub fn http2_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

pub async fn send(client: &HttpClient, request: http::Request<Full<Bytes>>) -> Result<Reply> {
    let response = client.request(request).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    })
}

pub async fn get(client: &HttpClient, url: &str) -> Result<Reply> {
    let request = http::Request::get(url).body(Full::new(Bytes::new()))?;
    send(client, request).await
}

/// GET `url`, expecting 200: its body as text.
pub async fn ok_text(client: &HttpClient, url: &str) -> String {
    let reply = get(client, url).await.unwrap();
    assert_eq!(reply.status, 200, "{url}: {}", reply.text());
    reply.text()
}

pub async fn post(client: &HttpClient, url: &str, body: impl Into<Bytes>) -> Result<Reply> {
    let request = http::Request::post(url).body(Full::new(body.into()))?;
    send(client, request).await
}

/// Starts a GET of `url` in the background; await the handle for the reply.
pub fn spawn_get(client: &HttpClient, url: String) -> tokio::task::JoinHandle<Result<Reply>> {
    let client = client.clone();
    tokio::spawn(async move { get(&client, &url).await })
}

/// `n` GETs of `url` at once (each on the runtime), results in order.
pub async fn get_concurrently(client: &HttpClient, url: &str, n: usize) -> Vec<Result<Reply>> {
    let tasks: Vec<_> = (0..n).map(|_| spawn_get(client, url.to_string())).collect();
    let mut replies = Vec::with_capacity(n);
    for task in tasks {
        replies.push(task.await.expect("request task panicked"));
    }
    replies
}

/// A request body of `count` copies of `chunk`, produced lazily and sent chunked (no length).
pub struct RepeatBody {
    chunk: Bytes,
    remaining: usize,
}

impl RepeatBody {
    pub fn new(chunk: Bytes, count: usize) -> RepeatBody {
        RepeatBody {
            chunk,
            remaining: count,
        }
    }
}

impl http_body::Body for RepeatBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.remaining == 0 {
            return std::task::Poll::Ready(None);
        }
        self.remaining -= 1;
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(self.chunk.clone()))))
    }
}

/// A client whose requests carry a [`RepeatBody`].
pub fn streaming_client() -> Client<HttpConnector, RepeatBody> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A local HTTP/1.1 keep-alive upstream for outbound tests: answers `ok <path>` after `delay`,
/// and counts accepted TCP connections and the most requests it had in flight at once.
pub struct Upstream {
    pub addr: std::net::SocketAddr,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    max_in_flight: Arc<std::sync::atomic::AtomicUsize>,
}

impl Upstream {
    pub async fn start(delay: Duration) -> Upstream {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let (acc, max) = (accepted.clone(), max_in_flight.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                acc.fetch_add(1, SeqCst);
                let (max, in_flight) = (max.clone(), in_flight.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: http::Request<_>| {
                        let (max, in_flight) = (max.clone(), in_flight.clone());
                        async move {
                            let now = in_flight.fetch_add(1, SeqCst) + 1;
                            max.fetch_max(now, SeqCst);
                            tokio::time::sleep(delay).await;
                            in_flight.fetch_sub(1, SeqCst);
                            let body = format!("ok {}", req.uri().path());
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                Bytes::from(body),
                            )))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            accepted,
            max_in_flight,
        }
    }

    /// TCP connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The most requests this server was handling at the same moment.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A real `redis-server` on a free loopback port, in its own folder, stopped when dropped.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    /// With TLS: the CA file clients check the server's certificate with.
    ca: Option<PathBuf>,
    /// `requirepass`, when the server wants one.
    password: Option<String>,
}

impl RedisServer {
    pub fn start() -> Result<RedisServer> {
        Self::start_with(None, None)
    }

    /// A server that speaks TLS only, with a certificate for 127.0.0.1 and localhost signed by
    /// `ca`.
    pub fn start_tls(ca: &TestCa) -> Result<RedisServer> {
        Self::start_with(Some(ca), None)
    }

    /// A server that wants `password` (`requirepass`) before any command.
    pub fn start_with_password(password: &str) -> Result<RedisServer> {
        Self::start_with(None, Some(password))
    }

    /// A server on a free port; if another process takes the port between our choosing it and
    /// the server binding it, on another one.
    fn start_with(ca: Option<&TestCa>, password: Option<&str>) -> Result<RedisServer> {
        let mut last = None;
        for _ in 0..5 {
            match Self::try_start(ca, password) {
                Ok(server) => return Ok(server),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("tried at least once"))
    }

    fn try_start(ca: Option<&TestCa>, password: Option<&str>) -> Result<RedisServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = tempfile::tempdir()?;
        let ca = match ca {
            Some(ca) => {
                ca.server_cert(&["127.0.0.1", "localhost"], dir.path(), "redis")?;
                Some(ca.cert_file())
            }
            None => None,
        };
        let mut server = RedisServer {
            child: None,
            port,
            dir,
            ca,
            password: password.map(str::to_string),
        };
        server.resume()?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        let scheme = if self.ca.is_some() { "rediss" } else { "redis" };
        match &self.password {
            Some(password) => format!("{scheme}://:{password}@127.0.0.1:{}", self.port),
            None => format!("{scheme}://127.0.0.1:{}", self.port),
        }
    }

    /// Kills the server (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port.
    pub fn resume(&mut self) -> Result<()> {
        let mut command = Command::new("redis-server");
        command.args(["--bind", "127.0.0.1"]);
        match &self.ca {
            Some(ca) => {
                let file = |name: &str| self.dir.path().join(name).display().to_string();
                command
                    .args(["--port", "0", "--tls-port", &self.port.to_string()])
                    .args(["--tls-cert-file", &file("redis.pem")])
                    .args(["--tls-key-file", &file("redis.key")])
                    .arg("--tls-ca-cert-file")
                    .arg(ca)
                    .args(["--tls-auth-clients", "no"]);
            }
            None => {
                command.args(["--port", &self.port.to_string()]);
            }
        }
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        let child = command
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context(
                "cannot start redis-server: install it (Debian: apt-get install redis-server)",
            )?;
        self.child = Some(child);
        for _ in 0..200 {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "redis-server exited ({status}): is port {} taken?",
                    self.port
                );
            }
            // Listening, and ours: another process may have taken the port we picked.
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && self
                    .cli(&["CONFIG", "GET", "dir"])?
                    .contains(&*self.dir.path().to_string_lossy())
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        bail!("redis-server did not listen on port {}", self.port)
    }

    /// Runs `redis-cli` against this server and returns its output.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        let mut command = Command::new("redis-cli");
        command.args(["-p", &self.port.to_string()]);
        if let Some(ca) = &self.ca {
            command.arg("--tls").arg("--cacert").arg(ca);
        }
        if let Some(password) = &self.password {
            command.env("REDISCLI_AUTH", password);
        }
        let out = command.args(args).output()?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

impl RedisServer {
    /// Waits up to 2.5 s for no client of the server to be blocked in `BLPOP`: whether a
    /// connection cut off mid-command was closed rather than kept.
    pub async fn no_client_blocks(&self) -> bool {
        for _ in 0..50 {
            let blocked = self
                .clients()
                .unwrap()
                .iter()
                .any(|c| c.contains("cmd=blpop"));
            if !blocked {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Client connections open right now, not counting the `redis-cli` that asks.
    pub fn clients(&self) -> Result<Vec<String>> {
        Ok(self
            .cli(&["CLIENT", "LIST"])?
            .lines()
            .filter(|line| !line.contains("cmd=client"))
            .map(str::to_string)
            .collect())
    }

    /// [`RedisServer::clients`] using database `db`.
    pub fn clients_of_db(&self, db: u32) -> Result<Vec<String>> {
        let field = format!(" db={db} ");
        Ok(self
            .clients()?
            .into_iter()
            .filter(|line| line.contains(&field))
            .collect())
    }
}

/// Repeats `attempt` every 100 ms, for at most 10 s, until its reply has status `expected`, and
/// returns the last reply: for tests where a server comes back and the host must notice.
pub async fn until_status<F, Fut>(expected: u16, mut attempt: F) -> Reply
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Reply>>,
{
    let mut reply = attempt().await.expect("request failed");
    for _ in 0..100 {
        if reply.status == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        reply = attempt().await.expect("request failed");
    }
    reply
}

/// A fresh folder holding a `hostel.toml` that serves the `hello` guest at `/`.
pub fn folder_serving_hello() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let config = format!(
        "[server]\ncode_cache = {}\n[apps.hello]\nroute = \"/\"\ncomponent = {}\n",
        toml_path(&shared_code_cache()),
        toml_path(&guest("hello"))
    );
    std::fs::write(dir.path().join("hostel.toml"), config).expect("writing hostel.toml");
    dir
}
