//! The viewer core in simulated time: no sockets, no sleeping.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hub::HubFrame;

use super::*;
use crate::rtp_out::tests::hf;

const MS: Duration = Duration::from_millis(1);

/// A 25 fps input: frame `i` has pts `i * 3600`, wall `base_ms + i * 40`, a keyframe every `gop` frames.
fn frame(i: i64, gop: i64, base_ms: i64) -> Arc<HubFrame> {
    let mut f = hf(i % gop == 0, i * 3600, 2);
    f.frame.wall_ms = base_ms + i * 40;
    Arc::new(f)
}

struct Viewer {
    core: ViewerCore,
    now: Instant,
    sent: Vec<OutPacket>,
    modes: Vec<ModeReport>,
    inputs: Vec<InputRequest>,
    params: usize,
}

impl Viewer {
    fn new(start: StartAt, initial_seq: u16) -> Viewer {
        let now = Instant::now();
        let mut v = Viewer {
            core: ViewerCore::new(now, ViewerOptions::new(7, 96, initial_seq), start),
            now,
            sent: Vec::new(),
            modes: Vec::new(),
            inputs: Vec::new(),
            params: 0,
        };
        v.core.set_ready(now);
        v.drain();
        v
    }

    fn drain(&mut self) {
        while let Some(o) = self.core.poll_output() {
            match o {
                ViewerOutput::Frame(f) => self.sent.extend(f.packets()),
                ViewerOutput::Resend(_) => {}
                ViewerOutput::Params(_) => self.params += 1,
                ViewerOutput::Mode(m) => self.modes.push(m),
                ViewerOutput::Input(i) => self.inputs.push(i),
            }
        }
    }

    fn gen(&self) -> u64 {
        self.inputs.last().unwrap().generation
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.core.handle_timeout(self.now);
        self.drain();
    }

    /// Feeds frames of the current input, as a driver does: as fast as the core takes them, time passing.
    fn feed(&mut self, frames: impl IntoIterator<Item = Arc<HubFrame>>, step: Duration) {
        let gen = self.gen();
        for f in frames {
            while !self.core.wants_frames() {
                self.advance(step);
            }
            self.core.handle_frame(self.now, gen, f);
            self.drain();
            if matches!(self.core.mode().mode, ModeName::Live) {
                self.advance(step);
            }
        }
    }

    fn command(&mut self, cmd: Command) -> ModeView {
        let v = self.core.handle_command(self.now, cmd).unwrap();
        self.drain();
        v
    }

    fn event(&mut self, e: InputEvent) {
        let g = self.gen();
        self.core.handle_event(self.now, g, e);
        self.drain();
    }

    /// The sent stream's invariants: consecutive sequence numbers, timestamps that never go back, every run after
    /// an input switch starting at a keyframe.
    fn check_stream(&self) {
        for w in self.sent.windows(2) {
            assert_eq!(
                w[1].seq,
                w[0].seq.wrapping_add(1),
                "sequence gap or duplicate"
            );
            let step = w[1].timestamp.wrapping_sub(w[0].timestamp);
            assert!(
                step < u32::MAX / 2,
                "timestamp went back: {} -> {}",
                w[0].timestamp,
                w[1].timestamp
            );
        }
    }
}

#[test]
fn starts_live_and_switches_to_dvr_and_back_with_continuous_numbering() {
    let mut v = Viewer::new(StartAt::Live, 65_530);
    assert_eq!(v.inputs[0].plan, InputPlan::Live);
    v.feed((0..10).map(|i| frame(i, 5, 1_000_000)), 40 * MS);
    assert_eq!(v.sent.len(), 20);
    let live_ts = v.sent.last().unwrap().timestamp;
    v.command(Command::Seek {
        position_ms: 500_000,
    });
    assert_eq!(
        v.inputs.last().unwrap().plan,
        InputPlan::Dvr {
            from_ms: 500_000,
            keyframes_only: false
        }
    );
    v.event(InputEvent::Opened { shown_ms: 499_900 });
    // Recorded frames start mid-GOP for once (a delta first): it must not be sent.
    let rec: Vec<_> = (3..20).map(|i| frame(i, 5, 499_780)).collect();
    v.feed(rec, 10 * MS);
    for _ in 0..200 {
        v.advance(10 * MS);
    }
    let first_dvr = &v.sent[20];
    assert_eq!(
        first_dvr.payload[1], 0,
        "the first packet after the switch is the keyframe's first"
    );
    assert!(
        first_dvr.timestamp.wrapping_sub(live_ts) >= 3600,
        "at least one frame later"
    );
    assert_eq!(v.core.mode().position_ms, Some(499_780 + 19 * 40));
    v.command(Command::Live);
    v.feed((10..20).map(|i| frame(i, 5, 1_000_000)), 40 * MS);
    v.check_stream();
    assert!(
        v.sent.iter().any(|p| p.seq < 100),
        "sequence numbers wrapped"
    );
    let reasons: Vec<_> = v
        .modes
        .iter()
        .map(|m| m.reason)
        .filter(|r| *r != ModeReason::Position)
        .collect();
    assert_eq!(
        reasons,
        vec![
            ModeReason::Start,
            ModeReason::Seek,
            ModeReason::Opened,
            ModeReason::Live
        ]
    );
}

#[test]
fn frames_from_an_old_generation_are_dropped() {
    let mut v = Viewer::new(StartAt::Live, 0);
    let old = v.gen();
    v.command(Command::Seek {
        position_ms: 10_000,
    });
    v.core.handle_frame(v.now, old, frame(0, 5, 0));
    v.core.handle_event(v.now, old, InputEvent::End);
    v.advance(Duration::from_secs(1));
    assert!(v.sent.is_empty());
    assert_eq!(
        v.core.mode().mode,
        ModeName::Dvr,
        "a stale End does not send the viewer live"
    );
}

#[test]
fn dvr_is_paced_by_timestamps_over_speed_and_timestamps_follow_wall_time() {
    let mut v = Viewer::new(StartAt::Dvr { position_ms: 0 }, 0);
    v.command(Command::Speed(0.5));
    let g = v.gen();
    for i in 0..10 {
        v.core.handle_frame(v.now, g, frame(i, 5, 0));
    }
    v.drain();
    assert_eq!(v.sent.len(), 2, "only the first frame is due at once");
    v.advance(79 * MS);
    assert_eq!(v.sent.len(), 2);
    v.advance(MS);
    assert_eq!(
        v.sent.len(),
        4,
        "40 ms of media at 0.5x is 80 ms of wall time"
    );
    assert_eq!(
        v.sent[2].timestamp - v.sent[0].timestamp,
        7200,
        "timestamps at wall pace"
    );
}

#[test]
fn fast_speeds_ask_for_keyframes_only_and_slow_ones_keep_the_chain() {
    let mut v = Viewer::new(StartAt::Dvr { position_ms: 5_000 }, 0);
    let before = v.inputs.len();
    v.command(Command::Speed(2.0));
    assert_eq!(v.inputs.len(), before, "1x to 2x keeps the player");
    v.command(Command::Speed(4.0));
    assert_eq!(
        v.inputs.last().unwrap().plan,
        InputPlan::Dvr {
            from_ms: 5_000,
            keyframes_only: true
        }
    );
    v.command(Command::Speed(1.0));
    assert_eq!(
        v.inputs.last().unwrap().plan,
        InputPlan::Dvr {
            from_ms: 5_000,
            keyframes_only: false
        }
    );
    assert_eq!(
        v.core.handle_command(v.now, Command::Speed(8.5)),
        Err(CommandError::BadSpeed(8.5))
    );
    assert!(v
        .core
        .handle_command(v.now, Command::Speed(f64::NAN))
        .is_err());
    assert_eq!(
        v.core
            .handle_command(v.now, Command::Seek { position_ms: -1 }),
        Err(CommandError::BadPosition(-1))
    );
}

#[test]
fn a_60_s_pause_then_play_continues_without_a_keyframe_and_without_compressing_time() {
    let mut v = Viewer::new(StartAt::Dvr { position_ms: 0 }, 100);
    let g = v.gen();
    for i in 0..4 {
        v.core.handle_frame(v.now, g, frame(i, 50, 0));
        v.advance(40 * MS);
    }
    assert_eq!(v.sent.len(), 8);
    v.command(Command::Pause);
    v.core.handle_frame(v.now, g, frame(4, 50, 0));
    for _ in 0..60 {
        v.advance(Duration::from_secs(1));
    }
    assert_eq!(v.sent.len(), 8, "nothing while paused");
    assert_eq!(v.core.mode().position_ms, Some(120));
    assert!(
        v.modes
            .iter()
            .filter(|m| m.reason == ModeReason::Position)
            .count()
            >= 59,
        "position once a second"
    );
    v.command(Command::Play);
    assert_eq!(
        v.sent.len(),
        10,
        "the held delta frame goes on at once: the chain is intact"
    );
    let gap = v.sent[8].timestamp - v.sent[7].timestamp;
    assert!(
        gap >= 60 * 90_000,
        "timestamps advanced by the paused wall time: {gap}"
    );
    v.check_stream();
}

#[test]
fn pausing_live_is_time_shift() {
    let mut v = Viewer::new(StartAt::Live, 0);
    v.feed((0..5).map(|i| frame(i, 5, 7_000)), 40 * MS);
    v.command(Command::Pause);
    assert_eq!(v.inputs.last().unwrap().plan, InputPlan::Hold);
    let held = v.core.mode();
    assert_eq!(
        (held.mode, held.paused, held.position_ms),
        (ModeName::Dvr, true, Some(7_160))
    );
    v.advance(Duration::from_secs(5));
    v.command(Command::Play);
    assert_eq!(
        v.inputs.last().unwrap().plan,
        InputPlan::Dvr {
            from_ms: 7_160,
            keyframes_only: false
        }
    );
}

#[test]
fn live_edge_returns_to_live_at_speed_one_or_more_only() {
    let mut v = Viewer::new(StartAt::Dvr { position_ms: 0 }, 0);
    v.command(Command::Speed(0.5));
    v.event(InputEvent::LiveEdge);
    assert_eq!(v.core.mode().mode, ModeName::Dvr);
    v.command(Command::Speed(1.0));
    // Newer frames queued behind the edge when it is reached: the viewer is behind live, not caught up.
    let g = v.gen();
    v.core.handle_frame(v.now, g, frame(0, 5, 0));
    v.core.handle_frame(v.now, g, frame(1, 5, 0));
    v.core.handle_event(v.now, g, InputEvent::LiveEdge);
    v.core.handle_frame(v.now, g, frame(2, 5, 0));
    v.advance(40 * MS);
    assert_eq!(v.core.mode().mode, ModeName::Dvr);
    v.advance(40 * MS);
    // Everything shown, nothing newer: caught up.
    v.event(InputEvent::LiveEdge);
    assert_eq!(v.core.mode().mode, ModeName::Live);
    assert_eq!(v.modes.last().unwrap().reason, ModeReason::CaughtUp);
    assert_eq!(v.inputs.last().unwrap().plan, InputPlan::Live);

    let mut v = Viewer::new(StartAt::Dvr { position_ms: 0 }, 0);
    v.event(InputEvent::End);
    assert_eq!(v.modes.last().unwrap().reason, ModeReason::RecordingEnded);
    assert_eq!(v.core.mode().mode, ModeName::Live);
}

#[test]
fn a_gap_is_reported_and_does_not_wait_out_the_hole() {
    let mut v = Viewer::new(StartAt::Dvr { position_ms: 0 }, 0);
    let g = v.gen();
    v.core.handle_frame(v.now, g, frame(0, 5, 0));
    v.core.handle_event(
        v.now,
        g,
        InputEvent::Gap {
            from_ms: 40,
            to_ms: 10_000,
        },
    );
    // The next recorded frame is 10 s of media later.
    let mut after = hf(true, 900_000, 2);
    after.frame.wall_ms = 10_000;
    v.core.handle_frame(v.now, g, Arc::new(after));
    v.drain();
    v.advance(MS);
    assert_eq!(v.sent.len(), 4, "played at once after the gap");
    assert_eq!(
        v.modes
            .iter()
            .filter(|m| m.reason == ModeReason::Gap)
            .count(),
        1
    );
    assert_eq!(v.core.mode().position_ms, Some(10_000));
}

#[test]
fn keyframe_requests_are_answered_at_most_every_500_ms_and_nacks_once_each() {
    let mut v = Viewer::new(StartAt::Live, 0);
    v.feed((0..3).map(|i| frame(i, 5, 0)), 40 * MS);
    let before = v.inputs.len();
    for _ in 0..10 {
        v.core.handle_feedback(v.now, Feedback::Pli);
        v.advance(10 * MS);
    }
    v.drain();
    assert_eq!(v.inputs.len(), before + 1, "one answer in 100 ms");
    v.advance(500 * MS);
    v.core.handle_feedback(v.now, Feedback::Pli);
    v.drain();
    assert_eq!(v.inputs.len(), before + 2);
    let s = v.sent[0].seq;
    v.core.handle_feedback(
        v.now,
        Feedback::Nack(vec![s, s, s, s.wrapping_add(1), 9999]),
    );
    let resent: Vec<u16> = std::iter::from_fn(|| v.core.poll_output())
        .filter_map(|o| match o {
            ViewerOutput::Resend(p) => Some(p.seq),
            _ => None,
        })
        .collect();
    assert_eq!(resent, vec![s, s.wrapping_add(1)]);
}

#[test]
fn frames_in_a_codec_the_transport_did_not_negotiate_are_never_sent() {
    let now = Instant::now();
    let mut opts = ViewerOptions::new(1, 96, 0);
    opts.codec = Some(sources::Codec::H265);
    let mut core = ViewerCore::new(now, opts, StartAt::Live);
    core.set_ready(now);
    core.handle_frame(now, core.generation(), frame(0, 5, 0));
    assert!(std::iter::from_fn(|| core.poll_output()).all(|o| !matches!(o, ViewerOutput::Frame(_))));
}

#[test]
fn live_frames_wait_for_the_transport_from_the_last_keyframe() {
    let now = Instant::now();
    let mut core = ViewerCore::new(now, ViewerOptions::new(1, 96, 0), StartAt::Live);
    let g = core.generation();
    for i in 0..8 {
        core.handle_frame(now, g, frame(i, 5, 0));
    }
    assert!(std::iter::from_fn(|| core.poll_output()).all(|o| !matches!(o, ViewerOutput::Frame(_))));
    core.set_ready(now);
    let sent: usize = std::iter::from_fn(|| core.poll_output())
        .map(|o| match o {
            ViewerOutput::Frame(f) => f.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(sent, 3 * 2, "the GOP from frame 5 on");
}

/// A storm of 100 switches in one second — seeks forward and back, speed changes, pauses, plays, returns to live
/// — with frames from every input interleaved, stale ones included: the stream stays one stream.
#[test]
fn a_storm_of_100_switches_in_one_second_keeps_one_stream() {
    let mut v = Viewer::new(StartAt::Live, 65_000);
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut live_i = 0;
    let mut stale = Vec::new();
    for n in 0..100 {
        stale.push(v.gen());
        let cmd = match next() % 6 {
            0 => Command::Seek {
                position_ms: (next() % 3_600_000) as i64,
            },
            1 => Command::Speed([0.25, 0.5, 1.0, 2.0, 4.0, 8.0][(next() % 6) as usize]),
            2 => Command::Pause,
            3 => Command::Play,
            4 => Command::Live,
            _ => Command::Seek {
                position_ms: 1_000_000 - n * 10_000,
            },
        };
        v.command(cmd);
        let g = v.gen();
        // Frames of this input, starting at a delta frame half the time, and a stale frame of an older input.
        let start = (next() % 2) as i64;
        for i in start..start + 3 {
            v.core.handle_frame(v.now, g, frame(live_i + i, 2, 0));
            v.core.handle_frame(
                v.now,
                stale[(next() as usize) % stale.len()],
                frame(i, 1, 0),
            );
        }
        live_i += 10;
        v.advance(10 * MS);
    }
    for _ in 0..100 {
        v.advance(10 * MS);
    }
    v.check_stream();
    assert!(v.sent.len() > 100, "media flowed: {} packets", v.sent.len());
    // Every run after a switch starts at a keyframe: payload byte 1 of a keyframe's first packet is 0 in these
    // frames, and the sequence runs are checked above; count switches actually answered.
    assert!(v.core.stats().input_switches >= 50);
}

#[test]
fn a_new_run_of_the_live_stream_rebases_on_the_wall_clock() {
    let mut v = Viewer::new(StartAt::Live, 0);
    v.feed((0..3).map(|i| frame(i, 5, 0)), 40 * MS);
    let before = v.sent.last().unwrap().timestamp;
    // The camera reconnects 3 s later; the ingest marks the first frame of the new run. Its pts says 40 ms.
    v.advance(Duration::from_secs(3));
    let mut f = hf(true, 3 * 3600, 2);
    f.frame.starts_run = true;
    let g = v.gen();
    v.core.handle_frame(v.now, g, Arc::new(f));
    v.drain();
    let after = v.sent.last().unwrap().timestamp;
    assert!(
        after - before >= 3 * 90_000,
        "{before} -> {after}: the wall time that passed"
    );
    v.check_stream();
}

#[test]
fn a_nack_flood_draws_at_most_a_quarter_of_the_media_and_one_burst() {
    // 25 fps of 20 packets of 1188-byte payloads: 4.8 Mbit/s.
    let big = |i: i64| {
        let mut f = hf(i % 50 == 0, i * 3600, 20);
        for p in &mut f.packets {
            p.payload = bytes::Bytes::from(vec![0x41; 1188]);
        }
        Arc::new(f)
    };
    let mut v = Viewer::new(StartAt::Live, 0);
    let gen = v.gen();
    let (mut sent_bytes, mut resent_bytes, mut first_answer) = (0u64, 0u64, None);
    for i in 0..100 {
        v.core.handle_frame(v.now, gen, big(i));
        // Every 20 ms, a NACK naming every packet sent so far (the whole history): ~2 KB of RTCP each time.
        for _ in 0..2 {
            let first = v.sent.first().map_or(0, |p| p.seq);
            let all: Vec<u16> = (0..v.sent.len().min(512) as u16)
                .map(|k| first.wrapping_add(v.sent.len().saturating_sub(512) as u16 + k))
                .collect();
            v.core.handle_feedback(v.now, Feedback::Nack(all));
            let mut answer = 0;
            while let Some(o) = v.core.poll_output() {
                match o {
                    ViewerOutput::Frame(f) => {
                        sent_bytes += f.bytes();
                        v.sent.extend(f.packets());
                    }
                    ViewerOutput::Resend(p) => answer += 12 + p.payload.len() as u64,
                    _ => {}
                }
            }
            first_answer.get_or_insert(answer);
            resent_bytes += answer;
            v.advance(20 * MS);
        }
    }
    let first_answer = first_answer.unwrap();
    assert!(
        first_answer <= REPAIR_BURST_BYTES,
        "one NACK drew {first_answer} bytes"
    );
    assert!(
        resent_bytes <= sent_bytes / 4 + REPAIR_BURST_BYTES,
        "{resent_bytes} bytes resent for {sent_bytes} sent"
    );
    assert!(
        resent_bytes >= sent_bytes / 5,
        "repair still works: {resent_bytes} of {sent_bytes}"
    );
    assert_eq!(v.core.stats().retransmitted_bytes, resent_bytes);
    assert!(v.core.stats().repairs_refused > 0);
}
