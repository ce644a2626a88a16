//! Why an agent command's flags make no plan: a usage error (exit code 2)
//! said before anything is dialed or run.

use std::path::PathBuf;

use crate::secrets::SecretsError;

#[derive(Debug, thiserror::Error)]
pub enum BadArgs {
    /// Neither a preset nor a command: what the command needs, with an
    /// example.
    #[error("{0}")]
    NoCommand(&'static str),
    /// Flags that must be at least 1: `--max-running`.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    #[error("--cwd {}: no such directory", .0.display())]
    NoSuchDirectory(PathBuf),
    #[error("--cwd: {0}")]
    Cwd(std::io::Error),
    #[error("no working directory: {0}")]
    NoWorkingDirectory(std::io::Error),
    /// A preset's program that is not installed; `or` is what else to do.
    #[error("the {preset} preset runs `{program}`, which is not installed (not found on PATH, or not executable); install it with `{install}`{or}")]
    NotInstalled {
        preset: &'static str,
        program: String,
        install: &'static str,
        or: &'static str,
    },
    #[error("`{0}` is not an executable file")]
    NotExecutable(String),
    /// A program not found (`on`: " on PATH", when it was looked for there).
    #[error("`{program}` is not found{on} (or is not executable)")]
    NotFound { program: String, on: &'static str },
    /// The directory of the tool link cannot be made.
    #[error("{0}")]
    ToolLink(String),
    /// No bridge token to dial with.
    #[error(transparent)]
    Token(#[from] SecretsError),
}
