#!/usr/bin/env python3
"""An agent for MCP Local Provider, to copy and make your own.

It serves one model and answers every chat by streaming the last user
message back, word by word: replace `reply()` with your own work. What it
shows is the agent link protocol (docs/agent-protocol.md): register,
stream an answer as `model_stream_chunk`s (or one `model_result` when the
editor did not ask for a stream), hold an answer on `pause` until
`resume`, drop it on `cancel`, answer `ping`, and when the link drops,
dial again with backoff and ask for the same session back with its
resume token.

    pip install websockets
    python3 examples/agents/echo_agent.py --model py-echo

The bridge token comes from --token, else MCP_PROVIDER_BRIDGE_TOKEN (as
`. ~/.local/state/mcp-provider/env` sets it).
"""

import argparse
import asyncio
import json
import os
import sys

import websockets


def reply(payload):
    """The answer's text: here, the last user message (or the prompt)."""
    if payload.get("kind") == "completion":
        return payload.get("prompt", "")
    for message in reversed(payload.get("messages", [])):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # text and image parts
                return " ".join(p.get("text", "") for p in content if p.get("type") == "text")
            return content or ""
    return ""


class Agent:
    def __init__(self, model, delay):
        self.model, self.delay = model, delay
        self.session = None  # (session_id, resume_token) once registered
        self.answers = {}  # invocation id -> the task answering it
        self.gates = {}  # invocation id -> set while it may send

    def register(self):
        frame = {"type": "register", "agent_id": "echo-example", "label": "Python example agent",
                 "models": [self.model]}
        if self.session:  # a reconnect: ask for the same session back
            frame["session_id"], frame["resume_token"] = self.session
        return frame

    async def serve(self, ws):
        """Serves one link until it closes."""
        await ws.send(json.dumps(self.register()))
        async for text in ws:
            msg = json.loads(text)
            kind, invocation = msg.get("type"), msg.get("id")
            if kind == "registered":
                if msg.get("resume_token"):
                    self.session = (msg["session_id"], msg["resume_token"])
                print(f"Connected: session {msg['session_id']} is {msg['status']}", flush=True)
            elif kind == "ping":
                await ws.send(json.dumps({"type": "pong"}))
            elif kind == "model_invoke":
                self.gates[invocation] = gate = asyncio.Event()
                gate.set()
                self.answers[invocation] = asyncio.create_task(self.answer(ws, msg, gate))
            elif kind == "cancel" and invocation in self.answers:
                self.answers[invocation].cancel()
            elif kind == "pause" and invocation in self.gates:
                self.gates[invocation].clear()
            elif kind == "resume" and invocation in self.gates:
                self.gates[invocation].set()
            elif kind in ("error", "revoked", "expired"):
                print(f"The provider says: {text}", flush=True)

    async def answer(self, ws, msg, gate):
        invocation, payload = msg["id"], msg["payload"]
        try:
            if payload.get("kind") == "embedding":
                error = {"message": "this agent makes no embeddings", "code": "unsupported"}
                return await ws.send(json.dumps({"type": "error", "id": invocation, "error": error}))
            text = reply(payload)
            usage = {"prompt_tokens": len(text.split()), "completion_tokens": len(text.split())}
            if not payload.get("parameters", {}).get("stream"):
                choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                result = {"choices": [choice], "usage": usage}
                return await ws.send(json.dumps({"type": "model_result", "id": invocation, "status": "ok",
                                                 "result": result}))
            words = text.split(" ")
            for index, word in enumerate(words):
                await gate.wait()  # held while the editor is behind
                last = index == len(words) - 1
                chunk = {"type": "model_stream_chunk", "id": invocation, "chunk_index": index,
                         "delta": {"content": word if last else word + " "},
                         "finish_reason": "stop" if last else None}
                if last:
                    chunk["usage"] = usage
                await ws.send(json.dumps(chunk))
                await asyncio.sleep(self.delay)
        except (asyncio.CancelledError, websockets.ConnectionClosed):
            pass  # cancelled, or the link dropped: the provider failed the request
        finally:
            self.answers.pop(invocation, None)
            self.gates.pop(invocation, None)

    def link_lost(self):
        """The provider failed every request of the dropped link."""
        for task in list(self.answers.values()):
            task.cancel()


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("MCP_PROVIDER_URL", "ws://127.0.0.1:8788/v1/agent"))
    parser.add_argument("--token", default=os.environ.get("MCP_PROVIDER_BRIDGE_TOKEN"))
    parser.add_argument("--model", default="py-echo")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds between words")
    args = parser.parse_args()
    if not args.token:
        sys.exit("no bridge token: pass --token or set MCP_PROVIDER_BRIDGE_TOKEN")
    agent, wait = Agent(args.model, args.delay), 0.1
    while True:
        try:
            async with websockets.connect(args.url, additional_headers={"Authorization": f"Bearer {args.token}"},
                                          max_size=16 << 20) as ws:
                wait = 0.1
                await agent.serve(ws)
            if ws.close_code == 1008:  # revoked: do not come back
                return
        except websockets.InvalidStatus as refused:
            if refused.response.status_code in (401, 403):
                sys.exit("the provider refused the bridge token")
        except (OSError, websockets.ConnectionClosed, websockets.InvalidHandshake):
            pass  # down, restarting or cut off mid-handshake: try again
        agent.link_lost()
        print(f"The link to {args.url} ended; reconnecting in {wait:.1f} s", flush=True)
        await asyncio.sleep(wait)
        wait = min(wait * 2, 30)


if __name__ == "__main__":
    asyncio.run(main())
