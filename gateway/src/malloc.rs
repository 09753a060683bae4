//! glibc malloc tuning for the gateway process. A viewer joins with a burst (the whole GOP cache at once, a few
//! thousand packets), which grows a few of its queues past 128 KiB for a moment. glibc serves such a block with
//! its own mapping, and on the first free it raises its mmap threshold to that size (the dynamic threshold), so
//! every later burst comes from the heap instead, and what it frees stays there, fragmented, for good. Measured
//! (BENCHMARKS.md, "One-pass forwarding"; docs/decisions/0010): RSS per WSC-RTP receiver 137–152 KiB at 100
//! receivers with the dynamic threshold, 78 KiB with it fixed; `MALLOC_ARENA_MAX=1` changed nothing.

/// Fixes glibc's mmap and trim thresholds at their defaults (128 KiB), turning the dynamic adjustment off: large
/// short-lived buffers are mapped and returned to the system when freed. Call once, early; a no-op elsewhere
/// than glibc.
pub fn keep_large_blocks_mapped() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const THRESHOLD: libc::c_int = 128 * 1024;
        // SAFETY: mallopt only sets allocator parameters; it is safe to call at any time, from any thread.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, THRESHOLD);
        }
    }
}
