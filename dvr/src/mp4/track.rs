//! The video track of a `moov` (ISO/IEC 14496-12 §8.2–8.5): the first `trak` whose handler (`hdlr`, §8.4.3) is
//! `vide`; its id and size (`tkhd`, §8.3.2), timescale (`mdhd`, §8.4.2) and first sample entry (`stsd`, §8.5.2: a
//! `VisualSampleEntry` of type `avc1`/`avc3` with an `avcC`, or `hvc1`/`hev1` with an `hvcC`, ISO/IEC 14496-15
//! §5.4 and §8.4). An `mvex` (§8.8.1) says fragments may follow and its `trex` (§8.8.3) gives their default sample
//! duration, size and flags. Edit lists are not applied: the reader counts presentation time from the first
//! sample, which is what an edit list starting at media time 0 (the only kind `mp4mux` writes) means.

use sources::Codec;

use super::boxes::{name, Child, Children};
use super::config::{self, DecoderConfig};
use super::stbl::{self, Tables};
use super::Mp4Error;

/// Defaults for fragment samples that do not state their own (`trex`, overridden per fragment by `tfhd`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Defaults {
    pub duration: u32,
    pub size: u32,
    pub flags: u32,
}

/// What the `moov` says about the video track.
pub(crate) struct Track {
    pub id: u32,
    pub timescale: u32,
    pub config: DecoderConfig,
    /// `trex` defaults of every track, by id (a fragment's data offsets can depend on other tracks' samples).
    pub trex: Vec<(u32, Defaults)>,
    /// Whether an `mvex` announced fragments.
    pub fragmented: bool,
    pub tables: Tables,
}

/// Upper bound on `trex` boxes kept: a movie has a handful of tracks.
const MAX_TRACKS: usize = 64;

/// Reads the first video track of a `moov` box.
pub(crate) fn parse(moov: &Child<'_>) -> Result<Track, Mp4Error> {
    let mut video = None;
    let mut mvex = None;
    for child in moov.children() {
        let child = child?;
        match &child.kind {
            b"trak" if video.is_none() && handler(&child)? == Some(*b"vide") => video = Some(child),
            b"mvex" => mvex = Some(child),
            _ => {}
        }
    }
    let trak = video.ok_or(Mp4Error::NoVideoTrack)?;
    let (id, tkhd_size) = tkhd(&trak.need(b"tkhd")?)?;
    let mdia = trak.need(b"mdia")?;
    let timescale = mdhd(&mdia.need(b"mdhd")?)?;
    let stbl = mdia.need(b"minf")?.need(b"stbl")?;
    let config = sample_entry(&stbl.need(b"stsd")?, tkhd_size)?;
    let tables = stbl::parse(&stbl)?;
    let mut trex = Vec::new();
    if let Some(mvex) = &mvex {
        for child in mvex.children() {
            let child = child?;
            if &child.kind == b"trex" && trex.len() < MAX_TRACKS {
                trex.push(parse_trex(&child)?);
            }
        }
    }
    Ok(Track {
        id,
        timescale,
        config,
        trex,
        fragmented: mvex.is_some(),
        tables,
    })
}

fn handler(trak: &Child<'_>) -> Result<Option<[u8; 4]>, Mp4Error> {
    let Some(mdia) = trak.child(b"mdia")? else {
        return Ok(None);
    };
    let Some(hdlr) = mdia.child(b"hdlr")? else {
        return Ok(None);
    };
    let mut f = hdlr.fields();
    f.full_box()?;
    f.skip(4)?; // pre_defined
    let b = f.bytes(4)?;
    Ok(Some([b[0], b[1], b[2], b[3]]))
}

/// Track id and the width and height (integer part of the 16.16 fields).
fn tkhd(b: &Child<'_>) -> Result<(u32, (u32, u32)), Mp4Error> {
    let mut f = b.fields();
    let (version, _) = f.full_box()?;
    f.u32_or_u64(version)?; // creation_time
    f.u32_or_u64(version)?; // modification_time
    let id = f.u32()?;
    f.skip(4)?;
    f.u32_or_u64(version)?; // duration
    f.skip(8 + 2 + 2 + 2 + 2 + 36)?; // reserved, layer, alternate_group, volume, reserved, matrix
    let width = f.u32()? >> 16;
    let height = f.u32()? >> 16;
    Ok((id, (width, height)))
}

fn mdhd(b: &Child<'_>) -> Result<u32, Mp4Error> {
    let mut f = b.fields();
    let (version, _) = f.full_box()?;
    f.u32_or_u64(version)?;
    f.u32_or_u64(version)?;
    let at = f.offset();
    match f.u32()? {
        0 => Err(Mp4Error::Malformed {
            offset: at,
            what: "mdhd: timescale 0".into(),
        }),
        t => Ok(t),
    }
}

fn parse_trex(b: &Child<'_>) -> Result<(u32, Defaults), Mp4Error> {
    let mut f = b.fields();
    f.full_box()?;
    let id = f.u32()?;
    f.skip(4)?; // default_sample_description_index
    let defaults = Defaults {
        duration: f.u32()?,
        size: f.u32()?,
        flags: f.u32()?,
    };
    Ok((id, defaults))
}

/// The codec configuration of the first sample entry. Width and height are the entry's, or the track header's
/// when the entry says 0.
fn sample_entry(stsd: &Child<'_>, tkhd_size: (u32, u32)) -> Result<DecoderConfig, Mp4Error> {
    let mut f = stsd.fields();
    f.full_box()?;
    if f.count(0)? == 0 {
        return Err(f.error("has no sample entry".into()));
    }
    let at = f.offset();
    let rest = f.bytes(f.remaining())?;
    let entry = Children::new(rest, at)
        .next()
        .ok_or_else(|| f.error("has no sample entry".into()))??;
    let (codec, record) = match &entry.kind {
        b"avc1" | b"avc3" => (Codec::H264, b"avcC"),
        b"hvc1" | b"hev1" => (Codec::H265, b"hvcC"),
        other => return Err(Mp4Error::UnsupportedCodec(name(other))),
    };
    // VisualSampleEntry: 6 reserved, data_reference_index, 16 bytes pre_defined/reserved, width, height, then
    // resolution, reserved, frame_count, compressorname, depth and pre_defined: 78 bytes before the child boxes.
    let mut v = entry.fields();
    v.skip(24)?;
    let (w, h) = (u32::from(v.u16()?), u32::from(v.u16()?));
    v.skip(50)?;
    let (w, h) = if w == 0 || h == 0 { tkhd_size } else { (w, h) };
    let children_at = v.offset();
    let children = v.bytes(v.remaining())?;
    let mut found = None;
    for child in Children::new(children, children_at) {
        let child = child?;
        if &child.kind == record {
            found = Some(child);
            break;
        }
    }
    let record = found.ok_or_else(|| v.error(format!("has no {}", name(record))))?;
    config::parse(codec, &record, w, h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mp4::testbuild::{self as tb, bx, full};

    fn moov_of(traks: &[Vec<u8>], mvex: bool) -> Vec<u8> {
        let mut body: Vec<u8> = traks.concat();
        if mvex {
            let trex = full(
                b"trex",
                0,
                0,
                &[1u32, 1, 100, 50, 0x10000].map(u32::to_be_bytes).concat(),
            );
            body.extend(bx(b"mvex", &trex));
        }
        bx(b"moov", &body)
    }

    fn parsed(moov: &[u8]) -> Result<Track, Mp4Error> {
        let child = Children::new(moov, 0).next().unwrap()?;
        parse(&child)
    }

    #[test]
    fn finds_the_first_video_track() {
        let sound = tb::trak(
            2,
            b"soun",
            &tb::avc1_entry(320, 240),
            &tb::empty_stbl_tables(),
        );
        let video = tb::trak(
            7,
            b"vide",
            &tb::avc1_entry(320, 240),
            &tb::empty_stbl_tables(),
        );
        let t = parsed(&moov_of(&[sound, video], true)).unwrap();
        assert_eq!(
            (t.id, t.timescale, t.config.params.codec),
            (7, 90000, Codec::H264)
        );
        assert_eq!((t.config.params.width, t.config.params.height), (320, 240));
        assert!(t.fragmented);
        assert_eq!(
            t.trex,
            vec![(
                1,
                Defaults {
                    duration: 100,
                    size: 50,
                    flags: 0x10000
                }
            )]
        );
        let only_sound = tb::trak(2, b"soun", &tb::avc1_entry(1, 1), &tb::empty_stbl_tables());
        assert!(matches!(
            parsed(&moov_of(&[only_sound], false)),
            Err(Mp4Error::NoVideoTrack)
        ));
    }

    #[test]
    fn size_falls_back_to_the_track_header_and_codecs_are_checked() {
        let video = tb::trak(1, b"vide", &tb::avc1_entry(0, 0), &tb::empty_stbl_tables());
        let t = parsed(&moov_of(&[video], false)).unwrap();
        assert_eq!((t.config.params.width, t.config.params.height), (640, 480));
        assert!(!t.fragmented);
        let mut entry = tb::avc1_entry(320, 240);
        entry[4..8].copy_from_slice(b"mp4v");
        let video = tb::trak(1, b"vide", &entry, &tb::empty_stbl_tables());
        match parsed(&moov_of(&[video], false)) {
            Err(Mp4Error::UnsupportedCodec(c)) => assert_eq!(c, "mp4v"),
            other => panic!("{:?}", other.map(|t| t.id)),
        }
        let hevc = tb::trak(
            1,
            b"vide",
            &tb::hvc1_entry(1920, 1080),
            &tb::empty_stbl_tables(),
        );
        let t = parsed(&moov_of(&[hevc], false)).unwrap();
        assert_eq!(t.config.params.codec, Codec::H265);
        assert_eq!(t.config.params.width, 1920);
    }

    #[test]
    fn every_truncation_of_a_moov_is_an_error() {
        let video = tb::trak(
            1,
            b"vide",
            &tb::avc1_entry(320, 240),
            &tb::empty_stbl_tables(),
        );
        let mut moov = moov_of(&[video], true);
        // Shrinking the declared size along with the data: each cut leaves a well-formed box with a short body.
        let whole = moov.len();
        for cut in 8..whole {
            moov[..4].copy_from_slice(&(cut as u32).to_be_bytes());
            if let Ok(t) = parsed(&moov[..cut]) {
                // Only a cut at or inside the trailing mvex (40 bytes) can leave a usable track.
                assert!(cut >= whole - 40, "cut at {cut} parsed: track {}", t.id);
            }
        }
    }
}
