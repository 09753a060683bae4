//! Building and extending a [`SampleIndex`] by walking the top-level boxes of a file (ISO/IEC 14496-12 §4.2,
//! §8.1–8.2, §8.8): headers only, until the `moov`; its tables; then each complete `moof` (§8.8.4) after it. A
//! fragment counts only once every sample byte it lists is in the file, so a growing file is indexed up to its
//! last complete fragment whatever order its `moof` and `mdat` come in, and the walk resumes there. The sample
//! tables a `moov` lists must lie in the file; a file whose last box is cut short stops the walk, not the index.

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use super::boxes::{self, malformed, Child};
use super::{config, fragment, track};
use super::{Mp4Error, Sample, SampleIndex, MAX_MOOF_BYTES, MAX_MOOV_BYTES, MAX_SAMPLES};

impl SampleIndex {
    /// Reads box headers and the sample tables (the `moov`, then every complete `moof`), never `mdat` payloads.
    /// A file still being written is indexed up to the last complete fragment whose sample bytes are all in the
    /// file; [`Mp4Error::NoMoov`] before its `moov` exists.
    pub fn read<R: Read + Seek>(r: &mut R) -> Result<SampleIndex, Mp4Error> {
        let file_len = r.seek(SeekFrom::End(0))?;
        let mut pos = 0;
        let header = loop {
            // `moof`s before the `moov` are skipped: only a file caught mid-finalization has them, and its
            // new `moov` will list their samples.
            let h = boxes::top_level(r, pos, file_len)?.ok_or(Mp4Error::NoMoov)?;
            if &h.kind == b"moov" {
                break h;
            }
            pos = h.end();
        };
        let body = boxes::load_body(r, &header, MAX_MOOV_BYTES)?;
        let moov = Child {
            kind: header.kind,
            offset: header.offset,
            body: &body,
            body_offset: header.body_offset(),
        };
        let track = track::parse(&moov)?;
        let mut index = SampleIndex {
            codec: track.config.params.codec,
            params: Arc::new(track.config.params),
            timescale: track.timescale,
            samples: Vec::new(),
            track_id: track.id,
            nal_length: track.config.nal_length,
            trex: track.trex,
            fragmented: track.fragmented,
            moov_offset: header.offset,
            scan_pos: header.end(),
            seen_len: file_len,
            end_dts: track.tables.end_dts,
            syncs: Vec::new(),
        };
        if let Some(s) = track.tables.samples.iter().find(|s| !in_file(s, file_len)) {
            return Err(Mp4Error::Malformed {
                offset: header.offset,
                what: format!(
                    "moov lists a sample at {} past the end of the file",
                    s.offset
                ),
            });
        }
        index.append(track.tables.samples);
        if index.fragmented {
            index.walk(r, file_len)?;
        }
        if !config::complete(&index.params) {
            index.params_from_first_sample(r)?;
        }
        Ok(index)
    }

    /// For a segment still being written: indexes the fragments completed since, and returns how many samples
    /// were added. When the file was finalized meanwhile, takes the final `moov`'s samples past the indexed
    /// ones (after checking it lists the indexed ones the same). Costs one seek and one 4-byte read when nothing
    /// changed; a finalized index returns 0 at once.
    pub fn refresh<R: Read + Seek>(&mut self, r: &mut R) -> Result<usize, Mp4Error> {
        if !self.fragmented {
            return Ok(0);
        }
        let file_len = r.seek(SeekFrom::End(0))?;
        // mp4mux finalizes by renaming the fragmented `moov` to `hoov` and appending a full one; what it
        // writes after the last fragment is no longer a chain of top-level boxes, so the walk cannot see it.
        // The rename need not come with growth, so it is checked first.
        let mut kind = [0u8; 4];
        r.seek(SeekFrom::Start(self.moov_offset + 4))?;
        r.read_exact(&mut kind)?;
        if &kind != b"moov" {
            return self.adopt_finalized(r);
        }
        if file_len == self.seen_len {
            return Ok(0);
        }
        if file_len < self.seen_len {
            return Err(Mp4Error::Malformed {
                offset: file_len,
                what: format!("the file shrank from {} bytes", self.seen_len),
            });
        }
        let before = self.samples.len();
        self.walk(r, file_len)?;
        Ok(self.samples.len() - before)
    }

    /// Indexes the complete fragments from `scan_pos` on.
    fn walk<R: Read + Seek>(&mut self, r: &mut R, file_len: u64) -> Result<(), Mp4Error> {
        while let Some(h) = boxes::top_level(r, self.scan_pos, file_len)? {
            match &h.kind {
                b"moof" => {
                    let body = boxes::load_body(r, &h, MAX_MOOF_BYTES)?;
                    let moof = Child {
                        kind: h.kind,
                        offset: h.offset,
                        body: &body,
                        body_offset: h.body_offset(),
                    };
                    let room = MAX_SAMPLES - self.samples.len();
                    let frag =
                        fragment::parse(&moof, self.track_id, &self.trex, self.end_dts, room)?;
                    if !frag.samples.iter().all(|s| in_file(s, file_len)) {
                        // Its mdat is still being written (moof-first order): try again from this moof.
                        break;
                    }
                    self.end_dts = frag.end_dts;
                    self.append(frag.samples);
                }
                b"moov" => return Err(malformed(h.offset, &h.kind, "a second moov".into())),
                _ => {}
            }
            self.scan_pos = h.end();
        }
        self.seen_len = file_len;
        Ok(())
    }

    fn adopt_finalized<R: Read + Seek>(&mut self, r: &mut R) -> Result<usize, Mp4Error> {
        let fresh = match SampleIndex::read(r) {
            // Renamed, but the new moov is not all written yet: nothing new so far.
            Err(Mp4Error::NoMoov) => return Ok(0),
            other => other?,
        };
        let n = self.samples.len();
        if fresh.track_id != self.track_id || fresh.samples.get(..n) != Some(&self.samples[..]) {
            return Err(Mp4Error::Malformed {
                offset: fresh.moov_offset,
                what: "the finalized moov does not list the samples the fragments did".into(),
            });
        }
        let added = fresh.samples.len() - n;
        *self = fresh;
        Ok(added)
    }

    /// For `avc3`/`hev1` tracks whose sample entry has no parameter sets: the first sample's in-band ones.
    fn params_from_first_sample<R: Read + Seek>(&mut self, r: &mut R) -> Result<(), Mp4Error> {
        if self.samples.is_empty() {
            return Err(Mp4Error::MissingParameterSets);
        }
        match self.read_sample(r, 0)?.params {
            Some(p) if config::complete(&p) => {
                self.params = Arc::new(p);
                Ok(())
            }
            _ => Err(Mp4Error::MissingParameterSets),
        }
    }

    fn append(&mut self, samples: Vec<Sample>) {
        for s in samples {
            if s.is_sync {
                self.syncs.push(self.samples.len());
            }
            self.samples.push(s);
        }
    }
}

fn in_file(s: &Sample, file_len: u64) -> bool {
    s.offset
        .checked_add(u64::from(s.size))
        .is_some_and(|end| end <= file_len)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::mp4::testbuild::{self as tb, bx, full, u32s, PPS_264, SPS_264};

    fn nal(unit: &[u8]) -> Vec<u8> {
        [(unit.len() as u32).to_be_bytes().to_vec(), unit.to_vec()].concat()
    }

    /// Sample `k`: a keyframe with in-band SPS and PPS when `key`, else a P slice.
    fn sample(k: u8, key: bool) -> Vec<u8> {
        if key {
            [nal(SPS_264), nal(PPS_264), nal(&[0x65, k, k])].concat()
        } else {
            nal(&[0x41, k])
        }
    }

    fn moov(tables: &[u8], mvex: bool) -> Vec<u8> {
        let mut body = tb::trak(1, b"vide", &tb::avc1_entry(320, 240), tables);
        if mvex {
            let trex = full(b"trex", 0, 0, &u32s(&[1, 1, 3000, 0, 0x10000]));
            body.extend(bx(b"mvex", &trex));
        }
        bx(b"moov", &body)
    }

    /// ftyp, mdat with samples 0..4 (0 a keyframe), moov with their tables (3000 ticks of 90 kHz each).
    fn normal_file() -> Vec<u8> {
        let samples: Vec<Vec<u8>> = (0..4).map(|k| sample(k, k == 0)).collect();
        let mut file = bx(b"ftyp", b"isomiso2");
        let payload_at = file.len() as u32 + 8;
        file.extend(bx(b"mdat", &samples.concat()));
        let sizes: Vec<u32> = samples.iter().map(|s| s.len() as u32).collect();
        file.extend(moov(&tb::sample_tables(&sizes, payload_at, 3000), false));
        file
    }

    /// A moof (default-base-is-moof, tfdt `dts`) listing `samples`, followed by their mdat.
    fn fragment(samples: &[Vec<u8>], dts: u64) -> Vec<u8> {
        let build = |data_offset: u32| {
            let mut trun = u32s(&[samples.len() as u32, data_offset]);
            for (i, s) in samples.iter().enumerate() {
                trun.extend(u32s(&[s.len() as u32, if i == 0 { 0 } else { 0x10000 }]));
            }
            let traf = [
                full(b"tfhd", 0, 0x02_0000, &u32s(&[1])),
                full(b"tfdt", 1, 0, &dts.to_be_bytes()),
                full(b"trun", 0, 0x601, &trun),
            ]
            .concat();
            bx(
                b"moof",
                &[full(b"mfhd", 0, 0, &u32s(&[1])), bx(b"traf", &traf)].concat(),
            )
        };
        let moof = build(0);
        let moof = build(moof.len() as u32 + 8);
        [moof, bx(b"mdat", &samples.concat())].concat()
    }

    /// ftyp, moov announcing fragments, then two fragments of two samples; and where each fragment ends.
    fn fragmented_file() -> (Vec<u8>, [usize; 2]) {
        let mut file = bx(b"ftyp", b"iso6iso6");
        file.extend(moov(&tb::empty_stbl_tables(), true));
        file.extend(fragment(&[sample(0, true), sample(1, false)], 0));
        let first = file.len();
        file.extend(fragment(&[sample(2, true), sample(3, false)], 6000));
        (file.clone(), [first, file.len()])
    }

    #[test]
    fn reads_a_normal_file() {
        let file = normal_file();
        let mut r = Cursor::new(&file);
        let index = SampleIndex::read(&mut r).unwrap();
        assert_eq!(
            (index.samples.len(), index.timescale, index.is_finalized()),
            (4, 90000, true)
        );
        assert_eq!(&index.params.sps[..], SPS_264);
        assert_eq!((index.params.width, index.params.height), (320, 240));
        let key = index.read_sample(&mut r, 0).unwrap();
        assert_eq!(&key.data[..], &nal(&[0x65, 0, 0])[..]);
        assert_eq!(key.params.as_ref().map(|p| &p.sps[..]), Some(SPS_264));
        let p = index.read_sample(&mut r, 3).unwrap();
        assert_eq!((&p.data[..], p.params), (&nal(&[0x41, 3])[..], None));
        assert!(matches!(
            index.read_sample(&mut r, 4),
            Err(Mp4Error::NoSuchSample(4))
        ));
        assert_eq!((index.pts_90k(3), index.end_90k()), (9000, 12000));
        assert_eq!(
            (index.sync_at_or_before(9000), index.sync_at_or_before(-5)),
            (Some(0), Some(0))
        );
        assert_eq!((index.next_sync(0), index.next_sync(1)), (Some(0), None));
        let mut again = index.clone();
        assert_eq!(again.refresh(&mut r).unwrap(), 0);
    }

    #[test]
    fn every_prefix_of_a_normal_file_is_an_error_until_it_is_whole() {
        let file = normal_file();
        for cut in 0..file.len() {
            assert!(
                SampleIndex::read(&mut Cursor::new(&file[..cut])).is_err(),
                "cut at {cut}"
            );
        }
        // A moov listing samples past the end of the file: its mdat was cut short.
        let mut short_mdat = normal_file();
        short_mdat.drain(30..34);
        short_mdat[16..20]
            .copy_from_slice(&(u32::from_be_bytes([0, 0, 0, 0]) + 8 + 30).to_be_bytes());
        assert!(SampleIndex::read(&mut Cursor::new(&short_mdat)).is_err());
    }

    #[test]
    fn a_growing_fragmented_file_is_indexed_fragment_by_fragment() {
        let (file, ends) = fragmented_file();
        let whole = SampleIndex::read(&mut Cursor::new(&file)).unwrap();
        assert_eq!(
            whole.samples.iter().map(|s| s.dts).collect::<Vec<_>>(),
            vec![0, 3000, 6000, 9000]
        );
        assert_eq!(whole.syncs, vec![0, 2]);
        assert!(!whole.is_finalized());
        for cut in 0..=file.len() {
            let expected = ends.iter().filter(|&&end| end <= cut).count() * 2;
            let mut grow = Cursor::new(file[..cut].to_vec());
            let mut index = match SampleIndex::read(&mut grow) {
                Ok(index) => index,
                Err(Mp4Error::NoMoov) => continue,
                Err(e) => panic!("cut at {cut}: {e}"),
            };
            assert_eq!(index.samples.len(), expected, "cut at {cut}");
            assert_eq!(index.refresh(&mut grow).unwrap(), 0, "nothing changed");
            grow.get_mut().extend_from_slice(&file[cut..]);
            assert_eq!(
                index.refresh(&mut grow).unwrap(),
                4 - expected,
                "cut at {cut}"
            );
            assert_eq!(index.samples, whole.samples);
            assert_eq!(index.syncs, whole.syncs);
            for i in 0..4 {
                assert_eq!(
                    index.read_sample(&mut grow, i).unwrap(),
                    whole.read_sample(&mut Cursor::new(&file), i).unwrap()
                );
            }
        }
    }

    #[test]
    fn refresh_takes_the_finalized_moov() {
        let (file, _) = fragmented_file();
        let mut r = Cursor::new(file.clone());
        let mut index = SampleIndex::read(&mut r).unwrap();
        // What mp4mux does: a fifth sample after the fragments (in a size-0 mdat no moof describes), a moov with
        // the tables of all five, and the fragmented moov renamed. mp4mux also grows the first mdat to cover
        // everything up to the new moov; here the renamed box does that.
        let finalize = |first_size: u32| {
            let mut f = file.clone();
            let moov_at = index.moov_offset as usize;
            f[moov_at + 4..moov_at + 8].copy_from_slice(b"hoov");
            let fifth_at = f.len() as u32 + 8;
            f.extend([0, 0, 0, 0]);
            f.extend_from_slice(b"mdat");
            f.extend(sample(4, false));
            let s: Vec<&Sample> = index.samples.iter().collect();
            let sizes = [
                first_size,
                s[1].size,
                s[2].size,
                s[3].size,
                sample(4, false).len() as u32,
            ];
            let mut stsz = u32s(&[0, 5]);
            stsz.extend(u32s(&sizes));
            let tables = [
                full(b"stsz", 0, 0, &stsz),
                full(b"stsc", 0, 0, &u32s(&[2, 1, 2, 1, 3, 1, 1])),
                full(
                    b"stco",
                    0,
                    0,
                    &u32s(&[3, s[0].offset as u32, s[2].offset as u32, fifth_at]),
                ),
                full(b"stts", 0, 0, &u32s(&[1, 5, 3000])),
                full(b"stss", 0, 0, &u32s(&[2, 1, 3])),
            ]
            .concat();
            let final_at = f.len();
            f[moov_at..moov_at + 4].copy_from_slice(&((final_at - moov_at) as u32).to_be_bytes());
            f.extend(moov(&tables, false));
            f
        };
        // Renamed, but the new moov not all written yet: nothing new, and the next refresh looks again.
        let mut unfinished = finalize(index.samples[0].size);
        unfinished.truncate(unfinished.len() - 10);
        assert_eq!(
            index.clone().refresh(&mut Cursor::new(unfinished)).unwrap(),
            0
        );
        // A file that shrank is not the one indexed.
        assert!(index
            .clone()
            .refresh(&mut Cursor::new(&file[..file.len() - 1]))
            .is_err());
        let mut bad = Cursor::new(finalize(index.samples[0].size + 1));
        assert!(
            index.clone().refresh(&mut bad).is_err(),
            "a final moov that disagrees"
        );
        let mut r = Cursor::new(finalize(index.samples[0].size));
        assert_eq!(index.refresh(&mut r).unwrap(), 1);
        assert!(index.is_finalized());
        assert_eq!(index.samples.len(), 5);
        assert_eq!(
            &index.read_sample(&mut r, 4).unwrap().data[..],
            &nal(&[0x41, 4])[..]
        );
        assert_eq!(index.refresh(&mut r).unwrap(), 0);
    }

    #[test]
    fn hostile_fragments_fail_the_index_not_the_process() {
        let mut file = bx(b"ftyp", b"iso6iso6");
        file.extend(moov(&tb::empty_stbl_tables(), true));
        let traf = [
            full(b"tfhd", 0, 0, &u32s(&[1])),
            full(b"trun", 0, 0, &u32s(&[u32::MAX])),
        ]
        .concat();
        file.extend(bx(b"moof", &bx(b"traf", &traf)));
        assert!(SampleIndex::read(&mut Cursor::new(&file)).is_err());
        // A size-0 box ends the walk: it reaches the end of a file that may still grow.
        let mut zero = bx(b"ftyp", b"iso6iso6");
        zero.extend(moov(&tb::empty_stbl_tables(), true));
        zero.extend([0, 0, 0, 0, b'm', b'o', b'o', b'f', 1, 2, 3]);
        assert_eq!(
            SampleIndex::read(&mut Cursor::new(&zero))
                .unwrap()
                .samples
                .len(),
            0
        );
        let mut garbage = vec![0u8; 64];
        garbage[3] = 3;
        assert!(matches!(
            SampleIndex::read(&mut Cursor::new(&garbage)),
            Err(Mp4Error::Malformed { .. })
        ));
        assert!(matches!(
            SampleIndex::read(&mut Cursor::new(vec![0xffu8; 64])),
            Err(Mp4Error::NoMoov)
        ));
        assert!(matches!(
            SampleIndex::read(&mut Cursor::new(Vec::new())),
            Err(Mp4Error::NoMoov)
        ));
    }
}
