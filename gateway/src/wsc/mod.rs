//! WSC-RTP in the gateway: the shared UDP socket ([`udp`]), one task per session ([`session_task`]) around the
//! sans-IO `publishers::wsc::WscSession`, and the session limit. The HTTP upgrade lives in `api.rs`.

mod session_task;
pub mod udp;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use hub::Hub;
use publishers::wsc::WscOptions;

pub use session_task::run as run_session;
use udp::WscUdp;

/// Largest WebSocket message a client may send; longer ones end the session (close 1009).
pub const MAX_CLIENT_MESSAGE: usize = 4096;

/// Shared state of every WSC-RTP session.
pub struct WscService {
    pub udp: Arc<WscUdp>,
    pub options: WscOptions,
    sessions: AtomicUsize,
    max_sessions: usize,
    closing: AtomicBool,
}

/// A reserved session place.
pub struct SessionPermit {
    svc: Arc<WscService>,
}

impl SessionPermit {
    /// Runs the session on an upgraded WebSocket until it ends.
    pub async fn serve(self, socket: axum::extract::ws::WebSocket, hub: Hub) {
        let svc = self.svc.clone();
        run_session(socket, svc, hub, self).await;
    }
}

impl Drop for SessionPermit {
    fn drop(&mut self) {
        self.svc.sessions.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why a session could not start.
#[derive(Debug, thiserror::Error)]
pub enum WscStartError {
    #[error("{0} viewer sessions are open, the configured maximum")]
    TooManySessions(usize),
    #[error("the gateway is shutting down")]
    ShuttingDown,
}

impl WscService {
    /// Binds the shared UDP socket and starts routing its datagrams.
    pub async fn start(bind: SocketAddr, max_sessions: usize) -> std::io::Result<Arc<WscService>> {
        let udp = WscUdp::bind(bind).await?;
        let options = WscOptions {
            udp_port: udp.local_addr()?.port(),
            ..WscOptions::default()
        };
        tokio::spawn(udp.clone().run());
        Ok(Arc::new(WscService {
            udp,
            options,
            sessions: AtomicUsize::new(0),
            max_sessions,
            closing: AtomicBool::new(false),
        }))
    }

    /// Takes a session place, given back when the permit drops (also if the upgrade never completes).
    pub fn reserve(self: &Arc<Self>) -> Result<SessionPermit, WscStartError> {
        if self.closing() {
            return Err(WscStartError::ShuttingDown);
        }
        let prev = self.sessions.fetch_add(1, Ordering::AcqRel);
        let permit = SessionPermit { svc: self.clone() };
        if prev >= self.max_sessions {
            return Err(WscStartError::TooManySessions(self.max_sessions));
        }
        Ok(permit)
    }

    /// Open sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.load(Ordering::Acquire)
    }

    pub fn closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// From now on, sessions whose hub closes say `server_shutdown`, and no new one starts.
    pub fn begin_shutdown(&self) {
        self.closing.store(true, Ordering::Release);
    }
}
