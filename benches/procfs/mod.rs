//! Reading a process's memory from `/proc/PID/status` (Linux), for the benchmarks.

/// The value of `field` (such as `VmRSS:`) in KiB; 0 when the process or field is gone.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
