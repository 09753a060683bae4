//! Options set on every accepted HTTP/WebSocket connection.
//!
//! `TCP_NOTSENT_LOWAT` keeps at most [`NOTSENT_LOWAT`] bytes of not-yet-sent data in the kernel per connection.
//! Without it Linux grows a socket's send buffer to megabytes, and a WebSocket-transport viewer on a slow link
//! would fall seconds behind inside the kernel, where nothing can drop a frame; with it the socket stops being
//! writable early, the session's writes wait, and the hub's lag bound (which drops to the next keyframe) applies.
//! Bytes in flight are not limited by it, so throughput (exports, large downloads) is unchanged.

use tokio::net::TcpStream;
use tracing::debug;

/// Unsent bytes the kernel may hold per connection: a quarter of a second of a 4 Mbit/s stream.
pub const NOTSENT_LOWAT: u32 = 128 * 1024;

/// Applies the options; a kernel that refuses one only loses that tuning.
pub fn tune_accepted(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_notsent_lowat(NOTSENT_LOWAT) {
        debug!(error = %e, "TCP_NOTSENT_LOWAT refused");
    }
}
