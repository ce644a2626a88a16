// An agent for MCP Local Provider, to copy and make your own.
//
// It serves one model and answers every chat by streaming the last user
// message back, word by word: replace `reply()` with your own work. What
// it shows is the agent link protocol (docs/agent-protocol.md): register,
// stream an answer as `model_stream_chunk`s (or one `model_result` when
// the editor did not ask for a stream), hold an answer on `pause` until
// `resume`, drop it on `cancel`, answer `ping`, and when the link drops,
// dial again with backoff and ask for the same session back with its
// resume token.
//
//     npm install ws
//     node examples/agents/echo-agent.mjs --model js-echo
//
// The bridge token comes from --token, else MCP_PROVIDER_BRIDGE_TOKEN (as
// `. ~/.local/state/mcp-provider/env` sets it).

import WebSocket from "ws";
import { parseArgs } from "node:util";

const { values: args } = parseArgs({
  options: {
    url: { type: "string", default: process.env.MCP_PROVIDER_URL ?? "ws://127.0.0.1:8788/v1/agent" },
    token: { type: "string", default: process.env.MCP_PROVIDER_BRIDGE_TOKEN },
    model: { type: "string", default: "js-echo" },
    delay: { type: "string", default: "0" }, // milliseconds between words
  },
});
if (!args.token) {
  console.error("no bridge token: pass --token or set MCP_PROVIDER_BRIDGE_TOKEN");
  process.exit(2);
}

// The answer's text: here, the last user message (or the prompt).
function reply(payload) {
  if (payload.kind === "completion") return payload.prompt ?? "";
  const user = [...(payload.messages ?? [])].reverse().find((m) => m.role === "user");
  if (!user) return "";
  if (Array.isArray(user.content)) {
    return user.content.filter((p) => p.type === "text").map((p) => p.text).join(" ");
  }
  return user.content ?? "";
}

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));
let session = null; // [session_id, resume_token] once registered
const answers = new Map(); // invocation id -> { cancelled, paused, resume }

async function answer(ws, msg) {
  const { id, payload } = msg;
  const state = { cancelled: false, paused: false, resume: null };
  answers.set(id, state);
  const send = (frame) => ws.readyState === WebSocket.OPEN && ws.send(JSON.stringify(frame));
  try {
    if (payload.kind === "embedding") {
      return send({ type: "error", id, error: { message: "this agent makes no embeddings", code: "unsupported" } });
    }
    const text = reply(payload);
    const words = text.split(" ");
    const usage = { prompt_tokens: words.length, completion_tokens: words.length };
    if (!payload.parameters?.stream) {
      const choice = { index: 0, message: { role: "assistant", content: text }, finish_reason: "stop" };
      return send({ type: "model_result", id, status: "ok", result: { choices: [choice], usage } });
    }
    for (let index = 0; index < words.length; index++) {
      while (state.paused) await new Promise((go) => (state.resume = go)); // the editor is behind
      if (state.cancelled) return;
      const last = index === words.length - 1;
      const chunk = {
        type: "model_stream_chunk", id, chunk_index: index,
        delta: { content: last ? words[index] : words[index] + " " },
        finish_reason: last ? "stop" : null,
      };
      if (last) chunk.usage = usage;
      send(chunk);
      await sleep(Number(args.delay));
    }
  } finally {
    answers.delete(id);
  }
}

function handle(ws, text) {
  const msg = JSON.parse(text);
  const state = answers.get(msg.id);
  switch (msg.type) {
    case "registered":
      if (msg.resume_token) session = [msg.session_id, msg.resume_token];
      console.log(`Connected: session ${msg.session_id} is ${msg.status}`);
      break;
    case "ping":
      ws.send(JSON.stringify({ type: "pong" }));
      break;
    case "model_invoke":
      answer(ws, msg);
      break;
    case "cancel":
      if (state) Object.assign(state, { cancelled: true, paused: false }), state.resume?.();
      break;
    case "pause":
      if (state) state.paused = true;
      break;
    case "resume":
      if (state) (state.paused = false), state.resume?.();
      break;
    case "error": case "revoked": case "expired":
      console.log(`The provider says: ${text}`);
  }
}

// Serves one link; resolves with its close code when it ends.
function serve() {
  return new Promise((ended) => {
    const ws = new WebSocket(args.url, { headers: { Authorization: `Bearer ${args.token}` } });
    ws.on("open", () => {
      wait = 100;
      const register = { type: "register", agent_id: "echo-example", label: "JavaScript example agent", models: [args.model] };
      if (session) [register.session_id, register.resume_token] = session; // a reconnect
      ws.send(JSON.stringify(register));
    });
    ws.on("message", (data) => handle(ws, data.toString()));
    ws.on("unexpected-response", (_request, response) => {
      if (response.statusCode === 401 || response.statusCode === 403) {
        console.error("the provider refused the bridge token");
        process.exit(2);
      }
    });
    ws.on("error", () => {}); // "close" follows
    ws.on("close", (code) => ended(code));
  });
}

let wait = 100;
for (;;) {
  const code = await serve();
  if (code === 1008) break; // revoked: do not come back
  for (const state of answers.values()) Object.assign(state, { cancelled: true, paused: false }), state.resume?.();
  console.log(`The link to ${args.url} ended; reconnecting in ${(wait / 1000).toFixed(1)} s`);
  await sleep(wait);
  wait = Math.min(wait * 2, 30000);
}
