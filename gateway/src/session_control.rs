//! Control of viewer sessions by id, the same for WebRTC and WSC-RTP: seek, live, speed, pause, play and the
//! mode. Each session task registers here and receives commands on its own bounded channel; the HTTP handlers
//! (and a WSC-RTP session's own messages) check a command against the recordings first, then hand it to the task,
//! which applies it to its viewer core and answers with the new mode.
//!
//! The session id is the capability over a session. Whether it may leave live (seek, pause, play, speed) is
//! decided when it opens, from the caller's grant (`access`): a session opened without the DVR right may only
//! go live and read its mode; anything else answers 403 `forbidden`, over HTTP and in WSC-RTP messages alike.

use std::collections::HashMap;
use std::sync::Arc;

use api_models::{ModeDto, SessionModeView};
use hub::Hub;
use parking_lot::Mutex;
use publishers::viewer::{Command, ModeName, ModeView};
use sources::Codec;
use tokio::sync::{mpsc, oneshot};

use crate::error::AppError;
use crate::playback::{Playback, SeekError};

/// Commands waiting for one session, at most (a client that floods gets 503 rather than a queue).
const QUEUE: usize = 8;

/// A command for a session's task, with the place for its answer.
pub struct ControlMsg {
    pub cmd: Command,
    pub reply: oneshot::Sender<Result<ModeView, SeekError>>,
}

/// What the registry knows of one session.
pub struct ControlEntry {
    /// The hub of the session's stream: its id, and its live edge when someone asks.
    hub: Hub,
    /// The one codec a WebRTC session negotiated.
    codec: Option<Codec>,
    /// Opened with the DVR right: may play from the recording.
    dvr: bool,
    tx: mpsc::Sender<ControlMsg>,
    mode: Mutex<ModeView>,
}

impl ControlEntry {
    /// Called by the session task whenever its mode may have changed.
    pub fn publish(&self, mode: ModeView) {
        *self.mode.lock() = mode;
    }

    pub fn view(&self) -> SessionModeView {
        mode_view(&self.mode.lock(), live_edge_ms(&self.hub))
    }

    /// The checks a command of this session must pass before the session moves ([`check_command`]).
    pub async fn check(&self, playback: &Playback, cmd: &Command) -> Result<(), AppError> {
        if !self.dvr && !matches!(cmd, Command::Live) {
            return Err(AppError::Forbidden(
                "this session was opened without the DVR right: it can only watch live".into(),
            ));
        }
        check_command(playback, &self.hub, self.codec, cmd).await
    }
}

/// The live edge of a stream: the instant of its newest frame. Read when asked (a mode, a seek check), never per
/// frame: it takes the hub's lock.
pub fn live_edge_ms(hub: &Hub) -> Option<i64> {
    hub.stats().last_frame_wall_ms
}

pub fn mode_view(m: &ModeView, live_edge_ms: Option<i64>) -> SessionModeView {
    SessionModeView {
        mode: match m.mode {
            ModeName::Live => ModeDto::Live,
            ModeName::Dvr => ModeDto::Dvr,
        },
        position_ms: m.position_ms,
        speed: m.speed,
        paused: m.paused,
        live_edge_ms,
    }
}

/// Every controllable session.
#[derive(Default)]
pub struct SessionControls {
    sessions: Mutex<HashMap<String, Arc<ControlEntry>>>,
}

/// Removes a session's entry however its task ends.
pub struct ControlRegistration {
    controls: Arc<SessionControls>,
    id: String,
    pub entry: Arc<ControlEntry>,
    pub commands: mpsc::Receiver<ControlMsg>,
}

impl Drop for ControlRegistration {
    fn drop(&mut self) {
        self.controls.sessions.lock().remove(&self.id);
    }
}

impl SessionControls {
    pub fn register(
        self: &Arc<Self>,
        id: &str,
        hub: &Hub,
        codec: Option<Codec>,
        dvr: bool,
        mode: ModeView,
    ) -> ControlRegistration {
        let (tx, commands) = mpsc::channel(QUEUE);
        let entry = Arc::new(ControlEntry {
            hub: hub.clone(),
            codec,
            dvr,
            tx,
            mode: Mutex::new(mode),
        });
        self.sessions.lock().insert(id.to_owned(), entry.clone());
        ControlRegistration {
            controls: self.clone(),
            id: id.to_owned(),
            entry,
            commands,
        }
    }

    fn entry(&self, id: &str) -> Result<Arc<ControlEntry>, AppError> {
        self.sessions
            .lock()
            .get(id)
            .cloned()
            .ok_or_else(|| AppError::SessionNotFound(format!("no viewer session {id:?}")))
    }

    /// The mode of session `id`.
    pub fn mode(&self, id: &str) -> Result<SessionModeView, AppError> {
        Ok(self.entry(id)?.view())
    }

    /// Checks `cmd` and has session `id` carry it out; answers the session's new mode.
    pub async fn control(
        &self,
        playback: &Playback,
        id: &str,
        cmd: Command,
    ) -> Result<SessionModeView, AppError> {
        let entry = self.entry(id)?;
        entry.check(playback, &cmd).await?;
        let (reply, answer) = oneshot::channel();
        entry
            .tx
            .try_send(ControlMsg { cmd, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => {
                    AppError::Unavailable("the session is busy with earlier commands; retry".into())
                }
                mpsc::error::TrySendError::Closed(_) => {
                    AppError::SessionNotFound(format!("viewer session {id:?} has ended"))
                }
            })?;
        let mode = answer
            .await
            .map_err(|_| AppError::SessionNotFound(format!("viewer session {id:?} has ended")))??;
        Ok(mode_view(&mode, live_edge_ms(&entry.hub)))
    }
}

/// The checks a command must pass before a session of `hub`'s stream moves (or starts, for a start in the
/// recording): its own values, and for a seek, the recordings, the live edge and the session's one codec.
pub async fn check_command(
    playback: &Playback,
    hub: &Hub,
    codec: Option<Codec>,
    cmd: &Command,
) -> Result<(), AppError> {
    cmd.validate()
        .map_err(|e| AppError::BadRequest(e.to_string()))?;
    if let Command::Seek { position_ms } = *cmd {
        playback
            .check_seek(hub.stream_id(), position_ms, live_edge_ms(hub), codec)
            .await?;
    }
    Ok(())
}

impl From<SeekError> for AppError {
    fn from(e: SeekError) -> Self {
        match e {
            e @ SeekError::NoRecording(_) => AppError::NoRecording(e.to_string()),
            SeekError::OutOfRange { ref ranges, .. } => AppError::OutOfRange {
                message: e.to_string(),
                ranges: ranges.clone(),
            },
            e @ SeekError::CodecNotNegotiated { .. } => AppError::CodecNotNegotiated(e.to_string()),
            SeekError::Reserve(r) => r.into(),
            e @ SeekError::Spawn(_) => AppError::Internal(anyhow::anyhow!(e.to_string())),
            SeekError::Store(e) => AppError::Internal(anyhow::anyhow!(e.to_string())),
        }
    }
}
