"""A real HTTP server process in front of an OpenAI-compatible server, failing on purpose.

    python flaky_proxy.py --upstream http://127.0.0.1:8000 --port 8001 \
        [--fail 5 --status 429 --retry-after 1] [--then-fail 3 --then-status 500] [--key K]

The first ``--fail`` POST requests get ``--status`` (with ``Retry-After`` when given), the
next ``--then-fail`` get ``--then-status``; later ones are forwarded to ``--upstream`` and its
answer passed back. ``--fail -1`` fails every request. With ``--key``, a request without
``Authorization: Bearer <key>`` gets 401. GET requests (``/v1/models``) are forwarded;
``GET /stats`` answers the most POST requests it has had in flight at once. Prints ``ready``
once it listens.
"""

import argparse
import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--fail", type=int, default=0)
    parser.add_argument("--status", type=int, default=500)
    parser.add_argument("--retry-after", type=float)
    parser.add_argument("--then-fail", type=int, default=0)
    parser.add_argument("--then-status", type=int, default=500)
    parser.add_argument("--key")
    args = parser.parse_args()
    lock = threading.Lock()
    seen = [0]
    in_flight = [0, 0]  # now, most ever

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a) -> None:
            pass

        def _answer(self, status: int, body: bytes, headers: dict) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _authorised(self) -> bool:
            if args.key is None or self.headers.get("Authorization") == f"Bearer {args.key}":
                return True
            self._answer(401, json.dumps({"error": {"message": "invalid api key"}}).encode(),
                         {"Content-Type": "application/json"})
            return False

        def _fetch(self, body: bytes | None) -> tuple[int, bytes]:
            request = urllib.request.Request(args.upstream + self.path, data=body,
                                             method=self.command,
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=300) as response:
                    return response.status, response.read()
            except urllib.error.HTTPError as exc:
                return exc.code, exc.read()

        def _forward(self, body: bytes | None) -> None:
            self._answer(*self._fetch(body), {"Content-Type": "application/json"})

        def do_GET(self) -> None:
            if self.path == "/stats":
                self._answer(200, json.dumps({"max_in_flight": in_flight[1]}).encode(),
                             {"Content-Type": "application/json"})
            elif self._authorised():
                self._forward(None)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if not self._authorised():
                return
            with lock:
                seen[0] += 1
                n = seen[0]
            status = None
            if args.fail < 0 or n <= args.fail:
                status = args.status
            elif n <= args.fail + args.then_fail:
                status = args.then_status
            if status is None:
                with lock:
                    in_flight[0] += 1
                    in_flight[1] = max(in_flight)
                try:
                    answer = self._fetch(body)
                finally:  # counted out before the client can see the answer
                    with lock:
                        in_flight[0] -= 1
                self._answer(*answer, {"Content-Type": "application/json"})
                return
            headers = {"Content-Type": "application/json"}
            if args.retry_after is not None and status == args.status:
                headers["Retry-After"] = f"{args.retry_after:g}"
            self._answer(status, json.dumps({"error": {"message": f"failing on purpose ({n})"}})
                         .encode(), headers)

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
