//! The CLI agents `agent exec` knows: the flags that make each one run
//! headless with machine-readable streaming output, where its prompt goes,
//! and which parser reads it.

use super::claude::StreamJson;
use super::codex::Codex;
use super::cursor::CursorAgent;
use super::gemini::Gemini;
use super::output::{Lines, OutputFormat};
use super::plain::Plain;

/// Where an argument template puts the prompt; a command without it gets
/// the prompt on stdin.
pub const PROMPT: &str = "{prompt}";

/// The longest one argument may be: Linux's `MAX_ARG_STRLEN` (32 pages of
/// 4 KiB, its terminating NUL included). A prompt that makes an argument
/// longer cannot be passed that way, so it is refused before the run
/// starts, with a reason the editor can act on, instead of failing in
/// `exec` as "Argument list too long".
pub const MAX_ARGUMENT: usize = 32 * 4096 - 1;

/// Where a resume command puts the CLI's session id.
pub const SESSION: &str = "{session}";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Claude,
    Qwen,
    Gemini,
    Codex,
    CursorAgent,
}

/// How a run's stdout is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Text as printed.
    Plain,
    /// Claude Code's and qwen-code's stream-json.
    StreamJson,
    Gemini,
    Codex,
    CursorAgent,
}

impl Format {
    /// Whether the usage a resumed session reports is the session's running
    /// total rather than the turn's (codex).
    pub fn cumulative_usage(self) -> bool {
        self == Format::Codex
    }

    /// A fresh parser for one run.
    pub fn parser(self) -> Box<dyn OutputFormat> {
        match self {
            Format::Plain => Box::new(Plain::default()),
            Format::StreamJson => Box::new(Lines::new(StreamJson::default())),
            Format::Gemini => Box::new(Lines::new(Gemini::default())),
            Format::Codex => Box::new(Lines::new(Codex::default())),
            Format::CursorAgent => Box::new(Lines::new(CursorAgent::default())),
        }
    }
}

impl Preset {
    pub const ALL: [Preset; 5] = [
        Preset::Claude,
        Preset::Qwen,
        Preset::Gemini,
        Preset::Codex,
        Preset::CursorAgent,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Preset::Claude => "claude",
            Preset::Qwen => "qwen",
            Preset::Gemini => "gemini",
            Preset::Codex => "codex",
            Preset::CursorAgent => "cursor-agent",
        }
    }

    pub fn from_name(name: &str) -> Option<Preset> {
        Preset::ALL.into_iter().find(|p| p.name() == name)
    }

    /// How a user gets the CLI, for the message when it is not installed.
    pub fn install(self) -> &'static str {
        match self {
            Preset::Claude => "npm install -g @anthropic-ai/claude-code",
            Preset::Qwen => "npm install -g @qwen-code/qwen-code",
            Preset::Gemini => "npm install -g @google/gemini-cli",
            Preset::Codex => "npm install -g @openai/codex",
            Preset::CursorAgent => "curl https://cursor.com/install -fsS | bash",
        }
    }

    pub fn format(self) -> Format {
        match self {
            Preset::Claude | Preset::Qwen => Format::StreamJson,
            Preset::Gemini => Format::Gemini,
            Preset::Codex => Format::Codex,
            Preset::CursorAgent => Format::CursorAgent,
        }
    }

    /// The command line, with `extra` arguments (the user's, after `--`)
    /// before the prompt's place. Every preset's CLI gets its prompt on
    /// stdin (claude and cursor-agent, whose `-p` reads piped stdin when no
    /// prompt argument is given; codex, told so by `-`; qwen and gemini,
    /// which take piped stdin as the prompt when `-p` is not given): an
    /// editor's message can then never be read as one of the CLI's options
    /// (`--version`, `--yolo`), whatever the CLI makes of `--`, and its
    /// length is not limited by the OS's for one argument (128 KiB on
    /// Linux).
    pub fn command(self, extra: &[String]) -> Vec<String> {
        self.command_with(extra, &[])
    }

    /// [`Preset::command`] with `more` arguments after the user's.
    fn command_with(self, extra: &[String], more: &[&str]) -> Vec<String> {
        let (head, tail): (&[&str], &[&str]) = match self {
            Preset::Claude => (
                &[
                    "claude",
                    "-p",
                    "--output-format",
                    "stream-json",
                    "--verbose",
                    "--include-partial-messages",
                ],
                &[],
            ),
            Preset::Qwen => (
                &[
                    "qwen",
                    "--output-format",
                    "stream-json",
                    "--include-partial-messages",
                ],
                &[],
            ),
            Preset::Gemini => (&["gemini", "--output-format", "stream-json"], &[]),
            Preset::Codex => (
                &["codex", "exec", "--json", "--skip-git-repo-check"],
                &["-"],
            ),
            Preset::CursorAgent => (
                &[
                    "cursor-agent",
                    "-p",
                    "--output-format",
                    "stream-json",
                    "--stream-partial-output",
                ],
                &[],
            ),
        };
        let words = |w: &[&str]| w.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let mut command = words(head);
        command.extend_from_slice(extra);
        command.extend(words(more));
        command.extend(words(tail));
        command
    }
}

/// qwen-code in one process: without it, every run starts Node again to
/// relaunch itself with a heap of half the machine's memory, which costs
/// one to two seconds before a one-shot answer's first token. A user who
/// wants the bigger heap sets `NODE_OPTIONS=--max-old-space-size=…`.
pub const QWEN_ONE_PROCESS: (&str, &str) = ("QWEN_CODE_NO_RELAUNCH", "true");

/// gemini in one process: without it, every run starts Node again under a
/// supervisor that exists to restart an interactive session (and to give
/// it a bigger heap), the same second or two for nothing headless.
pub const GEMINI_ONE_PROCESS: (&str, &str) = ("GEMINI_CLI_NO_RELAUNCH", "true");

impl Preset {
    /// Variables the CLI is run with beside the inherited ones.
    pub fn env(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Preset::Qwen => &[QWEN_ONE_PROCESS],
            Preset::Gemini => &[GEMINI_ONE_PROCESS],
            Preset::Claude | Preset::Codex | Preset::CursorAgent => &[],
        }
    }

    /// The command that continues the CLI's session [`SESSION`] with a new
    /// prompt, for the CLIs whose resuming is known to work headless:
    /// claude, qwen and gemini (`--resume`; qwen and gemini find a session
    /// only from the working directory it was made in, which is every
    /// run's) and codex (`exec resume`).
    pub fn resume_command(self, extra: &[String]) -> Option<Vec<String>> {
        let mut command = match self {
            Preset::Claude | Preset::Qwen | Preset::Gemini => {
                return Some(self.command_with(extra, &["--resume", SESSION]));
            }
            Preset::Codex => ["codex", "exec", "resume", "--json", "--skip-git-repo-check"]
                .map(str::to_owned)
                .to_vec(),
            Preset::CursorAgent => return None,
        };
        command.extend_from_slice(extra);
        command.extend([SESSION.to_owned(), "-".to_owned()]);
        Some(command)
    }
}

/// The argument list for a run: `{prompt}` replaced in every argument, and
/// whether the prompt still has to go on stdin (no argument took it).
pub fn arguments(command: &[String], prompt: &str) -> (Vec<String>, bool) {
    let templated = command.iter().any(|a| a.contains(PROMPT));
    let argv = command.iter().map(|a| a.replace(PROMPT, prompt)).collect();
    (argv, !templated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_arguments_go_before_the_prompt() {
        let extra = ["--model".to_owned(), "o4".to_owned()];
        let codex = Preset::Codex.command(&extra);
        assert_eq!(codex.last().map(String::as_str), Some("-"));
        assert_eq!(codex[codex.len() - 3..codex.len() - 1], extra);
        let cursor = Preset::CursorAgent.command(&extra);
        assert_eq!(cursor[cursor.len() - 2..], extra);
        for preset in Preset::ALL {
            assert_eq!(Preset::from_name(preset.name()), Some(preset));
        }
        let resume = Preset::Codex.resume_command(&extra).unwrap();
        assert_eq!(
            resume[3..],
            [
                "--json",
                "--skip-git-repo-check",
                "--model",
                "o4",
                SESSION,
                "-"
            ]
        );
        let resume = Preset::Claude.resume_command(&[]).unwrap();
        assert_eq!(resume[resume.len() - 2..], ["--resume", SESSION]);
        let resume = Preset::Gemini.resume_command(&extra).unwrap();
        assert_eq!(resume[3..], ["--model", "o4", "--resume", SESSION]);
    }

    #[test]
    fn r3_cursor_no_preset_has_its_prompt_on_the_command_line() {
        // An editor's message is not a place for the CLI's options, and an
        // argument is limited in length: every preset's CLI gets its prompt
        // on stdin, resumed or not.
        for preset in Preset::ALL {
            let (argv, stdin) = arguments(&preset.command(&[]), "--version");
            assert!(stdin, "{preset:?}");
            assert!(!argv.iter().any(|a| a == "--version"), "{preset:?}");
            if let Some(resume) = preset.resume_command(&[]) {
                let (argv, stdin) = arguments(&resume, "--yolo");
                assert!(stdin && !argv.iter().any(|a| a == "--yolo"), "{preset:?}");
            }
        }
    }
}
