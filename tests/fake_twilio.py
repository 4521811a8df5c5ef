"""A loopback stand-in for Twilio's Messages API, for tests with real processes."""
from __future__ import annotations

import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeTwilio:
    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.messages: list[dict] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _json(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                form = dict(urllib.parse.parse_qsl(self.rfile.read(int(self.headers["Content-Length"])).decode()))
                with fake.lock:
                    sid = f"SM{len(fake.messages):032x}"
                    fake.messages.append({"sid": sid, "to": form["To"], "body": form["Body"], "status": "queued",
                                          "date_created": time.strftime("%a, %d %b %Y %H:%M:%S +0000")})
                time.sleep(fake.delay)  # a slow API: a worker killed now has sent but not recorded
                self._json(201, fake.messages[-1])

            def do_GET(self):
                query = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(self.path).query))
                with fake.lock:
                    found = [m for m in fake.messages if m["to"] == query.get("To")]
                self._json(200, {"messages": found, "next_page_uri": None, "page": 0, "page_size": 50,
                                 "uri": self.path, "first_page_uri": self.path, "previous_page_uri": None,
                                 "start": 0, "end": len(found)})

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):  # a killed client is expected here
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeTwilio":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def sent_to(self) -> list[str]:
        with self.lock:
            return [m["to"] for m in self.messages]
