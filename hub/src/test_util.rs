//! Hub frames built directly from chosen payloads, for tests of what consumes them (numbering, batching,
//! sending): a test then says exactly which packets it expects, with no packetizer in between. Compiled for this
//! crate's tests and, with the `test-util` feature, for other crates' tests.

use std::sync::Arc;

use bytes::Bytes;
use sources::{Codec, Frame, ParameterSets};

use crate::{HubFrame, RtpPayload};

/// A frame whose packets are `payloads`, the marker on the last; `wall_ms` follows `pts_90k`.
pub fn frame_with_payloads(payloads: Vec<Bytes>, key: bool, pts_90k: i64) -> HubFrame {
    let n = payloads.len();
    HubFrame {
        frame: Frame {
            codec: Codec::H264,
            data: Bytes::new(),
            pts_90k,
            wall_ms: pts_90k / 90,
            is_keyframe: key,
            params: Arc::new(ParameterSets {
                codec: Codec::H264,
                vps: None,
                sps: Bytes::from_static(&[0x67]),
                pps: Bytes::from_static(&[0x68]),
                width: 1,
                height: 1,
                rfc6381_codec: None,
            }),
            is_slate: false,
            starts_run: false,
        },
        packets: payloads
            .into_iter()
            .enumerate()
            .map(|(k, payload)| RtpPayload {
                payload,
                marker: k + 1 == n,
            })
            .collect(),
        index: 0,
    }
}

/// A delta frame at time 0 whose packet `k` is `bodies[k]` bytes, each the byte `k`.
pub fn frame_of_sizes(bodies: &[usize]) -> HubFrame {
    let payloads = bodies
        .iter()
        .enumerate()
        .map(|(k, &n)| Bytes::from(vec![k as u8; n]))
        .collect();
    frame_with_payloads(payloads, false, 0)
}
