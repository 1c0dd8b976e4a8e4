//! A real HAProxy (Debian's `haproxy`, 2.6) load-balancing HTTP over several hosts, on free
//! loopback ports, in the foreground as a child process stopped when dropped: what a cluster of
//! hosts looks like from a client's side.
//!
//! Each server is health-checked with `GET /readyz` on the host's admin listener (as a load
//! balancer or Kubernetes would), and a GET that fails on a server that died under it is
//! retried on another one. The stats page (CSV) says which servers are UP and what each served.

use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The backend's name in the config and in the stats.
const BACKEND: &str = "hosts";

/// One server behind the balancer.
#[derive(Debug, Clone)]
pub struct Backend {
    /// Where requests go: the host's app listener (`server.listen`), `IP:PORT`.
    pub app: String,
    /// Where the health check goes (`GET /readyz`): the host's admin listener, `IP:PORT`.
    pub admin: String,
}

impl Backend {
    /// A running host, which must have an `[admin]` section (its listener answers `/readyz`).
    pub fn of(host: &crate::HostProcess) -> Backend {
        Backend {
            app: host.addr.clone(),
            admin: host
                .admin_addr
                .clone()
                .expect("a balanced host needs an [admin] section: /readyz is its health check"),
        }
    }
}

/// One server's row of the stats CSV.
#[derive(Debug, Clone)]
pub struct ServerStats {
    /// `s0`, `s1`, …: the index of its [`Backend`] in [`Haproxy::start`].
    pub name: String,
    /// `UP`, `DOWN`, `UP 1/2` (up, one check failed), `DOWN 1/2` (down, one check passed), …
    pub status: String,
    /// Requests sent to it (`stot`: in HTTP mode every request is a stream of its own).
    pub requests: u64,
    /// Its 2xx answers (`hrsp_2xx`).
    pub responses_2xx: u64,
    /// Connection errors (`econ`) and response errors (`eresp`, e.g. closed before answering).
    pub errors: u64,
    /// Requests retried (`wretr`) and redispatched to another server (`wredis`) after failing on
    /// it; on the backend's row, the total.
    pub retries: u64,
    pub redispatches: u64,
}

impl ServerStats {
    /// Up, counting a server on its way down (`UP 1/2`) as up, as HAProxy does.
    pub fn is_up(&self) -> bool {
        self.status == "UP" || self.status.starts_with("UP ")
    }
}

/// A running `haproxy` in front of some hosts, killed when dropped.
pub struct Haproxy {
    child: Child,
    /// The frontend's address, `127.0.0.1:PORT`: send requests here.
    pub addr: String,
    stats_addr: String,
    log: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// Balances (round robin) over `backends`, named `s0`, `s1`, … in this order. Returns once
    /// both of its listeners accept; the servers come UP after two passing checks (see
    /// [`Haproxy::wait_until_up`]). If another process takes a port between our choosing it
    /// and HAProxy binding it, tries again on others.
    pub fn start(backends: &[Backend]) -> Result<Haproxy> {
        let mut last = None;
        for _ in 0..5 {
            match Self::try_start(backends) {
                Ok(haproxy) => return Ok(haproxy),
                Err(e) if format!("{e:#}").contains("cannot bind") => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("tried at least once"))
    }

    fn try_start(backends: &[Backend]) -> Result<Haproxy> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let stats_port = free_port()?;
        let config_path = dir.path().join("haproxy.cfg");
        std::fs::write(&config_path, config(port, stats_port, backends)?)?;
        let mut child = Command::new(haproxy_bin())
            // -db: foreground, one process (no daemon, no master-worker: killing this PID
            // stops everything).
            .arg("-db")
            .arg("-f")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context(
                "cannot start haproxy: install it (Debian: apt-get install haproxy; \
                 scripts/test does)",
            )?;
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
        let mut haproxy = Haproxy {
            child,
            addr: format!("127.0.0.1:{port}"),
            stats_addr: format!("127.0.0.1:{stats_port}"),
            log,
            _dir: dir,
        };
        for _ in 0..400 {
            if let Some(status) = haproxy.child.try_wait()? {
                // Let the reader thread take in the last lines.
                std::thread::sleep(Duration::from_millis(100));
                bail!(
                    "haproxy exited at startup ({status}); its stderr:\n{}",
                    haproxy.log()
                );
            }
            let listening = |addr: &str| std::net::TcpStream::connect(addr).is_ok();
            if listening(&haproxy.addr) && listening(&haproxy.stats_addr) {
                return Ok(haproxy);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        bail!(
            "haproxy did not listen on {} and {} within 10 s; its stderr:\n{}",
            haproxy.addr,
            haproxy.stats_addr,
            haproxy.log()
        )
    }

    /// A URL through the balancer.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What HAProxy wrote to stderr so far (warnings and alerts: the config logs nothing else).
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The rows of the stats CSV (`/stats;csv`) for the servers, in the order they were given.
    pub async fn servers(&self) -> Result<Vec<ServerStats>> {
        Ok(self
            .rows()
            .await?
            .into_iter()
            .filter(|row| row.name != "BACKEND")
            .collect())
    }

    /// The backend's own row of the stats CSV: totals over the servers (its `retries` and
    /// `redispatches` count every retry).
    pub async fn backend(&self) -> Result<ServerStats> {
        self.rows()
            .await?
            .into_iter()
            .find(|row| row.name == "BACKEND")
            .context("no BACKEND row in haproxy's stats")
    }

    /// The names of the servers that are UP right now.
    pub async fn up_servers(&self) -> Result<Vec<String>> {
        Ok(self
            .servers()
            .await?
            .into_iter()
            .filter(ServerStats::is_up)
            .map(|server| server.name)
            .collect())
    }

    /// Polls (every 50 ms, at most `limit`) until exactly `n` servers are UP: all of them after
    /// a start, one fewer after a host died and its checks failed.
    pub async fn wait_until_up(&self, n: usize, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let servers = self.servers().await?;
            if servers.iter().filter(|s| s.is_up()).count() == n {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("not {n} servers UP after {limit:?}: {servers:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The backend's rows of `/stats;csv`, by the column names of its header line.
    async fn rows(&self) -> Result<Vec<ServerStats>> {
        let url = format!("http://{}/stats;csv", self.stats_addr);
        let reply = crate::get(&crate::http1_client(), &url).await?;
        if reply.status != 200 {
            bail!(
                "haproxy's stats answered {}: {}",
                reply.status,
                reply.text()
            );
        }
        parse_stats(&reply.text())
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The config: one frontend, one backend of `backends`, and the stats page.
fn config(port: u16, stats_port: u16, backends: &[Backend]) -> Result<String> {
    if backends.is_empty() {
        bail!("haproxy needs at least one backend");
    }
    let mut servers = String::new();
    for (i, backend) in backends.iter().enumerate() {
        let (admin_ip, admin_port) = backend
            .admin
            .rsplit_once(':')
            .with_context(|| format!("admin address {:?} is not IP:PORT", backend.admin))?;
        let admin_ip = admin_ip.trim_start_matches('[').trim_end_matches(']');
        servers.push_str(&format!(
            "    server s{i} {app} check addr {admin_ip} port {admin_port}\n",
            app = backend.app
        ));
    }
    Ok(format!(
        r#"global
    nbthread 1
    maxconn 1000

defaults
    mode http
    timeout connect 1s
    timeout client 10s
    timeout server 30s
    timeout check 1s

frontend hostel
    bind 127.0.0.1:{port}
    default_backend {BACKEND}

backend {BACKEND}
    balance roundrobin
    # Readiness: a draining host (SIGTERM) answers 503 here at once and stops getting requests
    # while it still accepts; a killed one refuses the check's connection. Two failed checks
    # 200 ms apart take a server out, two passing ones put it back.
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 200ms fall 2 rise 2
    # A request that fails on a server is tried again, up to 3 times, each time on another
    # server (`redispatch 1`: on every retry, not only the last). While a killed host is not yet
    # DOWN its connections are refused (conn-failure), and the requests it had in flight see
    # their connection closed with nothing answered (empty-response): both are retried
    # elsewhere, so the client sees neither.
    #
    # Not `response-timeout`: a request that is slow (a write riding out a NATS leader election)
    # is still being served, and replaying it would do it twice; `timeout server` is above the
    # host's own request deadline, which answers first.
    #
    # The conditions are named one by one rather than with `all-retryable-errors`, which in
    # HAProxy 2.6 also retries on a 500, 502, 503 or 504 answer: those are the host's (or the
    # guest's) real answers, a trap, an overload, a deadline, and retrying them would run the
    # guest again and hide them from the client.
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response junk-response 0rtt-rejected
    # HAProxy replays whatever it is told to: only GET and HEAD (METH_GET) are replayed once
    # they reached a server; a connection that failed, for any method, reached nothing.
    http-request disable-l7-retry unless METH_GET
    # One server connection per request (the client side stays keep-alive): a request never
    # lands on an idle pooled connection to a host that has since died, so a dead host shows
    # as a refused connect (retried before anything was sent) and only the requests truly in
    # flight when it died need the replay. Keep-alive to the servers would also be retried
    # (empty-response), but with more of the requests around a crash going through the replay.
    option http-server-close
{servers}
listen stats
    bind 127.0.0.1:{stats_port}
    stats enable
    stats uri /stats
"#
    ))
}

/// `CSV` as `/stats;csv` writes it: a header line `# pxname,svname,…`, then one row per
/// frontend, server and backend. Keeps this backend's rows.
fn parse_stats(csv: &str) -> Result<Vec<ServerStats>> {
    let mut lines = csv.lines();
    let header = lines
        .next()
        .and_then(|line| line.strip_prefix("# "))
        .context("haproxy's stats CSV has no header line")?;
    let columns: HashMap<&str, usize> = header
        .split(',')
        .enumerate()
        .map(|(i, name)| (name, i))
        .collect();
    let mut rows = Vec::new();
    for line in lines.filter(|line| !line.is_empty()) {
        let fields: Vec<&str> = line.split(',').collect();
        let field = |name: &str| -> Result<&str> {
            let index = *columns
                .get(name)
                .with_context(|| format!("no column {name} in haproxy's stats"))?;
            Ok(fields.get(index).copied().unwrap_or(""))
        };
        let number = |name: &str| -> Result<u64> { Ok(field(name)?.parse().unwrap_or(0)) };
        if field("pxname")? != BACKEND || field("svname")? == "FRONTEND" {
            continue;
        }
        rows.push(ServerStats {
            name: field("svname")?.to_string(),
            status: field("status")?.to_string(),
            requests: number("stot")?,
            responses_2xx: number("hrsp_2xx")?,
            errors: number("econ")? + number("eresp")?,
            retries: number("wretr")?,
            redispatches: number("wredis")?,
        });
    }
    Ok(rows)
}

/// `haproxy` on the PATH, else where Debian puts it (`/usr/sbin`, which is not on every PATH).
fn haproxy_bin() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("haproxy"))
        .find(|bin| bin.is_file());
    on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/haproxy"))
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stats_csv_gives_each_servers_state_and_counts() {
        let csv = "# pxname,svname,qcur,stot,econ,eresp,wretr,wredis,status,hrsp_2xx,\n\
                   hostel,FRONTEND,,10,,,,,OPEN,10,\n\
                   hosts,s0,0,7,0,0,0,0,UP,7,\n\
                   hosts,s1,0,4,1,2,1,1,DOWN,2,\n\
                   hosts,BACKEND,0,11,1,2,1,1,UP,9,\n\
                   stats,FRONTEND,,1,,,,,OPEN,0,\n";
        let rows = parse_stats(csv).unwrap();
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["s0", "s1", "BACKEND"]);
        assert!(rows[0].is_up() && !rows[1].is_up());
        assert_eq!(rows[1].requests, 4);
        assert_eq!(rows[1].responses_2xx, 2);
        assert_eq!(rows[1].errors, 3);
        assert_eq!((rows[2].retries, rows[2].redispatches), (1, 1));
        let going_down = ServerStats {
            status: "UP 1/2".into(),
            ..rows[0].clone()
        };
        assert!(going_down.is_up());
    }

    #[test]
    fn the_config_checks_each_server_on_its_admin_listener() {
        let backends = [Backend {
            app: "127.0.0.1:8080".into(),
            admin: "127.0.0.1:8081".into(),
        }];
        let config = config(1000, 1001, &backends).unwrap();
        assert!(
            config.contains("server s0 127.0.0.1:8080 check addr 127.0.0.1 port 8081"),
            "{config}"
        );
        assert!(config.contains("option httpchk GET /readyz"));
        assert!(config.contains("bind 127.0.0.1:1000") && config.contains("bind 127.0.0.1:1001"));
    }
}
