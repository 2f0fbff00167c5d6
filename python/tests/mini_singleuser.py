"""A minimal real single-user server for the end-to-end tests: it listens
where the hub's spawner tells it (JUPYTERHUB_SERVICE_URL) and answers every
GET with 200, which is all the hub needs to call a server ready. It starts in
a fraction of the time of jupyterhub-singleuser; MINI_DELAY seconds of sleep
before listening make a spawn stay pending for a while."""

import json
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"version": "mini", "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


def main():
    url = urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
    delay = float(os.environ.get("MINI_DELAY") or 0)
    if delay:
        time.sleep(delay)
    server = ThreadingHTTPServer((url.hostname, url.port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"mini single-user server on {url.geturl()}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
