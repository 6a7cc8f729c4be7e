//! The `amp-orchestrator` binary: `serve` (the default), `migrate`, and the egress gateway's
//! `gateway` and `gateway-probe`, which run in their own container without the service's
//! configuration.

use std::process::ExitCode;

use amp_orchestrator::config::Config;
use amp_orchestrator::{app, db, gateway, telemetry};
use clap::{Parser, Subcommand};
use tracing::{error, info};

#[derive(Parser)]
#[command(
    name = "amp-orchestrator",
    version,
    about = "Run the Amp coding agent on /amp comments"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve webhooks, status pages and run tasks (the default).
    Serve,
    /// Bring the database schema up to date and exit.
    Migrate,
    /// Build the egress gateway's image from this binary on the Docker engine (DOCKER_HOST),
    /// if it is not there yet, and print its name.
    GatewayImage,
    /// Run the egress gateway: the agents' only way out (configured by GATEWAY_* and
    /// AMP_API_KEY, not by the service's settings).
    Gateway,
    /// GET a path from the gateway's control port (GATEWAY_CONTROL, default 127.0.0.1:3129),
    /// print the body, exit 0 on a 2xx answer and 1 otherwise.
    GatewayProbe {
        /// The path, like /healthz or /blocked?task=<public id>.
        path: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Cmd::Gateway) => return gateway(),
        Some(Cmd::GatewayProbe { path }) => return gateway_probe(&path),
        _ => {}
    }
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprint!("amp-orchestrator: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(&config.log_level, config.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("amp-orchestrator: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command.unwrap_or(Cmd::Serve) {
            Cmd::Serve => serve(config).await,
            Cmd::Gateway | Cmd::GatewayProbe { .. } => unreachable!("handled above"),
            Cmd::GatewayImage => {
                let engine =
                    amp_orchestrator::docker::Engine::connect(config.docker_host.as_deref())
                        .await?;
                let image = amp_orchestrator::sandbox::gateway_image(
                    &engine,
                    std::path::Path::new("/proc/self/exe"),
                    None,
                )
                .await?;
                println!("{image}");
                Ok(())
            }
            Cmd::Migrate => {
                let conn = db::connect(&config.database_url).await?;
                db::migrate(&conn).await?;
                info!("migrations applied");
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = format!("{e:#}"), "exiting");
            ExitCode::FAILURE
        }
    }
}

fn gateway() -> ExitCode {
    let config = match gateway::GatewayConfig::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprint!("amp-orchestrator gateway: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(&config.log_level, config.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("amp-orchestrator gateway: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let shutdown = tokio_util::sync::CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            info!("egress gateway stopping");
            stop.cancel();
        });
        gateway::serve(config, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = format!("{e:#}"), "exiting");
            ExitCode::FAILURE
        }
    }
}

fn gateway_probe(path: &str) -> ExitCode {
    let addr = match gateway::probe::control_address(|name| std::env::var(name).ok()) {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("amp-orchestrator gateway-probe: {e}");
            return ExitCode::from(2);
        }
    };
    match gateway::probe::probe(addr, path) {
        Ok((status, body)) => {
            print!("{body}");
            if (200..300).contains(&status) {
                ExitCode::SUCCESS
            } else {
                eprintln!("amp-orchestrator gateway-probe: {addr} answered {status}");
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("amp-orchestrator gateway-probe: {addr}: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let running = app::start(config).await?;
    let shutdown = running.ctx.shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutdown requested: no new requests; finishing the work in hand");
        shutdown.cancel();
    });
    running.wait().await?;
    info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
