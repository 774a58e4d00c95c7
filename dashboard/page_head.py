"""What the dashboard writes into the head of Streamlit's page (``index.html``, served for every page's path):

- the script that closes the sidebar on a phone once a page is chosen in it (Streamlit leaves it open);
- a preload of the script chunk the first page's links need (``st.page_link``), which Streamlit's code would
  otherwise ask for only once the page's elements arrived, then wait for.

Written into the page rather than drawn with ``st.html``: that element loads two chunks of its own (an HTML
sanitiser) and shows a skeleton until they came, on every first load.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import streamlit as st

CHUNKS = Path(st.__file__).parent / "static" / "static" / "js"
PRELOADED = ("PageLink",)  # chunk names; their hashed files are looked up in the installed Streamlit
# One listener for the whole page, on the document: it outlives the sidebar's reruns.
CLOSE_ON_NAVIGATION = """<script>
document.addEventListener("click", (event) => {
  if (window.innerWidth >= 768 || !event.target.closest('[data-testid="stSidebarNavLink"]')) return;
  setTimeout(() => document.querySelector('[data-testid="stSidebarCollapseButton"] button')?.click(), 50);
});
</script>"""


def head() -> bytes:
    """The tags added before ``</head>``."""
    links = "".join(f'<link rel="modulepreload" crossorigin href="./static/js/{chunk.name}">'
                    for name in PRELOADED for chunk in sorted(CHUNKS.glob(f"{name}.*.js")))
    return (links + CLOSE_ON_NAVIGATION).encode()


class PageHead:
    """ASGI middleware: a GET answered with Streamlit's page (HTML, status 200) gets ``head()`` in its head; it
    is asked for uncompressed (Streamlit compresses what it can; the page is 6 KB)."""

    def __init__(self, app: Callable, paths_left_alone: tuple[str, ...] = ()) -> None:
        self.app, self.paths_left_alone, self.tags = app, paths_left_alone, head()

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope.get("method") != "GET" or scope["path"].startswith(self.paths_left_alone):
            return await self.app(scope, receive, send)
        plain = [(key, value) for key, value in scope.get("headers") or [] if key != b"accept-encoding"]
        await self.app({**scope, "headers": plain}, receive, Rewrite(send, self.tags))  # a page not compressed


class Rewrite:
    """The ``send`` of one response: an HTML page is held until its last part, then sent with the tags."""

    def __init__(self, send: Callable, tags: bytes) -> None:
        self.send, self.tags, self.start, self.body = send, tags, None, b""

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and is_page(message):
            self.start = message
        elif message["type"] == "http.response.body" and self.start is not None:
            self.body += message.get("body", b"")
            if not message.get("more_body"):
                await self.flush()
        else:
            await self.send(message)

    async def flush(self) -> None:
        body = self.body.replace(b"</head>", self.tags + b"</head>", 1)
        # no validators: a page revalidated by its file's ETag would keep an older dashboard's head
        headers = [(key, str(len(body)).encode() if key == b"content-length" else value)
                   for key, value in self.start.get("headers", []) if key not in (b"etag", b"last-modified")]
        await self.send({**self.start, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})


def is_page(start: dict[str, Any]) -> bool:
    headers = dict(start.get("headers") or [])
    return start.get("status") == 200 and headers.get(b"content-type", b"").startswith(b"text/html")
