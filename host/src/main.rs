//! The `hostel` command line.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use hostel::config::Config;
use hostel::{Host, engine, server};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tracing_subscriber::EnvFilter;

/// Hostel serves WebAssembly HTTP handler components, a fresh sandbox per request, with
/// host-held resources lent to guests.
#[derive(Parser)]
#[command(name = "hostel", version, propagate_version = true)]
struct Cli {
    /// Log filter, e.g. `info`, `hostel=debug,guest=info` (tracing's EnvFilter syntax).
    #[arg(long, global = true, env = "HOSTEL_LOG", default_value = "info")]
    log: String,

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

#[derive(Subcommand)]
enum Command {
    /// Load the configuration and serve its apps until SIGINT/SIGTERM.
    Serve {
        #[command(flatten)]
        config: ConfigArg,
        /// Listen here instead of `server.listen` (port 0 picks a free port).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
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
        language: hostel::guest_tools::Language,
        name: PathBuf,
    },
    /// Build the guest in DIR (Rust: Cargo.toml, Python: app.py) into DIR/build/NAME.wasm,
    /// installing the language's toolchain when it is missing.
    Build {
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// `proxy` builds for any wasi:http host (without Hostel's stores and pools).
        #[arg(long, value_enum, default_value = "hostel")]
        world: hostel::guest_tools::World,
    },
}

fn main() {
    let cli = Cli::parse();
    let filter = EnvFilter::try_new(&cli.log).unwrap_or_else(|e| {
        eprintln!("hostel: invalid --log filter {:?}: {e}", cli.log);
        std::process::exit(2);
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    if let Err(e) = run(cli.command) {
        eprintln!("hostel: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Check { config } => {
            let config = Config::load(&config.path)?;
            let host = Host::load(&config)?;
            let apps = host.router().apps().count();
            println!("{}: ok ({apps} apps)", config.source.display());
            Ok(())
        }
        Command::Measure {
            config,
            path,
            host,
            requests,
        } => measure(&Config::load(&config.path)?, &host, &path, requests.max(1)),
        Command::New { language, name } => hostel::guest_tools::new(language, &name),
        Command::Build { dir, world } => hostel::guest_tools::build(&dir, world).map(drop),
        Command::Serve { config, listen } => {
            let mut config = Config::load(&config.path)?;
            if let Some(listen) = listen {
                config.listen = listen;
            }
            serve(config)
        }
    }
}

fn serve(config: Config) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("hostel-worker")
        .build()
        .context("cannot start the async runtime")?;
    let host = Arc::new(Host::load(&config)?);
    engine::start_epoch_ticker(host.engine());
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} (key `server.listen` in {}): is another process using it?",
                    config.listen,
                    config.source.display()
                )
            })?;
        host.start_pools().await?;
        let addr = listener.local_addr()?;
        tracing::info!("listening on http://{addr}");
        // A line on stdout that scripts and tests can wait for.
        println!("hostel listening on http://{addr}");
        server::serve(
            listener,
            host.clone(),
            shutdown_signal(),
            config.shutdown_grace,
        )
        .await?;
        host.close_pools();
        Ok(())
    })
}

fn measure(config: &Config, authority: &str, path: &str, requests: usize) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let host = Host::load(config)?;
    engine::start_epoch_ticker(host.engine());
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
