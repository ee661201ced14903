"""A stand-in LLM on loopback that speaks Ollama's streaming /api/generate and /api/chat (NDJSON)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Stub:
    def __init__(self) -> None:
        self.mode = "ok"  # ok | status500 | error_line | hang | cut | garbage
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.pieces = ["The answer ", "is in ", "[a#0]."]
        self.url = ""


@contextmanager
def llm_stub() -> Iterator[Stub]:
    stub = Stub()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            stub.requests.append((self.path, body))
            if stub.mode == "status500":
                data = json.dumps({"error": "model 'x' not found"}).encode()
                self.send_response(500)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.end_headers()
            chat = self.path.endswith("/api/chat")
            for i, piece in enumerate(stub.pieces):
                if stub.mode == "hang" and i == 1:
                    time.sleep(3)
                    return
                if stub.mode == "error_line" and i == 1:
                    self.wfile.write(b'{"error": "out of memory"}\n')
                    return
                if stub.mode == "garbage" and i == 1:
                    self.wfile.write(b"<html>\n")
                    return
                msg = {"message": {"role": "assistant", "content": piece}} if chat else {"response": piece}
                self.wfile.write((json.dumps({**msg, "done": False}) + "\n").encode())
                self.wfile.flush()
            if stub.mode != "cut":
                self.wfile.write(b'{"response": "", "done": true, "done_reason": "stop"}\n')

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.block_on_close = False  # a "hang" handler must not hold up the test
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
