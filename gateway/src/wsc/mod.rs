//! WSC-RTP in the gateway: the shared UDP socket ([`udp`]) and one task per session ([`session_task`]) around the
//! sans-IO `publishers::wsc::WscSession`. The HTTP upgrade lives in `api.rs`; session places come from the shared
//! [`ViewerBudget`](crate::viewers::ViewerBudget).

mod gso;
mod session_task;
pub mod udp;

use std::net::SocketAddr;
use std::sync::Arc;

use publishers::wsc::WscOptions;

use crate::playback::Playback;
use crate::session_control::SessionControls;
use crate::viewers::ViewerBudget;
pub use session_task::{run as run_session, WscStart};
use udp::WscUdp;

/// Largest WebSocket message a client may send; longer ones end the session (close 1009).
pub const MAX_CLIENT_MESSAGE: usize = 4096;
/// Bytes read from a client's WebSocket per attempt. The WebSocket layer zero-fills this much of its buffer on
/// every read attempt, and the session task attempts one per hub frame: its 128 KiB default cost more CPU than
/// the media itself at 500 viewers (memset was 9.5 % of the gateway's samples) and 128 KiB of memory per viewer.
/// Client messages are small (a ping, a NACK), so one read mostly holds a whole one.
pub const CLIENT_READ_BUFFER: usize = 4096;

/// Shared state of every WSC-RTP session.
pub struct WscService {
    pub udp: Arc<WscUdp>,
    pub options: WscOptions,
    pub budget: Arc<ViewerBudget>,
    pub playback: Arc<Playback>,
    pub controls: Arc<SessionControls>,
}

impl WscService {
    /// Binds the shared UDP socket and starts routing its datagrams.
    pub async fn start(
        bind: SocketAddr,
        budget: Arc<ViewerBudget>,
        playback: Arc<Playback>,
        controls: Arc<SessionControls>,
    ) -> std::io::Result<Arc<WscService>> {
        let udp = WscUdp::bind(bind).await?;
        let options = WscOptions {
            udp_port: udp.local_addr()?.port(),
            ..WscOptions::default()
        };
        tokio::spawn(udp.clone().run());
        Ok(Arc::new(WscService {
            udp,
            options,
            budget,
            playback,
            controls,
        }))
    }
}
