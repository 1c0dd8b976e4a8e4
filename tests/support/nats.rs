//! Real `nats-server`s with JetStream: one node ([`NatsServer`]) or a cluster of them on
//! loopback ([`NatsCluster`]), each on free ports with its own store folder, stopped by PID
//! (SIGKILL) when dropped.

use crate::TestCa;
use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a node may take to listen and have JetStream ready, and a cluster to elect its
/// JetStream meta leader.
const START_LIMIT: Duration = Duration::from_secs(30);

/// The `nats-server` program: on `PATH`, or where Debian puts it (`/usr/sbin`, not on a
/// user's `PATH`).
fn nats_server_program() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nats-server"))
            .find(|path| path.is_file())
    });
    on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/nats-server"))
}

/// A free TCP port on loopback (free when asked: a server may lose it to another process
/// before it binds, which [`Node::start`] notices).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `GET path` on a monitoring port: the status and body, `None` if nothing answered.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

/// One `nats-server` process and what it needs to start again as the same node.
struct Node {
    name: String,
    port: u16,
    monitor_port: u16,
    config: PathBuf,
    child: Option<Child>,
}

impl Node {
    /// Writes the node's config (`cluster`: its cluster port and its peers' route URLs).
    fn new(
        dir: &Path,
        name: &str,
        cluster: Option<(&str, u16, Vec<u16>)>,
        extra: &str,
    ) -> Result<Node> {
        let (port, monitor_port) = (free_port()?, free_port()?);
        let store = dir.join(name);
        std::fs::create_dir_all(&store)?;
        let mut config = format!(
            "server_name: {name}\nlisten: \"127.0.0.1:{port}\"\nhttp: \"127.0.0.1:{monitor_port}\"\n\
             jetstream {{\n  store_dir: {store:?}\n  max_memory_store: 64MB\n  max_file_store: 1GB\n}}\n",
        );
        config.push_str(extra);
        if let Some((cluster_name, cluster_port, peers)) = cluster {
            let routes: Vec<String> = (peers.iter())
                .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
                .collect();
            config.push_str(&format!(
                "cluster {{\n  name: {cluster_name}\n  listen: \"127.0.0.1:{cluster_port}\"\n  \
                 routes: [{}]\n}}\n",
                routes.join(", ")
            ));
        }
        let path = dir.join(format!("{name}.conf"));
        std::fs::write(&path, config)?;
        Ok(Node {
            name: name.to_string(),
            port,
            monitor_port,
            config: path,
            child: None,
        })
    }

    /// Starts the process; waits until it listens (bounded) but not for JetStream.
    fn start(&mut self) -> Result<()> {
        let program = nats_server_program();
        let child = Command::new(&program)
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {}: install it (Debian: apt-get install nats-server)",
                    program.display()
                )
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Some(status) = (self.child.as_mut()).and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                bail!(
                    "nats-server {} exited ({status}): is port {} or {} taken?",
                    self.name,
                    self.port,
                    self.monitor_port
                );
            }
            // Ours: the monitoring port names this node.
            if let Some((200, body)) = http_get(self.monitor_port, "/varz")
                && body.contains(&format!("\"server_name\": \"{}\"", self.name))
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "nats-server {} did not listen on port {} within {START_LIMIT:?}",
                    self.name,
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Whether JetStream answers on this node: `/healthz` is 200 once JetStream is up and,
    /// clustered, current with its meta leader.
    fn healthy(&self) -> bool {
        self.child.is_some() && matches!(http_get(self.monitor_port, "/healthz"), Some((200, _)))
    }

    /// The JetStream meta leader this node knows of, if any.
    fn meta_leader(&self) -> Option<String> {
        let (_, body) = http_get(self.monitor_port, "/jsz")?;
        let jsz: serde_json::Value = serde_json::from_str(&body).ok()?;
        let leader = jsz.pointer("/meta_cluster/leader")?.as_str()?;
        (!leader.is_empty()).then(|| leader.to_string())
    }

    /// SIGKILL by PID, as a crash would.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = libc::pid_t::try_from(child.id()).expect("pid fits");
            // SAFETY: signalling our own child process, which we reap right after.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits (bounded) until `ready` holds, panicking with `what` if it never does.
fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + START_LIMIT;
    while !ready() {
        assert!(Instant::now() < deadline, "{what} within {START_LIMIT:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A single `nats-server` with JetStream, on a free loopback port, its store in a folder of
/// its own (kept across [`NatsServer::kill`] and [`NatsServer::restart`]).
pub struct NatsServer {
    node: Node,
    _dir: tempfile::TempDir,
}

impl NatsServer {
    pub fn start() -> Result<NatsServer> {
        Self::start_with(None, None)
    }

    /// A server that speaks TLS only, with a certificate for 127.0.0.1 signed by `ca`, and (if
    /// given) wants this user and password.
    pub fn start_tls(ca: &TestCa, login: Option<(&str, &str)>) -> Result<NatsServer> {
        Self::start_with(Some(ca), login)
    }

    fn start_with(ca: Option<&TestCa>, login: Option<(&str, &str)>) -> Result<NatsServer> {
        let mut last = None;
        // Another process may take a port between our choosing it and the server binding it.
        for _ in 0..5 {
            let dir = tempfile::tempdir()?;
            let mut extra = String::new();
            if let Some(ca) = ca {
                let cert = ca.server_cert(&["127.0.0.1", "localhost"], dir.path(), "nats")?;
                extra.push_str(&format!(
                    "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n}}\n",
                    cert.cert, cert.key
                ));
            }
            if let Some((user, password)) = login {
                extra.push_str(&format!(
                    "authorization {{\n  user: {user:?}\n  password: {password:?}\n}}\n"
                ));
            }
            let mut node = Node::new(dir.path(), "n1", None, &extra)?;
            match node.start() {
                Ok(()) => {
                    let server = NatsServer { node, _dir: dir };
                    wait_until("JetStream did not come up on a single nats-server", || {
                        server.node.healthy()
                    });
                    return Ok(server);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("tried at least once"))
    }

    /// `nats://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.node.port)
    }

    pub fn port(&self) -> u16 {
        self.node.port
    }

    /// The JetStream streams on the server (a key-value bucket `B` is the stream `KV_B`), from
    /// its monitoring endpoint.
    pub fn streams(&self) -> Vec<String> {
        let (_, body) = http_get(self.node.monitor_port, "/jsz?streams=true")
            .expect("the monitoring endpoint answers");
        let jsz: serde_json::Value = serde_json::from_str(&body).expect("/jsz is JSON");
        let accounts = jsz["account_details"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        (accounts.iter())
            .flat_map(|account| {
                account["stream_detail"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|stream| Some(stream["name"].as_str()?.to_string()))
            .collect()
    }

    /// Kills the server (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        self.node.kill();
    }

    /// Starts it again on the same port and store; returns once JetStream answers.
    pub fn restart(&mut self) -> Result<()> {
        self.node.kill();
        self.node.start()?;
        wait_until(
            "JetStream did not come back on the restarted nats-server",
            || self.node.healthy(),
        );
        Ok(())
    }
}

/// `n` `nats-server`s clustered on loopback (cluster `hostel-test-PORT`, nodes `n1`…), JetStream on
/// each with a store of its own; started once they have elected a JetStream meta leader.
pub struct NatsCluster {
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl NatsCluster {
    pub fn start(n: usize) -> Result<NatsCluster> {
        assert!(n >= 1, "a cluster has at least one node");
        let mut last = None;
        for _ in 0..3 {
            match Self::try_start(n) {
                Ok(cluster) => return Ok(cluster),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("tried at least once"))
    }

    fn try_start(n: usize) -> Result<NatsCluster> {
        let dir = tempfile::tempdir()?;
        let cluster_ports = (0..n).map(|_| free_port()).collect::<Result<Vec<_>>>()?;
        // A name of this cluster's own: were a port picked here taken by another test's
        // cluster, their routes must not join the two.
        let cluster_name = format!("hostel-test-{}", cluster_ports[0]);
        let mut nodes = Vec::with_capacity(n);
        for (i, &cluster_port) in cluster_ports.iter().enumerate() {
            let peers = (cluster_ports.iter().copied())
                .filter(|&p| p != cluster_port)
                .collect();
            let name = format!("n{}", i + 1);
            nodes.push(Node::new(
                dir.path(),
                &name,
                Some((&cluster_name, cluster_port, peers)),
                "",
            )?);
        }
        for node in &mut nodes {
            node.start()?;
        }
        let cluster = NatsCluster { nodes, _dir: dir };
        cluster.wait_for_meta_leader();
        Ok(cluster)
    }

    /// Waits until every running node knows the same JetStream meta leader and answers its
    /// health check.
    fn wait_for_meta_leader(&self) {
        wait_until(
            "the NATS cluster elected no JetStream meta leader known to every running node",
            || {
                let running: Vec<&Node> = self.nodes.iter().filter(|n| n.child.is_some()).collect();
                let leaders: Vec<Option<String>> =
                    running.iter().map(|n| n.meta_leader()).collect();
                leaders[0].is_some()
                    && leaders.iter().all(|l| *l == leaders[0])
                    && running.iter().all(|n| n.healthy())
            },
        );
    }

    /// Every node's client URL, comma-separated, as a `url` setting takes them.
    pub fn urls(&self) -> String {
        (self.nodes.iter())
            .map(|node| format!("nats://127.0.0.1:{}", node.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `i`'s (0-based) client port.
    pub fn port(&self, i: usize) -> u16 {
        self.nodes[i].port
    }

    /// The node the running nodes agree leads JetStream's meta group (`n1`…).
    pub fn meta_leader(&self) -> Option<String> {
        self.nodes.iter().find(|n| n.child.is_some())?.meta_leader()
    }

    /// Kills node `i` (0-based) with SIGKILL, as a crash would.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Starts node `i` again on the same ports and store; returns once the cluster has a meta
    /// leader again that every running node agrees on.
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.nodes[i].kill();
        self.nodes[i].start()?;
        self.wait_for_meta_leader();
        Ok(())
    }

    /// Starts every node that is not running (after [`NatsCluster::kill`]), then waits for a
    /// meta leader: one node alone, of a cluster lost whole, could not elect one.
    pub fn restart_all(&mut self) -> Result<()> {
        for node in &mut self.nodes {
            if node.child.is_none() {
                node.start()?;
            }
        }
        self.wait_for_meta_leader();
        Ok(())
    }

    /// Kills every node.
    pub fn stop_all(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}
