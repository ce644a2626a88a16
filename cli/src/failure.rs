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
