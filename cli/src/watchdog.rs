//! The watchdog's own `main` (see the kit's `watchdog` module for what it
//! is for and how a runtime lists process groups with it).

use std::io::BufRead;
use std::process::ExitCode;

/// The watchdog's own `main`: keeps the list until its stdin ends, then
/// kills every group on it.
pub fn run() -> ExitCode {
    let mut groups = std::collections::HashSet::new();
    let stdin = std::io::stdin().lock();
    for line in stdin.lines() {
        let Ok(line) = line else { break };
        if let Some(pgid) = line.strip_prefix('+').and_then(|n| n.parse::<u32>().ok()) {
            groups.insert(pgid);
        } else if let Some(pgid) = line.strip_prefix('-').and_then(|n| n.parse::<u32>().ok()) {
            groups.remove(&pgid);
        }
    }
    for pgid in groups {
        mcp_provider_kit::process::kill_group(pgid);
    }
    ExitCode::SUCCESS
}
