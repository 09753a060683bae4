//! Hand-built boxes for the unit tests, laid out as ISO/IEC 14496-12 §4.2 (box and full box headers), §8.3–8.5
//! (`trak` and its sample entry, a `VisualSampleEntry`) and ISO/IEC 14496-15 §5.3.3 and §8.3.3 (`avcC`, `hvcC`)
//! describe them: just enough of each for the parsers to have something real to read.

/// A box with a 32-bit size.
pub(crate) fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut b = ((8 + body.len()) as u32).to_be_bytes().to_vec();
    b.extend_from_slice(kind);
    b.extend_from_slice(body);
    b
}

/// A full box: version and flags before the body.
pub(crate) fn full(kind: &[u8; 4], version: u8, flags: u32, body: &[u8]) -> Vec<u8> {
    let mut b = (u32::from(version) << 24 | flags).to_be_bytes().to_vec();
    b.extend_from_slice(body);
    bx(kind, &b)
}

pub(crate) fn u32s(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

/// An H.264 SPS (constrained baseline, level 1.3).
pub(crate) const SPS_264: &[u8] = &[0x67, 0x42, 0xc0, 0x0d, 0xda, 0x05, 0x07, 0xec];
pub(crate) const PPS_264: &[u8] = &[0x68, 0xce, 0x3c, 0x80];

/// An `avcC` record body with `length_size`-byte NAL lengths.
pub(crate) fn avcc(length_size: u8, sps: &[&[u8]], pps: &[&[u8]]) -> Vec<u8> {
    let profile = sps
        .first()
        .map_or([0x42, 0xc0, 0x0d], |s| [s[1], s[2], s[3]]);
    let mut b = vec![
        1,
        profile[0],
        profile[1],
        profile[2],
        0xfc | (length_size - 1),
    ];
    b.push(0xe0 | sps.len() as u8);
    for s in sps {
        b.extend_from_slice(&(s.len() as u16).to_be_bytes());
        b.extend_from_slice(s);
    }
    b.push(pps.len() as u8);
    for p in pps {
        b.extend_from_slice(&(p.len() as u16).to_be_bytes());
        b.extend_from_slice(p);
    }
    b
}

/// An `hvcC` record body: the 22 fixed bytes, then one array each of VPS, SPS and PPS.
pub(crate) fn hvcc(length_size: u8, vps: &[u8], sps: &[u8], pps: &[u8]) -> Vec<u8> {
    let mut b = vec![
        1, 1, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 0x3c, 0xf0, 0, 0xfc, 0xfd, 0xf8, 0xf8, 0, 0,
    ];
    b.push(0x0c | (length_size - 1));
    b.push(3);
    for (kind, unit) in [(32u8, vps), (33, sps), (34, pps)] {
        b.push(0x80 | kind);
        b.extend_from_slice(&1u16.to_be_bytes());
        b.extend_from_slice(&(unit.len() as u16).to_be_bytes());
        b.extend_from_slice(unit);
    }
    b
}

fn visual_entry(kind: &[u8; 4], width: u16, height: u16, record: Vec<u8>) -> Vec<u8> {
    let mut b = vec![0; 6];
    b.extend_from_slice(&1u16.to_be_bytes());
    b.extend_from_slice(&[0; 16]);
    b.extend_from_slice(&width.to_be_bytes());
    b.extend_from_slice(&height.to_be_bytes());
    b.extend_from_slice(&u32s(&[0x0048_0000, 0x0048_0000, 0]));
    b.extend_from_slice(&1u16.to_be_bytes());
    b.extend_from_slice(&[0; 32]);
    b.extend_from_slice(&[0, 0x18, 0xff, 0xff]);
    b.extend(bx(b"btrt", &[0; 12]));
    b.extend(record);
    bx(kind, &b)
}

/// An `avc1` sample entry with 4-byte NAL lengths.
pub(crate) fn avc1_entry(width: u16, height: u16) -> Vec<u8> {
    visual_entry(
        b"avc1",
        width,
        height,
        bx(b"avcC", &avcc(4, &[SPS_264], &[PPS_264])),
    )
}

/// An `hvc1` sample entry with 4-byte NAL lengths.
pub(crate) fn hvc1_entry(width: u16, height: u16) -> Vec<u8> {
    let record = hvcc(4, &[0x40, 1, 0x0c], &[0x42, 1, 1], &[0x44, 1, 0xc0]);
    visual_entry(b"hvc1", width, height, bx(b"hvcC", &record))
}

/// `stsz`, `stsc`, `stco` and `stts` of a track without samples (what a fragmented file's moov may have).
pub(crate) fn empty_stbl_tables() -> Vec<u8> {
    sample_tables(&[], 0, 0)
}

/// Sample tables for `sizes`, all in one chunk at `chunk_offset`, each lasting `duration`; the first sample is
/// the only sync sample.
pub(crate) fn sample_tables(sizes: &[u32], chunk_offset: u32, duration: u32) -> Vec<u8> {
    let n = sizes.len() as u32;
    let mut stsz = u32s(&[0, n]);
    stsz.extend(u32s(sizes));
    [
        full(b"stsz", 0, 0, &stsz),
        full(b"stsc", 0, 0, &u32s(&[1, 1, n, 1])),
        full(b"stco", 0, 0, &u32s(&[1, chunk_offset])),
        full(b"stts", 0, 0, &u32s(&[1, n, duration])),
        // The first sample is the sync sample, if there is one.
        full(b"stss", 0, 0, &u32s(if n > 0 { &[1, 1] } else { &[0] })),
    ]
    .concat()
}

/// A `trak` with track id `id`, handler `handler`, timescale 90000, a 640×480 `tkhd`, one sample entry and the
/// given sample tables.
pub(crate) fn trak(id: u32, handler: &[u8; 4], entry: &[u8], tables: &[u8]) -> Vec<u8> {
    let mut tkhd = u32s(&[0, 0, id, 0, 0]);
    tkhd.extend_from_slice(&[0; 8 + 8 + 36]);
    tkhd.extend(u32s(&[640 << 16, 480 << 16]));
    let mut hdlr = u32s(&[0]);
    hdlr.extend_from_slice(handler);
    hdlr.extend_from_slice(&[0; 13]);
    let mut stsd = u32s(&[1]);
    stsd.extend_from_slice(entry);
    let stbl = bx(
        b"stbl",
        &[full(b"stsd", 0, 0, &stsd), tables.to_vec()].concat(),
    );
    let minf = bx(b"minf", &stbl);
    let mdia = bx(
        b"mdia",
        &[
            full(b"mdhd", 0, 0, &u32s(&[0, 0, 90000, 0, 0])),
            full(b"hdlr", 0, 0, &hdlr),
            minf,
        ]
        .concat(),
    );
    bx(b"trak", &[full(b"tkhd", 0, 7, &tkhd), mdia].concat())
}
