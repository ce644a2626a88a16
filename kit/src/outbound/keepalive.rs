//! TCP keep-alive on the connections this process dials: a remote MCP
//! server, a provider an agent serves, an agent hub. A peer whose machine
//! went to sleep or whose network went away sends no FIN and no reset, and
//! a connection that only waits to read (an event stream, a call's answer
//! still to come) would wait on it forever. With probes, the kernel finds
//! such a peer gone and the read fails, as if the connection had broken.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

/// How long a connection is quiet before the first probe.
pub const IDLE: Duration = Duration::from_secs(60);
/// Between probes.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// Probes unanswered before the connection is given up.
pub const PROBES: u32 = 3;

/// Turns probes on for `socket`, a TCP socket.
pub fn keep_alive(socket: &impl AsFd) -> io::Result<()> {
    let fd = socket.as_fd().as_raw_fd();
    set(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1)?;
    #[cfg(target_os = "linux")]
    {
        set(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, secs(IDLE))?;
        set(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, secs(INTERVAL))?;
        set(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_KEEPCNT,
            PROBES as libc::c_int,
        )?;
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn secs(wait: Duration) -> libc::c_int {
    libc::c_int::try_from(wait.as_secs()).unwrap_or(libc::c_int::MAX)
}

fn set(
    fd: std::os::fd::RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `fd` is a socket borrowed for the call, and `value` an int
    // that outlives it, whose size is the length passed.
    let done = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            std::ptr::from_ref(&value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    match done {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    fn get(socket: &TcpStream, level: libc::c_int, name: libc::c_int) -> libc::c_int {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        let done = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                level,
                name,
                std::ptr::from_mut(&mut value).cast(),
                &mut len,
            )
        };
        assert_eq!(done, 0);
        value
    }

    #[test]
    fn a_dialed_socket_is_probed_once_quiet() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let socket = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        assert_eq!(get(&socket, libc::SOL_SOCKET, libc::SO_KEEPALIVE), 0);
        keep_alive(&socket).unwrap();
        assert_eq!(get(&socket, libc::SOL_SOCKET, libc::SO_KEEPALIVE), 1);
        #[cfg(target_os = "linux")]
        {
            assert_eq!(get(&socket, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE), 60);
            assert_eq!(get(&socket, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL), 10);
            assert_eq!(get(&socket, libc::IPPROTO_TCP, libc::TCP_KEEPCNT), 3);
        }
    }
}
