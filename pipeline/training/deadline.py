"""The deadline of one download attempt, kept wherever the attempt waits: connecting, headers, body.

A socket timeout bounds each wait for a byte, so a server sending its headers one byte a second
would keep an attempt alive for ever. ``Deadline.opener()`` makes the attempt's connections arm a
timer that shuts the socket down when the deadline passes; the wait in progress then ends at
once, and ``check`` names the deadline as the reason.
"""
from __future__ import annotations

import contextlib
import functools
import http.client
import socket
import threading
import time
import urllib.request
from typing import Any

from ..errors import TransientError


class Deadline:
    """The moment a download attempt must be done by (``seconds`` <= 0: never)."""

    def __init__(self, seconds: float, url: str, month: str):
        self.seconds, self.url, self.month = seconds, url, month
        self.ends = time.monotonic() + seconds if seconds > 0 else float("inf")
        self.timers: list[threading.Timer] = []

    def check(self, received: int) -> None:
        if time.monotonic() > self.ends:
            raise TransientError(f"Downloading fhv_tripdata_{self.month} from {self.url} took longer than its "
                                 f"deadline of {self.seconds:g} s per attempt ({received:,} bytes received; "
                                 "FHV_DOWNLOAD_DEADLINE sets it).")

    def timeout(self, seconds: float) -> float:
        """A socket timeout that never waits past the deadline."""
        return max(0.001, min(seconds, self.ends - time.monotonic()))

    def opener(self) -> urllib.request.OpenerDirector:
        """urllib's opener whose http(s) connections are cut at the deadline."""
        return urllib.request.build_opener(_HTTPHandler(self), _HTTPSHandler(self))

    def watch(self, connection: http.client.HTTPConnection) -> None:
        """Shut the connection's socket down when the deadline passes (a timer, cancelled by ``close``)."""
        if self.ends == float("inf"):
            return
        timer = threading.Timer(max(0.0, self.ends - time.monotonic()), _cut, args=(connection,))
        timer.daemon = True
        self.timers.append(timer)
        timer.start()

    def close(self) -> None:
        for timer in self.timers:
            timer.cancel()


def _cut(connection: http.client.HTTPConnection) -> None:
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class _Watched:
    """A connection that arms its deadline before it connects."""

    def __init__(self, *args: Any, deadline: Deadline, **kwargs: Any):
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        self.deadline = deadline

    def connect(self) -> None:
        self.deadline.watch(self)  # type: ignore[arg-type]
        super().connect()  # type: ignore[misc]


class _HTTPConnection(_Watched, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_Watched, http.client.HTTPSConnection):
    pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: Deadline):
        super().__init__()
        self.deadline = deadline

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_HTTPConnection, deadline=self.deadline), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: Deadline):
        super().__init__()
        self.deadline = deadline

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_HTTPSConnection, deadline=self.deadline), req,
                            context=self._context, check_hostname=self._check_hostname)
