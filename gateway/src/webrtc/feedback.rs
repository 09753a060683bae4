//! An interceptor that watches a viewer's RTCP feedback and the retransmissions it causes, counts them for the
//! session's statistics (NACK, PLI, FIR; loss, jitter and round trip from receiver reports, matched against the
//! sender reports it saw leave), and lets keyframe requests (PLI, FIR) through to the session.
//!
//! It sits just above the pacer slot, below the NACK responder: inbound RTCP reaches it before the responder and
//! the report interceptors (which still see every packet, unchanged), and the responder's retransmissions pass it
//! on their way out. The `webrtc` crate ends inbound RTCP inside its chain; a compound packet with a PLI or FIR is
//! marked for delivery so the sending track hears of it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use publishers::SentReports;
use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;

/// Between the pacer (3 000) and the NACK responder (4 000).
pub const SLOT: usize = 3_500;

/// What one session's viewer asked for and got again.
#[derive(Debug, Default)]
pub struct FeedbackCounts {
    pub nacks: AtomicU64,
    /// Sequence numbers asked for in those NACKs.
    pub nacked_packets: AtomicU64,
    pub plis: AtomicU64,
    pub firs: AtomicU64,
    pub retransmitted_packets: AtomicU64,
    pub retransmitted_bytes: AtomicU64,
    /// From the last receiver report: cumulative loss, fraction lost (of 256), jitter in RTP ticks.
    pub reported_lost: AtomicU64,
    pub reported_fraction: AtomicU64,
    pub reported_jitter_ticks: AtomicU64,
    /// Receiver reports seen, and the last round trip they measured in microseconds (0: none yet).
    pub reports: AtomicU64,
    pub rtt_us: AtomicU64,
}

/// See the module documentation.
pub struct FeedbackTap {
    counts: Arc<FeedbackCounts>,
    sender_reports: SentReports,
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl FeedbackTap {
    pub fn new(counts: Arc<FeedbackCounts>) -> FeedbackTap {
        FeedbackTap {
            counts,
            sender_reports: SentReports::default(),
            read: VecDeque::new(),
            write: VecDeque::new(),
        }
    }
}

/// True if `packets` hold a PLI or a FIR.
pub fn has_keyframe_request(packets: &[Box<dyn rtc::rtcp::Packet>]) -> bool {
    packets.iter().any(|p| {
        let any = p.as_any();
        any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
    })
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for FeedbackTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let c = &self.counts;
            for p in packets {
                let any = p.as_any();
                if let Some(nack) = any.downcast_ref::<TransportLayerNack>() {
                    c.nacks.fetch_add(1, Ordering::Relaxed);
                    let asked: u32 = nack
                        .nacks
                        .iter()
                        .map(|pair| 1 + pair.lost_packets.count_ones())
                        .sum();
                    c.nacked_packets
                        .fetch_add(u64::from(asked), Ordering::Relaxed);
                } else if any.is::<PictureLossIndication>() {
                    c.plis.fetch_add(1, Ordering::Relaxed);
                } else if any.is::<FullIntraRequest>() {
                    c.firs.fetch_add(1, Ordering::Relaxed);
                } else if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                    // The viewer receives one stream: its report blocks are about it.
                    for block in &rr.reports {
                        c.reports.fetch_add(1, Ordering::Relaxed);
                        c.reported_lost
                            .store(u64::from(block.total_lost), Ordering::Relaxed);
                        c.reported_fraction
                            .store(u64::from(block.fraction_lost), Ordering::Relaxed);
                        c.reported_jitter_ticks
                            .store(u64::from(block.jitter), Ordering::Relaxed);
                        if let Some(rtt) = self.sender_reports.round_trip(
                            block.last_sender_report,
                            block.delay,
                            msg.now,
                        ) {
                            c.rtt_us
                                .store((rtt.as_micros() as u64).max(1), Ordering::Relaxed);
                        }
                    }
                }
            }
            if has_keyframe_request(packets) {
                msg.message.add(Attribute::DeliverToApplication);
            }
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            for p in packets {
                if let Some(sr) = p.as_any().downcast_ref::<SenderReport>() {
                    self.sender_reports.sent(sr.ntp_time, msg.now);
                }
            }
        }
        if let Packet::Rtp(p) = &msg.message.packet {
            if msg.message.has(&Attribute::Retransmission) {
                self.counts
                    .retransmitted_packets
                    .fetch_add(1, Ordering::Relaxed);
                self.counts
                    .retransmitted_bytes
                    .fetch_add(p.payload.len() as u64, Ordering::Relaxed);
            }
        }
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }
}

impl Interceptor for FeedbackTap {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}
