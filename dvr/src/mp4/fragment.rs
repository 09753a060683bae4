//! Movie fragments (ISO/IEC 14496-12 §8.8): a `moof` holds one `traf` per track, each with a header (`tfhd`,
//! §8.8.7: track id, and optionally a base data offset and default duration, size and flags that override the
//! `trex` ones), a base decode time (`tfdt`, §8.8.12, 32 or 64 bits) and runs of samples (`trun`, §8.8.8: a
//! count, an optional data offset and first-sample flags, then per sample whichever of duration, size, flags and
//! composition offset the flags announce). Data offsets count from the base: the `tfhd`'s explicit one, else the
//! `moof`'s first byte (`default-base-is-moof`, and always for the first `traf`), else the end of the previous
//! `traf`'s data; a run without its own offset follows the previous run. A sample is a sync sample unless its
//! flags set `sample_is_non_sync_sample` (§8.8.3.1).

use super::boxes::{Child, Fields};
use super::track::Defaults;
use super::{Mp4Error, Sample, MAX_SAMPLES};

const TFHD_BASE_DATA_OFFSET: u32 = 0x01;
const TFHD_SAMPLE_DESCRIPTION_INDEX: u32 = 0x02;
const TFHD_DEFAULT_DURATION: u32 = 0x08;
const TFHD_DEFAULT_SIZE: u32 = 0x10;
const TFHD_DEFAULT_FLAGS: u32 = 0x20;
const TFHD_DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;

const TRUN_DATA_OFFSET: u32 = 0x01;
const TRUN_FIRST_SAMPLE_FLAGS: u32 = 0x04;
const TRUN_DURATION: u32 = 0x100;
const TRUN_SIZE: u32 = 0x200;
const TRUN_FLAGS: u32 = 0x400;
const TRUN_COMPOSITION_OFFSET: u32 = 0x800;

const SAMPLE_IS_NON_SYNC: u32 = 0x01_0000;

/// The samples one `moof` holds for a track.
pub(crate) struct Fragment {
    pub samples: Vec<Sample>,
    /// Decode time after the last sample.
    pub end_dts: i64,
}

/// Reads the samples of track `track_id` from a `moof`. `next_dts` is where the track's previous samples ended
/// (used when a `traf` has no `tfdt`); `trex` the movie's per-track defaults; `room` how many more samples the
/// index may take.
pub(crate) fn parse(
    moof: &Child<'_>,
    track_id: u32,
    trex: &[(u32, Defaults)],
    next_dts: i64,
    room: usize,
) -> Result<Fragment, Mp4Error> {
    let mut out = Fragment {
        samples: Vec::new(),
        end_dts: next_dts,
    };
    // Where the previous traf's data ended: the implicit base of the next one.
    let mut previous_end: Option<u64> = None;
    for traf in moof.children() {
        let traf = traf?;
        if &traf.kind != b"traf" {
            continue;
        }
        let mut h = traf.need(b"tfhd")?.fields();
        let (_, flags) = h.full_box()?;
        let id = h.u32()?;
        let mut base = match previous_end {
            Some(end) if flags & TFHD_DEFAULT_BASE_IS_MOOF == 0 => end,
            _ => moof.offset,
        };
        if flags & TFHD_BASE_DATA_OFFSET != 0 {
            base = h.u64()?;
        }
        if flags & TFHD_SAMPLE_DESCRIPTION_INDEX != 0 {
            h.skip(4)?;
        }
        let mut defaults = trex
            .iter()
            .find(|(t, _)| *t == id)
            .map(|&(_, d)| d)
            .unwrap_or_default();
        if flags & TFHD_DEFAULT_DURATION != 0 {
            defaults.duration = h.u32()?;
        }
        if flags & TFHD_DEFAULT_SIZE != 0 {
            defaults.size = h.u32()?;
        }
        if flags & TFHD_DEFAULT_FLAGS != 0 {
            defaults.flags = h.u32()?;
        }
        let mine = id == track_id;
        let mut dts = if mine { out.end_dts } else { 0 };
        if let Some(tfdt) = traf.child(b"tfdt")? {
            let mut f = tfdt.fields();
            let (version, _) = f.full_box()?;
            let at = f.offset();
            dts = i64::try_from(f.u32_or_u64(version)?).map_err(|_| Mp4Error::Malformed {
                offset: at,
                what: "tfdt: decode time past 2^63".into(),
            })?;
        }
        let mut data = base;
        for trun in traf.children() {
            let trun = trun?;
            if &trun.kind != b"trun" {
                continue;
            }
            let limit = if mine {
                room.saturating_sub(out.samples.len())
            } else {
                MAX_SAMPLES
            };
            let sink = if mine { Some(&mut out.samples) } else { None };
            (data, dts) = run(&mut trun.fields(), base, data, dts, &defaults, limit, sink)?;
        }
        if mine {
            out.end_dts = dts;
        }
        previous_end = Some(data);
    }
    Ok(out)
}

/// Reads one `trun`: returns where its data ended and the decode time after it, and appends its samples to `sink`
/// (`None` for another track's run, read only for its data length).
fn run(
    f: &mut Fields<'_>,
    base: u64,
    mut data: u64,
    mut dts: i64,
    defaults: &Defaults,
    limit: usize,
    mut sink: Option<&mut Vec<Sample>>,
) -> Result<(u64, i64), Mp4Error> {
    let (_, flags) = f.full_box()?;
    let per_sample = [
        TRUN_DURATION,
        TRUN_SIZE,
        TRUN_FLAGS,
        TRUN_COMPOSITION_OFFSET,
    ]
    .iter()
    .filter(|&&bit| flags & bit != 0)
    .count()
        * 4;
    let count_at = f.offset();
    let count = f.count(per_sample)?;
    // With every field defaulted the box bounds nothing: the index's own cap does.
    if count > limit {
        return Err(Mp4Error::Malformed {
            offset: count_at,
            what: format!("trun: {count} samples, more than the {MAX_SAMPLES} an index may hold"),
        });
    }
    if flags & TRUN_DATA_OFFSET != 0 {
        let at = f.offset();
        let offset = f.u32()? as i32;
        data = base
            .checked_add_signed(i64::from(offset))
            .ok_or_else(|| Mp4Error::Malformed {
                offset: at,
                what: "trun: data offset out of range".into(),
            })?;
    }
    let first_flags = if flags & TRUN_FIRST_SAMPLE_FLAGS != 0 {
        Some(f.u32()?)
    } else {
        None
    };
    if let Some(samples) = sink.as_deref_mut() {
        samples.reserve(count);
    }
    for i in 0..count {
        let at = f.offset();
        let duration = if flags & TRUN_DURATION != 0 {
            f.u32()?
        } else {
            defaults.duration
        };
        let size = if flags & TRUN_SIZE != 0 {
            f.u32()?
        } else {
            defaults.size
        };
        let sample_flags = match (flags & TRUN_FLAGS != 0, first_flags) {
            (true, _) => f.u32()?,
            (false, Some(first)) if i == 0 => first,
            _ => defaults.flags,
        };
        // Version 0 offsets are unsigned; read as signed like every player, since no real offset nears 2^31.
        let cts_offset = if flags & TRUN_COMPOSITION_OFFSET != 0 {
            f.u32()? as i32
        } else {
            0
        };
        if let Some(samples) = sink.as_deref_mut() {
            samples.push(Sample {
                offset: data,
                size,
                dts,
                cts_offset,
                is_sync: sample_flags & SAMPLE_IS_NON_SYNC == 0,
            });
        }
        data = data
            .checked_add(u64::from(size))
            .ok_or_else(|| Mp4Error::Malformed {
                offset: at,
                what: "trun: sample data past 2^64".into(),
            })?;
        dts = dts
            .checked_add(i64::from(duration))
            .ok_or_else(|| Mp4Error::Malformed {
                offset: at,
                what: "trun: decode time past 2^63".into(),
            })?;
    }
    Ok((data, dts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mp4::boxes::Children;
    use crate::mp4::testbuild::{bx, full, u32s};

    fn tfhd(flags: u32, id: u32, fields: &[u32]) -> Vec<u8> {
        full(b"tfhd", 0, flags, &u32s(&[&[id][..], fields].concat()))
    }

    fn trun(flags: u32, count: u32, fields: &[u32]) -> Vec<u8> {
        full(b"trun", 0, flags, &u32s(&[&[count][..], fields].concat()))
    }

    fn tfdt(version: u8, t: u64) -> Vec<u8> {
        let body = if version == 0 {
            (t as u32).to_be_bytes().to_vec()
        } else {
            t.to_be_bytes().to_vec()
        };
        full(b"tfdt", version, 0, &body)
    }

    /// A moof at file offset 1000 with the given trafs.
    fn frag(
        trafs: &[Vec<Vec<u8>>],
        track: u32,
        trex: &[(u32, Defaults)],
    ) -> Result<Fragment, Mp4Error> {
        let body: Vec<u8> = trafs
            .iter()
            .map(|t| bx(b"traf", &t.concat()))
            .collect::<Vec<_>>()
            .concat();
        let moof = bx(b"moof", &[bx(b"mfhd", &[0; 8]), body].concat());
        let child = Children::new(&moof, 1000).next().unwrap()?;
        parse(&child, track, trex, 7, MAX_SAMPLES)
    }

    fn brief(f: &Fragment) -> Vec<(u64, u32, i64, i32, bool)> {
        f.samples
            .iter()
            .map(|s| (s.offset, s.size, s.dts, s.cts_offset, s.is_sync))
            .collect()
    }

    #[test]
    fn mp4muxs_fragments() {
        // What GStreamer writes: an explicit base (the mdat before the moof), per-sample duration, size and flags.
        let f = frag(
            &[vec![
                tfhd(0x01, 1, &[0, 500]),
                tfdt(0, 1200),
                trun(0x701, 2, &[16, 100, 30, 0x40, 100, 20, 0x10000]),
            ]],
            1,
            &[],
        )
        .unwrap();
        assert_eq!(
            brief(&f),
            vec![(516, 30, 1200, 0, true), (546, 20, 1300, 0, false)]
        );
        assert_eq!(f.end_dts, 1400);
        // The one-sample kind: every value a tfhd default.
        let f = frag(
            &[vec![
                tfhd(0x39, 1, &[0, 500, 100, 0xab, 0x10000]),
                tfdt(0, 2400),
                trun(0x01, 1, &[16]),
            ]],
            1,
            &[],
        )
        .unwrap();
        assert_eq!(brief(&f), vec![(516, 0xab, 2400, 0, false)]);
    }

    #[test]
    fn implicit_bases_trex_defaults_and_first_sample_flags() {
        let trex = [
            (
                1,
                Defaults {
                    duration: 10,
                    size: 5,
                    flags: 0x10000,
                },
            ),
            (
                2,
                Defaults {
                    duration: 1,
                    size: 3,
                    flags: 0,
                },
            ),
        ];
        // traf 1 (track 2): base is the moof, 2 samples of 3 bytes from moof+100. traf 2 (track 1): base is
        // where traf 1's data ended (1106); its first run has no offset, the second one continues after it.
        let f = frag(
            &[
                vec![tfhd(0, 2, &[]), trun(0x01, 2, &[100])],
                vec![
                    tfhd(0, 1, &[]),
                    trun(0x04, 2, &[0]),
                    trun(0x800, 1, &[(-20i32) as u32]),
                ],
            ],
            1,
            &trex,
        )
        .unwrap();
        assert_eq!(
            brief(&f),
            vec![
                (1106, 5, 7, 0, true),
                (1111, 5, 17, 0, false),
                (1116, 5, 27, -20, false)
            ],
            "no tfdt: continues from the track's previous end"
        );
        // default-base-is-moof for a second traf; tfdt version 1.
        let f = frag(
            &[
                vec![tfhd(0, 2, &[]), trun(0x01, 2, &[100])],
                vec![
                    tfhd(0x02_0000, 1, &[]),
                    tfdt(1, 1 << 40),
                    trun(0x201, 1, &[50, 9]),
                ],
            ],
            1,
            &trex,
        )
        .unwrap();
        assert_eq!(brief(&f), vec![(1050, 9, 1 << 40, 0, false)]);
        // Another track's fragment adds nothing.
        assert!(frag(&[vec![tfhd(0, 2, &[]), trun(0, 4, &[])]], 1, &trex)
            .unwrap()
            .samples
            .is_empty());
    }

    #[test]
    fn hostile_fragments_are_errors() {
        let cases = [
            vec![tfhd(0, 1, &[]), trun(0x100, 1000, &[1])], // 1000 durations in 4 bytes
            vec![tfhd(0, 1, &[]), trun(0, u32::MAX, &[])],  // all defaults: no bound but the cap
            vec![
                tfhd(0x01, 1, &[u32::MAX, u32::MAX]),
                trun(0x201, 1, &[0x7fff_ffff, 5]),
            ], // offset past 2^64
            vec![tfhd(0x01, 1, &[0])],                      // tfhd cut short
            vec![tfhd(0, 1, &[]), tfdt(1, u64::MAX)],       // decode time past i64
            vec![trun(0x200, 1, &[5])],                     // no tfhd
        ];
        for (i, traf) in cases.into_iter().enumerate() {
            assert!(frag(&[traf], 1, &[]).is_err(), "case {i}");
        }
        // Every truncation of a real-shaped traf, with the traf size following the cut, is an error or a fragment
        // with fewer samples (none at all before the trun is whole), each one of the whole traf's. The fuzz target
        // `mp4_sample_reader` (fuzz/) tries the rest.
        let traf = [
            tfhd(0x39, 1, &[0, 500, 100, 0xab, 0]),
            tfdt(1, 2400),
            trun(0xf05, 2, &[16, 0, 1, 2, 3, 4, 5, 6, 7, 8]),
        ]
        .concat();
        let whole = brief(&frag(&[vec![traf.clone()]], 1, &[]).unwrap());
        assert_eq!(whole.len(), 2);
        for cut in 0..traf.len() {
            if let Ok(f) = frag(&[vec![traf[..cut].to_vec()]], 1, &[]) {
                assert!(
                    whole.starts_with(&brief(&f)),
                    "cut at {cut}: {:?}",
                    brief(&f)
                );
                assert!(f.samples.len() < whole.len(), "cut at {cut}");
            }
        }
    }
}
