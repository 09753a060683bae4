//! Recording, planned without I/O. A stream with recording on is a hub subscriber whose frames go into MP4
//! segments; this crate decides, from frames and times alone:
//!
//! - [`segmenter`]: when a segment opens and closes (rotation at the first keyframe after the segment length; a
//!   gap, a slate picture, a dropped frame or a codec/size change closes it), and the wall-clock span of each;
//! - [`ranges`]: what is recorded, as contiguous ranges over the catalog's segments, and which segment holds an
//!   instant (what playback and export look up);
//! - [`retention`]: which complete segments to delete for each stream's age and size limits and the disk's
//!   free-space floor.
//!
//! At the edge: [`writer`], an MP4 segment written by GStreamer (fragmented while written, finalized when
//! closed), and [`recorder`], the hub subscriber that drives the segmenter and a writer thread and reports what
//! happened to each segment. The gateway keeps the catalog from those reports. [`recover`] makes a segment a
//! crash cut short readable again and measures segment files; [`export`] writes one MP4 for a time range. [`mp4`]
//! indexes a segment (finalized or still being written) and reads it sample by sample, for playback.

pub mod export;
pub mod mp4;
pub mod player;
pub mod ranges;
pub mod recorder;
pub mod recover;
pub mod retention;
pub mod segmenter;
pub mod writer;
