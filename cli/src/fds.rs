//! Open files: the soft limit raised to the hard one at start-up, so the
//! connection cap, not the kernel, decides when a connection is refused
//! (a refused `accept` cannot even be answered with a 503).

/// Files kept free for listeners, logs, the agent hub and the like.
const RESERVED: u64 = 64;

/// Raises the soft limit on open files as far as the hard limit allows and
/// returns it (`None` where it cannot be read).
pub fn raise_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit for the call to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit; failure leaves the old one.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    Some(limit.rlim_cur)
}

/// The most connections `fd_limit` files can carry at `per_connection`
/// files each.
pub fn connections_within(fd_limit: u64, per_connection: usize) -> usize {
    let per = per_connection.max(1) as u64;
    usize::try_from(fd_limit.saturating_sub(RESERVED) / per).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_leave_room_for_the_reserve() {
        assert_eq!(connections_within(1024, 1), 960);
        assert_eq!(connections_within(1024, 3), 320);
        assert_eq!(connections_within(10, 2), 0);
        assert!(raise_limit().is_some_and(|n| n > RESERVED));
    }
}
