//! Recording exports on disk: how many are built at once, where they are cached, and when they go.
//!
//! An export is built under a name of its own (`.<pid>-<n>.partial`, so two identical requests never write one
//! file) and renamed into `<exports>/<stream>/<key>.mp4` when complete, beside a `.range` file with the instants it
//! really covers; a later identical request is served from it. Building is limited to `max_exports` at once (more
//! get 503 `too_many_exports`): each one demuxes and muxes on a blocking thread and writes up to six hours of video.
//!
//! Exports are a cache: retention ([`sweep`]) removes those older than an hour, and under the free-space floor it
//! removes the rest (oldest first) before touching any recording, counting what that frees.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::warn;

/// Exports are kept this long for repeated and ranged downloads.
pub const EXPORT_KEEP: Duration = Duration::from_secs(3600);
/// Suffix of an export being built.
const PARTIAL: &str = "partial";

/// The export cache and its limit.
pub struct Exports {
    dir: PathBuf,
    building: Arc<Semaphore>,
    max: usize,
}

impl Exports {
    /// `dir` is `<data_dir>/exports`; at most `max` exports are built at once.
    pub fn new(dir: PathBuf, max: usize) -> Exports {
        Exports {
            dir,
            building: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// A place to build one export, or `None` when `max` are being built. Held until the build ends.
    pub fn try_start(&self) -> Option<OwnedSemaphorePermit> {
        self.building.clone().try_acquire_owned().ok()
    }

    /// Exports built at once.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Where a stream's exports are cached.
    pub fn stream_dir(&self, source_id: &str) -> PathBuf {
        self.dir.join(source_id)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// A file name next to `target` that no other build, in this process or another, is using.
pub fn partial_path(target: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let stem = target
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    target.with_file_name(format!(".{stem}.{}-{n}.{PARTIAL}", std::process::id()))
}

/// What [`sweep`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub files: usize,
    pub bytes: u64,
}

/// Blocking. Removes exports (and their `.range` files) older than `keep`, partial ones left by a crash included;
/// then, while fewer than `need_bytes` were freed, finished exports oldest first.
pub fn sweep(dir: &Path, keep: Duration, need_bytes: u64) -> Swept {
    let mut files: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
    let Ok(top) = std::fs::read_dir(dir) else {
        return Swept::default();
    };
    // Files of `<dir>/<stream>/`, and any directly in `<dir>` (where exports were cached before per-stream folders).
    let mut add = |e: std::fs::DirEntry| -> Option<PathBuf> {
        let meta = e.metadata().ok()?;
        if meta.is_dir() {
            return Some(e.path());
        }
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        files.push((modified, meta.len(), e.path()));
        None
    };
    let streams: Vec<PathBuf> = top.flatten().filter_map(&mut add).collect();
    for stream in streams {
        if let Ok(entries) = std::fs::read_dir(stream) {
            entries.flatten().for_each(|e| {
                add(e);
            });
        }
    }
    files.sort();
    let mut swept = Swept::default();
    let now = SystemTime::now();
    for (modified, bytes, path) in files {
        let expired = now.duration_since(modified).is_ok_and(|age| age > keep);
        // One being built is not touched under pressure: its build holds the data anyway.
        let building = path.extension().is_some_and(|e| e == PARTIAL);
        let pressed = swept.bytes < need_bytes && !building;
        if !(expired || pressed) {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {
                swept.files += 1;
                swept.bytes += bytes;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!(path = %path.display(), error = %e, "cannot remove an export"),
        }
    }
    swept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_names_differ_and_sweep_frees_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let cam = dir.path().join("cam");
        std::fs::create_dir_all(&cam).unwrap();
        let target = cam.join("1-2-3.mp4");
        let (a, b) = (partial_path(&target), partial_path(&target));
        assert_ne!(a, b);
        assert_eq!(a.parent(), target.parent());
        // Three finished exports of 100 bytes, oldest first by modification time, and one being built.
        for (i, name) in ["old.mp4", "mid.mp4", "new.mp4"].iter().enumerate() {
            let p = cam.join(name);
            std::fs::write(&p, [0u8; 100]).unwrap();
            let t = SystemTime::now() - Duration::from_secs(100 - i as u64);
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        std::fs::write(&a, [0u8; 100]).unwrap();
        assert_eq!(sweep(dir.path(), EXPORT_KEEP, 0), Swept::default());
        let s = sweep(dir.path(), EXPORT_KEEP, 150);
        assert_eq!(
            s,
            Swept {
                files: 2,
                bytes: 200
            }
        );
        assert!(cam.join("new.mp4").exists() && a.exists());
        // Past the keep time everything goes, a partial file a crash left included.
        let s = sweep(dir.path(), Duration::ZERO, 0);
        assert_eq!(s.files, 2);
    }
}
