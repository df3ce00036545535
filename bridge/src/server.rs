//! The injectable server: `run(listener, bridge, shutdown)`. `main` binds and calls it; tests bind
//! `127.0.0.1:0` and pass their own shutdown.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;

use crate::exchange::Bridge;
use crate::http;

/// Serves the API on `listener` until `shutdown` completes, then stops accepting, gives in-flight
/// requests up to [`DRAIN_DEADLINE`] to finish, and flushes the audit sink. `extra` routes are
/// merged in (dev mode's token minting).
pub async fn run(
    listener: TcpListener,
    bridge: Arc<Bridge>,
    extra: Option<Router>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = http::router(Arc::clone(&bridge), extra);
    let (stopping, mut stopped) = tokio::sync::watch::channel(false);
    let signal = async move {
        shutdown.await;
        let _ = stopping.send(true);
    };
    let serve = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(signal)
    .into_future();
    let deadline = async move {
        let _ = stopped.wait_for(|s| *s).await;
        tokio::time::sleep(DRAIN_DEADLINE).await;
    };
    let result = tokio::select! {
        r = serve => r,
        () = deadline => {
            tracing::warn!("requests still running after {DRAIN_DEADLINE:?}; stopping anyway");
            Ok(())
        }
    };
    bridge.flush_audit();
    result
}

/// The TLS acceptor, plus the verified client certificate's identity as a request extension on
/// every request of the connection (empty when client certificates are not required).
#[derive(Clone)]
struct IdentityAcceptor(axum_server::tls_rustls::RustlsAcceptor);

impl<I, S> axum_server::accept::Accept<I, S> for IdentityAcceptor
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: Send + 'static,
{
    type Stream = tokio_rustls::server::TlsStream<I>;
    type Service = axum::middleware::AddExtension<S, crate::tls::ClientIdentity>;
    type Future =
        futures::future::BoxFuture<'static, std::io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let handshake = self.0.accept(stream, service);
        Box::pin(async move {
            let (stream, service) = handshake.await?;
            let identity =
                crate::tls::ClientIdentity::from_chain(stream.get_ref().1.peer_certificates())
                    .unwrap_or_default();
            Ok((
                stream,
                tower_layer::Layer::layer(&axum::Extension(identity), service),
            ))
        })
    }
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
    let bridge_for_flush = Arc::clone(&bridge);
    let app = http::router(bridge, None);
    let handle = axum_server::Handle::new();
    let on_shutdown = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        on_shutdown.graceful_shutdown(Some(DRAIN_DEADLINE));
    });
    let config = axum_server::tls_rustls::RustlsConfig::from_config(tls);
    let acceptor = IdentityAcceptor(axum_server::tls_rustls::RustlsAcceptor::new(config));
    let result = axum_server::from_tcp(listener.into_std()?)?
        .acceptor(acceptor)
        .handle(handle)
        .serve(app.into_make_service_with_connect_info::<SocketAddr>())
        .await;
    bridge_for_flush.flush_audit();
    result
}

/// Reloads `bridge` on SIGHUP and whenever the config file or a mapping file changes (polled every
/// [`RELOAD_POLL`]: robust to editors' atomic renames and Kubernetes ConfigMap symlink swaps), and
/// refreshes the signing keys on every poll. Runs until the task is aborted.
pub async fn watch_and_reload(bridge: Arc<Bridge>) {
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut seen = fingerprint(&bridge);
    loop {
        let by_signal = tokio::select! {
            () = tokio::time::sleep(RELOAD_POLL) => false,
            Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => futures::future::pending().await } } => true,
        };
        // Staged keys come into use, replaced ones retire, new key files are picked up.
        bridge.issuer().refresh(std::time::SystemTime::now());
        let now = fingerprint(&bridge);
        if by_signal || now != seen {
            tracing::info!(
                trigger = if by_signal { "SIGHUP" } else { "file change" },
                "reloading configuration"
            );
            let _ = bridge.reload();
            seen = now;
        }
    }
}

/// How often the watched files are checked for changes.
pub const RELOAD_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Path, size and modification time of the config file and every file in the mappings directory.
fn fingerprint(bridge: &Bridge) -> Vec<(std::path::PathBuf, u64, Option<std::time::SystemTime>)> {
    let config = bridge.config();
    let mut files: Vec<std::path::PathBuf> = config.source.iter().cloned().collect();
    if let Ok(entries) = std::fs::read_dir(&config.mappings_dir) {
        files.extend(entries.filter_map(Result::ok).map(|e| e.path()));
    }
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p).ok();
            let len = meta.as_ref().map_or(0, std::fs::Metadata::len);
            let modified = meta.and_then(|m| m.modified().ok());
            (p, len, modified)
        })
        .collect()
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
