//! The input of one viewer session, as its viewer core asks for it: the stream's hub (live), a DVR player, or
//! nothing (paused from live). Both transports' session tasks hold one and wait on [`ViewerInputs::next`]; what
//! they get is tagged with the generation of the request it answers, for the core to drop anything stale.

use std::sync::Arc;

use dvr::player::{PlayerEvent, PlayerItem, Seek};
use hub::{Hub, HubFrame, Subscriber};
use publishers::viewer::{Command, InputEvent, InputPlan, InputRequest, ModeName, ModeView};
use sources::Codec;

use crate::playback::{DvrInput, Playback, SeekError};

/// What arrived from the input.
pub enum Arrival {
    Frame {
        generation: u64,
        frame: Arc<HubFrame>,
    },
    Event {
        generation: u64,
        event: InputEvent,
    },
    /// The live hub closed: the stream was deleted, or the gateway stops.
    StreamClosed,
}

enum Source {
    Nothing,
    Live(Subscriber),
    /// The live subscription is read by someone else for now (the WSC-RTP one-pass forwarder).
    Lent,
    Dvr(DvrInput),
}

pub struct ViewerInputs {
    hub: Hub,
    playback: Arc<Playback>,
    codec: Option<Codec>,
    generation: u64,
    source: Source,
    /// A player opened ahead of the command that will use it (so a refusal reaches the caller).
    spare: Option<DvrInput>,
}

/// A player's event as the viewer core knows it.
fn to_input_event(e: PlayerEvent) -> InputEvent {
    match e {
        PlayerEvent::Opened { shown_ms } => InputEvent::Opened { shown_ms },
        PlayerEvent::Gap { from_ms, to_ms } => InputEvent::Gap { from_ms, to_ms },
        PlayerEvent::SegmentSkipped { at_ms, reason } => {
            InputEvent::SegmentSkipped { at_ms, reason }
        }
        PlayerEvent::LiveEdge => InputEvent::LiveEdge,
        PlayerEvent::End => InputEvent::End,
        PlayerEvent::Failed(why) => InputEvent::Failed(why),
    }
}

impl ViewerInputs {
    /// `codec`: the one codec the session negotiated, if it can take only one (WebRTC).
    pub fn new(hub: Hub, playback: Arc<Playback>, codec: Option<Codec>) -> ViewerInputs {
        ViewerInputs {
            hub,
            playback,
            codec,
            generation: 0,
            source: Source::Nothing,
            spare: None,
        }
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Before a command that would start reading the recording: open a player now, so that a session budget
    /// refusal is the command's answer instead of a silent return to live.
    pub fn prepare(&mut self, cmd: &Command, mode: &ModeView) -> Result<(), SeekError> {
        let needs_player = match cmd {
            Command::Seek { .. } => true,
            Command::Play => mode.mode == ModeName::Dvr,
            Command::Speed(s) => mode.mode == ModeName::Live && *s < 1.0,
            Command::Live | Command::Pause => false,
        };
        if needs_player && !matches!(self.source, Source::Dvr(_)) && self.spare.is_none() {
            self.spare = Some(self.playback.open(self.hub.stream_id(), self.codec)?);
        }
        Ok(())
    }

    /// Hands the live subscription, and the generation its frames belong to, to a reader other than
    /// [`ViewerInputs::next`] (which waits forever meanwhile); `None` unless reading live.
    pub fn lend_live(&mut self) -> Option<(u64, Subscriber)> {
        if !matches!(self.source, Source::Live(_)) {
            return None;
        }
        match std::mem::replace(&mut self.source, Source::Lent) {
            Source::Live(sub) => Some((self.generation, sub)),
            _ => unreachable!("checked above"),
        }
    }

    /// Takes a lent subscription back. One of an input switched away since is dropped.
    pub fn take_back_live(&mut self, generation: u64, sub: Subscriber) {
        if generation == self.generation && matches!(self.source, Source::Lent) {
            self.source = Source::Live(sub);
        }
    }

    /// Switches to the input the core asked for. A DVR request without a prepared player opens one; if that is
    /// refused, the refusal comes back as a `Failed` event of this generation (the core then returns to live).
    pub fn apply(&mut self, req: InputRequest) -> Option<InputEvent> {
        self.generation = req.generation;
        match req.plan {
            InputPlan::Live => {
                self.spare = None;
                self.source = Source::Live(self.hub.subscribe());
            }
            InputPlan::Hold => {
                self.spare = None;
                self.source = Source::Nothing;
            }
            InputPlan::Dvr {
                from_ms,
                keyframes_only,
            } => {
                if !matches!(self.source, Source::Dvr(_)) {
                    let input = match self.spare.take() {
                        Some(i) => i,
                        None => match self.playback.open(self.hub.stream_id(), self.codec) {
                            Ok(i) => i,
                            Err(e) => {
                                self.source = Source::Nothing;
                                return Some(InputEvent::Failed(e.to_string()));
                            }
                        },
                    };
                    self.source = Source::Dvr(input);
                }
                if let Source::Dvr(d) = &mut self.source {
                    d.player.seek(Seek {
                        generation: req.generation,
                        from_ms,
                        keyframes_only,
                    });
                }
            }
        }
        None
    }

    /// The next frame or event. `wants_frames`: whether the core has room for recorded frames (a full pace
    /// queue leaves the player waiting).
    pub async fn next(&mut self, wants_frames: bool) -> Arrival {
        let generation = self.generation;
        match &mut self.source {
            Source::Nothing | Source::Lent => std::future::pending().await,
            Source::Live(sub) => match sub.recv().await {
                Some(frame) => Arrival::Frame { generation, frame },
                None => Arrival::StreamClosed,
            },
            Source::Dvr(_) if !wants_frames => std::future::pending().await,
            Source::Dvr(d) => match d.player.recv().await {
                Some(PlayerItem::Frame { generation, frame }) => {
                    Arrival::Frame { generation, frame }
                }
                Some(PlayerItem::Event { generation, event }) => Arrival::Event {
                    generation,
                    event: to_input_event(event),
                },
                None => {
                    self.source = Source::Nothing;
                    Arrival::Event {
                        generation,
                        event: InputEvent::Failed("the DVR player stopped".into()),
                    }
                }
            },
        }
    }
}
