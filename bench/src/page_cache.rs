//! Putting files into the page cache and taking them out again, without privileges: read whole, or written back
//! (only clean pages can go) and dropped with `posix_fadvise(DONTNEED)`. The recording the DVR scenario plays
//! was just written, so it starts cached; a recording an hour old on a busy gateway mostly is not, and reads from
//! disk show only once it is dropped.

use std::os::fd::AsRawFd;
use std::path::Path;

/// Writes back and drops `paths` from the page cache.
pub fn drop_files(paths: &[impl AsRef<Path>]) -> std::io::Result<()> {
    for p in paths {
        let f = std::fs::File::open(p.as_ref())?;
        f.sync_all()?;
        // SAFETY: a valid open descriptor; offset 0 and length 0 mean the whole file.
        let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if r != 0 {
            return Err(std::io::Error::from_raw_os_error(r));
        }
    }
    Ok(())
}

/// Reads `paths` whole, so that (memory allowing) every page of them is cached.
pub fn load_files(paths: &[impl AsRef<Path>]) -> std::io::Result<()> {
    for p in paths {
        std::io::copy(&mut std::fs::File::open(p.as_ref())?, &mut std::io::sink())?;
    }
    Ok(())
}
