//! The sample table of a non-fragmented track (ISO/IEC 14496-12 §8.5–8.7): sizes (`stsz`, §8.7.3, one size for
//! all or one per sample), chunk offsets (`stco`/`co64`, §8.7.5), which samples each chunk holds (`stsc`, §8.7.4,
//! run-length coded by first chunk), decode durations (`stts`, §8.6.1.2), composition offsets (`ctts`,
//! §8.6.1.3, unsigned in version 0 but read as signed, as players do, and signed in version 1) and sync samples
//! (`stss`, §8.6.2; absent means every sample is one). The tables are expanded into one [`Sample`] each; the
//! count comes from `stsz` and is capped before anything is allocated.

use super::boxes::{Child, Fields};
use super::{Mp4Error, Sample, MAX_SAMPLES};

/// A track's samples as its `stbl` lists them.
pub(crate) struct Tables {
    pub samples: Vec<Sample>,
    /// Decode time just after the last sample (where a first fragment would start without a `tfdt`).
    pub end_dts: i64,
}

pub(crate) fn parse(stbl: &Child<'_>) -> Result<Tables, Mp4Error> {
    let stsz = stbl.need(b"stsz")?;
    let mut f = stsz.fields();
    f.full_box()?;
    let fixed_size = f.u32()?;
    let count_at = f.offset();
    let count = f.u32()? as usize;
    if count > MAX_SAMPLES {
        return Err(f.error(format!(
            "{count} samples, more than the {MAX_SAMPLES} allowed"
        )));
    }
    if fixed_size == 0 && count > f.remaining() / 4 {
        return Err(Mp4Error::Malformed {
            offset: count_at,
            what: format!("stsz: {count} sizes do not fit"),
        });
    }
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let size = if fixed_size == 0 {
            f.u32()?
        } else {
            fixed_size
        };
        samples.push(Sample {
            offset: 0,
            size,
            dts: 0,
            cts_offset: 0,
            is_sync: true,
        });
    }
    place_in_chunks(stbl, &mut samples)?;
    let end_dts = decode_times(&stbl.need(b"stts")?, &mut samples)?;
    if let Some(ctts) = stbl.child(b"ctts")? {
        composition_offsets(&ctts, &mut samples)?;
    }
    if let Some(stss) = stbl.child(b"stss")? {
        sync_samples(&stss, &mut samples)?;
    }
    Ok(Tables { samples, end_dts })
}

fn place_in_chunks(stbl: &Child<'_>, samples: &mut [Sample]) -> Result<(), Mp4Error> {
    let chunks = chunk_offsets(stbl)?;
    let stsc = stbl.need(b"stsc")?;
    let mut f = stsc.fields();
    f.full_box()?;
    let n = f.count(12)?;
    let mut runs = Vec::with_capacity(n);
    for _ in 0..n {
        let at = f.offset();
        let (first, per_chunk) = (f.u32()?, f.u32()?);
        f.skip(4)?; // sample_description_index
        let previous = runs.last().map_or(0, |&(first, _)| first);
        if first == 0 || first <= previous {
            return Err(Mp4Error::Malformed {
                offset: at,
                what: format!("stsc: first chunk {first} out of order"),
            });
        }
        runs.push((first, per_chunk));
    }
    let mut next = 0usize;
    let mut run = 0usize;
    for (chunk, &chunk_offset) in chunks.iter().enumerate() {
        let number = chunk as u64 + 1;
        while runs
            .get(run + 1)
            .is_some_and(|&(first, _)| u64::from(first) <= number)
        {
            run += 1;
        }
        let Some(&(first, per_chunk)) = runs.get(run) else {
            break;
        };
        if u64::from(first) > number {
            continue; // chunks before the first run hold nothing
        }
        let mut offset = chunk_offset;
        for _ in 0..per_chunk {
            let Some(sample) = samples.get_mut(next) else {
                break;
            };
            sample.offset = offset;
            offset =
                offset
                    .checked_add(u64::from(sample.size))
                    .ok_or_else(|| Mp4Error::Malformed {
                        offset: stsc.offset,
                        what: "stsc: a chunk runs past 2^64".into(),
                    })?;
            next += 1;
        }
    }
    if next < samples.len() {
        return Err(Mp4Error::Malformed {
            offset: stsc.offset,
            what: format!("stsc: chunks hold {next} of {} samples", samples.len()),
        });
    }
    Ok(())
}

fn chunk_offsets(stbl: &Child<'_>) -> Result<Vec<u64>, Mp4Error> {
    let (b, wide) = match (stbl.child(b"stco")?, stbl.child(b"co64")?) {
        (Some(b), _) => (b, false),
        (None, Some(b)) => (b, true),
        (None, None) => {
            return Err(Mp4Error::Malformed {
                offset: stbl.offset,
                what: "stbl: has no stco or co64".into(),
            })
        }
    };
    let mut f = b.fields();
    f.full_box()?;
    let n = f.count(if wide { 8 } else { 4 })?;
    (0..n)
        .map(|_| {
            if wide {
                f.u64()
            } else {
                f.u32().map(u64::from)
            }
        })
        .collect()
}

/// Fills in decode times; returns the time after the last sample.
fn decode_times(stts: &Child<'_>, samples: &mut [Sample]) -> Result<i64, Mp4Error> {
    let mut f = stts.fields();
    f.full_box()?;
    let n = f.count(8)?;
    let mut next = 0usize;
    let mut dts = 0i64;
    for _ in 0..n {
        let (count, delta) = (f.u32()? as usize, i64::from(f.u32()?));
        for s in samples.iter_mut().skip(next).take(count) {
            s.dts = dts;
            dts += delta;
        }
        next = next.saturating_add(count).min(samples.len());
    }
    if next < samples.len() {
        return Err(counts_short(&f, "stts", next, samples.len()));
    }
    Ok(dts)
}

fn composition_offsets(ctts: &Child<'_>, samples: &mut [Sample]) -> Result<(), Mp4Error> {
    let mut f = ctts.fields();
    f.full_box()?;
    let n = f.count(8)?;
    let mut next = 0usize;
    for _ in 0..n {
        let (count, offset) = (f.u32()? as usize, f.u32()? as i32);
        for s in samples.iter_mut().skip(next).take(count) {
            s.cts_offset = offset;
        }
        next = next.saturating_add(count).min(samples.len());
    }
    if next < samples.len() {
        return Err(counts_short(&f, "ctts", next, samples.len()));
    }
    Ok(())
}

fn sync_samples(stss: &Child<'_>, samples: &mut [Sample]) -> Result<(), Mp4Error> {
    let mut f = stss.fields();
    f.full_box()?;
    let n = f.count(4)?;
    samples.iter_mut().for_each(|s| s.is_sync = false);
    for _ in 0..n {
        let at = f.offset();
        let number = f.u32()? as usize;
        match number.checked_sub(1).and_then(|i| samples.get_mut(i)) {
            Some(s) => s.is_sync = true,
            None => {
                return Err(Mp4Error::Malformed {
                    offset: at,
                    what: format!("stss: no sample {number}"),
                });
            }
        }
    }
    Ok(())
}

fn counts_short(f: &Fields<'_>, kind: &str, got: usize, want: usize) -> Mp4Error {
    f.error(format!("{kind} covers {got} of {want} samples"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mp4::boxes::Children;
    use crate::mp4::testbuild::{bx, full, u32s};

    fn stbl(boxes: &[Vec<u8>]) -> Vec<u8> {
        bx(b"stbl", &boxes.concat())
    }

    fn parsed(stbl: &[u8]) -> Result<Tables, Mp4Error> {
        parse(&Children::new(stbl, 0).next().unwrap()?)
    }

    fn stsz(fixed: u32, sizes: &[u32]) -> Vec<u8> {
        let count = if fixed == 0 {
            sizes.len() as u32
        } else {
            sizes[0]
        };
        let mut body = u32s(&[fixed, count]);
        if fixed == 0 {
            body.extend(u32s(sizes));
        }
        full(b"stsz", 0, 0, &body)
    }

    fn table(kind: &[u8; 4], version: u8, entries: &[u32]) -> Vec<u8> {
        let width = match kind {
            b"stsc" => 3,
            b"stts" | b"ctts" => 2,
            _ => 1,
        };
        let mut body = u32s(&[(entries.len() / width) as u32]);
        body.extend(u32s(entries));
        full(kind, version, 0, &body)
    }

    #[test]
    fn expands_chunks_times_offsets_and_sync_samples() {
        // 6 samples: chunks 1-2 hold 2 each, chunk 3 holds 1, chunk 4 holds 1 (stsc with several runs).
        let t = parsed(&stbl(&[
            stsz(0, &[10, 20, 30, 40, 50, 60]),
            table(b"stsc", 0, &[1, 2, 1, 3, 1, 1]),
            table(b"stco", 0, &[1000, 2000, 3000, 4000]),
            table(b"stts", 0, &[4, 100, 2, 50]),
            table(b"ctts", 1, &[1, 200, 4, 0, 1, (-100i32) as u32]),
            table(b"stss", 0, &[1, 5]),
        ]))
        .unwrap();
        let got: Vec<_> = t
            .samples
            .iter()
            .map(|s| (s.offset, s.size, s.dts, s.cts_offset, s.is_sync))
            .collect();
        assert_eq!(
            got,
            vec![
                (1000, 10, 0, 200, true),
                (1010, 20, 100, 0, false),
                (2000, 30, 200, 0, false),
                (2030, 40, 300, 0, false),
                (3000, 50, 400, 0, true),
                (4000, 60, 450, -100, false),
            ]
        );
        assert_eq!(t.end_dts, 500);
    }

    #[test]
    fn fixed_sizes_co64_and_no_stss() {
        let t = parsed(&stbl(&[
            stsz(8, &[3]),
            table(b"stsc", 0, &[1, 3, 1]),
            full(
                b"co64",
                0,
                0,
                &[u32s(&[1]), (1u64 << 33).to_be_bytes().to_vec()].concat(),
            ),
            table(b"stts", 0, &[3, 1]),
        ]))
        .unwrap();
        let got: Vec<_> = t
            .samples
            .iter()
            .map(|s| (s.offset, s.size, s.is_sync))
            .collect();
        assert_eq!(
            got,
            vec![
                (1 << 33, 8, true),
                ((1 << 33) + 8, 8, true),
                ((1 << 33) + 16, 8, true)
            ]
        );
    }

    #[test]
    fn inconsistent_or_hostile_tables_are_errors() {
        let good = [
            stsz(0, &[10, 20]),
            table(b"stsc", 0, &[1, 1, 1]),
            table(b"stco", 0, &[100, 200]),
            table(b"stts", 0, &[2, 10]),
        ];
        assert!(parsed(&stbl(&good)).is_ok());
        let cases: Vec<(usize, Vec<u8>, bool)> = vec![
            (0, stsz(1, &[u32::MAX]), false), // billions of samples of fixed size
            (0, full(b"stsz", 0, 0, &u32s(&[0, 1000, 10])), false), // 1000 sizes in 4 bytes
            (1, table(b"stsc", 0, &[2, 1, 1, 1, 1, 1]), false), // runs out of order
            (1, table(b"stsc", 0, &[0, 1, 1]), false), // chunk 0
            (1, table(b"stsc", 0, &[2, 1, 1]), false), // chunk 1 holds nothing: 1 of 2 samples
            (2, table(b"stco", 0, &[100]), false), // too few chunks
            (2, full(b"stco", 0, 0, &u32s(&[u32::MAX])), false), // count past the box
            (3, table(b"stts", 0, &[1, 10]), false), // too few durations
            (3, table(b"stts", 0, &[u32::MAX, 10, u32::MAX, 10]), true), // more than enough is fine
        ];
        for (slot, replacement, ok) in cases {
            let mut boxes = good.to_vec();
            boxes[slot] = replacement;
            assert_eq!(parsed(&stbl(&boxes)).is_ok(), ok, "slot {slot}");
        }
        let mut with_stss = good.to_vec();
        with_stss.push(table(b"stss", 0, &[3]));
        assert!(parsed(&stbl(&with_stss)).is_err(), "sync sample 3 of 2");
        with_stss.pop();
        with_stss.push(table(b"stss", 0, &[0]));
        assert!(parsed(&stbl(&with_stss)).is_err(), "sync sample 0");
        with_stss.pop();
        with_stss.push(table(b"ctts", 0, &[1, 5]));
        assert!(
            parsed(&stbl(&with_stss)).is_err(),
            "ctts for 1 of 2 samples"
        );
        let offset_overflow = [
            stsz(0, &[10, 20]),
            table(b"stsc", 0, &[1, 2, 1]),
            full(
                b"co64",
                0,
                0,
                &[u32s(&[1]), (u64::MAX - 5).to_be_bytes().to_vec()].concat(),
            ),
            table(b"stts", 0, &[2, 10]),
        ];
        assert!(parsed(&stbl(&offset_overflow)).is_err());
        assert!(parsed(&stbl(&good[1..])).is_err(), "no stsz");
        assert!(
            parsed(&stbl(&[good[0].clone(), good[1].clone(), good[3].clone()])).is_err(),
            "no stco"
        );
    }
}
