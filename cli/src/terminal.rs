//! What an agent process prints for its user: lines at once, and what its
//! provider's frames tell (the kit's `link_notice`) — on stdout, or on
//! stderr for `agent mcp`, whose stdout carries MCP messages.

use std::io::Write;

use mcp_provider_kit::{link_notice, Terminal};

/// An agent's terminal: its user reads stdout.
pub const STDOUT: Terminal = Terminal {
    say,
    notice: print_link_notice,
};

/// `agent mcp`'s terminal: stderr.
pub const STDERR: Terminal = Terminal {
    say: say_on_stderr,
    notice: print_link_notice_on_stderr,
};

/// Prints a line for the user of an agent process, at once.
fn say(line: &str) {
    println!("{line}");
    let _ = std::io::stdout().flush();
}

/// Prints a line for the user of `agent mcp`.
fn say_on_stderr(line: &str) {
    eprintln!("{line}");
}

/// Prints a [`link_notice`] for `frame`, if it has one.
fn print_link_notice(frame: &str) {
    if let Some(line) = link_notice(frame) {
        say(&line);
    }
}

/// [`print_link_notice`] on stderr.
fn print_link_notice_on_stderr(frame: &str) {
    if let Some(line) = link_notice(frame) {
        say_on_stderr(&line);
    }
}
