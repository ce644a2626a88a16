//! The raw stdio baseline: the MCP server spawned here and initialized,
//! then called by many callers sharing its one stdin/stdout pipe, each
//! answer routed back to its caller by JSON-RPC id.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::rpc;
use crate::Caller;

/// No answer within this long fails the call.
const TIMEOUT: Duration = Duration::from_secs(30);

/// One child and the routes of its answers.
pub struct Pipe {
    child: Mutex<Child>,
    pub pid: u32,
    stdin: Mutex<ChildStdin>,
    /// Each caller's slot: the receiving end of its answers, while no
    /// caller holds it. Answer ids are `call * slots + slot`.
    free: Mutex<Vec<Option<Receiver<String>>>>,
}

impl Pipe {
    /// Spawns `command` with room for `slots` callers at once, and does the
    /// MCP handshake with it.
    pub fn spawn(command: &[String], slots: usize) -> Result<Arc<Pipe>, String> {
        let (program, args) = command.split_first().ok_or("no command to run")?;
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let slots = slots.max(1);
        let (senders, receivers): (Vec<Sender<String>>, Vec<_>) =
            (0..slots).map(|_| mpsc::channel()).unzip();
        thread::Builder::new()
            .name("stdout".into())
            .spawn(move || route(BufReader::with_capacity(64 * 1024, stdout), senders))
            .map_err(|e| e.to_string())?;
        let pipe = Arc::new(Pipe {
            pid: child.id(),
            child: Mutex::new(child),
            stdin: Mutex::new(stdin),
            free: Mutex::new(receivers.into_iter().map(Some).collect()),
        });
        let mut first = pipe.caller(0)?;
        let answer = first.request(0, &rpc::initialize(0))?;
        rpc::result_of(&answer, 0)?;
        pipe.write(&format!("{}\n", rpc::INITIALIZED))?;
        Ok(pipe)
    }

    /// The caller of `slot` (each slot has one caller at a time).
    pub fn caller(self: &Arc<Self>, slot: usize) -> Result<DirectCaller, String> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let slots = free.len();
        let answers = free
            .get_mut(slot)
            .and_then(Option::take)
            .ok_or_else(|| format!("slot {slot} is taken or out of 0..{slots}"))?;
        Ok(DirectCaller {
            pipe: self.clone(),
            slot,
            slots,
            answers: Some(answers),
            line: String::new(),
            message: String::new(),
        })
    }

    /// Writes `line` (messages with their newlines) in one write.
    fn write(&self, line: &str) -> Result<(), String> {
        let mut stdin = self.stdin.lock().unwrap_or_else(|e| e.into_inner());
        stdin
            .write_all(line.as_bytes())
            .map_err(|e| format!("cannot write to the child: {e}"))
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Reads the child's stdout and hands each answer to the caller whose slot
/// its id names; everything else (notifications, the child's own
/// requests, noise) is dropped.
fn route(mut stdout: impl BufRead, senders: Vec<Sender<String>>) {
    let mut line = String::new();
    loop {
        line.clear();
        match stdout.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if let Some(id) = rpc::response_id(&line) {
            let slot = (id % senders.len() as u64) as usize;
            let _ = senders[slot].send(std::mem::take(&mut line));
        }
    }
}

/// One caller on the shared pipe.
pub struct DirectCaller {
    pipe: Arc<Pipe>,
    slot: usize,
    slots: usize,
    answers: Option<Receiver<String>>,
    line: String,
    message: String,
}

impl DirectCaller {
    /// Sends `json` (a request with id `id`, which must be this caller's)
    /// and waits for its answer; answers to earlier calls that timed out
    /// are skipped.
    fn request(&mut self, id: u64, json: &str) -> Result<String, String> {
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        line.push_str(json);
        line.push('\n');
        let sent = self.pipe.write(&line);
        self.line = line;
        sent?;
        let answers = self.answers.as_ref().ok_or("no slot")?;
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            let answer = answers.recv_timeout(wait).map_err(|e| match e {
                RecvTimeoutError::Timeout => format!("no answer within {TIMEOUT:?}"),
                RecvTimeoutError::Disconnected => "the child closed its stdout".to_owned(),
            })?;
            if rpc::response_id(&answer) == Some(id) {
                return Ok(answer);
            }
        }
    }
}

impl Caller for DirectCaller {
    fn call(&mut self, call: u64) -> Result<(), String> {
        // Call 0 of slot 0 would take the handshake's id: start at 1.
        let id = (call + 1) * self.slots as u64 + self.slot as u64;
        let mut message = std::mem::take(&mut self.message);
        rpc::echo_message(&mut message, self.slot, call, 0);
        let mut body = String::new();
        rpc::echo_call(&mut body, "echo", id, &message);
        let outcome = self
            .request(id, &body)
            .and_then(|answer| rpc::check_echo(&answer, id, &message));
        self.message = message;
        outcome
    }
}

impl Drop for DirectCaller {
    fn drop(&mut self) {
        let mut free = self.pipe.free.lock().unwrap_or_else(|e| e.into_inner());
        free[self.slot] = self.answers.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_reach_the_slot_their_id_names() {
        let (senders, receivers): (Vec<Sender<String>>, Vec<Receiver<String>>) =
            (0..4).map(|_| mpsc::channel()).unzip();
        let stdout = concat!(
            "{\"jsonrpc\":\"2.0\",\"id\":6,\"result\":{}}\n",
            "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}\n",
            "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"sampling/createMessage\"}\n",
            "{\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{}}\n",
            "not json\n",
            "{\"jsonrpc\":\"2.0\",\"id\":10,\"error\":{}}",
        );
        route(stdout.as_bytes(), senders);
        let got: Vec<Vec<Option<u64>>> = receivers
            .iter()
            .map(|r| r.try_iter().map(|l| rpc::response_id(&l)).collect())
            .collect();
        assert_eq!(
            got,
            [vec![], vec![Some(9)], vec![Some(6), Some(10)], vec![]]
        );
    }

    /// A stand-in MCP server in `sh`: answers `initialize`, ignores the
    /// notification, echoes each call's message; shows the whole path.
    #[test]
    fn callers_share_one_child_and_each_gets_its_own_echo() {
        let script = r#"
            while IFS= read -r line; do
              id=$(printf '%s' "$line" | sed -n 's/.*"id":\([0-9]*\).*/\1/p')
              msg=$(printf '%s' "$line" | sed -n 's/.*"message":"\([^"]*\)".*/\1/p')
              [ -z "$id" ] && continue
              case "$line" in
                *initialize*) printf '{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-06-18"}}\n' "$id" ;;
                *) printf '{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"Echo: %s"}]}}\n' "$id" "$msg" ;;
              esac
            done"#;
        let command = ["sh".to_owned(), "-c".to_owned(), script.to_owned()];
        let pipe = Pipe::spawn(&command, 3).unwrap();
        let mut callers: Vec<DirectCaller> = (0..3).map(|s| pipe.caller(s).unwrap()).collect();
        assert!(pipe.caller(1).is_err());
        for call in 0..3 {
            for c in &mut callers {
                c.call(call).unwrap();
            }
        }
        drop(callers);
        assert!(pipe.caller(1).is_ok());
    }
}
