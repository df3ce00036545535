//! `stsbridge serve`: the service, from a config file or in dev mode.

use super::*;

pub(super) fn serve(
    config_path: Option<PathBuf>,
    listen: Option<SocketAddr>,
    aws_endpoint: Option<String>,
) -> ExitCode {
    let Some(path) = config_path else {
        let rt = match runtime() {
            Ok(rt) => rt,
            Err(code) => return code,
        };
        return rt.block_on(dev::serve(listen, aws_endpoint));
    };
    let mut config = match or_config_errors(config::load(&path)) {
        Ok(v) => v,
        Err(code) => return code,
    };
    if let Some(listen) = listen {
        config.listen = listen;
    }
    if let Some(endpoint) = aws_endpoint {
        if let Err(m) = config::check_url(&endpoint, true) {
            eprintln!("error: --aws-endpoint: {m}");
            return ExitCode::from(EXIT_CONFIG);
        }
        config.aws.endpoint = Some(endpoint);
    }
    let tls = match config
        .tls
        .as_ref()
        .map(crate::tls::server_config)
        .transpose()
    {
        Ok(tls) => tls,
        Err(m) => {
            eprintln!("error: {}: tls: {m}", path.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async move {
        let listen = config.listen;
        let ops_listen = config.ops_listen;
        let bridge = match Bridge::start(config) {
            Ok(b) => b,
            Err(crate::exchange::StartError::Mappings(errors)) => {
                return config_errors(&errors);
            }
            Err(e) => {
                eprintln!("error: {}", crate::exit::chain(&e));
                return ExitCode::from(EXIT_FAILURE);
            }
        };
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {listen}: {e}");
                return ExitCode::from(EXIT_FAILURE);
            }
        };
        // The operations listener first, so its address is logged before the service's.
        let ops = match ops_listen {
            None => None,
            Some(addr) => match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => {
                    let shown = l.local_addr().map_or(addr.to_string(), |a| a.to_string());
                    tracing::info!(
                        "operations listener on {shown} (http): /metrics, /healthz, /readyz"
                    );
                    let app = crate::http::ops_router(Arc::clone(&bridge));
                    Some(tokio::spawn(async move {
                        if let Err(e) = axum::serve(l, app).await {
                            tracing::error!("the operations listener stopped: {e}");
                        }
                    }))
                }
                Err(e) => {
                    eprintln!("error: cannot listen on {addr} (ops.listen): {e}");
                    return ExitCode::from(EXIT_FAILURE);
                }
            },
        };
        let watcher = tokio::spawn(server::watch_and_reload(Arc::clone(&bridge)));
        let scheme = if tls.is_some() { "https" } else { "http" };
        match listener.local_addr() {
            Ok(addr) => tracing::info!("listening on {addr} ({scheme})"),
            Err(_) => tracing::info!("listening on {listen} ({scheme})"),
        }
        let served = match tls {
            Some(tls) => server::run_tls(listener, bridge, tls, server::shutdown_signal()).await,
            None => server::run(listener, bridge, None, server::shutdown_signal()).await,
        };
        watcher.abort();
        if let Some(ops) = ops {
            ops.abort();
        }
        match served {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EXIT_FAILURE)
            }
        }
    })
}
