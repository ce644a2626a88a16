//! The agents' processes, as a runtime runs them against a remote
//! provider: [`dial`]ing an agent link and dialing it again, `agent exec`
//! and `agent acp` ([`exec`]) with the homes of their runs (`run_home`)
//! and the editor's tools ([`relay`]), and `agent mcp` ([`host`]).

pub mod dial;
pub mod exec;
pub mod host;
pub mod relay;
pub(crate) mod run_home;
