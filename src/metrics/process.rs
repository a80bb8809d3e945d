//! Process metrics read from `/proc/self` at render time (`process_*` families). Every
//! reader is a pure parser over the file's text; anything unreadable is left out.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use super::render::{header, write_f64};

/// Linux `USER_HZ`: the unit of utime/stime in /proc/self/stat. It is fixed at 100 for
/// userspace on every architecture Linux supports, so no `sysconf` (libc) is needed.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;
/// Page size assumed only for the /proc/self/statm fallback. The primary source,
/// /proc/self/status (VmRSS/VmSize in kB), needs no page size at all.
const FALLBACK_PAGE_SIZE: u64 = 4096;

#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(super) struct ProcessStats {
    pub(super) resident_bytes: Option<u64>,
    pub(super) virtual_bytes: Option<u64>,
    pub(super) cpu_seconds: Option<f64>,
    pub(super) open_fds: Option<u64>,
    pub(super) max_fds: Option<u64>,
    /// The allocator's bytes in use and free-but-held ([`crate::malloc::heap`]).
    pub(super) heap_in_use_bytes: Option<u64>,
    pub(super) heap_free_bytes: Option<u64>,
}

impl ProcessStats {
    /// Reads what it can; every field is `None` when its source is unreadable.
    pub(super) fn read() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).ok();
        let mut s = Self::default();
        if let Some(status) = read("/proc/self/status") {
            s.resident_bytes =
                parse_status_kb(&status, "VmRSS").and_then(|kb| kb.checked_mul(1024));
            s.virtual_bytes =
                parse_status_kb(&status, "VmSize").and_then(|kb| kb.checked_mul(1024));
        }
        if (s.resident_bytes.is_none() || s.virtual_bytes.is_none())
            && let Some((size, resident)) =
                read("/proc/self/statm").as_deref().and_then(parse_statm)
        {
            s.virtual_bytes = s.virtual_bytes.or(size.checked_mul(FALLBACK_PAGE_SIZE));
            s.resident_bytes = s
                .resident_bytes
                .or(resident.checked_mul(FALLBACK_PAGE_SIZE));
        }
        s.cpu_seconds = read("/proc/self/stat")
            .as_deref()
            .and_then(parse_stat_cpu_seconds);
        s.open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.flatten().count() as u64);
        s.max_fds = read("/proc/self/limits")
            .as_deref()
            .and_then(parse_limits_max_fds);
        let heap = crate::malloc::heap();
        s.heap_in_use_bytes = heap.map(|h| h.in_use);
        s.heap_free_bytes = heap.map(|h| h.free);
        s
    }
}

/// `Key:   1234 kB` line of /proc/self/status -> 1234.
pub(super) fn parse_status_kb(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        let mut it = rest.split_whitespace();
        let v = it.next()?.parse().ok()?;
        match it.next() {
            None | Some("kB") => Some(v),
            Some(_) => None,
        }
    })
}

/// /proc/self/statm -> (size, resident) in pages.
pub(super) fn parse_statm(statm: &str) -> Option<(u64, u64)> {
    let mut it = statm.split_whitespace();
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// utime + stime (fields 14 and 15 of /proc/self/stat) in seconds. The comm field (2) may
/// contain spaces and parentheses, so fields are counted after the *last* `)`.
pub(super) fn parse_stat_cpu_seconds(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // rest starts at field 3 (state): field 14 is index 11, field 15 index 12.
    let mut it = rest.split_whitespace();
    let utime: u64 = it.nth(11)?.parse().ok()?;
    let stime: u64 = it.next()?.parse().ok()?;
    Some(utime.saturating_add(stime) as f64 / CLOCK_TICKS_PER_SECOND)
}

/// Soft limit from the "Max open files" line of /proc/self/limits (`None` if unlimited).
pub(super) fn parse_limits_max_fds(limits: &str) -> Option<u64> {
    limits.lines().find_map(|line| {
        line.strip_prefix("Max open files")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

pub(super) fn render_process(out: &mut String, p: &ProcessStats, start_time: SystemTime) {
    if let Some(v) = p.cpu_seconds {
        header(
            out,
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            "counter",
        );
        out.push_str("process_cpu_seconds_total ");
        write_f64(out, v);
        out.push('\n');
    }
    let gauges = [
        (
            "process_open_fds",
            "Number of open file descriptors.",
            p.open_fds,
        ),
        (
            "process_max_fds",
            "Maximum number of open file descriptors.",
            p.max_fds,
        ),
        (
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            p.virtual_bytes,
        ),
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            p.resident_bytes,
        ),
        (
            "process_heap_in_use_bytes",
            "Bytes the allocator has handed out (glibc mallinfo2).",
            p.heap_in_use_bytes,
        ),
        (
            "process_heap_free_bytes",
            "Bytes free inside the allocator's heap, still mapped (glibc mallinfo2).",
            p.heap_free_bytes,
        ),
    ];
    for (name, help, v) in gauges {
        if let Some(v) = v {
            header(out, name, help, "gauge");
            let _ = writeln!(out, "{name} {v}");
        }
    }
    if let Ok(d) = start_time.duration_since(UNIX_EPOCH) {
        header(
            out,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            "gauge",
        );
        out.push_str("process_start_time_seconds ");
        write_f64(out, d.as_secs_f64());
        out.push('\n');
    }
}
