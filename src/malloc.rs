//! The allocator's arenas. glibc gives every thread that contends for the heap
//! an arena of its own, up to eight per core; under a steady load of thousands
//! of sockets their fragmentation shows as a slow, lasting RSS creep
//! (BENCHMARKS.md, "Soak": +50–550 KiB/min with the default and with two
//! arenas, flat with one). The node's work runs on one executor thread on a
//! Pi-sized box and each thread keeps a small cache of its own (glibc's
//! tcache), so one shared arena costs little.

/// One malloc arena, unless `MALLOC_ARENA_MAX` says otherwise. Call first
/// thing in `main`, before any thread starts.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets a tuning parameter of the allocator; no
        // other thread exists yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}
