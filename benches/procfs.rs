//! What the load generators read of a server process in `/proc`: its
//! resident memory, its CPU time, its children, and which runtime it runs.

/// A process's resident memory in MB, from `/proc/PID/status` (`field` is
/// `VmRSS` for now or `VmHWM` for the peak).
pub fn rss_mb(pid: u32, field: &str) -> Option<f64> {
    let kb = rss_kb(pid, field)? as f64;
    Some((kb / 1024.0 * 10.0).round() / 10.0)
}

/// [`rss_mb`] in kB, as `/proc` has it: for differences smaller than a MB.
pub fn rss_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time a process has used, user and system, in seconds: fields 14
/// and 15 of `/proc/PID/stat` (threads that ended included), in Linux's
/// fixed 100 ticks per second.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat).map(|s| s.cpu_ticks as f64 / 100.0)
}

/// A reading of a process's CPU time, to measure the time between two:
/// its threads' own run times (to the nanosecond, from each one's
/// `schedstat`) and its 10 ms ticks (which also count threads that have
/// ended). A run of a few hundred milliseconds is a few dozen ticks, too
/// coarse to tell two servers 5% apart.
#[derive(Debug)]
pub struct CpuReading {
    ticks: u64,
    /// (thread id, nanoseconds run), by thread id.
    threads: Vec<(u32, u64)>,
}

impl CpuReading {
    pub fn of(pid: u32) -> Option<CpuReading> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let ticks = parse_stat(&stat)?.cpu_ticks;
        let mut threads: Vec<(u32, u64)> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .ok()?
            .filter_map(|entry| {
                let tid = entry.ok()?.file_name().to_str()?.parse().ok()?;
                let schedstat =
                    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat")).ok()?;
                Some((tid, schedstat.split_whitespace().next()?.parse().ok()?))
            })
            .collect();
        threads.sort_unstable();
        Some(CpuReading { ticks, threads })
    }

    /// Seconds of CPU used since `before`: from the threads' own run
    /// times when the same threads ran throughout, else from the ticks.
    pub fn seconds_since(&self, before: &CpuReading) -> f64 {
        let same = self.threads.len() == before.threads.len()
            && self
                .threads
                .iter()
                .zip(&before.threads)
                .all(|(a, b)| a.0 == b.0);
        if same {
            let total = |r: &CpuReading| r.threads.iter().map(|t| t.1).sum::<u64>();
            total(self).saturating_sub(total(before)) as f64 / 1e9
        } else {
            self.ticks.saturating_sub(before.ticks) as f64 / 100.0
        }
    }
}

/// The processes whose parent is `pid`, in ascending order.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<u32> = dir
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&child: &u32| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| parse_stat(&stat))
                .is_some_and(|s| s.ppid == pid)
        })
        .collect();
    found.sort_unstable();
    found
}

/// Which runtime a provider process runs, from its executable's name:
/// `smol`, `blocking`, another name, or `unknown`.
pub fn runtime_of(pid: Option<u32>) -> String {
    let exe = pid.and_then(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).ok());
    match exe.as_ref().and_then(|p| p.file_name()?.to_str()) {
        Some(name) if name.contains("blocking") => "blocking".to_owned(),
        Some(name) if name.contains("tokio") => "tokio".to_owned(),
        Some(name) if name.starts_with("mcp-provider") => "smol".to_owned(),
        Some(name) => name.to_owned(),
        None => "unknown".to_owned(),
    }
}

/// The fields of `/proc/PID/stat` the load generators use.
#[derive(Debug, PartialEq, Eq)]
pub struct Stat {
    pub ppid: u32,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
}

/// Parses one `/proc/PID/stat` line. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its last `)`.
pub fn parse_stat(stat: &str) -> Option<Stat> {
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().take(13).collect();
    // After the name: state (3), ppid (4), … utime (14), stime (15).
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Stat {
        ppid,
        cpu_ticks: utime + stime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line = "4242 (node (x) y) S 17 4242 4242 0 -1 4194560 3100 0 0 0 250 31 0 0 20 0 11 0 \
                    123 1234567 2000 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                ppid: 17,
                cpu_ticks: 281
            })
        );
        assert_eq!(parse_stat("4242 (short) S 1"), None);
    }

    #[test]
    fn this_process_is_its_parents_child_and_has_memory() {
        let me = std::process::id();
        let stat = std::fs::read_to_string(format!("/proc/{me}/stat")).unwrap();
        let parent = parse_stat(&stat).unwrap().ppid;
        assert!(children(parent).contains(&me));
        assert!(rss_mb(me, "VmRSS").is_some_and(|mb| mb > 0.0));
        assert!(cpu_seconds(me).is_some());
    }

    #[test]
    fn cpu_between_readings_counts_the_threads_or_else_the_ticks() {
        let reading = |ticks, threads: &[(u32, u64)]| CpuReading {
            ticks,
            threads: threads.to_vec(),
        };
        let before = reading(10, &[(1, 1_000), (2, 5_000)]);
        let same_threads = reading(11, &[(1, 2_501_000), (2, 5_000)]);
        assert_eq!(same_threads.seconds_since(&before), 0.0025);
        let one_ended = reading(13, &[(1, 2_500_000)]);
        assert_eq!(one_ended.seconds_since(&before), 0.03);
        let me = CpuReading::of(std::process::id()).unwrap();
        assert!(me.threads.iter().any(|t| t.0 == std::process::id()));
    }
}
