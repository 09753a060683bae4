//! Decoder configuration and sample payloads of AVC and HEVC in MP4 (ISO/IEC 14496-15): the
//! `AVCDecoderConfigurationRecord` (`avcC`, §5.3.3) and `HEVCDecoderConfigurationRecord` (`hvcC`, §8.3.3) give
//! the parameter sets and the size of the NAL unit length fields; a sample is NAL units each prefixed by such a
//! length (§5.3.2, §8.3.2). A sample may also carry parameter sets in-band (always allowed for `avc3`/`hev1`, and
//! GStreamer's `mp4mux` keeps the ones the writer puts before each keyframe even in `avc1`/`hvc1`): they are
//! taken out of the frame and handed back beside it, as `sources::Frame` keeps them.

use bytes::Bytes;
use sources::frame::is_parameter_or_delimiter;
use sources::{Codec, ParameterSets};

use super::boxes::{Child, Fields};
use super::Mp4Error;

/// What a track's sample entry says about decoding it.
#[derive(Clone, Debug)]
pub(crate) struct DecoderConfig {
    /// Parameter sets from the configuration record; any of them may be empty for `avc3`/`hev1`.
    pub params: ParameterSets,
    /// Bytes of each NAL unit length field in a sample (1, 2 or 4; 3 is read too).
    pub nal_length: u8,
}

/// Reads an `avcC` (`Codec::H264`) or `hvcC` (`Codec::H265`) box. Width and height come from the sample entry.
pub(crate) fn parse(
    codec: Codec,
    config: &Child<'_>,
    width: u32,
    height: u32,
) -> Result<DecoderConfig, Mp4Error> {
    let mut f = config.fields();
    let mut params = ParameterSets {
        codec,
        vps: None,
        sps: Bytes::new(),
        pps: Bytes::new(),
        width,
        height,
        rfc6381_codec: None,
    };
    let nal_length = match codec {
        Codec::H264 => {
            let head = f.bytes(5)?;
            params.rfc6381_codec = Some(format!(
                "avc1.{:02x}{:02x}{:02x}",
                head[1], head[2], head[3]
            ));
            let nal_length = (head[4] & 3) + 1;
            let sps_count = f.u8()? & 0x1f;
            for _ in 0..sps_count {
                keep_first(&mut params.sps, nal(&mut f)?);
            }
            for _ in 0..f.u8()? {
                keep_first(&mut params.pps, nal(&mut f)?);
            }
            nal_length
        }
        Codec::H265 => {
            let head = f.bytes(23)?;
            let nal_length = (head[21] & 3) + 1;
            for _ in 0..head[22] {
                let kind = f.u8()? & 0x3f;
                for _ in 0..f.u16()? {
                    let unit = nal(&mut f)?;
                    match kind {
                        32 => keep_first(params.vps.get_or_insert_with(Bytes::new), unit),
                        33 => keep_first(&mut params.sps, unit),
                        34 => keep_first(&mut params.pps, unit),
                        _ => {}
                    }
                }
            }
            if params.vps.as_ref().is_some_and(|v| v.is_empty()) {
                params.vps = None;
            }
            nal_length
        }
    };
    Ok(DecoderConfig { params, nal_length })
}

/// True when `params` can start a decoder: SPS and PPS, and a VPS for H.265.
pub(crate) fn complete(params: &ParameterSets) -> bool {
    !params.sps.is_empty()
        && !params.pps.is_empty()
        && (params.codec == Codec::H264 || params.vps.is_some())
}

fn nal(f: &mut Fields<'_>) -> Result<Bytes, Mp4Error> {
    let len = f.u16()? as usize;
    Ok(Bytes::copy_from_slice(f.bytes(len)?))
}

/// A stream uses one of each; extra ones (several SPS ids) are not something the frame model carries.
fn keep_first(slot: &mut Bytes, unit: Bytes) {
    if slot.is_empty() {
        *slot = unit;
    }
}

/// A sample in the frame format, and the parameter sets it carried in-band.
pub(crate) struct Converted {
    pub data: Bytes,
    pub vps: Option<Bytes>,
    pub sps: Option<Bytes>,
    pub pps: Option<Bytes>,
}

/// Splits `sample` into NAL units with `nal_length`-byte lengths and returns them 4-byte length-prefixed, without
/// parameter sets and access unit delimiters. `offset` (the sample's place in the file) is for error messages.
pub(crate) fn convert(
    codec: Codec,
    nal_length: u8,
    sample: Vec<u8>,
    offset: u64,
) -> Result<Converted, Mp4Error> {
    let n = usize::from(nal_length);
    let mut units = Vec::new();
    let mut pos = 0;
    while pos < sample.len() {
        let Some(len_bytes) = sample.get(pos..pos + n) else {
            return Err(bad_nal(
                offset + pos as u64,
                "a NAL unit length is cut short",
            ));
        };
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, &b| acc << 8 | usize::from(b));
        let start = pos + n;
        if len > sample.len() - start {
            return Err(bad_nal(
                offset + pos as u64,
                "a NAL unit runs past the sample",
            ));
        }
        units.push(start..start + len);
        pos = start + len;
    }
    let mut out = Converted {
        data: Bytes::new(),
        vps: None,
        sps: None,
        pps: None,
    };
    let mut keep = Vec::with_capacity(units.len());
    for range in units {
        let unit = &sample[range.clone()];
        if unit.is_empty() {
            continue;
        }
        if !is_parameter_or_delimiter(codec, unit) {
            keep.push(range);
            continue;
        }
        let slot = match (codec, unit[0]) {
            (Codec::H264, b) if b & 0x1f == 7 => &mut out.sps,
            (Codec::H264, b) if b & 0x1f == 8 => &mut out.pps,
            (Codec::H265, b) if (b >> 1) & 0x3f == 32 => &mut out.vps,
            (Codec::H265, b) if (b >> 1) & 0x3f == 33 => &mut out.sps,
            (Codec::H265, b) if (b >> 1) & 0x3f == 34 => &mut out.pps,
            _ => continue, // an access unit delimiter
        };
        slot.get_or_insert_with(|| Bytes::copy_from_slice(unit));
    }
    let unchanged =
        n == 4 && keep.len() * 4 + keep.iter().map(|r| r.len()).sum::<usize>() == sample.len();
    out.data = if unchanged {
        // The common case (a picture without in-band parameter sets): no copy.
        Bytes::from(sample)
    } else {
        let mut data = Vec::with_capacity(sample.len());
        for range in keep {
            data.extend_from_slice(&(range.len() as u32).to_be_bytes());
            data.extend_from_slice(&sample[range]);
        }
        Bytes::from(data)
    };
    Ok(out)
}

fn bad_nal(offset: u64, what: &str) -> Mp4Error {
    Mp4Error::Malformed {
        offset,
        what: what.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mp4::boxes::Children;
    use crate::mp4::testbuild::{avcc, bx, hvcc, SPS_264};

    fn config(codec: Codec, record: &[u8]) -> Result<DecoderConfig, Mp4Error> {
        let kind = if codec == Codec::H264 {
            b"avcC"
        } else {
            b"hvcC"
        };
        let data = bx(kind, record);
        let child = Children::new(&data, 0).next().unwrap().unwrap();
        parse(codec, &child, 320, 240)
    }

    #[test]
    fn reads_avcc() {
        let c = config(Codec::H264, &avcc(2, &[SPS_264], &[&[0x68, 0xce]])).unwrap();
        assert_eq!(c.nal_length, 2);
        assert_eq!(&c.params.sps[..], SPS_264);
        assert_eq!(&c.params.pps[..], &[0x68, 0xce]);
        assert_eq!(c.params.rfc6381_codec.as_deref(), Some("avc1.42c00d"));
        assert_eq!((c.params.width, c.params.height), (320, 240));
        assert!(complete(&c.params));
        // avc3 may carry no parameter sets at all.
        let c = config(Codec::H264, &avcc(3, &[], &[])).unwrap();
        assert!(!complete(&c.params));
    }

    #[test]
    fn reads_hvcc() {
        let record = hvcc(4, &[0x40, 1], &[0x42, 1, 7], &[0x44, 1]);
        let c = config(Codec::H265, &record).unwrap();
        assert_eq!(c.nal_length, 4);
        assert_eq!(c.params.vps.as_deref(), Some(&[0x40u8, 1][..]));
        assert_eq!(&c.params.sps[..], &[0x42, 1, 7]);
        assert_eq!(&c.params.pps[..], &[0x44, 1]);
        assert!(complete(&c.params));
    }

    #[test]
    fn truncated_records_are_errors() {
        let avc = avcc(3, &[SPS_264], &[&[0x68, 0xce]]);
        let hevc = hvcc(3, &[0x40, 1], &[0x42, 1, 7], &[0x44, 1]);
        for cut in 0..avc.len() {
            assert!(
                config(Codec::H264, &avc[..cut]).is_err(),
                "avcC cut at {cut}"
            );
        }
        for cut in 0..hevc.len() {
            assert!(
                config(Codec::H265, &hevc[..cut]).is_err(),
                "hvcC cut at {cut}"
            );
        }
        // A parameter set length past the record.
        let mut avc = avc;
        avc[7] = 0xff;
        assert!(config(Codec::H264, &avc).is_err());
    }

    #[test]
    fn converts_lengths_and_takes_out_parameter_sets() {
        // 2-byte lengths: AUD, SPS, PPS, IDR slice, empty unit, slice.
        let sample = [
            &[0, 2, 0x09, 0xf0][..],
            &[0, 3, 0x67, 0x42, 0x00],
            &[0, 2, 0x68, 0xce],
            &[0, 3, 0x65, 1, 2],
            &[0, 0],
            &[0, 1, 0x41],
        ]
        .concat();
        let c = convert(Codec::H264, 2, sample, 1000).unwrap();
        assert_eq!(&c.data[..], &[0, 0, 0, 3, 0x65, 1, 2, 0, 0, 0, 1, 0x41]);
        assert_eq!(c.sps.as_deref(), Some(&[0x67u8, 0x42, 0][..]));
        assert_eq!(c.pps.as_deref(), Some(&[0x68u8, 0xce][..]));
        assert_eq!(c.vps, None);
        // H.265: VPS, SPS, PPS, AUD (35), IDR_N_LP (20).
        let sample = [
            &[0, 0, 0, 2, 0x40, 1][..],
            &[0, 0, 0, 2, 0x42, 1],
            &[0, 0, 0, 2, 0x44, 1],
            &[0, 0, 0, 3, 0x46, 1, 0x50],
            &[0, 0, 0, 3, 0x28, 1, 9],
        ]
        .concat();
        let c = convert(Codec::H265, 4, sample, 0).unwrap();
        assert_eq!(&c.data[..], &[0, 0, 0, 3, 0x28, 1, 9]);
        assert!(c.vps.is_some() && c.sps.is_some() && c.pps.is_some());
        // Nothing to take out: the same bytes.
        let plain = vec![0, 0, 0, 2, 0x41, 7, 0, 0, 0, 1, 0x41];
        let c = convert(Codec::H264, 4, plain.clone(), 0).unwrap();
        assert_eq!(&c.data[..], &plain[..]);
        assert!(c.sps.is_none());
    }

    #[test]
    fn broken_lengths_are_errors() {
        for (n, sample) in [
            (4u8, vec![0, 0, 0, 9, 0x65]),
            (4, vec![0, 0, 0, 1, 0x65, 0, 0]),
            (1, vec![3, 0x65]),
            (2, vec![0xff, 0xff, 0x65]),
        ] {
            assert!(
                convert(Codec::H264, n, sample.clone(), 0).is_err(),
                "{n} {sample:?}"
            );
        }
        assert!(convert(Codec::H264, 4, Vec::new(), 0)
            .unwrap()
            .data
            .is_empty());
    }
}
