//! The `hostel` command line.

mod admin_client;
mod logging;
mod traces;

use admin_client::AdminClient;
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use hostel::admin::Admin;
use hostel::admin::deployments::DeploymentStore;
use hostel::admin::scrape::Scrape;
use hostel::cluster::Cluster;
use hostel::config::Config;
use hostel::{Host, request, server};
use logging::LogFormat;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

/// Hostel serves WebAssembly HTTP handler components, a fresh sandbox per request, with
/// host-held resources lent to guests.
#[derive(Parser)]
#[command(name = "hostel", version, propagate_version = true)]
struct Cli {
    /// Log filter, e.g. `info`, `hostel=debug,guest=info` (tracing's EnvFilter syntax).
    #[arg(long, global = true, env = "HOSTEL_LOG", default_value = "info")]
    log: String,

    /// `json`: one JSON object per line, the request's id, tenant and app at the top level.
    #[arg(
        long,
        global = true,
        env = "HOSTEL_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

/// The TOML configuration file, as every subcommand takes it.
#[derive(clap::Args)]
struct ConfigArg {
    /// The TOML configuration file.
    #[arg(
        id = "config",
        long = "config",
        short = 'c',
        default_value = "hostel.toml",
        env = "HOSTEL_CONFIG"
    )]
    path: PathBuf,
}

/// Where the admin API is and how to show who we are.
#[derive(clap::Args)]
struct AdminArgs {
    /// The admin API's address.
    #[arg(
        long = "admin",
        env = "HOSTEL_ADMIN",
        default_value = "http://127.0.0.1:8081"
    )]
    url: String,
    /// The operator's or a tenant's admin token.
    #[arg(long, env = "HOSTEL_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl AdminArgs {
    fn client(self) -> Result<AdminClient> {
        AdminClient::new(&self.url, self.token)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Load the configuration and serve its apps until SIGINT/SIGTERM.
    Serve {
        #[command(flatten)]
        config: ConfigArg,
        /// Listen here instead of `server.listen` (port 0 picks a free port).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Serve the admin API here instead of `admin.listen` (needs an [admin] section).
        #[arg(long)]
        admin_listen: Option<SocketAddr>,
    },
    /// Deploy a component to a running host (admin API): new app, or a zero-downtime swap.
    Deploy {
        /// The component (.wasm).
        component: PathBuf,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        app: String,
        /// Where to mount it, e.g. `/api`.
        #[arg(long)]
        route: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List the apps of a running host that the token may see.
    Apps {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Remove a deployed app from a running host.
    Remove {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        app: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Show what tenants used, per hour and app (admin API: the operator sees every tenant, a
    /// tenant's token its own).
    Usage {
        /// From this time (RFC 3339, e.g. 2026-12-01T00:00:00Z, or Unix seconds); default: 24
        /// hours ago.
        #[arg(long)]
        from: Option<String>,
        /// Until this time (default: now).
        #[arg(long)]
        to: Option<String>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Make a new admin token; prints it and the SHA-256 the config takes.
    Token,
    /// Measure the sandbox alone (instantiate + handle + tear down) for an app, no network.
    Measure {
        #[command(flatten)]
        config: ConfigArg,
        /// Request path (chooses the app).
        #[arg(long, default_value = "/")]
        path: String,
        /// Host header (chooses the tenant).
        #[arg(long, default_value = "localhost")]
        host: String,
        /// Requests to time, one after another.
        #[arg(long, default_value_t = 10_000)]
        requests: usize,
    },
    /// Check a configuration and every component it names, then exit (0 when all is well).
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Create a guest: a hello handler in LANGUAGE in the folder NAME, with a hostel.toml that
    /// serves it.
    New {
        language: hostel_guest_tools::Language,
        name: PathBuf,
        /// `0.3` writes a WASI 0.3 service (an async handler, async pool calls; Rust, Python).
        #[arg(long, value_enum, default_value = "0.2")]
        wasi: hostel_guest_tools::Wasi,
    },
    /// Build the guest in DIR (Rust: Cargo.toml, Python: app.py, JavaScript: app.js,
    /// TypeScript: app.ts, C: app.c) into DIR/build/NAME.wasm, installing the language's
    /// toolchain when it is missing.
    Build {
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// `proxy` builds for any wasi:http host (without Hostel's stores and pools).
        #[arg(long, value_enum, default_value = "hostel")]
        world: hostel_guest_tools::World,
    },
}

fn main() {
    let cli = Cli::parse();
    let filter = EnvFilter::try_new(&cli.log).unwrap_or_else(|e| {
        eprintln!("hostel: invalid --log filter {:?}: {e}", cli.log);
        std::process::exit(2);
    });
    // Only a serving host exports traces; the other commands serve no requests.
    let traces = match &cli.command {
        Command::Serve { .. } => traces::Traces::from_env().unwrap_or_else(|e| {
            eprintln!("hostel: error: traces: {e:#}");
            std::process::exit(2);
        }),
        _ => None,
    };
    logging::init(filter, cli.log_format, traces.as_ref());
    if let Some(traces) = &traces {
        traces.announce();
        hostel::traces::enable();
    }

    if let Err(e) = run(cli.command, traces) {
        let message = hostel::secrets::redact_text(&format!("{e:#}"));
        match cli.log_format {
            LogFormat::Text => eprintln!("hostel: error: {message}"),
            // A log collector reads every stderr line as JSON.
            LogFormat::Json => tracing::error!("{message}"),
        }
        std::process::exit(1);
    }
}

fn run(command: Command, traces: Option<traces::Traces>) -> Result<()> {
    match command {
        Command::Check { config } => {
            let config = Config::load(&config.path)?;
            let host = Host::load(&config)?;
            // The apps deployed through the admin API are served too: check them the same way.
            let deployed = match &config.admin {
                // Each host checks what the cluster deploys as it applies it (`GET /v1/cluster`).
                Some(_) if config.cluster.is_some() => {
                    ", the deployed ones live in the cluster's JetStream".to_string()
                }
                Some(admin) => {
                    let store = DeploymentStore::read_only(&admin.state);
                    let deployed = hostel::admin::restore(&host, &store, admin)?;
                    format!(", {deployed} of them deployed")
                }
                None => String::new(),
            };
            let mut installed = host.installed();
            installed.sort_by(|(a, _), (b, _)| a.cmp(b));
            let apps = installed.len();
            let plural = if apps == 1 { "" } else { "s" };
            println!(
                "{}: ok ({apps} app{plural}{deployed})",
                config.source.display()
            );
            for ((tenant, app), installed) in &installed {
                println!(
                    "  {tenant}/{app}  {}  {}",
                    installed.app.route,
                    installed.app.handler.world()
                );
            }
            Ok(())
        }
        Command::Measure {
            config,
            path,
            host,
            requests,
        } => measure(&Config::load(&config.path)?, &host, &path, requests.max(1)),
        Command::New {
            language,
            name,
            wasi,
        } => hostel_guest_tools::new(language, wasi, &name),
        Command::Build { dir, world } => hostel_guest_tools::build(&dir, world).map(drop),
        Command::Serve {
            config,
            listen,
            admin_listen,
        } => {
            let mut config = Config::load(&config.path)?;
            if let Some(listen) = listen {
                config.listen = listen;
            }
            if let Some(listen) = admin_listen {
                let Some(admin) = config.admin.as_mut() else {
                    anyhow::bail!(
                        "--admin-listen: {} has no [admin] section (it needs at least \
                         operator_token_sha256; `hostel token` makes one)",
                        config.source.display()
                    );
                };
                admin.listen = listen;
            }
            serve(config, traces)
        }
        Command::Deploy {
            component,
            tenant,
            app,
            route,
            admin,
        } => {
            let bytes = std::fs::read(&component)
                .with_context(|| format!("cannot read {}", component.display()))?;
            let deployed = admin.client()?.deploy(&tenant, &app, &route, &bytes)?;
            println!(
                "deployed {tenant}/{app} at {route} ({})",
                deployed["digest"].as_str().unwrap_or("?")
            );
            Ok(())
        }
        Command::Apps { admin } => {
            let listing = admin.client()?.apps()?;
            println!(
                "{:<16} {:<20} {:<24} {:<9} COMPONENT",
                "TENANT", "APP", "ROUTE", "SOURCE"
            );
            for app in listing["apps"].as_array().into_iter().flatten() {
                let text = |key: &str| app[key].as_str().unwrap_or("").to_string();
                let component = if text("source") == "config" {
                    text("component")
                } else {
                    format!(
                        "{} ({} bytes, {})",
                        text("digest"),
                        app["size"],
                        text("deployed_at")
                    )
                };
                println!(
                    "{:<16} {:<20} {:<24} {:<9} {component}",
                    text("tenant"),
                    text("app"),
                    text("route"),
                    text("source")
                );
            }
            Ok(())
        }
        Command::Remove { tenant, app, admin } => {
            admin.client()?.remove(&tenant, &app)?;
            println!("removed {tenant}/{app}");
            Ok(())
        }
        Command::Usage {
            from,
            to,
            json,
            admin,
        } => {
            let report = admin.client()?.usage(from.as_deref(), to.as_deref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
                return Ok(());
            }
            println!(
                "{:<21} {:<16} {:<20} {:>9} {:>10} {:>12} {:>11} {:>11} {:>8} {:>9}",
                "HOUR",
                "TENANT",
                "APP",
                "REQUESTS",
                "CPU_S",
                "MEM_MIB_S",
                "BYTES_IN",
                "BYTES_OUT",
                "OUTBOUND",
                "POOL_S"
            );
            for row in report["usage"].as_array().into_iter().flatten() {
                let text = |key: &str| row[key].as_str().unwrap_or("").to_string();
                let count = |key: &str| row[key].as_u64().unwrap_or(0);
                let seconds = |key: &str| row[key].as_f64().unwrap_or(0.0);
                println!(
                    "{:<21} {:<16} {:<20} {:>9} {:>10.3} {:>12.3} {:>11} {:>11} {:>8} {:>9.3}",
                    text("hour"),
                    text("tenant"),
                    text("app"),
                    count("requests"),
                    seconds("guest_cpu_seconds"),
                    seconds("memory_mib_seconds"),
                    count("bytes_in"),
                    count("bytes_out"),
                    count("outbound_calls"),
                    seconds("pool_seconds")
                );
            }
            Ok(())
        }
        Command::Token => {
            let (token, hash) = hostel::admin::auth::new_token()?;
            println!("token: {token}");
            println!("sha256: {hash}");
            println!(
                "# keep the token secret (HOSTEL_TOKEN); put the hash in the config:\n\
                 #   [admin] operator_token_sha256 = \"{hash}\"\n\
                 #   or [tenants.NAME] admin_token_sha256 = \"{hash}\""
            );
            Ok(())
        }
    }
}

/// How long admin requests in flight (a deploy) may run on once the host stops.
const ADMIN_GRACE: Duration = Duration::from_secs(5);

/// Serves until SIGINT or SIGTERM, then stops in this order:
///
/// 1. at once, the host is not ready: `/readyz` answers 503;
/// 2. the app listener keeps accepting for `server.drain_delay`, so that a load balancer's
///    probes see the 503 and take the host out before any connection is refused;
/// 3. the app listener closes; requests in flight get `server.shutdown_grace` to finish;
/// 4. then the admin listener, which answered `/readyz` until here, and the pools close;
/// 5. last, the spans still queued are sent (a bounded wait: see [`traces::Traces::shutdown`]).
fn serve(config: Config, traces: Option<traces::Traces>) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("hostel-worker")
        .build()
        .context("cannot start the async runtime")?;
    let host = Arc::new(Host::load(&config)?);
    let cluster = (config.cluster.as_ref())
        .map(|cluster| Cluster::new(host.clone(), cluster))
        .transpose()?;
    let admin = config
        .admin
        .as_ref()
        .map(|admin| {
            Admin::start(host.clone(), admin, config.metrics.open, cluster.clone()).map(Arc::new)
        })
        .transpose()
        .with_context(|| format!("{}: [admin]", config.source.display()))?;
    host.engines().start_epoch_ticker();
    let served = runtime.block_on(async {
        let listener = bind(config.listen, "server.listen", &config).await?;
        let admin_server = match (admin, &config.admin) {
            (Some(admin), Some(settings)) => {
                Some((bind(settings.listen, "admin.listen", &config).await?, admin))
            }
            _ => None,
        };
        let metrics_listener = match config.metrics.listen {
            Some(listen) => Some(bind(listen, "metrics.listen", &config).await?),
            None => None,
        };
        host.start_pools().await?;
        if let Some(cluster) = &cluster {
            tracing::info!(host = %cluster.host_id(), "following the cluster's deployed set");
            cluster.start();
        }

        let (signalled, on_signal) = watch::channel(false);
        let (apps_drained, on_apps_drained) = watch::channel(false);
        let drain_delay = config.drain_delay;
        let draining = host.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            draining.readiness().set_draining();
            tracing::info!(
                "not ready from now on (/readyz answers 503); accepting for {drain_delay:?} \
                 more (server.drain_delay), then draining"
            );
            let _ = signalled.send(true);
        });

        let usage = admin_server
            .as_ref()
            .map(|(_, admin)| admin.usage().clone());
        // The metrics listener answers as the admin API's /metrics does; without an [admin]
        // section scrapes are open (the config check made sure).
        let scrape = match &admin_server {
            Some((_, admin)) => admin.scrape().clone(),
            None => Arc::new(Scrape::new(host.clone(), None, config.metrics.open)),
        };
        if let Some(usage) = &usage {
            usage.flush_periodically();
        }
        let admin_task = match admin_server {
            Some((listener, admin)) => {
                let addr = listener.local_addr()?;
                tracing::info!("admin API on http://{addr}");
                println!("hostel admin listening on http://{addr}");
                let stop = until(on_apps_drained.clone());
                Some(tokio::spawn(async move {
                    let handle = move |req| admin.clone().handle(req);
                    if let Err(e) =
                        server::serve("admin", listener, handle, stop, ADMIN_GRACE).await
                    {
                        tracing::error!("admin API stopped: {e:#}");
                    }
                }))
            }
            None => None,
        };
        if let Some(listener) = metrics_listener {
            let addr = listener.local_addr()?;
            tracing::info!("metrics on http://{addr}/metrics");
            println!("hostel metrics listening on http://{addr}");
            // Scraped to the end of the drain, like the probes.
            let stop = until(on_apps_drained.clone());
            tokio::spawn(async move {
                let handle = move |request| {
                    let scrape = scrape.clone();
                    async move { Ok::<_, std::convert::Infallible>(scrape.handle(&request).await) }
                };
                let served = server::serve("metrics", listener, handle, stop, ADMIN_GRACE);
                if let Err(e) = served.await {
                    tracing::error!("metrics listener stopped: {e:#}");
                }
            });
        }

        // The listener is bound, so connections queue from here on: ready (unless a pool is
        // down) before anyone is told where to connect.
        host.readiness().set_serving();
        let addr = listener.local_addr()?;
        tracing::info!("listening on http://{addr}");
        // A line on stdout that scripts and tests can wait for.
        println!("hostel listening on http://{addr}");
        let serving = host.clone();
        let stop_accepting = async move {
            until(on_signal).await;
            tokio::time::sleep(drain_delay).await;
        };
        server::serve(
            "apps",
            listener,
            move |req| request::handle(serving.clone(), req),
            stop_accepting,
            config.shutdown_grace,
        )
        .await?;
        let _ = apps_drained.send(true);
        if let Some(admin) = admin_task {
            let _ = admin.await;
        }
        // Everything counted until the last request is written.
        if let Some(usage) = usage
            && let Err(e) = usage.flush().await
        {
            tracing::error!("the last usage before shutdown is lost: {e:#}");
        }
        host.close_pools();
        Ok(())
    });
    if let Some(traces) = traces {
        traces.shutdown();
    }
    served
}

/// Binds `addr`; a failure names the config key it came from, as every config error does.
async fn bind(addr: SocketAddr, key: &str, config: &Config) -> Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!(
            "cannot listen on {addr} (key `{key}` in {}): is another process using it?",
            config.source.display()
        )
    })
}

/// Ends when `flag` is set — or when its sender is dropped, so a sender must live as long as
/// what waits on it should run.
async fn until(mut flag: watch::Receiver<bool>) {
    let _ = flag.wait_for(|set| *set).await;
}

fn measure(config: &Config, authority: &str, path: &str, requests: usize) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let host = Host::load(config)?;
    host.engines().start_epoch_ticker();
    runtime.block_on(async {
        // Warm up: first touches of the pool's slots and of the code pages.
        hostel::measure::sandbox_cost(&host, authority, path, requests.min(500)).await?;
        let cost = hostel::measure::sandbox_cost(&host, authority, path, requests).await?;
        println!(
            "sandbox per request over {} requests: mean {:.1} µs, p50 {:.1} µs, p99 {:.1} µs",
            cost.requests, cost.mean_us, cost.p50_us, cost.p99_us
        );
        Ok(())
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("cannot listen for SIGTERM");
    let mut int = signal(SignalKind::interrupt()).expect("cannot listen for SIGINT");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
