//! Builds the API's [`StreamView`] from a stream's definition and its hub's live status, statistics and
//! camera parameter sets. Nothing here can reveal credentials: URLs come from the definition, which has none.

use api_models::{StreamStateDto, StreamView};
use hub::Hub;
use sources::IngestState;

use crate::catalog::RecordingStatus;
use crate::definition::StreamDefinition;

/// The view of one stream right now.
pub fn stream_view(def: &StreamDefinition, hub: &Hub, recording: &RecordingStatus) -> StreamView {
    let stats = hub.stats();
    let status = hub.status();
    // The camera's format, not the slate's: a camera that never connected has no codec or size yet.
    let params = hub.camera_params();
    StreamView {
        source_id: def.source_id.clone(),
        state: state_dto(status.state),
        active_input: status.active_input,
        inputs: def.input_views(),
        codec: params.as_ref().map(|p| p.codec.name().to_owned()),
        width: params.as_ref().map(|p| p.width),
        height: params.as_ref().map(|p| p.height),
        fps: stats.fps,
        bitrate_bps: stats.bitrate_bps,
        keyframe_interval_ms: stats.keyframe_interval_ms,
        frames: stats.frames,
        bytes: stats.bytes,
        drops: stats.drops,
        reconnects: status.reconnects.max(stats.reconnects),
        // The recorder is a hub subscriber, not a viewer.
        viewers: stats
            .subscribers
            .saturating_sub(usize::from(recording.active)),
        last_error: status.last_error,
        has_credentials: def.credentials.is_some(),
        should_record: def.should_record,
        recording: recording.view(),
        retention: def.retention,
        restart_interval_secs: def.restart_interval_secs,
    }
}

/// The API name of an ingest state.
pub fn state_dto(state: IngestState) -> StreamStateDto {
    match state {
        IngestState::Starting => StreamStateDto::Starting,
        IngestState::Running => StreamStateDto::Running,
        IngestState::Reconnecting => StreamStateDto::Reconnecting,
        IngestState::Offline => StreamStateDto::Offline,
        IngestState::Error => StreamStateDto::Error,
    }
}
