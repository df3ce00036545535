//! The injectable server: `run(listener, bridge, shutdown)`. `main` binds and calls it; tests bind
//! `127.0.0.1:0` and pass their own shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;

use crate::exchange::Bridge;
use crate::http;

/// Serves the API on `listener` until `shutdown` completes, then finishes in-flight requests.
/// `extra` routes are merged in (dev mode's token minting).
pub async fn run(
    listener: TcpListener,
    bridge: Arc<Bridge>,
    extra: Option<Router>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = http::router(bridge, extra);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Time in-flight requests get to finish after shutdown starts.
pub const DRAIN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// As [`run`], over TLS with `tls`.
pub async fn run_tls(
    listener: TcpListener,
    bridge: Arc<Bridge>,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = http::router(bridge, None);
    let handle = axum_server::Handle::new();
    let on_shutdown = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        on_shutdown.graceful_shutdown(Some(DRAIN_DEADLINE));
    });
    let config = axum_server::tls_rustls::RustlsConfig::from_config(tls);
    axum_server::from_tcp_rustls(listener.into_std()?, config)?
        .handle(handle)
        .serve(app.into_make_service_with_connect_info::<SocketAddr>())
        .await
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => futures::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
