//! WSC-RTP in the gateway: the shared UDP socket ([`udp`]), one task per session ([`session_task`]) around the
//! sans-IO `publishers::wsc::WscSession`, and forwarders ([`forwarder`], one per stream and core) that send every
//! live UDP viewer's copy of a frame in one pass each. The HTTP upgrade lives in `api.rs`; session places come from the shared
//! [`ViewerBudget`](crate::viewers::ViewerBudget).

mod batch;
pub mod forwarder;
pub mod mmsg;
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

/// Largest WebSocket message a client may send (the session's own limit, `WscOptions::max_text_len`); a longer
/// one is answered with `error too_large` and `bye`, then close 1009.
pub const MAX_CLIENT_MESSAGE: usize = 4096;
/// Largest message the WebSocket layer reads at all. Between [`MAX_CLIENT_MESSAGE`] and this the session says
/// why it closes; beyond it the connection is dropped unread, so a client can't make the gateway buffer more.
pub const MAX_WEBSOCKET_MESSAGE: usize = 16 * MAX_CLIENT_MESSAGE;
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
    /// Per stream with WSC-RTP sessions, a few forwarders that share its live UDP viewers: each sends its
    /// viewers' copies of a frame in one pass.
    pub forwarders: forwarder::Forwarders,
}

impl WscService {
    /// Binds the shared UDP socket and starts routing its datagrams.
    pub async fn start(
        bind: SocketAddr,
        forwarders_per_stream: usize,
        budget: Arc<ViewerBudget>,
        playback: Arc<Playback>,
        controls: Arc<SessionControls>,
    ) -> std::io::Result<Arc<WscService>> {
        let udp = WscUdp::bind(bind).await?;
        let options = WscOptions {
            udp_port: udp.local_addr()?.port(),
            max_text_len: MAX_CLIENT_MESSAGE,
            ..WscOptions::default()
        };
        tokio::spawn(udp.clone().run());
        Ok(Arc::new(WscService {
            udp,
            options,
            budget,
            playback,
            controls,
            forwarders: forwarder::Forwarders::new(forwarders_per_stream),
        }))
    }
}
