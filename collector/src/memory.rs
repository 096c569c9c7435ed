//! The allocator's settings for a long-running agent.

/// Limits glibc's malloc to two arenas (unless `MALLOC_ARENA_MAX` says otherwise). glibc
/// gives threads arenas of their own; document buffers that the workers allocate and the
/// sink frees then leave free space in several heaps that none can return. Two arenas keep
/// peak RSS near the in-flight budget: the 1,000,000-line Elasticsearch benchmark of
/// `scripts/bench.sh` peaks at 54 MiB instead of 67 MiB, at the same CPU time.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        #[allow(unsafe_code, reason = "one call into the C allocator's settings")]
        // SAFETY: `mallopt` only sets an allocator parameter; it is called first thing in
        // `main`, before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}
