//! The viewer core: one sans-IO state machine per viewer session, the same for WebRTC and WSC-RTP. It owns what
//! a viewer sees — live or DVR, position, speed, pause, the RTP numbering and timestamps, the send history for
//! NACKs, when a keyframe request is answered — and nothing about sockets or clocks.
//!
//! Run loop (as str0m's `Rtc`): the transport's task feeds it frames (tagged with the generation of the input they
//! came from), player events, RTCP feedback, control commands and time, drains [`ViewerCore::poll_output`], and
//! sleeps until [`ViewerCore::poll_timeout`]. Outputs are frames to send (numbered packets over the hub's shared
//! payloads, [`OutFrame`]), retransmissions, parameter-set changes,
//! mode reports, and [`InputRequest`]s: "feed me from the live hub / from a DVR player at T / from nothing".
//!
//! Every switch of input is explicit (and so is a new run of the live stream, which the ingest marks on the frame:
//! a reconnect, a fail-over, the slate): a new generation (frames still queued from the old input are dropped), an
//! RTP discontinuity (the next frame written is a keyframe, preceded by its parameter sets, the sequence number
//! continues at +1) and a clock rebase (the timestamp continues by the wall time that passed, at least a frame).
//! Pause and speed changes between speeds that send every frame keep the decoding chain (the same player goes on
//! from the next frame), so they rebase the clock but need no keyframe.

mod clock;
mod control;
mod pacer;
mod repair;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hub::HubFrame;
use sources::{Codec, ParameterSets};

pub use clock::{MediaClock, CATCH_UP_SLACK_TICKS, CATCH_UP_STEP_TICKS};
pub use control::{
    Command, CommandError, InputEvent, InputPlan, InputRequest, ModeName, ModeReason, ModeReport,
    ModeView, KEYFRAMES_ONLY_ABOVE, SPEED_RANGE,
};
use pacer::{Paced, Pacer};
use repair::RepairBudget;
pub use repair::REPAIR_BURST_BYTES;

use crate::retransmit::{Feedback, SendHistory};
use crate::rtp_out::{OutFrame, OutPacket, RtpOutput};

/// Outputs a drained queue keeps room for: a few frames and messages.
/// A keyframe or a joining GOP burst grows the queues for a moment only.
pub(crate) const ROOM_KEPT: usize = 64;

/// Where a session starts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StartAt {
    Live,
    Dvr { position_ms: i64 },
}

/// Identity and limits of one viewer.
#[derive(Clone, Debug)]
pub struct ViewerOptions {
    pub ssrc: u32,
    pub payload_type: u8,
    pub initial_seq: u16,
    /// Sent packets kept for NACK repair (0: the transport repairs loss itself).
    pub history_packets: usize,
    /// Keyframe requests closer together than this get one answer.
    pub keyframe_answer_interval: Duration,
    /// How often the position is reported in DVR.
    pub mode_report_interval: Duration,
    /// Recorded frames read ahead of the viewer, at most.
    pub pace_frames: usize,
    /// Live frames held (from the last keyframe) until the transport can carry media.
    pub pending_max_frames: usize,
    /// The only codec the transport negotiated (WebRTC); frames of another are never sent.
    pub codec: Option<Codec>,
}

impl ViewerOptions {
    pub fn new(ssrc: u32, payload_type: u8, initial_seq: u16) -> Self {
        ViewerOptions {
            ssrc,
            payload_type,
            initial_seq,
            history_packets: crate::DEFAULT_HISTORY,
            keyframe_answer_interval: Duration::from_millis(500),
            mode_report_interval: Duration::from_secs(1),
            pace_frames: 16,
            pending_max_frames: 600,
            codec: None,
        }
    }
}

/// What the core wants done.
#[derive(Clone, Debug, PartialEq)]
pub enum ViewerOutput {
    /// A new frame's packets.
    Frame(OutFrame),
    /// A packet sent again (NACK).
    Resend(OutPacket),
    /// The parameter sets of what is sent changed (WSC-RTP sends a new `sdp`).
    Params(Arc<ParameterSets>),
    Mode(ModeReport),
    /// Feed frames from this input from now on.
    Input(InputRequest),
}

/// Counters of one viewer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ViewerStats {
    pub packets_sent: u64,
    pub bytes_sent: u64,
    pub frames_sent: u64,
    pub retransmitted: u64,
    pub retransmitted_bytes: u64,
    /// NACKed packets held but not resent: over the repair budget.
    pub repairs_refused: u64,
    pub nack_requests: u64,
    pub keyframe_requests: u64,
    pub keyframe_requests_answered: u64,
    pub input_switches: u64,
    /// Frames sent with catch-up timestamps (a join burst or a read-ahead released at once; see [`MediaClock`]).
    pub frames_caught_up: u64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Live,
    Dvr {
        position_ms: i64,
        speed: f64,
        paused: bool,
        /// Paused from live: no input at all until play.
        holding: bool,
    },
}

/// One viewer's session core; see the module docs.
pub struct ViewerCore {
    opts: ViewerOptions,
    mode: Mode,
    generation: u64,
    rtp: RtpOutput,
    clock: MediaClock,
    history: Option<SendHistory>,
    repair: RepairBudget,
    pacer: Pacer,
    /// Whether the transport can carry media (a WSC-RTP path is known, a WebRTC connection is up).
    ready: bool,
    /// Live frames from the last keyframe on, held until ready.
    pending: Vec<Arc<HubFrame>>,
    params: Option<Arc<ParameterSets>>,
    last_live_wall_ms: Option<i64>,
    last_keyframe_answer: Option<Instant>,
    next_report: Option<Instant>,
    out: VecDeque<ViewerOutput>,
    stats: ViewerStats,
}

impl ViewerCore {
    /// A session starting at `start`; its first outputs are the input request and the first mode report.
    pub fn new(now: Instant, opts: ViewerOptions, start: StartAt) -> Self {
        let mut core = ViewerCore {
            mode: Mode::Live,
            generation: 0,
            rtp: RtpOutput::new(opts.ssrc, opts.payload_type, opts.initial_seq),
            clock: MediaClock::default(),
            history: (opts.history_packets > 0).then(|| SendHistory::new(opts.history_packets)),
            repair: RepairBudget::default(),
            pacer: Pacer::new(opts.pace_frames),
            ready: false,
            pending: Vec::new(),
            params: None,
            last_live_wall_ms: None,
            last_keyframe_answer: None,
            next_report: None,
            out: VecDeque::new(),
            stats: ViewerStats::default(),
            opts,
        };
        match start {
            StartAt::Live => {
                core.switch_input(InputPlan::Live);
                core.report(now, ModeReason::Start, None);
            }
            StartAt::Dvr { position_ms } => {
                core.enter_dvr(now, position_ms, 1.0, ModeReason::Start)
            }
        }
        core
    }

    pub fn ssrc(&self) -> u32 {
        self.rtp.ssrc()
    }

    pub fn payload_type(&self) -> u8 {
        self.rtp.payload_type()
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn stats(&self) -> &ViewerStats {
        &self.stats
    }

    /// Whether the driver may hand over another frame from a DVR player (back-pressure on the reader).
    pub fn wants_frames(&self) -> bool {
        self.pacer.has_room()
    }

    pub fn mode(&self) -> ModeView {
        match self.mode {
            Mode::Live => ModeView {
                mode: ModeName::Live,
                position_ms: self.last_live_wall_ms,
                speed: 1.0,
                paused: false,
            },
            Mode::Dvr {
                position_ms,
                speed,
                paused,
                ..
            } => ModeView {
                mode: ModeName::Dvr,
                position_ms: Some(position_ms),
                speed,
                paused,
            },
        }
    }

    /// The transport can carry media from now on: held live frames go out, recorded ones start their pace.
    pub fn set_ready(&mut self, now: Instant) {
        if self.ready {
            return;
        }
        self.ready = true;
        self.pacer.reanchor();
        for f in std::mem::take(&mut self.pending) {
            self.send_frame(now, &f);
        }
        self.handle_timeout(now);
    }

    /// A frame from the input of `generation`.
    pub fn handle_frame(&mut self, now: Instant, generation: u64, frame: Arc<HubFrame>) {
        if generation != self.generation {
            return;
        }
        match self.mode {
            Mode::Live if !self.ready => {
                if frame.frame.is_keyframe {
                    self.pending.clear();
                }
                if (!self.pending.is_empty() || frame.frame.is_keyframe)
                    && self.pending.len() < self.opts.pending_max_frames
                {
                    // The client learns the parameter sets before the media can flow.
                    self.note_params(&frame.frame.params);
                    self.pending.push(frame);
                }
            }
            Mode::Live => self.send_frame(now, &frame),
            Mode::Dvr { holding: true, .. } => {}
            Mode::Dvr { .. } => {
                self.pacer.push(Paced::Frame(frame));
                self.handle_timeout(now);
            }
        }
    }

    /// An event from the DVR player of `generation`.
    pub fn handle_event(&mut self, now: Instant, generation: u64, event: InputEvent) {
        if generation != self.generation || !matches!(self.mode, Mode::Dvr { .. }) {
            return;
        }
        self.pacer.push(Paced::Event(event));
        self.handle_timeout(now);
    }

    /// RTCP feedback from the viewer.
    pub fn handle_feedback(&mut self, now: Instant, feedback: Feedback) {
        match feedback {
            Feedback::Nack(seqs) => self.retransmit(&seqs),
            Feedback::Pli => self.keyframe_request(now),
        }
    }

    /// A control call. Range checks against the recordings are the caller's: the core only knows its own state.
    pub fn handle_command(&mut self, now: Instant, cmd: Command) -> Result<ModeView, CommandError> {
        cmd.validate()?;
        match (cmd, self.mode) {
            (Command::Seek { position_ms }, mode) => {
                let speed = match mode {
                    Mode::Dvr { speed, .. } => speed,
                    Mode::Live => 1.0,
                };
                self.enter_dvr(now, position_ms, speed, ModeReason::Seek);
            }
            (Command::Live, Mode::Live) => self.report(now, ModeReason::Live, None),
            (Command::Live, Mode::Dvr { .. }) => self.go_live(now, ModeReason::Live, None),
            (Command::Speed(s), Mode::Live) => {
                // Nothing is faster than live; slower is a time-shift from the live instant.
                match self.last_live_wall_ms {
                    Some(p) if s < 1.0 => self.enter_dvr(now, p, s, ModeReason::Speed),
                    _ => self.report(now, ModeReason::Live, None),
                }
            }
            (
                Command::Speed(s),
                Mode::Dvr {
                    position_ms,
                    speed,
                    paused,
                    holding,
                },
            ) => {
                self.mode = Mode::Dvr {
                    position_ms,
                    speed: s,
                    paused,
                    holding,
                };
                if (speed > KEYFRAMES_ONLY_ABOVE) != (s > KEYFRAMES_ONLY_ABOVE) && !holding {
                    // Into or out of keyframes-only: the reader must start again at a keyframe.
                    self.switch_input(InputPlan::Dvr {
                        from_ms: position_ms,
                        keyframes_only: s > KEYFRAMES_ONLY_ABOVE,
                    });
                }
                self.pacer.set_speed(s);
                self.clock.set_speed(s);
                self.report(now, ModeReason::Speed, None);
            }
            (Command::Pause, Mode::Live) => {
                let Some(position_ms) = self.last_live_wall_ms else {
                    // Nothing shown yet: nothing to hold.
                    self.report(now, ModeReason::Live, None);
                    return Ok(self.mode());
                };
                self.mode = Mode::Dvr {
                    position_ms,
                    speed: 1.0,
                    paused: true,
                    holding: true,
                };
                self.switch_input(InputPlan::Hold);
                self.report(now, ModeReason::Pause, None);
            }
            (
                Command::Pause,
                Mode::Dvr {
                    position_ms,
                    speed,
                    holding,
                    ..
                },
            ) => {
                self.mode = Mode::Dvr {
                    position_ms,
                    speed,
                    paused: true,
                    holding,
                };
                self.pacer.set_paused(true);
                self.report(now, ModeReason::Pause, None);
            }
            (Command::Play, Mode::Live) => self.report(now, ModeReason::Live, None),
            (
                Command::Play,
                Mode::Dvr {
                    position_ms,
                    speed,
                    holding: true,
                    ..
                },
            ) => {
                // Paused from live: the time-shift starts here, from the recording.
                self.enter_dvr(now, position_ms, speed, ModeReason::Play);
            }
            (
                Command::Play,
                Mode::Dvr {
                    position_ms, speed, ..
                },
            ) => {
                self.mode = Mode::Dvr {
                    position_ms,
                    speed,
                    paused: false,
                    holding: false,
                };
                self.pacer.set_paused(false);
                self.clock.rebase();
                self.report(now, ModeReason::Play, None);
                self.handle_timeout(now);
            }
        }
        Ok(self.mode())
    }

    /// When [`ViewerCore::handle_timeout`] must be called next.
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        let due = if self.ready {
            self.pacer.next_due(now)
        } else {
            None
        };
        match (due, self.next_report) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Releases the recorded frames and events that are due, and the periodic mode report.
    pub fn handle_timeout(&mut self, now: Instant) {
        while self.ready && matches!(self.mode, Mode::Dvr { .. }) {
            let Some(item) = self.pacer.pop_due(now) else {
                break;
            };
            match item {
                Paced::Frame(f) => {
                    if let Mode::Dvr { position_ms, .. } = &mut self.mode {
                        *position_ms = f.frame.wall_ms;
                    }
                    self.send_frame(now, &f);
                }
                Paced::Event(e) => self.on_event(now, e),
            }
        }
        if self.next_report.is_some_and(|t| now >= t) {
            self.report(now, ModeReason::Position, None);
        }
    }

    pub fn poll_output(&mut self) -> Option<ViewerOutput> {
        let out = self.out.pop_front();
        if out.is_none() && self.out.capacity() > ROOM_KEPT {
            // A join or a seek sends a whole GOP at once; don't keep room for one per viewer for the session's life.
            self.out.shrink_to(ROOM_KEPT);
        }
        out
    }

    fn on_event(&mut self, now: Instant, event: InputEvent) {
        match event {
            InputEvent::Opened { shown_ms } => {
                self.set_position(shown_ms);
                self.report(now, ModeReason::Opened, None);
            }
            InputEvent::Gap { to_ms, .. } => {
                self.set_position(to_ms);
                self.pacer.reanchor();
                self.clock.rebase();
                self.report(now, ModeReason::Gap, None);
            }
            InputEvent::SegmentSkipped { at_ms, reason } => {
                self.set_position(at_ms);
                // Whatever comes next is another file: resume at its keyframe, on the wall clock.
                self.rtp.discontinuity();
                self.pacer.reanchor();
                self.clock.rebase();
                self.report(now, ModeReason::SegmentSkipped, Some(reason));
            }
            InputEvent::LiveEdge => {
                // Caught up: everything recorded has been shown and nothing newer is queued, so playing on
                // would freeze until the recorder writes more. At speed 1 a time-shift longer than the
                // read-ahead never gets here empty: it stays behind live.
                if let Mode::Dvr {
                    speed,
                    paused: false,
                    ..
                } = self.mode
                {
                    if speed >= 1.0 && self.pacer.is_empty() {
                        self.go_live(now, ModeReason::CaughtUp, None);
                    }
                }
            }
            InputEvent::End => self.go_live(now, ModeReason::RecordingEnded, None),
            InputEvent::Failed(why) => self.go_live(now, ModeReason::PlayerFailed, Some(why)),
        }
    }

    fn set_position(&mut self, at_ms: i64) {
        if let Mode::Dvr { position_ms, .. } = &mut self.mode {
            *position_ms = at_ms;
        }
    }

    fn enter_dvr(&mut self, now: Instant, position_ms: i64, speed: f64, reason: ModeReason) {
        self.mode = Mode::Dvr {
            position_ms,
            speed,
            paused: false,
            holding: false,
        };
        self.switch_input(InputPlan::Dvr {
            from_ms: position_ms,
            keyframes_only: speed > KEYFRAMES_ONLY_ABOVE,
        });
        self.pacer.set_paused(false);
        self.pacer.set_speed(speed);
        self.clock.set_speed(speed);
        self.report(now, reason, None);
    }

    fn go_live(&mut self, now: Instant, reason: ModeReason, detail: Option<String>) {
        self.mode = Mode::Live;
        self.switch_input(InputPlan::Live);
        self.pacer.set_paused(false);
        self.pacer.set_speed(1.0);
        self.clock.set_speed(1.0);
        self.report(now, reason, detail);
    }

    /// A new input: the old one's queued frames are dropped, the next frame sent is a keyframe.
    fn switch_input(&mut self, plan: InputPlan) {
        self.generation += 1;
        self.stats.input_switches += 1;
        self.pacer.clear();
        self.pending.clear();
        self.rtp.discontinuity();
        self.clock.rebase();
        self.out.push_back(ViewerOutput::Input(InputRequest {
            generation: self.generation,
            plan,
        }));
    }

    fn report(&mut self, now: Instant, reason: ModeReason, detail: Option<String>) {
        self.next_report = match self.mode {
            Mode::Dvr { .. } => Some(now + self.opts.mode_report_interval),
            Mode::Live => None,
        };
        self.out.push_back(ViewerOutput::Mode(ModeReport {
            view: self.mode(),
            reason,
            detail,
        }));
    }

    fn send_frame(&mut self, now: Instant, f: &Arc<HubFrame>) {
        if f.frame.starts_run {
            // The ingest says the stream's timeline starts anew here (reconnect, fail-over, slate): an explicit
            // discontinuity, never guessed from the timestamps. The frame is a keyframe.
            self.rtp.discontinuity();
            self.clock.rebase();
        }
        if self.opts.codec.is_some_and(|c| c != f.frame.codec) || !self.rtp.accepts(f) {
            return;
        }
        self.note_params(&f.frame.params);
        if matches!(self.mode, Mode::Live) {
            self.last_live_wall_ms = Some(f.frame.wall_ms);
        }
        let timestamp = self.clock.timestamp(now, f.frame.pts_90k);
        self.stats.frames_caught_up = self.clock.squeezed();
        let Some(out) = self.rtp.write_frame(f, timestamp) else {
            return;
        };
        self.stats.frames_sent += 1;
        if out.is_empty() {
            return;
        }
        if let Some(h) = &mut self.history {
            h.push_frame(out.clone());
        }
        let bytes = out.bytes();
        self.stats.packets_sent += out.len() as u64;
        self.stats.bytes_sent += bytes;
        self.repair.earn(bytes);
        self.out.push_back(ViewerOutput::Frame(out));
    }

    fn note_params(&mut self, params: &Arc<ParameterSets>) {
        if self.params.as_deref() != Some(&**params) {
            self.params = Some(params.clone());
            self.out.push_back(ViewerOutput::Params(params.clone()));
        }
    }

    fn retransmit(&mut self, seqs: &[u16]) {
        self.stats.nack_requests += 1;
        let Some(history) = &self.history else {
            return;
        };
        let mut seen: Vec<u16> = Vec::with_capacity(seqs.len());
        for &s in seqs {
            if seen.contains(&s) {
                continue;
            }
            seen.push(s);
            if let Some(p) = history.get(s) {
                let bytes = 12 + p.payload.len() as u64;
                if !self.repair.spend(bytes) {
                    self.stats.repairs_refused += 1;
                    continue;
                }
                self.stats.retransmitted += 1;
                self.stats.retransmitted_bytes += bytes;
                self.out.push_back(ViewerOutput::Resend(p));
            }
        }
    }

    /// Picture loss: restart the current input at a keyframe (live: the GOP cache; DVR: the keyframe at or
    /// before the position), at most once per `keyframe_answer_interval`.
    fn keyframe_request(&mut self, now: Instant) {
        self.stats.keyframe_requests += 1;
        if !self.ready
            || self.last_keyframe_answer.is_some_and(|t| {
                now.saturating_duration_since(t) < self.opts.keyframe_answer_interval
            })
        {
            return;
        }
        let plan = match self.mode {
            Mode::Live => InputPlan::Live,
            Mode::Dvr { paused: true, .. } => return,
            Mode::Dvr {
                position_ms, speed, ..
            } => InputPlan::Dvr {
                from_ms: position_ms,
                keyframes_only: speed > KEYFRAMES_ONLY_ABOVE,
            },
        };
        self.last_keyframe_answer = Some(now);
        self.stats.keyframe_requests_answered += 1;
        self.switch_input(plan);
    }
}

#[cfg(test)]
mod tests;
