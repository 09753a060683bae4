//! The gateway binary: logging, configuration, then [`gateway::Gateway`] until SIGINT/SIGTERM.

use gateway::{Config, Gateway};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    gateway::malloc::keep_large_blocks_mapped();
    tracing_subscriber::fmt()
        .with_env_filter(gateway::logging::filter())
        .init();
    let config = Config::load()?;
    let demo = config.demo;
    let gateway = Gateway::start(config).await?;
    let base = gateway.base_url();
    println!();
    println!("  camera gateway is up");
    println!("  debug page:  {base}/debug/");
    println!(
        "  live view:   {base}/debug/webrtc-client{}",
        if demo { "?stream=demo" } else { "" }
    );
    println!("  Swagger UI:  {base}/swagger-ui/");
    println!("  OpenAPI:     {base}/api-docs/openapi.json");
    for warning in gateway.warnings() {
        println!();
        println!("  WARNING: {warning}");
    }
    println!();
    shutdown_signal().await;
    tracing::info!("signal received; shutting down");
    gateway.shutdown().await
}

/// Resolves on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
