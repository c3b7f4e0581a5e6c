"""A loopback HTTP server that answers every request with one canned AWS error: the failures a user causes
(expired token, access denied, throttling) without an account. Stopped by the test that started it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from stream_processor.local.processes import LOOPBACK


@contextmanager
def aws_error_server(status: int, code: str, message: str) -> Iterator[str]:
    """Yields the URL of a server answering `status` with an S3-style XML error and a JSON-protocol error body
    (botocore reads whichever the service speaks: the XML for S3, `__type` for Kinesis/DynamoDB/SQS)."""
    xml = (
        f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message>'
        "<RequestId>fake</RequestId></Error>"
    ).encode()
    json_body = f'{{"__type": "{code}", "message": "{message}"}}'.encode()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            wants_json = "json" in (self.headers.get("Content-Type") or "")
            body = json_body if wants_json else xml
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.1" if wants_json else "application/xml")
            self.send_header("x-amzn-ErrorType", code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_HEAD = _answer

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

    server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
