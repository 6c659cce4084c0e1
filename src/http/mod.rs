//! The admin HTTP server: `/metrics` (Prometheus text), `/healthz` (the process answers),
//! `/readyz` (partitions assigned, state loaded, consumer lag under `admin.ready_max_lag`).
//! On its own address (`admin.addr`), apart from anything a district exposes.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::shutdown::Shutdown;
use crate::telemetry::Telemetry;

/// Why the admin server cannot start: start-up stops with the key to change.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{key} {addr}: cannot listen: {source} (choose another address for {key})")]
    Bind { key: &'static str, addr: String, source: std::io::Error },
    #[error("cannot start the admin server thread: {0}")]
    Thread(std::io::Error),
}

#[derive(Debug, Clone)]
struct Admin {
    telemetry: Arc<Telemetry>,
    ready_max_lag: i64,
}

/// The admin routes (tested without a socket through `tower::ServiceExt::oneshot`).
pub fn router(telemetry: Arc<Telemetry>, ready_max_lag: i64) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(Admin { telemetry, ready_max_lag })
}

async fn metrics(State(admin): State<Admin>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], admin.telemetry.render())
}

async fn readyz(State(admin): State<Admin>) -> impl IntoResponse {
    match admin.telemetry.readiness(admin.ready_max_lag) {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
    }
}

/// The admin server running on its own thread.
#[derive(Debug)]
pub struct AdminServer {
    pub addr: SocketAddr,
    thread: std::thread::JoinHandle<()>,
}

impl AdminServer {
    /// Binds `addr` (port 0: any free port) and serves until `shutdown`. A bind error names the
    /// config key.
    pub fn start(addr: &str, router: Router, shutdown: Shutdown) -> Result<AdminServer, HttpError> {
        AdminServer::start_for("admin.addr", addr, router, shutdown)
    }

    /// [`AdminServer::start`] for the address of config key `key` (named by a bind error).
    fn start_for(
        key: &'static str,
        addr: &str,
        router: Router,
        shutdown: Shutdown,
    ) -> Result<AdminServer, HttpError> {
        let bind = |source| HttpError::Bind { key, addr: addr.to_owned(), source };
        let listener = std::net::TcpListener::bind(addr).map_err(bind)?;
        let local = listener.local_addr().map_err(bind)?;
        listener.set_nonblocking(true).map_err(bind)?;
        let thread = std::thread::Builder::new()
            .name("ontrack-admin".into())
            .spawn(move || {
                let runtime =
                    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                        Ok(r) => r,
                        Err(e) => return tracing::error!(error = %e, "admin server: no runtime"),
                    };
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => return tracing::error!(error = %e, "admin server: cannot listen"),
                    };
                    let stopped = async move { shutdown.triggered().await };
                    if let Err(e) =
                        axum::serve(listener, router).with_graceful_shutdown(stopped).await
                    {
                        tracing::error!(error = %e, "admin server stopped");
                    }
                });
            })
            .map_err(HttpError::Thread)?;
        tracing::info!(addr = %local, "admin HTTP: /metrics /healthz /readyz");
        Ok(AdminServer { addr: local, thread })
    }

    /// Waits for the server to end (after its shutdown was triggered).
    pub fn join(self) {
        let _ = self.thread.join();
    }

    /// Runs `work` with the admin server up on `addr` (config key `key`; empty: no server),
    /// then stops the server: it answers while `work` starts (reaching Kafka) and until `work`
    /// has persisted its last batch.
    pub fn around<T>(
        key: &'static str,
        addr: &str,
        router: impl FnOnce() -> Router,
        work: impl FnOnce() -> T,
    ) -> Result<T, HttpError> {
        let stop = Shutdown::new();
        let admin = match addr {
            "" => None,
            addr => Some(AdminServer::start_for(key, addr, router(), stop.clone())?),
        };
        let result = work();
        stop.trigger();
        if let Some(admin) = admin {
            admin.join();
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    async fn get(router: Router, path: &str) -> (StatusCode, String) {
        let response =
            router.oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn health_readiness_and_metrics() {
        let t = Arc::new(Telemetry::new());
        let router = router(t.clone(), 100);
        assert_eq!(get(router.clone(), "/healthz").await, (StatusCode::OK, "ok\n".into()));
        let (status, body) = get(router.clone(), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("store"), "{body}");
        t.state_loaded();
        t.partitions_assigned(&["sis.attendance/0@0".into()]);
        t.lag(&[("sis.attendance".into(), 0, 5)]);
        assert_eq!(get(router.clone(), "/readyz").await, (StatusCode::OK, "ready\n".into()));
        t.consumed("sis.attendance", crate::telemetry::Consumed::Applied, 1);
        let (status, body) = get(router, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("ontrack_events_consumed_total"), "{body}");
    }
}
