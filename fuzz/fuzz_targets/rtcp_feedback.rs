//! RTCP from viewers, as both transports read it: WSC-RTP with `publishers::parse_feedback` (generic NACK, PLI),
//! WebRTC with the `rtc` crate's parser and the gateway's `FeedbackTap` interceptor. Input: 4 bytes of media
//! SSRC, then one compound RTCP datagram.
//!
//! Checks: neither reader panics; the tap counts exactly the NACKs, PLIs and FIRs the packets hold and marks the
//! datagram for the session iff it asks for a keyframe; where both parsers accept a datagram, they find the same
//! NACKed sequence numbers and PLIs for our SSRC.
#![no_main]

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use gateway::webrtc::feedback::{has_keyframe_request, FeedbackCounts, FeedbackTap};
use libfuzzer_sys::fuzz_target;
use publishers::{parse_feedback, Feedback};
use rtc::interceptor::{Attribute, AttributedPacket, Packet, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::sansio::Protocol;

fuzz_target!(|data: &[u8]| {
    let Some((ssrc, rtcp)) = data.split_first_chunk::<4>() else {
        return;
    };
    let ssrc = u32::from_be_bytes(*ssrc);

    let ours = parse_feedback(rtcp, ssrc);
    if let Ok(feedback) = &ours {
        // Each 4-byte FCI names at most 17 packets.
        let asked: usize = feedback
            .iter()
            .map(|f| match f {
                Feedback::Nack(seqs) => seqs.len(),
                Feedback::Pli => 0,
            })
            .sum();
        assert!(asked <= 17 * (rtcp.len() / 4));
    }

    let Ok(packets) = rtc::rtcp::packet::unmarshal(&mut &rtcp[..]) else {
        return;
    };
    let count = |f: &dyn Fn(&dyn std::any::Any) -> bool| {
        packets.iter().filter(|p| f(p.as_any())).count() as u64
    };
    let nacks = count(&|a| a.is::<TransportLayerNack>());
    let plis = count(&|a| a.is::<PictureLossIndication>());
    let firs = count(&|a| a.is::<FullIntraRequest>());
    let keyframe = has_keyframe_request(&packets);
    assert_eq!(keyframe, plis + firs > 0);

    // Where both parsers accept the datagram they must agree on what our stream's viewer asked for.
    if let Ok(feedback) = &ours {
        let mut want = Vec::new();
        for p in &packets {
            let any = p.as_any();
            if let Some(n) = any.downcast_ref::<TransportLayerNack>() {
                if n.media_ssrc == ssrc {
                    let seqs = n
                        .nacks
                        .iter()
                        .flat_map(|pair| {
                            std::iter::once(pair.packet_id).chain(
                                (0..16)
                                    .filter(|i| pair.lost_packets & (1 << i) != 0)
                                    .map(|i| pair.packet_id.wrapping_add(i + 1)),
                            )
                        })
                        .collect();
                    want.push(Feedback::Nack(seqs));
                }
            } else if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
                if pli.media_ssrc == ssrc {
                    want.push(Feedback::Pli);
                }
            }
        }
        assert_eq!(
            feedback, &want,
            "publishers and rtc read {rtcp:02x?} differently"
        );
    }

    let counts = Arc::new(FeedbackCounts::default());
    let mut tap = FeedbackTap::new(counts.clone());
    let msg = TaggedPacket {
        now: Instant::now(),
        transport: Default::default(),
        message: AttributedPacket::new(Packet::Rtcp(packets)),
    };
    tap.handle_read(msg)
        .expect("the tap never refuses a packet");
    let out = tap.poll_read().expect("the tap passes every packet on");
    assert!(tap.poll_read().is_none());
    assert_eq!(out.message.has(&Attribute::DeliverToApplication), keyframe);
    assert_eq!(counts.nacks.load(Ordering::Relaxed), nacks);
    assert_eq!(counts.plis.load(Ordering::Relaxed), plis);
    assert_eq!(counts.firs.load(Ordering::Relaxed), firs);
});
