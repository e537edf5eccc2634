//! glibc malloc, tuned for a server whose queries allocate on many threads at once.
//!
//! Measured on the side-by-side bench (scale 4, 94,400 series; docs/performance.md,
//! "Allocator"): with glibc's defaults (up to 8 arenas per core) the 13 lecture queries
//! after an ingest peaked at 1,294 MiB and 827 MiB stayed resident after them, as every
//! thread that decoded chunks or built results kept its own arena's freed memory. One
//! arena per core halved the peak (668 MiB) at the same query times; mimalloc and
//! jemalloc were measured too and lost on memory after ingest. So Kiln keeps glibc,
//! limits the arenas, and gives freed memory back to the OS after large queries.
//!
//! The only `unsafe` of the binary: three calls into glibc that take and return plain
//! integers and structs.

use std::time::Duration;

/// Freed memory glibc may keep before it is asked to give it back.
const TRIM_ABOVE_BYTES: usize = 64 << 20;

/// How often the free memory is looked at.
const TRIM_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Limits glibc to one arena per core (at least 2). Call before any thread starts.
pub(crate) fn limit_arenas() {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let arenas = i32::try_from(cores.max(2)).unwrap_or(i32::MAX);
    // SAFETY: mallopt takes two integers and changes a malloc setting; called before
    // other threads exist, so no allocation races the change.
    #[allow(unsafe_code)]
    let ok = unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) };
    if ok != 1 {
        tracing::debug!(arenas, "mallopt(M_ARENA_MAX) refused");
    }
}

/// Memory glibc holds freed (in every arena), in bytes.
fn free_held_bytes() -> usize {
    // SAFETY: mallinfo2 takes nothing and returns a struct of counters by value.
    #[allow(unsafe_code)]
    let info = unsafe { libc::mallinfo2() };
    info.fordblks
}

/// Gives freed memory back to the OS (`malloc_trim(0)`: every arena, whole free pages
/// in the middle of the heaps included). Returns whether any went back.
fn trim() -> bool {
    // SAFETY: malloc_trim takes an integer (bytes to keep at the top of the heap) and
    // only releases free pages; it is thread-safe (it locks each arena).
    #[allow(unsafe_code)]
    let released = unsafe { libc::malloc_trim(0) };
    released == 1
}

/// Starts a thread that, once a second, gives freed memory back to the OS when glibc
/// holds more than 64 MiB of it (after a large query, typically). It runs until the
/// process exits.
pub(crate) fn spawn_trimmer() -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("malloc-trim".into())
        .spawn(move || {
            loop {
                std::thread::sleep(TRIM_CHECK_INTERVAL);
                let free = free_held_bytes();
                if free > TRIM_ABOVE_BYTES {
                    let released = trim();
                    tracing::debug!(free, released, "gave freed memory back to the OS");
                }
            }
        })
        .map(drop)
}
