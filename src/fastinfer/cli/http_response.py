"""The HTTP/1.1 response parser of the load generator: a handful of `bytes.find` calls per head,
Content-Length, chunked and close-delimited bodies, and the `Server-Timing` header."""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_HEAD_BYTES = 64 * 1024  # a response head larger than this is a protocol error
SERVER_TIMING_ENTRY = re.compile(rb"([a-z][a-z0-9_.-]*)\s*;\s*dur=([0-9.]+)")
_NO_BODY = frozenset({204, 304})


class ProtocolError(Exception):
    """The server's bytes are not an HTTP/1.x response this client understands."""


@dataclass(slots=True)
class Head:
    """What the load test reads of a response head (raw values; `server_timing` unparsed)."""

    status: int
    content_length: int  # -1: none given (chunked, or the body ends when the connection does)
    chunked: bool = False
    close: bool = False  # `Connection: close`: the server ends the connection after this answer
    retry_after: bytes | None = None
    server_timing: bytes | None = None
    model_version: bytes | None = None


def parse_head(block: bytes) -> Head:
    """Parse a response head (status line and headers, without the blank line) with a few
    `find`s on a lower-cased copy, rather than splitting every header into a dict."""
    line_end = block.find(b"\r\n")
    status_line = block if line_end < 0 else block[:line_end]
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
    lower = block.lower()

    def value(name: bytes) -> bytes | None:
        at = lower.find(b"\r\n" + name + b":")
        if at < 0:
            return None
        start = at + len(name) + 3
        end = lower.find(b"\r\n", start)
        return block[start : end if end >= 0 else len(block)].strip()

    length = value(b"content-length")
    if length is not None and not length.isdigit():
        raise ProtocolError(f"bad Content-Length: {length[:40]!r}")
    encoding = value(b"transfer-encoding")
    connection = value(b"connection")
    return Head(
        status=int(parts[1]),
        content_length=int(length) if length is not None else -1,
        chunked=encoding is not None and b"chunked" in encoding.lower(),
        close=(connection is not None and b"close" in connection.lower())
        or parts[0] == b"HTTP/1.0",
        retry_after=value(b"retry-after"),
        server_timing=value(b"server-timing"),
        model_version=value(b"x-model-version"),
    )


def parse_server_timing(value: bytes) -> dict[str, float]:
    """`queue;dur=0.1, batch-wait;dur=2.0, infer;dur=0.3` → {"queue": 0.1, ...} (ms)."""
    return {name.decode(): float(dur) for name, dur in SERVER_TIMING_ENTRY.findall(value)}


class ResponseParser:
    """Bytes in, complete responses out: one answer at a time, as a closed-loop client reads.

    Bodies are skipped, not kept: a `Content-Length` body is counted off, a chunked one is
    walked chunk by chunk, and one with neither ends when the connection does (`eof`).
    """

    __slots__ = ("_buffer", "_head", "_offset")

    def __init__(self) -> None:
        self._buffer = b""
        self._head: Head | None = None
        self._offset = 0  # chunked: where the next chunk-size line starts in the buffer

    @property
    def pending(self) -> bool:
        """Part of a response has arrived."""
        return bool(self._buffer) or self._head is not None

    def feed(self, data: bytes) -> Head | None:
        """The response completed by `data`, if any. Extra bytes stay for the next call."""
        buffer = self._buffer + data if self._buffer else data
        head = self._head
        if head is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD_BYTES:
                    raise ProtocolError(f"response head over {MAX_HEAD_BYTES} bytes")
                self._buffer = buffer
                return None
            head = parse_head(buffer[:end])
            buffer = buffer[end + 4 :]
            if 100 <= head.status < 200:  # an interim answer: the real one follows
                self._buffer = b""
                return self.feed(buffer) if buffer else None
            if head.status in _NO_BODY:
                head.content_length = 0
            self._offset = 0
        if head.chunked:
            return self._chunked(head, buffer)
        if head.content_length < 0:  # the body ends with the connection
            self._head, self._buffer = head, b""
            return None
        if len(buffer) < head.content_length:
            self._head, self._buffer = head, buffer
            return None
        self._head, self._buffer = None, buffer[head.content_length :]
        return head

    def _chunked(self, head: Head, buffer: bytes) -> Head | None:
        offset = self._offset
        while True:
            line_end = buffer.find(b"\r\n", offset)
            if line_end < 0:
                break
            size_field = buffer[offset:line_end].split(b";", 1)[0].strip()
            try:
                size = int(size_field, 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size: {size_field[:40]!r}") from None
            if size == 0:  # the last chunk: trailers, then a blank line
                end = buffer.find(b"\r\n\r\n", line_end)
                if buffer[line_end : line_end + 4] == b"\r\n\r\n":
                    end = line_end
                if end < 0:
                    break
                self._head, self._buffer, self._offset = None, buffer[end + 4 :], 0
                return head
            if len(buffer) < line_end + 2 + size + 2:
                break
            offset = line_end + 2 + size + 2
        self._head, self._buffer, self._offset = head, buffer, offset
        return None

    def eof(self) -> Head | None:
        """The connection closed: the response whose body ran to the close, if that was one."""
        head = self._head
        if head is not None and not head.chunked and head.content_length < 0:
            self._head, self._buffer = None, b""
            return head
        return None
