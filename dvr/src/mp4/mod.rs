//! Sample-level reading of the gateway's own MP4 segments (ISO/IEC 14496-12, the ISO base media file format,
//! with AVC/HEVC carried as ISO/IEC 14496-15 says), for playback: an index of every sample's place, time and
//! sync flag built from box headers and the sample tables alone, then one sample at a time read on demand. No
//! media payload is read while indexing, and a sample read is one seek and one read of exactly its bytes, so
//! many viewers can play 30 MB segments at once.
//!
//! Two shapes are read (see [`crate::writer`]): the fragmented file `mp4mux` grows while recording (`ftyp`, the
//! first fragment's `mdat`, a `moov` listing it and announcing fragments, then per fragment an `mdat` followed by
//! its `moof`; the usual `moof` + `mdat` order works the same), and the normal file it becomes when finalized
//! (one `mdat`, then a `moov` with the full tables; the old `moov` renamed `hoov` and the `moof`s left inside the
//! `mdat`). A growing file may end in a partial box: [`SampleIndex::read`] stops before it, and
//! [`SampleIndex::refresh`] picks up from there, and notices the finalization.
//!
//! The pieces: `boxes` walks box headers, `track` reads the `moov`, `stbl` its sample tables, `fragment` a
//! `moof`, `config` the codec configuration and sample payloads, and `index` ties them into the index.

mod boxes;
mod config;
mod fragment;
mod index;
mod stbl;
#[cfg(test)]
mod testbuild;
mod track;

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use bytes::Bytes;
use sources::{Codec, ParameterSets};

/// The most samples one index holds (about 11 hours at 25 frames/s; a segment is a minute). Counts read from a
/// file are checked against it before anything is allocated.
pub const MAX_SAMPLES: usize = 1 << 20;
/// The largest `moov` and `moof` loaded (a one-minute segment's are a few kB).
const MAX_MOOV_BYTES: u64 = 64 << 20;
const MAX_MOOF_BYTES: u64 = 16 << 20;
/// The largest sample read (a 4K keyframe is a few MB).
const MAX_SAMPLE_BYTES: u32 = 64 << 20;

/// One sample (one access unit) of the video track.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// File offset of its first byte.
    pub offset: u64,
    pub size: u32,
    /// Decode time in the track timescale.
    pub dts: i64,
    /// Composition offset (`ctts` / `trun`), timescale units: presentation time is `dts + cts_offset`.
    pub cts_offset: i32,
    pub is_sync: bool,
}

impl Sample {
    pub fn pts(&self) -> i64 {
        self.dts + i64::from(self.cts_offset)
    }
}

/// Where every sample of a segment's video track is. Built from box headers and tables; holds no media.
#[derive(Clone, Debug)]
pub struct SampleIndex {
    pub codec: Codec,
    /// From the sample entry (`avcC`/`hvcC`), or from the first sample's in-band ones when the entry has none.
    /// Width and height are the sample entry's.
    pub params: Arc<ParameterSets>,
    /// Ticks per second of `dts` and `cts_offset` (`mp4mux` picks it from the frame rate: 2500 at 25 fps).
    pub timescale: u32,
    /// In decode order.
    pub samples: Vec<Sample>,
    track_id: u32,
    nal_length: u8,
    trex: Vec<(u32, track::Defaults)>,
    /// The `moov` announced fragments: `refresh` may find more samples.
    fragmented: bool,
    moov_offset: u64,
    /// The first top-level box not yet indexed: where `refresh` goes on.
    scan_pos: u64,
    /// File length when last indexed.
    seen_len: u64,
    /// Decode time after the last sample.
    end_dts: i64,
    /// Indices of the sync samples, ascending.
    syncs: Vec<usize>,
}

/// A sample as [`SampleIndex::read_sample`] returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SampleData {
    /// 4-byte length-prefixed NAL units without parameter sets or access unit delimiters: `sources::Frame::data`.
    pub data: Bytes,
    /// The parameter sets the sample carried in-band (GStreamer's files carry them before every keyframe), any
    /// the sample lacked taken from the index's. `None` when it carried none. Width and height are the track's:
    /// a different SPS is the sign of a new picture size.
    pub params: Option<ParameterSets>,
}

/// Why a segment could not be indexed or a sample read.
#[derive(Debug, thiserror::Error)]
pub enum Mp4Error {
    #[error("reading the file: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed MP4 at byte {offset}: {what}")]
    Malformed { offset: u64, what: String },
    /// No complete `moov` box: not an MP4, or a segment whose first fragment is still being written.
    #[error("no complete moov box (yet)")]
    NoMoov,
    #[error("the file has no video track")]
    NoVideoTrack,
    #[error("unsupported video codec {0}")]
    UnsupportedCodec(String),
    #[error("the track's parameter sets are neither in its sample entry nor in its first sample")]
    MissingParameterSets,
    #[error("sample {0} is not in the index")]
    NoSuchSample(usize),
}

impl SampleIndex {
    /// Index of the last sync sample whose presentation time (`dts + cts_offset`) is at or before `time`
    /// (timescale units), or the first sync sample if none is before; `None` without sync samples.
    pub fn sync_at_or_before(&self, time: i64) -> Option<usize> {
        let after = self
            .syncs
            .partition_point(|&i| self.samples[i].pts() <= time);
        self.syncs.get(after.saturating_sub(1)).copied()
    }

    /// Index of the first sync sample at or after sample `i`.
    pub fn next_sync(&self, i: usize) -> Option<usize> {
        self.syncs
            .get(self.syncs.partition_point(|&s| s < i))
            .copied()
    }

    /// Presentation time of sample `i` in 90 kHz ticks from the first sample's. Panics if `i` is out of range,
    /// as indexing `samples` does.
    pub fn pts_90k(&self, i: usize) -> i64 {
        self.ticks_90k(self.samples[i].pts())
    }

    /// Decode time just after the last sample, in 90 kHz ticks from the first sample's presentation time: where
    /// the indexed media ends.
    pub fn end_90k(&self) -> i64 {
        self.ticks_90k(self.end_dts)
    }

    /// True once the file is a finalized (non-fragmented) MP4: `refresh` will find nothing more.
    pub fn is_finalized(&self) -> bool {
        !self.fragmented
    }

    fn ticks_90k(&self, t: i64) -> i64 {
        let first = self.samples.first().map_or(0, Sample::pts);
        let ticks = (i128::from(t) - i128::from(first)) * 90_000 / i128::from(self.timescale);
        ticks.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    /// Reads sample `i` (one seek and one read of exactly its bytes) in the frame format, with the parameter sets
    /// it carried in-band.
    pub fn read_sample<R: Read + Seek>(&self, r: &mut R, i: usize) -> Result<SampleData, Mp4Error> {
        let s = *self.samples.get(i).ok_or(Mp4Error::NoSuchSample(i))?;
        if s.size > MAX_SAMPLE_BYTES {
            return Err(Mp4Error::Malformed {
                offset: s.offset,
                what: format!(
                    "sample {i} is {} bytes, more than the {MAX_SAMPLE_BYTES} allowed",
                    s.size
                ),
            });
        }
        r.seek(SeekFrom::Start(s.offset))?;
        // Indexing checked that the sample lies in the file, so this is never more than the file holds.
        let mut buf = vec![0u8; s.size as usize];
        r.read_exact(&mut buf)?;
        let c = config::convert(self.codec, self.nal_length, buf, s.offset)?;
        let params = if c.vps.is_some() || c.sps.is_some() || c.pps.is_some() {
            let mut p = (*self.params).clone();
            if let Some(vps) = c.vps {
                p.vps = Some(vps);
            }
            if let Some(sps) = c.sps {
                if self.codec == Codec::H264 {
                    if let Some(b) = sps.get(1..4) {
                        p.rfc6381_codec =
                            Some(format!("avc1.{:02x}{:02x}{:02x}", b[0], b[1], b[2]));
                    }
                }
                p.sps = sps;
            }
            if let Some(pps) = c.pps {
                p.pps = pps;
            }
            Some(p)
        } else {
            None
        };
        Ok(SampleData {
            data: c.data,
            params,
        })
    }
}
