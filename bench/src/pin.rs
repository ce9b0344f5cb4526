//! CPU pinning with `taskset` (util-linux): Envoy on one core, the load tool
//! and everything else on the other.

use anyhow::{bail, Context as _};

/// Pins every thread of `pid` (and the threads it starts later) to `cores`
/// (a taskset list such as `0` or `0,1`).
pub fn pin(pid: u32, cores: &str) -> anyhow::Result<()> {
    let out = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cores, &pid.to_string()])
        .output()
        .context("running taskset (util-linux)")?;
    if !out.status.success() {
        bail!(
            "taskset -a -p -c {cores} {pid} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Pins this process; call before starting threads so they inherit it.
pub fn pin_self(cores: &str) -> anyhow::Result<()> {
    pin(std::process::id(), cores)
}
