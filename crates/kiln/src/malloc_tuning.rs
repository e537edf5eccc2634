//! glibc malloc, tuned for a server whose queries allocate on many threads at once.
//!
//! Measured on the side-by-side bench (scale 4, 94,400 series; docs/performance.md,
//! "Allocator"): with glibc's defaults (up to 8 arenas per core) the 13 lecture queries
//! after an ingest peaked at 1,294 MiB and 827 MiB stayed resident after them, as every
//! thread that decoded chunks or built results kept its own arena's freed memory. One
//! arena per core halved the peak (668 MiB) at the same query times; mimalloc and
//! jemalloc were measured too and lost on memory after ingest (again with the head's
//! tight chunk buffers: mimalloc held twice glibc's memory after a scale-4 ingest). So
//! Kiln keeps glibc, limits the arenas, and gives freed memory back to the OS after
//! large queries and ingest bursts.
//!
//! The only `unsafe` of the binary: two calls into glibc that take and return plain
//! integers.

use std::time::Duration;

/// Growth of the resident memory since the last trim that makes a trim due.
const TRIM_AFTER_GROWTH_BYTES: u64 = 16 << 20;

/// Growth within one look that counts as still growing (a trim then waits).
const STILL_GROWING_BYTES: u64 = 1 << 20;

/// How often the resident memory is looked at.
const TRIM_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Looks a due trim waits at most for the growth to stop (a long ingest).
const MAX_WAIT_LOOKS: u32 = 5;

/// Quiet looks (no growth) after a trim that growth made due at which the trimmer trims
/// again: memory a query or a burst still held at the first trim and freed later goes
/// back too (the resident memory does not change when memory is freed, so growth alone
/// would not show it).
const FOLLOW_UP_LOOKS: [u32; 2] = [5, 30];

/// Looks after which a trim runs whether or not the memory grew (memory freed by head
/// truncation or series removal, without growth, goes back too).
const ANYWAY_LOOKS: u32 = 300;

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

/// The process's resident memory (`VmRSS`), in bytes; `None` where `/proc` is missing.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
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

/// Starts a thread that gives freed memory back to the OS (`malloc_trim`) once the
/// resident memory has grown by 16 MiB since the last trim: as soon as the growth
/// stops (a large query ended, an ingest burst is over), or every 5 seconds while it
/// goes on, and again 5 and 30 quiet seconds later (for what was freed after that
/// trim); and every 5 minutes regardless. It looks once a second and runs until the
/// process exits.
///
/// Why growth and not glibc's own count of freed memory: that count (`mallinfo2`)
/// walks every free chunk of every arena under the arena's lock, and a head of 400k
/// series leaves a quarter of a million small free chunks between live ones, so asking
/// once a second stalled allocations for milliseconds each time (12% of the CPU
/// samples of a shutdown at that size). Reading `VmRSS` costs microseconds.
pub(crate) fn spawn_trimmer() -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("malloc-trim".into())
        .spawn(move || {
            let Some(rss) = resident_bytes() else {
                return;
            };
            let mut policy = TrimPolicy::new(rss);
            loop {
                std::thread::sleep(TRIM_CHECK_INTERVAL);
                let Some(now) = resident_bytes() else {
                    return;
                };
                if policy.look(now) {
                    let released = trim();
                    let after = resident_bytes().unwrap_or(now);
                    policy.trimmed(after);
                    tracing::debug!(
                        before = now,
                        after,
                        released,
                        "gave freed memory back to the OS"
                    );
                }
            }
        })
        .map(drop)
}

/// When to trim, from the resident memory seen once a look (see [`spawn_trimmer`]).
#[derive(Debug)]
struct TrimPolicy {
    /// The lowest resident memory since the last trim: growth counts from here.
    low: u64,
    /// The resident memory at the previous look.
    previous: u64,
    /// Looks since the growth made a trim due (0: none due).
    due_for: u32,
    /// Looks since the last trim.
    since_trim: u32,
    /// Looks without growth since the last trim that growth made due; `None` when the
    /// follow-ups are done (or none is owed).
    quiet_after_growth: Option<u32>,
}

impl TrimPolicy {
    fn new(rss: u64) -> TrimPolicy {
        TrimPolicy {
            low: rss,
            previous: rss,
            due_for: 0,
            since_trim: 0,
            quiet_after_growth: None,
        }
    }

    /// Takes the resident memory `now`; says whether to trim.
    fn look(&mut self, now: u64) -> bool {
        self.since_trim += 1;
        // Memory given back without a trim (large blocks are unmapped when freed) lowers
        // the mark.
        self.low = self.low.min(now);
        if self.due_for > 0 || now > self.low + TRIM_AFTER_GROWTH_BYTES {
            self.due_for += 1;
        }
        let growing = now > self.previous + STILL_GROWING_BYTES;
        self.previous = now;
        if let Some(quiet) = &mut self.quiet_after_growth {
            *quiet = if growing { 0 } else { *quiet + 1 };
        }
        let follow_up = self
            .quiet_after_growth
            .is_some_and(|quiet| FOLLOW_UP_LOOKS.contains(&quiet));
        (self.due_for > 0 && (!growing || self.due_for >= MAX_WAIT_LOOKS))
            || follow_up
            || self.since_trim >= ANYWAY_LOOKS
    }

    /// A trim ran and left `rss` resident.
    fn trimmed(&mut self, rss: u64) {
        let owed = match self.quiet_after_growth {
            // Growth made this one due: the follow-ups start over.
            _ if self.due_for > 0 => Some(0),
            // The last follow-up ends them.
            Some(quiet) if quiet >= FOLLOW_UP_LOOKS[FOLLOW_UP_LOOKS.len() - 1] => None,
            other => other,
        };
        *self = TrimPolicy::new(rss);
        self.quiet_after_growth = owed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// Feeds resident sizes (MiB) one look at a time; returns the looks that trimmed.
    fn trims(policy: &mut TrimPolicy, looks: &[u64]) -> Vec<usize> {
        let mut out = Vec::new();
        for (i, &mib) in looks.iter().enumerate() {
            if policy.look(mib * MIB) {
                policy.trimmed(mib * MIB);
                out.push(i);
            }
        }
        out
    }

    #[test]
    fn trims_when_growth_stops_while_it_goes_on_and_now_and_then() {
        // Small wobbles never trim.
        let mut p = TrimPolicy::new(100 * MIB);
        assert!(trims(&mut p, &[101, 100, 105, 110, 104, 100]).is_empty());
        // A query grows memory by 300 MiB over three looks, then ends: a trim at the
        // first look without growth, and two follow-ups 5 and 30 quiet looks later (what
        // the query still held at the first trim and freed after it goes back then).
        let mut p = TrimPolicy::new(100 * MIB);
        let query: Vec<u64> = [150, 300, 400].into_iter().chain([400; 40]).collect();
        assert_eq!(trims(&mut p, &query), vec![3, 8, 33]);
        // Growth during the follow-ups starts them over.
        let mut p = TrimPolicy::new(100 * MIB);
        let two: Vec<u64> = [150, 150, 150, 150, 200, 200]
            .into_iter()
            .chain([200; 10])
            .collect();
        assert_eq!(trims(&mut p, &two), vec![1, 5, 10]);
        // An ingest that grows memory for a long time: a trim every 5 looks, and one
        // when it stops.
        let mut p = TrimPolicy::new(100 * MIB);
        let ingest: Vec<u64> = (1..=12).map(|i| 100 + 20 * i).chain([340, 340]).collect();
        assert_eq!(trims(&mut p, &ingest), vec![4, 9, 12]);
        // Memory unmapped on its own lowers the mark: growth counts from there.
        let mut p = TrimPolicy::new(400 * MIB);
        assert!(trims(&mut p, &[100, 110, 110]).is_empty());
        assert_eq!(trims(&mut p, &[120, 120]), vec![1]);
        // Without any growth, a trim every 5 minutes.
        let mut p = TrimPolicy::new(100 * MIB);
        let idle = vec![100; ANYWAY_LOOKS as usize];
        assert_eq!(trims(&mut p, &idle), vec![ANYWAY_LOOKS as usize - 1]);
    }
}
