//! The allocator: its arenas, what it holds, and giving free memory back.
//!
//! glibc gives every thread that contends for the heap an arena of its own, up
//! to eight per core; under a steady load of thousands of sockets their
//! fragmentation shows as a slow, lasting RSS creep (BENCHMARKS.md, "Soak":
//! +50–550 KiB/min with the default and with two arenas). The node's work runs
//! on one executor thread on a Pi-sized box and each thread keeps a small cache
//! of its own (glibc's tcache), so one shared arena costs little.
//!
//! Even one arena keeps the pages of freed chunks in the middle of its heap:
//! a burst (a reconnect storm, a vote flood) raises RSS for good although the
//! bytes in use fall back. [`trim`], called once a minute by the node, hands
//! those pages back, and [`heap`] lets `/metrics` tell bytes in use from bytes
//! held (`process_heap_in_use_bytes`, `process_heap_free_bytes`), so a rising
//! RSS can be read as growth or as fragmentation.
//!
//! Elsewhere (musl, other systems) every function here does nothing.

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

/// The allocator's bytes: handed out, and free but still mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heap {
    pub in_use: u64,
    pub free: u64,
}

/// What the allocator holds now (glibc's `mallinfo2`, which walks the free
/// lists: call it at scrape time, not per request).
pub fn heap() -> Option<Heap> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's statistics under its locks.
        let m = unsafe { libc::mallinfo2() };
        Some(Heap {
            // Chunks from the arenas plus the ones mmapped on their own.
            in_use: (m.uordblks + m.hblkhd) as u64,
            free: m.fordblks as u64,
        })
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

/// Returns the free pages of every arena to the kernel (`malloc_trim(0)`:
/// the top of the heap and whole free pages inside it). Takes a few
/// milliseconds on a 60 MiB heap, under the allocator's lock; returns whether
/// anything was released.
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only releases memory no allocation refers to.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn freed_memory_shows_as_free_and_trim_gives_it_back() {
        // Many small blocks (below the mmap threshold, so from the arena),
        // every other one freed: holes in the middle of the heap.
        let mut blocks: Vec<Vec<u8>> = (0..20_000).map(|i| vec![i as u8; 1000]).collect();
        let full = heap().unwrap();
        assert!(full.in_use >= 20_000 * 1000, "{full:?}");
        let kept: Vec<Vec<u8>> = blocks.drain(..).step_by(2).collect();
        let holes = heap().unwrap();
        // 10 MB freed; other tests' threads allocate too, so ask for half.
        assert!(
            holes.in_use + 5_000 * 1000 < full.in_use,
            "{full:?} → {holes:?}"
        );
        assert!(holes.free >= 5_000 * 1000, "{holes:?}");
        trim();
        drop(kept);
        assert!(trim(), "the freed pages were released");
    }
}
