//! `riptide serve`: the media server (engine, library, web UI, API).

use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::config::{Overrides, ServeConfig, process_env};
use crate::server::{self, App};

#[derive(clap::Args)]
pub struct Args {
    /// Address of the web server [default: 127.0.0.1:8080; env RIPTIDE_LISTEN].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Where Riptide keeps its database, media and settings
    /// [default: ./riptide-data; env RIPTIDE_DATA_DIR].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Config file [default: DATA_DIR/riptide.toml; env RIPTIDE_CONFIG].
    #[arg(long)]
    config: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = ServeConfig::load(
        &Overrides {
            listen: args.listen,
            data_dir: args.data_dir,
            config: args.config,
        },
        &process_env(),
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(cfg))
}

async fn serve(cfg: ServeConfig) -> anyhow::Result<()> {
    let listen = cfg.listen;
    let http_cfg = cfg.http.clone();
    // Bind first: a port in use is the most common start-up error, and it
    // should not leave an engine and database half started.
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {listen} (is another server using it? choose one with --listen)"
            )
        })?;
    let app = App::open(cfg).await?;
    let router = server::router(app.clone());
    let shutdown = CancellationToken::new();
    let http = tokio::spawn(server::listener::serve(
        listener,
        router,
        http_cfg,
        shutdown.clone(),
        Duration::from_secs(5),
    ));
    eprintln!("riptide: serving on http://{listen}");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    eprintln!("riptide: shutting down (saving resume data)");
    shutdown.cancel();
    let _ = http.await;
    app.shutdown().await;
    Ok(())
}
