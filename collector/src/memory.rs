//! The allocator's settings for a long-running agent.

/// Tunes glibc's malloc for the agent's allocation pattern: megabyte-sized line and
/// document buffers that one thread allocates and another frees, a few per millisecond.
/// Each setting applies unless its `MALLOC_*_` environment variable says otherwise.
///
/// - Two arenas (`M_ARENA_MAX`): glibc gives threads arenas of their own; buffers that the
///   workers allocate and the sink frees then leave free space in several heaps that none
///   can return. Two keep peak RSS near the in-flight budget (the 1,000,000-line
///   Elasticsearch benchmark of `scripts/bench.sh`: 54 MiB instead of 67 MiB).
/// - Buffers up to 4 MiB from the heap (`M_MMAP_THRESHOLD`), and up to 16 MiB of free heap
///   kept (`M_TRIM_THRESHOLD`): otherwise each buffer is a fresh mapping whose pages fault
///   in as they are written and go back to the kernel when freed (3% of the agent's CPU in
///   that benchmark, for 2–5 MiB more peak RSS).
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    for (variable, parameter, value) in [
        ("MALLOC_ARENA_MAX", libc::M_ARENA_MAX, 2),
        ("MALLOC_MMAP_THRESHOLD_", libc::M_MMAP_THRESHOLD, 4 << 20),
        ("MALLOC_TRIM_THRESHOLD_", libc::M_TRIM_THRESHOLD, 16 << 20),
    ] {
        if std::env::var_os(variable).is_none() {
            #[allow(unsafe_code, reason = "one call into the C allocator's settings")]
            // SAFETY: `mallopt` only sets an allocator parameter; it is called first thing
            // in `main`, before any other thread exists.
            unsafe {
                libc::mallopt(parameter, value);
            }
        }
    }
}
