"""A real stand-in server process for lifecycle and metrics tests (no model, stdlib only).

``python standin_server.py --port N --mode MODE [--metrics FILE ...] [--delay S]``

* ``ok``: /health answers 200 at once (after ``--delay`` seconds of "loading");
* ``never_healthy``: listens, but /health answers 503 forever;
* ``crash``: exits with code 3 after ``--delay`` seconds, never healthy;
* ``ignore_term``: healthy, but ignores SIGTERM (to test the SIGKILL fallback).

``/metrics`` serves the ``--metrics`` files in turn, one per request, staying on the last
(404 without any), so a client's "before" and "after" scrapes see counters move.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mode", default="ok")
    ap.add_argument("--metrics", nargs="*", default=[])
    ap.add_argument("--delay", type=float, default=0.0)
    args = ap.parse_args()
    if args.mode == "crash":
        time.sleep(args.delay)
        print("fatal: could not load model (stand-in crash)", flush=True)
        sys.exit(3)
    if args.mode == "ignore_term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    texts = [Path(p).read_text() for p in args.metrics]
    state = {"i": 0}
    time.sleep(args.delay)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *a: object) -> None:  # quiet
            pass

        def _send(self, code: int, body: str, ctype: str = "text/plain") -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/health":
                self._send(503 if args.mode == "never_healthy" else 200, "")
            elif self.path == "/metrics" and texts:
                i = min(state["i"], len(texts) - 1)
                state["i"] += 1
                self._send(200, texts[i], "text/plain; version=0.0.4")
            elif self.path == "/v1/models":
                self._send(200, '{"object":"list","data":[{"id":"standin"}]}', "application/json")
            else:
                self._send(404, "not found")

    print(f"listening on {args.port}", flush=True)
    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
