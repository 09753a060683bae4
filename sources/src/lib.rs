//! Inputs of the gateway and the media model they produce.
//!
//! A stream's [`ingest`] task pulls access units from its highest-priority working input — an RTSP camera read
//! with retina ([`rtsp`]) or the built-in GStreamer test pattern ([`testpattern`]) — and pushes them, with status
//! and parameter-set changes, into a [`FrameSink`] (the stream's hub). While no input delivers, it pushes a
//! GStreamer-made "offline" slate ([`slate`]) so viewers stay attached. Fail-over, reconnect back-off and the
//! watchdog are decided by the sans-IO [`failover`] planner; this crate never knows about HTTP or viewers.

pub mod failover;
pub mod frame;
mod gst_encoder;
pub mod ingest;
pub mod input;
pub mod rtsp;
mod session;
pub mod slate;
pub mod testpattern;
mod timeline;

use std::sync::Arc;

pub use frame::{Codec, Frame, ParameterSets};
pub use gst_encoder::GstInputError;
pub use ingest::{IngestError, IngestHandle, IngestOptions};
pub use input::{Credentials, InputError, InputSpec, InputUrl, Transport};

/// The lifecycle state of a stream's ingest, as shown in the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IngestState {
    /// No input has delivered a frame yet.
    Starting,
    /// An input delivers frames.
    Running,
    /// The input that was delivering failed; trying again (the slate is shown).
    Reconnecting,
    /// Every input failed since it last delivered (or never delivered); still retrying forever (the slate is
    /// shown).
    Offline,
    /// The last failure needs a configuration change to go away (wrong credentials, wrong path, no H.264/H.265
    /// video, no inputs); still retried with back-off in case the camera is fixed.
    Error,
}

/// A snapshot of the ingest's state for status views.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestStatus {
    pub state: IngestState,
    /// Label of the input currently delivering frames.
    pub active_input: Option<String>,
    /// Latest failure, already free of credentials.
    pub last_error: Option<String>,
    /// Number of times an input session ended and another was started.
    pub reconnects: u64,
}

impl Default for IngestStatus {
    fn default() -> Self {
        IngestStatus {
            state: IngestState::Starting,
            active_input: None,
            last_error: None,
            reconnects: 0,
        }
    }
}

/// Where an ingest delivers what it reads. Implemented by the stream's hub. Calls come from the ingest task and must
/// not block for long: the hub only packetizes and enqueues.
pub trait FrameSink: Send + Sync + 'static {
    /// One access unit, in decode order. The first frame after [`FrameSink::parameters_changed`] (and the first
    /// after any discontinuity) is a keyframe.
    fn push_frame(&self, frame: Frame);
    /// The decoder configuration changed (new input, camera reconfigured, slate started or ended).
    fn parameters_changed(&self, params: Arc<ParameterSets>);
    /// The ingest state changed.
    fn status_changed(&self, status: &IngestStatus);
}
