"""A Slack-compatible incoming-webhook receiver on 127.0.0.1: records every post, can be told to misbehave.

Slack answers a good post with 200 and the body `ok`. Tests and the demo script failures ahead of time
with `fail_next()`: a 429 with `Retry-After`, a 500, a slow answer, a connection closed without an answer.
Run as `python -m stream_processor.local.receiver --port N` it prints each post as it arrives.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import signal
import socket
import struct
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

from stream_processor.local.processes import LOOPBACK


@dataclass(frozen=True, slots=True)
class PlannedResponse:
    """One scripted answer: a status (with Retry-After), after `delay` seconds, or a reset instead of an answer."""

    status: int = 200
    retry_after: str | None = None
    delay: float = 0.0
    reset: bool = False
    body: str | None = None


@dataclass(frozen=True, slots=True)
class ReceivedPost:
    """One request as received, with what the receiver answered (None: the connection was reset)."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int | None
    payload: Any = field(default=None)


_SLACK_BODIES = {
    200: "ok",
    400: "invalid_payload",
    403: "action_prohibited",
    404: "no_service",
    410: "channel_is_archived",
    429: "rate_limited",
    500: "internal_error",
}


class SlackReceiver:
    """A thread-safe recorder of webhook posts behind a real HTTP server on loopback (a free port by default).

    Use it as a context manager; `.url` is a Slack-looking webhook URL with a random secret path.
    """

    def __init__(
        self, port: int = 0, on_post: Callable[[ReceivedPost], None] | None = None, path: str | None = None
    ) -> None:
        self._requested_port = port
        self._on_post = on_post
        self._lock = threading.Lock()
        self._plan: deque[PlannedResponse] = deque()
        self._received: list[ReceivedPost] = []
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.path = path or f"/services/T00LOCAL/B00LOCAL/{secrets.token_hex(12)}"

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> SlackReceiver:
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _QuietServer((LOOPBACK, self._requested_port), _handler_for(self))
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="slack-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes handlers sleeping on a planned delay
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> SlackReceiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the receiver is not running: call start() first")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The webhook URL to configure (`webhook_url`); posts to any path are accepted."""
        return f"http://{LOOPBACK}:{self.port}{self.path}"

    # --- scripting and inspection -------------------------------------------------------------

    def fail_next(
        self,
        status: int = 500,
        retry_after: float | str | None = None,
        delay: float = 0.0,
        reset: bool = False,
        times: int = 1,
        body: str | None = None,
    ) -> None:
        """Answer the next `times` posts this way (status, after `delay` s, or reset), then `ok` again.

        `fail_next(status=200, delay=5)` is a slow success; calls queue up in order.
        """
        retry = (
            None
            if retry_after is None
            else (f"{retry_after:g}" if isinstance(retry_after, float) else str(retry_after))
        )
        planned = PlannedResponse(status=status, retry_after=retry, delay=delay, reset=reset, body=body)
        with self._lock:
            self._plan.extend([planned] * times)

    def clear(self) -> None:
        """Forget the recorded posts and any planned failures."""
        with self._lock:
            self._plan.clear()
            self._received.clear()

    @property
    def received(self) -> list[ReceivedPost]:
        """Every request received, in order, with what it was answered."""
        with self._lock:
            return list(self._received)

    @property
    def posts(self) -> list[Any]:
        """The parsed JSON body of every post received (answered or not), in order."""
        return [post.payload for post in self.received]

    @property
    def delivered(self) -> list[Any]:
        """The parsed JSON bodies of the posts answered (or, if slow, to be answered) 2xx."""
        return [post.payload for post in self.received if post.status is not None and 200 <= post.status < 300]

    # --- used by the handler ------------------------------------------------------------------

    def _next_response(self) -> PlannedResponse:
        with self._lock:
            return self._plan.popleft() if self._plan else PlannedResponse()

    def _record(self, post: ReceivedPost) -> None:
        with self._lock:
            self._received.append(post)
        if self._on_post is not None:
            self._on_post(post)


class _QuietServer(ThreadingHTTPServer):
    """Threads are daemons (a slow planned answer never blocks stop); a client that gave up is not an error."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):  # the client timed out and closed, or we reset on purpose
            return
        super().handle_error(request, client_address)


def _handler_for(receiver: SlackReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like Slack: the session's pooled connection is reused
        server_version = "SlackReceiver/1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            try:
                payload: Any = json.loads(body) if body else None
            except ValueError:
                payload = None
            planned = receiver._next_response()
            headers = {key: value for key, value in self.headers.items()}
            # recorded on arrival, in arrival order, with the answer planned for it
            receiver._record(ReceivedPost(self.path, headers, body, None if planned.reset else planned.status, payload))
            if planned.delay > 0:
                receiver._stopping.wait(planned.delay)
            if planned.reset:
                self._reset()
                return
            text = planned.body if planned.body is not None else _SLACK_BODIES.get(planned.status, "error")
            data = text.encode()
            self.send_response(planned.status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            if planned.retry_after is not None:
                self.send_header("Retry-After", planned.retry_after)
            self.end_headers()
            self.wfile.write(data)

        def _reset(self) -> None:
            """Drop the connection without an answer: RST on close (SO_LINGER 0)."""
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(OSError):
                self.connection.close()

        def finish(self) -> None:
            with contextlib.suppress(OSError, ValueError):
                super().finish()

        def log_message(self, format: str, *args: Any) -> None:  # quiet: the request line holds the secret path
            pass

    return Handler


def _print_post(post: ReceivedPost) -> None:
    text = post.payload.get("text") if isinstance(post.payload, dict) else None
    shown = text if isinstance(text, str) else post.body.decode("utf-8", "replace")
    print(f"--- post answered {post.status if post.status is not None else 'reset'}", flush=True)
    print(shown, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run a receiver until interrupted, printing each post's fallback text."""
    parser = argparse.ArgumentParser(prog="python -m stream_processor.local.receiver", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--path", default=None, help="path of the printed webhook URL (default: a random one)")
    args = parser.parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with SlackReceiver(port=args.port, on_post=_print_post, path=args.path) as receiver:
        print(f"Slack-compatible receiver listening: {receiver.url}", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
