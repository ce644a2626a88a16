//! Why the program stopped, and the exit code that says whose doing it
//! was: 2 for what the user typed or configured, 1 for the rest.

use std::process::ExitCode;

use mcp_provider_kit::RunError;

use crate::bad_args::BadArgs;
use crate::login::LoginError;
use crate::serve::ServeError;
use crate::settings::BadSettings;

#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    #[error(transparent)]
    Settings(#[from] BadSettings),
    #[error(transparent)]
    Args(#[from] BadArgs),
    #[error(transparent)]
    Login(#[from] LoginError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// The runtime stopped serving, or its agent stopped.
    #[error(transparent)]
    Run(#[from] RunError),
}

impl Failure {
    pub(crate) fn exit_code(&self) -> ExitCode {
        let usage = match self {
            Failure::Settings(_) | Failure::Args(_) => true,
            Failure::Login(e) => e.is_usage(),
            Failure::Serve(e) => e.is_usage(),
            Failure::Run(_) => false,
        };
        if usage {
            ExitCode::from(2)
        } else {
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_user_got_wrong_exits_with_2_the_rest_with_1() {
        let wrong = BadSettings("bad setting `listen`".into());
        for usage in [
            Failure::from(BadSettings(wrong.0.clone())),
            Failure::from(BadArgs::Zero("--max-running")),
            Failure::from(LoginError::NotRemote("r".into())),
            Failure::from(ServeError::Settings(wrong)),
        ] {
            assert_eq!(usage.exit_code(), ExitCode::from(2), "{usage}");
        }
        let io = || std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        for fault in [
            Failure::from(LoginError::NoStateDirectory),
            Failure::from(ServeError::Watch(io())),
            Failure::from(RunError::cannot("watch for signals")(io())),
        ] {
            assert_eq!(fault.exit_code(), ExitCode::FAILURE, "{fault}");
        }
    }
}
