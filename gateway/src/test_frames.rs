//! Hub frames of chosen packet sizes for unit tests of the send paths, built directly (no packetizer) so a test
//! says exactly which datagrams it expects.

use std::sync::Arc;

use bytes::Bytes;
use hub::{HubFrame, RtpPayload};
use sources::{Codec, Frame, ParameterSets};

/// A delta frame whose packets carry `bodies` bytes each, packet `k` filled with the byte `k`, the marker on the
/// last.
pub fn hub_frame(bodies: &[usize]) -> Arc<HubFrame> {
    let params = Arc::new(ParameterSets {
        codec: Codec::H264,
        vps: None,
        sps: Bytes::from_static(&[0x67]),
        pps: Bytes::from_static(&[0x68]),
        width: 1,
        height: 1,
        rfc6381_codec: None,
    });
    Arc::new(HubFrame {
        frame: Frame {
            codec: Codec::H264,
            data: Bytes::new(),
            pts_90k: 0,
            wall_ms: 0,
            is_keyframe: false,
            params,
            is_slate: false,
            starts_run: false,
        },
        packets: bodies
            .iter()
            .enumerate()
            .map(|(k, &n)| RtpPayload {
                payload: Bytes::from(vec![k as u8; n]),
                marker: k + 1 == bodies.len(),
            })
            .collect(),
        index: 0,
    })
}
