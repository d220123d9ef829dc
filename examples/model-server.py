#!/usr/bin/env python3
"""A stand-in OpenAI-compatible model server for trying infergate: Python's standard library
only, no model. It answers

  GET  /v1/models             one model, "demo"
  POST /v1/chat/completions   the last user message echoed back as the answer, as one JSON
                              object or, with "stream": true, as server-sent events (one
                              chunk per word, then "data: [DONE]"); usage counted in words
  POST /v1/completions        the same for a "prompt"

An answer has at most max_completion_tokens (or max_tokens) words.

Usage: python3 examples/model-server.py [--port 9000] [--host 127.0.0.1]
With --port 0 it takes a free port and prints `listening on http://HOST:PORT` first.
Answers depend on the request's messages or prompt alone (ids derived from them, a fixed
`created`), so the same request gets the same bytes back.
"""

import argparse
import hashlib
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "demo"
CREATED = 1735689600


def words_of(request):
    if "messages" in request:
        users = [m for m in request.get("messages") or [] if m.get("role") == "user"]
        text = users[-1].get("content", "") if users else ""
        if isinstance(text, list):
            text = " ".join(part.get("text", "") for part in text if isinstance(part, dict))
    else:
        text = request.get("prompt", "")
    return str(text).split() or ["(empty)"]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def answer(self, status, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.rstrip("/").endswith("/models"):
            self.answer(200, {"object": "list", "data": [
                {"id": MODEL, "object": "model", "created": 0, "owned_by": "infergate-example"}]})
        else:
            self.answer(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        try:
            request = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError as err:
            return self.answer(400, {"error": {"message": f"body is not JSON: {err}",
                                               "type": "invalid_request_error"}})
        chat = self.path.rstrip("/").endswith("/chat/completions")
        if not chat and not self.path.rstrip("/").endswith("/completions"):
            return self.answer(404, {"error": {"message": f"no route {self.path}",
                                               "type": "not_found"}})
        words = words_of(request)
        cap = request.get("max_completion_tokens") or request.get("max_tokens")
        if isinstance(cap, int) and cap > 0:
            words = words[:cap]  # the answer stops at its token cap ("finish_reason" stays "stop")
        texts = [m.get("content", "") for m in request.get("messages") or []] if chat \
            else [request.get("prompt", "")]
        prompt_tokens = sum(len(str(t).split()) for t in texts)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(words),
                 "total_tokens": prompt_tokens + len(words)}
        asked = json.dumps(request.get("messages") if chat else request.get("prompt"), sort_keys=True)
        ident, created = f"cmpl-{hashlib.sha256(asked.encode()).hexdigest()[:16]}", CREATED
        kind = "chat.completion" if chat else "text_completion"
        if not request.get("stream"):
            text = " ".join(words)
            choice = {"index": 0, "finish_reason": "stop"}
            choice.update({"message": {"role": "assistant", "content": text}} if chat
                          else {"text": text})
            return self.answer(200, {"id": ident, "object": kind, "created": created,
                                     "model": request.get("model", MODEL),
                                     "choices": [choice], "usage": usage})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def event(payload):
            data = f"data: {payload}\n\n".encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        for i, word in enumerate(words):
            text = word if i == 0 else " " + word
            delta = {"index": 0, "finish_reason": None}
            delta.update({"delta": {"role": "assistant", "content": text} if i == 0
                          else {"content": text}} if chat else {"text": text})
            event(json.dumps({"id": ident, "object": kind + ".chunk" if chat else kind,
                              "created": created, "model": request.get("model", MODEL),
                              "choices": [delta]}))
        last = {"index": 0, "finish_reason": "stop"}
        last.update({"delta": {}} if chat else {"text": ""})
        event(json.dumps({"id": ident, "object": kind + ".chunk" if chat else kind,
                          "created": created, "model": request.get("model", MODEL),
                          "choices": [last]}))
        if (request.get("stream_options") or {}).get("include_usage"):
            event(json.dumps({"id": ident, "object": kind + ".chunk" if chat else kind,
                              "created": created, "model": request.get("model", MODEL),
                              "choices": [], "usage": usage}))
        event("[DONE]")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9000)
    args = ap.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    print(f"listening on http://{args.host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
