#!/usr/bin/python3
"""An nsqd auth server for the tests (nsqd's protocol: GET /auth?secret=&remote_ip=&tls=&common_name=).

Answers by secret:
  pub-logs  publish and subscribe on the topic "logs" (any channel), for an hour
  short     publish on topics containing "logs", for one second (clients must ask again)
  nothing   an answer with no authorizations
  slow      the same as pub-logs, after 10 s (longer than cairnd waits)
  other     403
GET /seen lists every query received, as JSON. Listens on 127.0.0.1, a free port, which it
prints to stderr as "HTTP: listening on 127.0.0.1:<port>". Given CERT KEY, it serves HTTPS.
"""
import json
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

LOGS = {"topic": "^logs$", "channels": [".*"], "permissions": ["publish", "subscribe"]}
ANSWERS = {
    "pub-logs": {"ttl": 3600, "identity": "logs-writer",
                 "identity_url": "http://auth.invalid/logs-writer", "authorizations": [LOGS]},
    "short": {"ttl": 1, "identity": "short-lived",
              "authorizations": [{"topic": "logs", "channels": [".*"], "permissions": ["publish"]}]},
    "nothing": {"ttl": 3600, "identity": "nobody", "authorizations": []},
    "slow": {"ttl": 3600, "identity": "slow", "authorizations": [LOGS]},
}
seen = []
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def reply(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/seen":
            with lock:
                return self.reply(200, list(seen))
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        with lock:
            seen.append(query)
        secret = query.get("secret", "")
        if secret == "slow":
            time.sleep(10)
        if secret not in ANSWERS:
            return self.reply(403, {"message": "NOT_AUTHORIZED"})
        self.reply(200, ANSWERS[secret])

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
if len(sys.argv) == 3:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[1], sys.argv[2])
    server.socket = context.wrap_socket(server.socket, server_side=True)
print(f"HTTP: listening on 127.0.0.1:{server.server_port}", file=sys.stderr, flush=True)
server.serve_forever()
