#!/usr/bin/env python3
"""Peak server memory under the three slow-reader attacks, for BENCHMARKS.md.

    .venv/bin/python scripts/attacks.py [--bin-dir target/release] [--runtime smol|blocking]

Each attack runs against a fresh server for a few seconds while its RSS is
read from /proc every 50 ms; one JSON line per attack gives the idle and
peak RSS in MB:

  agent-stream   an agent streams 16 KiB chunks as fast as it can to an
                 editor that never reads
  agent-whole    the same, for a non-streamed (whole) answer
  echo-unread    four echo requests with a 1 MiB prompt, never read
  pipeline       a request waiting on a silent agent, then garbage
                 pipelined behind it as fast as the socket takes it

and, as a check that bounding memory costs a reading editor nothing:

  echo-read      one echo request with a 1 MiB prompt read as fast as the
                 client can: seconds to the last byte
"""

import argparse
import json
import os
import socket
import subprocess
import threading
import time
import warnings
from pathlib import Path

from websockets.sync.client import connect as ws_connect

ROOT = Path(__file__).resolve().parent.parent
BINARIES = {"smol": "mcp-provider", "blocking": "mcp-provider-blocking"}
KEY, TOKEN = "sk-attack", "bt-attack"
SECONDS = 5

warnings.simplefilter("ignore", DeprecationWarning)


def start(binary):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_PROVIDER_")}
    env.update({"MCP_PROVIDER_API_KEY": KEY, "MCP_PROVIDER_BRIDGE_TOKEN": TOKEN, "RUST_LOG": "error"})
    proc = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, env=env, text=True)
    for line in proc.stdout:
        if "listening on http://" in line:
            port = int(line.rsplit(":", 1)[1])
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            time.sleep(0.3)
            return proc, port
    raise SystemExit(f"{binary} did not start")


def rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def request(port, model, content, stream):
    body = json.dumps({"model": model, "stream": stream, "messages": [{"role": "user", "content": content}]}).encode()
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    return s


def agent(port, model, answer):
    """A link agent serving `model`; `answer(ws, invoke)` runs per request."""
    ws = ws_connect(f"ws://127.0.0.1:{port}/v1/agent", additional_headers={"Authorization": f"Bearer {TOKEN}"})
    ws.send(json.dumps({"type": "register", "agent_id": "attack", "models": [model]}))
    ws.recv()

    def run():
        try:
            for text in ws:
                m = json.loads(text)
                if m.get("type") == "model_invoke":
                    threading.Thread(target=answer, args=(ws, m), daemon=True).start()
        except Exception:
            pass

    threading.Thread(target=run, daemon=True).start()
    return ws


def firehose(stop):
    piece = "y" * 16384

    def answer(ws, invoke):
        i = 0
        try:
            while not stop.is_set():
                ws.send(json.dumps({"type": "model_stream_chunk", "id": invoke["id"], "chunk_index": i, "delta": {"content": piece}}))
                i += 1
        except Exception:
            pass

    return answer


def echo_read(binary):
    proc, port = start(binary)
    try:
        s = request(port, "echo", "abcdefg " * (1 << 17), True)
        started = time.monotonic()
        received, tail = 0, b""
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            received += len(chunk)
            tail = (tail + chunk)[-5:]
            if tail == b"0\r\n\r\n":
                break
        seconds = time.monotonic() - started
        s.close()
        return {"attack": "echo-read", "bytes": received, "read_seconds": round(seconds, 3)}
    finally:
        proc.kill()
        proc.wait()


def attack(binary, name):
    if name == "echo-read":
        return echo_read(binary)
    proc, port = start(binary)
    idle = rss_mb(proc.pid)
    stop = threading.Event()
    held = []
    try:
        if name in ("agent-stream", "agent-whole"):
            held.append(agent(port, "hose", firehose(stop)))
            held.append(request(port, "hose", "x", name == "agent-stream"))
        elif name == "echo-unread":
            prompt = "abcdefg " * (1 << 17)
            held += [request(port, "echo", prompt, True) for _ in range(4)]
        elif name == "pipeline":
            held.append(agent(port, "silent", lambda ws, invoke: None))
            s = request(port, "silent", "x", True)
            held.append(s)
            junk = b"x" * (1 << 20)

            def flood():
                try:
                    while not stop.is_set():
                        s.sendall(junk)
                except OSError:
                    pass

            threading.Thread(target=flood, daemon=True).start()
        peak = idle
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline and proc.poll() is None:
            peak = max(peak, rss_mb(proc.pid))
            time.sleep(0.05)
        return {"attack": name, "idle_rss_mb": round(idle, 1), "peak_rss_mb": round(peak, 1), "seconds": SECONDS}
    finally:
        stop.set()
        proc.kill()
        proc.wait()
        for h in held:
            try:
                h.close()
            except Exception:
                pass


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin-dir", default=str(ROOT / "target" / "release"))
    parser.add_argument("--runtime", choices=sorted(BINARIES), default="smol")
    parser.add_argument("--attack", action="append", choices=["agent-stream", "agent-whole", "echo-unread", "pipeline", "echo-read"])
    args = parser.parse_args()
    binary = str(Path(args.bin_dir) / BINARIES[args.runtime])
    for name in args.attack or ["agent-stream", "agent-whole", "echo-unread", "pipeline"]:
        print(json.dumps({"runtime": args.runtime, **attack(binary, name)}), flush=True)


if __name__ == "__main__":
    main()
