//! What /proc tells about a process and the CPUs: resident memory, CPU time,
//! per-core busy time, machine details.

use anyhow::{anyhow, Context as _};

/// Resident set size in KiB (`VmRSS` of /proc/<pid>/status).
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    parse_rss_kib(&text).ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))
}

pub fn parse_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// User + system CPU time of a process (all its threads), in clock ticks.
pub fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    parse_cpu_ticks(&text).ok_or_else(|| anyhow!("unexpected /proc/{pid}/stat: {text}"))
}

/// Fields 14 and 15 (utime, stime) of /proc/<pid>/stat; the command name
/// (field 2) may hold spaces and parentheses, so count after its last `)`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 on Linux if that fails).
pub fn ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Busy and total jiffies of one core, from /proc/stat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoreTimes {
    pub busy: u64,
    pub total: u64,
}

impl CoreTimes {
    /// Share of the interval since `earlier` this core was busy, 0–1.
    pub fn busy_since(&self, earlier: &CoreTimes) -> f64 {
        let total = self.total.saturating_sub(earlier.total);
        if total == 0 {
            return 0.0;
        }
        self.busy.saturating_sub(earlier.busy) as f64 / total as f64
    }
}

pub fn core_times(core: usize) -> anyhow::Result<CoreTimes> {
    let text = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    parse_core_times(&text, core).ok_or_else(|| anyhow!("no cpu{core} line in /proc/stat"))
}

/// `cpuN user nice system idle iowait irq softirq steal …`: idle and iowait
/// are not busy.
pub fn parse_core_times(stat: &str, core: usize) -> Option<CoreTimes> {
    let label = format!("cpu{core}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(label.as_str()))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|n| n.parse().ok())
        .collect::<Option<_>>()?;
    let total: u64 = v.iter().sum();
    let idle = v.get(3)? + v.get(4)?;
    Some(CoreTimes {
        busy: total - idle,
        total,
    })
}

/// Machine details for the report.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub loadavg: String,
}

pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    Machine {
        cpus: cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count(),
        cpu_model: cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into()),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        loadavg: loadavg(),
    }
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_from_status() {
        let s = "Name:\tenvoy\nVmPeak:\t 9 kB\nVmRSS:\t   51234 kB\nThreads: 9\n";
        assert_eq!(parse_rss_kib(s), Some(51234));
        assert_eq!(parse_rss_kib("Name: x\n"), None);
    }

    #[test]
    fn cpu_ticks_after_a_tricky_name() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
        let s = "42 (my (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9";
        assert_eq!(parse_cpu_ticks(s), Some(325));
        assert_eq!(parse_cpu_ticks("42 (x) S 1"), None);
    }

    #[test]
    fn core_busy_share() {
        let a = "cpu  1 1 1 1 1 1 1 1\ncpu0 100 0 50 800 50 0 0 0 0 0\ncpu1 10 0 0 90 0 0 0 0\n";
        let b = "cpu  1 1 1 1 1 1 1 1\ncpu0 160 0 70 810 60 0 0 0 0 0\ncpu1 10 0 0 190 0 0 0 0\n";
        let (a0, b0) = (
            parse_core_times(a, 0).unwrap(),
            parse_core_times(b, 0).unwrap(),
        );
        assert_eq!(a0.total, 1000);
        assert!((b0.busy_since(&a0) - 0.8).abs() < 1e-9);
        let (a1, b1) = (
            parse_core_times(a, 1).unwrap(),
            parse_core_times(b, 1).unwrap(),
        );
        assert_eq!(b1.busy_since(&a1), 0.0);
        assert!(parse_core_times(a, 7).is_none());
    }
}
