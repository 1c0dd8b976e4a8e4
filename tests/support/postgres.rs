//! A real PostgreSQL server for the tests: a fresh cluster (`initdb`) in a temporary folder,
//! served by `postgres` on a free loopback port with trust authentication, stopped by PID.
//!
//! PostgreSQL refuses to run as root; when the tests do, the cluster is created and served as
//! the `postgres` system user (which the Debian package creates).

use anyhow::{Context, Result, bail};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The database the host's pool connects to.
pub const DATABASE: &str = "hostel";

pub struct PostgresServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    bin: Option<PathBuf>,
    /// (uid, gid) of the `postgres` user when running as root.
    run_as: Option<(u32, u32)>,
    /// TLS on, TCP logins by password over TLS only (see [`PostgresServer::start_secure`]).
    secure: bool,
}

/// The password of the `postgres` superuser on a secure server.
pub const SUPERUSER_PASSWORD: &str = "superuser-secret";

impl PostgresServer {
    /// Creates a cluster with database [`DATABASE`] and starts serving it; logins over TCP are
    /// trusted without a password.
    pub fn start() -> Result<PostgresServer> {
        Self::start_with(None)
    }

    /// As [`PostgresServer::start`], but the server speaks TLS with a certificate for `names`
    /// signed by `ca`, and TCP logins must come over TLS with a password (SCRAM). The
    /// `postgres` superuser's password is [`SUPERUSER_PASSWORD`].
    pub fn start_secure(ca: &crate::TestCa, names: &[&str]) -> Result<PostgresServer> {
        Self::start_with(Some((ca, names)))
    }

    fn start_with(tls: Option<(&crate::TestCa, &[&str])>) -> Result<PostgresServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = tempfile::tempdir()?;
        let run_as = postgres_user_if_root()?;
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .context("cannot hand the test cluster's folder to the postgres user")?;
        }
        let mut server = PostgresServer {
            child: None,
            port,
            dir,
            bin: server_bin_dir(),
            run_as,
            secure: tls.is_some(),
        };
        let initdb = server
            .command("initdb")
            .arg("-D")
            .arg(server.data_dir())
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync")
            .output()
            .context(
                "cannot run initdb: install the PostgreSQL server \
                 (Debian: apt-get install postgresql)",
            )?;
        if !initdb.status.success() {
            bail!(
                "initdb failed ({}): {}",
                initdb.status,
                String::from_utf8_lossy(&initdb.stderr)
            );
        }
        if let Some((ca, names)) = tls {
            let data = server.data_dir();
            ca.server_cert(names, &data, "server")?;
            if let Some((uid, gid)) = run_as {
                for file in ["server.pem", "server.key"] {
                    std::os::unix::fs::chown(data.join(file), Some(uid), Some(gid))?;
                }
            }
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n",
            )?;
            let mut conf = std::fs::OpenOptions::new()
                .append(true)
                .open(data.join("postgresql.conf"))?;
            use std::io::Write;
            writeln!(
                conf,
                "ssl = on\nssl_cert_file = 'server.pem'\nssl_key_file = 'server.key'\n\
                 password_encryption = 'scram-sha-256'"
            )?;
        }
        // Another process may take the port between our choosing it and the server binding it.
        let mut started = server.resume();
        for _ in 0..4 {
            if started.is_ok() {
                break;
            }
            server.port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            started = server.resume();
        }
        started?;
        server.psql_in("postgres", &format!("CREATE DATABASE {DATABASE}"))?;
        if server.secure {
            server.psql_in(
                "postgres",
                &format!("ALTER ROLE postgres PASSWORD '{SUPERUSER_PASSWORD}'"),
            )?;
        }
        Ok(server)
    }

    /// A URL logging in as `user` with `password` to `database`, with `params` (e.g.
    /// `sslmode=verify-full`) when not empty.
    pub fn url_as(&self, user: &str, password: &str, database: &str, params: &str) -> String {
        let query = if params.is_empty() {
            String::new()
        } else {
            format!("?{params}")
        };
        format!(
            "postgres://{user}:{password}@127.0.0.1:{}/{database}{query}",
            self.port
        )
    }

    /// The URL for the host config (no password: trust authentication).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{DATABASE}", self.port)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A command for one of the server's programs, run as the postgres user if need be.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(match &self.bin {
            Some(dir) => dir.join(program),
            None => PathBuf::from(program),
        });
        command.current_dir(self.dir.path()).stdin(Stdio::null());
        if let Some((uid, gid)) = self.run_as {
            command.uid(uid).gid(gid);
        }
        command
    }

    /// Starts the server (again) on the same folder and port; waits until it answers.
    pub fn resume(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("postgres.log"))?;
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1", "-k"])
            .arg(self.dir.path())
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start postgres")?;
        self.child = Some(child);
        for _ in 0..400 {
            if self.psql_in("postgres", "SELECT 1").is_ok() {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("postgres exited ({status}): {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "postgres did not answer on port {}: {}",
            self.port,
            self.log()
        )
    }

    /// Stops the server the way an operator would (fast shutdown: sessions are ended and
    /// their transactions rolled back), and waits for it to exit.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits");
        // SAFETY: signalling the server process this helper started.
        unsafe { libc::kill(pid, libc::SIGINT) };
        for _ in 0..600 {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Runs `sql` in the test database with `psql`; the rows, `|`-separated, one a line.
    pub fn psql(&self, sql: &str) -> Result<String> {
        self.psql_in(DATABASE, sql)
    }

    /// Runs `sql` as the superuser in `database`.
    pub fn psql_in(&self, database: &str, sql: &str) -> Result<String> {
        self.psql_as("postgres", database, sql)
    }

    /// Runs `sql` as `user` in `database`, over the server's local socket (trusted: no
    /// password, no TLS).
    pub fn psql_as(&self, user: &str, database: &str, sql: &str) -> Result<String> {
        let out = self
            .command("psql")
            .arg("-h")
            .arg(self.dir.path())
            .args(["-p", &self.port.to_string()])
            .args(["-U", user, "-d", database])
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .context("cannot run psql")?;
        if !out.status.success() {
            bail!(
                "psql {sql:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// A number `sql` returns.
    pub fn count(&self, sql: &str) -> Result<u64> {
        let out = self.psql(sql)?;
        out.parse()
            .with_context(|| format!("{sql:?} returned {out:?}, not a number"))
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where the server programs are: `pg_config --bindir`, else the newest Debian-style
/// `/usr/lib/postgresql/*/bin`, else `None` for `PATH`.
fn server_bin_dir() -> Option<PathBuf> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_server(&dir) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            has_server(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// The `postgres` user's ids when running as root (PostgreSQL will not run as root).
fn postgres_user_if_root() -> Result<Option<(u32, u32)>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    // SAFETY: a NUL-terminated name; the result is read before any other passwd call.
    let entry = unsafe { libc::getpwnam(c"postgres".as_ptr()) };
    if entry.is_null() {
        bail!(
            "the tests run as root, and PostgreSQL refuses to: create a `postgres` system \
             user (the Debian package `postgresql` does) or run the tests as another user"
        );
    }
    // SAFETY: checked non-null above.
    let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
    Ok(Some((uid, gid)))
}
