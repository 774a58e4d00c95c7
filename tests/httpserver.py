"""A real HTTP server on 127.0.0.1 for tests, with routes configured per path.

It is a ``http.server.ThreadingHTTPServer`` on a free port, serving in a daemon thread, so the
code under test talks real HTTP over a real socket. Use it as a context manager or through the
``http_server`` fixture (import it into a test module, or list ``tests.httpserver`` in a
module's ``pytest_plugins``)::

    from tests.httpserver import http_server, serve  # noqa: F401

    def test_download(http_server):
        http_server.route("/fhv_tripdata_2021-01.parquet", body=data)   # 200 with these bytes
        http_server.route("/fhv_tripdata_2021-03.parquet", status=404)  # any status, empty body
        http_server.route("/flaky", body=data, fail_times=2)             # 500 twice, then 200
        http_server.route("/slow", body=data, delay=1.0)                 # sleeps 1 s before answering
        http_server.route("/stall", body=data, delay=1.0, pause_at=100)  # 100 bytes, sleep, the rest
        http_server.route("/cut", body=data, truncate_at=100)            # full Content-Length, 100 bytes, close
        http_server.route("/trickle", body=data, trickle=0.05)           # one byte every 0.05 s, for ever
        http_server.route("/slow-head", body=data, header_trickle=0.05)  # the headers one byte every 0.05 s
        http_server.route("/api", json={"ok": True}, methods=("GET", "POST"))
        url = http_server.url("/fhv_tripdata_2021-01.parquet")         # http://127.0.0.1:PORT/...
        template = http_server.url("/fhv_tripdata_{month}.parquet")    # braces are kept as they are
        ...
        assert http_server.count("/flaky") == 3                          # requests made to a path
        assert http_server.requests[-1].method == "GET"                  # every request, in order

    with serve() as server:      # the same object outside pytest
        server.route("/", body=b"hello")

API of ``HTTPTestServer``:

* ``route(path, *, status=200, body=b"", json=None, headers=None, content_type=None,
  fail_times=0, fail_status=500, delay=0.0, pause_at=None, truncate_at=None, trickle=0.0,
  header_trickle=0.0, methods=("GET", "HEAD"))`` sets (or replaces) what ``path`` answers and returns the ``Route``.
  ``path`` is matched without its query string. Unknown paths answer 404.
* ``url(path="/")``, ``base_url``, ``port``.
* ``count(path)``: how many requests reached ``path`` (query ignored); ``requests``: a list of
  ``Request(method, path, headers, body)``; ``reset()`` forgets routes and requests.
* Sleeps (``delay``, ``trickle``) end early when the server stops, so a timeout test never waits
  for them; a trickle also ends when the client hangs up.
"""
from __future__ import annotations

import json as jsonlib
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator, Mapping
from urllib.parse import urlsplit

import pytest


@dataclass
class Route:
    """What one path answers; ``fail_times`` counts down as failures are served."""

    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    fail_times: int = 0
    fail_status: int = 500
    delay: float = 0.0
    pause_at: int | None = None  # sleep ``delay`` after this many body bytes instead of before
    truncate_at: int | None = None  # announce the full length, send this many bytes, close
    trickle: float = 0.0  # send the body one byte at a time, this many seconds apart
    header_trickle: float = 0.0  # send the status line and headers one byte at a time, this many seconds apart
    methods: tuple[str, ...] = ("GET", "HEAD")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes


class HTTPTestServer:
    """A threaded HTTP server on 127.0.0.1 whose answers are set per path (see module docs)."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Request] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="http-test-server",
                                        daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def route(self, path: str, *, json: object = None, content_type: str | None = None, **options) -> Route:
        """Set what ``path`` answers; options are the fields of ``Route``."""
        if json is not None:
            options["body"] = jsonlib.dumps(json).encode()
            content_type = content_type or "application/json"
        headers = dict(options.pop("headers", None) or {})
        headers.setdefault("Content-Type", content_type or "application/octet-stream")
        route = Route(headers=headers, **options)
        with self._lock:
            self.routes[path] = route
        return route

    def count(self, path: str) -> int:
        with self._lock:
            return sum(1 for r in self.requests if urlsplit(r.path).path == path)

    def reset(self) -> None:
        with self._lock:
            self.routes.clear()
            self.requests.clear()

    def start(self) -> "HTTPTestServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "HTTPTestServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _record(self, request: Request) -> tuple[Route | None, bool]:
        """Log a request; return the route that answers it and whether to fail this time."""
        with self._lock:
            self.requests.append(request)
            route = self.routes.get(urlsplit(request.path).path)
            fail = route is not None and route.fail_times > 0
            if fail:
                route.fail_times -= 1
            return route, fail


def _handler_for(server: HTTPTestServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        owner = server

    return Handler


class _Handler(BaseHTTPRequestHandler):
    owner: HTTPTestServer
    protocol_version = "HTTP/1.0"  # one request per connection: a closed socket ends the body

    def do_GET(self) -> None:
        self._answer()

    def do_HEAD(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def do_PUT(self) -> None:
        self._answer()

    def do_DELETE(self) -> None:
        self._answer()

    def log_message(self, format: str, *args) -> None:  # keep test output quiet
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        request = Request(self.command, self.path, dict(self.headers), self.rfile.read(length))
        route, fail = self.owner._record(request)
        try:
            self._respond(route, fail)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test): nothing to tell it

    def _respond(self, route: Route | None, fail: bool) -> None:
        if route is None:
            return self._send(404, b"no route for this path\n", {"Content-Type": "text/plain"})
        if self.command not in route.methods:
            return self._send(405, b"", {})
        if fail:
            return self._send(route.fail_status, b"failing on purpose\n", {"Content-Type": "text/plain"})
        if route.delay and route.pause_at is None:
            self.owner.stopping.wait(route.delay)
        self._send(route.status, route.body, route.headers, route)

    def _send(self, status: int, body: bytes, headers: Mapping[str, str], route: Route | None = None) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        if route is not None and route.header_trickle:
            head, self._headers_buffer = b"".join(self._headers_buffer) + b"\r\n", []
            self._trickle(head, route.header_trickle)
            if self.owner.stopping.is_set():
                return
        else:
            self.end_headers()
        if self.command != "HEAD":
            self._write_body(body, route)

    def _write_body(self, body: bytes, route: Route | None) -> None:
        cut = route.truncate_at if route and route.truncate_at is not None else len(body)
        pause = route.pause_at if route and route.pause_at is not None else None
        if route and route.trickle:
            self._trickle(body[:cut], route.trickle)
        elif pause is not None and pause < cut:
            self.wfile.write(body[:pause])
            self.wfile.flush()
            self.owner.stopping.wait(route.delay)
            self.wfile.write(body[pause:cut])
        else:
            self.wfile.write(body[:cut])
        self.wfile.flush()
        self.close_connection = True

    def _trickle(self, body: bytes, every: float) -> None:
        for at in range(len(body)):
            self.wfile.write(body[at:at + 1])
            self.wfile.flush()
            if self.owner.stopping.wait(every):
                return


@contextmanager
def serve() -> Iterator[HTTPTestServer]:
    """Start a server on a free port of 127.0.0.1 and stop it afterwards."""
    with HTTPTestServer() as server:
        yield server


@pytest.fixture
def http_server() -> Iterator[HTTPTestServer]:
    """A running ``HTTPTestServer`` for one test."""
    with serve() as server:
        yield server
