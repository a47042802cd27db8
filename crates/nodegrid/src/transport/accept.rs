//! The accept loop of [`crate::Manager::serve`]: accepts TCP connections, terminates TLS if
//! configured, and serves the grid's upgrade endpoint on each, with the handshake bounded in
//! time and in number.

use super::endpoint::GridService;
use super::tls::TlsConfig;
use std::io;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Accepts connections on `listener` until `shutdown` fires.
pub(crate) async fn serve(
    listener: TcpListener,
    svc: GridService,
    tls: Option<TlsConfig>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let ep = svc.endpoint().clone();
    loop {
        let (tcp, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) if is_transient(&e) => {
                    tracing::debug!("accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
                Err(e) => return Err(e),
            },
            _ = shutdown.cancelled() => return Ok(()),
        };
        let _ = tcp.set_nodelay(true);
        let Ok(permit) = ep.permits.clone().try_acquire_owned() else {
            // Too many connections still in their handshake: refuse this one.
            continue;
        };
        let accepted = Instant::now();
        let svc = svc.clone().accepted_at(accepted);
        let deadline = accepted + ep.handshake_timeout;
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => svc.serve_connection(tcp).await,
                Some(tls) => {
                    if let Ok(Ok(s)) = tokio::time::timeout_at(deadline, tls.accept(tcp)).await {
                        svc.serve_connection(s).await;
                    }
                }
            }
        });
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    ) || e.raw_os_error() == Some(24) // EMFILE: back off and retry
}
