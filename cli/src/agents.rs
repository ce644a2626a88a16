//! The agent commands: each one's plan from its flags, the link it dials,
//! then the runtime's agent until the link ends.

use std::time::Duration;

use mcp_provider_core::agent::host::HostPlan;
use mcp_provider_kit::agent::exec::{Plan, RemoteExec};
use mcp_provider_kit::agent::relay::ToolDir;
use mcp_provider_kit::{EchoAgentPlan, RemoteEcho, RemoteHost, Runtime};

use crate::bad_args::BadArgs;
use crate::dial::LinkArgs;
use crate::{acp, exec, terminal, Failure};

/// `agent echo`.
pub(crate) fn echo<R: Runtime>(
    link: LinkArgs,
    model: String,
    chunk_delay_ms: u64,
) -> Result<(), Failure> {
    let link = link.resolve().map_err(BadArgs::from)?;
    println!(
        "Connecting to {} as an echo agent for model `{model}`…",
        link.url
    );
    R::agent_echo(
        RemoteEcho {
            link,
            agent: EchoAgentPlan {
                model,
                chunk_delay: Duration::from_millis(chunk_delay_ms),
            },
        },
        terminal::STDOUT,
    )?;
    Ok(())
}

/// `agent mcp`.
pub(crate) fn mcp<R: Runtime>(
    link: LinkArgs,
    model: String,
    sampling: bool,
) -> Result<(), Failure> {
    let link = link.resolve().map_err(BadArgs::from)?;
    // stdout carries the MCP messages: everything else is for stderr.
    eprintln!(
        "Connecting to {} to serve model `{model}` through this MCP host…",
        link.url
    );
    R::agent_mcp(
        RemoteHost {
            link,
            plan: HostPlan { model, sampling },
        },
        terminal::STDERR,
    )?;
    Ok(())
}

/// `agent exec`: the plan, the tool link when its CLI can take the
/// editor's tools (its directory kept until the agent ends), then the runs.
pub(crate) fn exec<R: Runtime>(args: &exec::ExecArgs) -> Result<(), Failure> {
    let mut plan = args.plan()?;
    args.check_runnable(&plan)?;
    let link = args.link.clone().resolve().map_err(BadArgs::from)?;
    let tool_dir = args.tools(&mut plan)?;
    println!(
        "Connecting to {} to serve model `{}` by running `{}` per request…",
        link.url,
        plan.model,
        plan.command.join(" ")
    );
    R::agent_exec(
        RemoteExec {
            link,
            plan: Plan::Exec(plan),
            cwd: args.cwd(),
            pass_env: args.pass_env(),
            tool_socket: tool_dir.as_ref().map(ToolDir::socket),
            run_homes: tool_dir.as_ref().map(ToolDir::homes),
        },
        terminal::STDOUT,
    )?;
    Ok(())
}

/// `agent acp`: the plan, then the agent kept running (started with the
/// first request).
pub(crate) fn acp<R: Runtime>(args: &acp::AcpArgs) -> Result<(), Failure> {
    let mut plan = args.plan()?;
    let link = args.link.clone().resolve().map_err(BadArgs::from)?;
    let tool_dir = args.tools(&mut plan)?;
    println!(
        "Connecting to {} to serve model `{}` with `{}` over ACP…",
        link.url,
        plan.model,
        plan.command.join(" ")
    );
    R::agent_exec(
        RemoteExec {
            link,
            plan: Plan::Acp(plan),
            cwd: args.cwd(),
            pass_env: args.pass_env(),
            tool_socket: Some(tool_dir.socket()),
            run_homes: None,
        },
        terminal::STDOUT,
    )?;
    Ok(())
}
