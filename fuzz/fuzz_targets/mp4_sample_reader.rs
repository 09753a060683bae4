//! The DVR player's MP4 sample reader (`dvr::mp4`) on arbitrary files: index one (finalized or still being
//! written), read every sample, seek by time, and index it again as a file that grew from a prefix of it. Input:
//! two bytes saying where the earlier, shorter copy of the file ends, then the file.
//!
//! Checks: nothing panics or allocates without bound; every indexed sample lies inside the file and is at most
//! the reader's sample limit; sync lookups answer sync samples; a refresh of an unchanged file adds nothing; the
//! index of a prefix, refreshed on the whole file, still starts with the samples it had.
#![no_main]

use std::io::Cursor;

use dvr::mp4::{SampleIndex, MAX_SAMPLES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((cut, file)) = data.split_first_chunk::<2>() else {
        return;
    };
    let cut = usize::from(u16::from_be_bytes(*cut)) * file.len() / 65_536;

    let mut r = Cursor::new(file);
    if let Ok(mut index) = SampleIndex::read(&mut r) {
        check(&index, file);
        for i in 0..index.samples.len() {
            if let Ok(sample) = index.read_sample(&mut r, i) {
                // NAL lengths become 4-byte prefixes: at most four times the bytes of 1-byte ones.
                assert!(sample.data.len() <= 4 * index.samples[i].size as usize);
            }
            let _ = index.pts_90k(i);
        }
        let _ = index.end_90k();
        let n = index.samples.len();
        assert!(matches!(index.refresh(&mut r), Ok(0) | Err(_)));
        assert_eq!(
            index.samples.len(),
            n,
            "a refresh of an unchanged file changed the index"
        );
    }

    // The same file caught while shorter, then grown to its full length.
    if let Ok(mut index) = SampleIndex::read(&mut Cursor::new(&file[..cut])) {
        check(&index, &file[..cut]);
        let before = index.samples.clone();
        if let Ok(added) = index.refresh(&mut Cursor::new(file)) {
            check(&index, file);
            assert_eq!(index.samples.len(), before.len() + added);
            assert_eq!(index.samples[..before.len()], before[..]);
        }
    }
});

fn check(index: &SampleIndex, file: &[u8]) {
    assert!(index.timescale > 0);
    assert!(index.samples.len() <= MAX_SAMPLES);
    for s in &index.samples {
        assert!(
            s.offset + u64::from(s.size) <= file.len() as u64,
            "{s:?} past the end"
        );
    }
    for t in [i64::MIN, -1, 0, 1, i64::MAX] {
        if let Some(i) = index.sync_at_or_before(t) {
            assert!(index.samples[i].is_sync);
        }
    }
    if let Some(i) = index.next_sync(0) {
        assert!(index.samples[i].is_sync);
    }
}
