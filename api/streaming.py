"""Streaming responses that release their database cursor when the client goes away."""

from __future__ import annotations

import unicodedata
import zlib
from collections.abc import AsyncIterator, Iterator
from functools import partial
from typing import Any
from urllib.parse import quote

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

_DONE = object()


async def closing_stream(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Iterate a blocking generator in the threadpool; close it however the response ends.

    Closing runs the generator's `finally` / `with engine.connect()` exit at once, which ends
    the transaction and its server-side cursor instead of waiting for garbage collection.
    """
    try:
        while True:
            chunk = await run_in_threadpool(next, chunks, _DONE)
            if chunk is _DONE:
                break
            yield chunk  # type: ignore[misc]
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            # The response is being cancelled (client gone): shield the clean-up, or its own
            # await would be cancelled too and the cursor left open.
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(close)


def gzipped(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Gzip a stream of chunks (closing it closes the source)."""
    z = zlib.compressobj(6, zlib.DEFLATED, 31)
    try:
        for chunk in chunks:
            out = z.compress(chunk)
            if out:
                yield out
        yield z.flush()
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


class CursorStreamingResponse(StreamingResponse):
    """A stream that watches for the client's disconnect on every ASGI version.

    Starlette relies on `send` raising for ASGI ≥ 2.4, but a server may instead stay blocked
    on a dead socket (seen with gzip): watching `http.disconnect` cancels the stream, and
    `closing_stream` then releases the database cursor.
    """

    def __init__(self, chunks: Iterator[bytes], gzip: bool = False, **kwargs: Any) -> None:
        headers = dict(kwargs.pop("headers", None) or {})
        if gzip:
            # Compressed here, in the worker thread: the response then carries its own
            # Content-Encoding and the GZip middleware leaves it alone.
            chunks = gzipped(chunks)
            headers["Content-Encoding"] = "gzip"
            headers["Vary"] = "Accept-Encoding"
        super().__init__(closing_stream(chunks), headers=headers, **kwargs)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stream the body while listening for the client's disconnect."""
        async with anyio.create_task_group() as tg:

            async def run_then_cancel(func) -> None:  # type: ignore[no-untyped-def]
                await func()
                tg.cancel_scope.cancel()

            tg.start_soon(run_then_cancel, partial(self.stream_response, send))
            await run_then_cancel(partial(self.listen_for_disconnect, receive))
        if self.background is not None:
            await self.background()


def content_disposition(filename: str, disposition: str = "attachment") -> str:
    """A Content-Disposition value safe for any file name (RFC 6266, RFC 8187 `filename*`).

    HTTP headers are Latin-1 and `"`, `\\` or a control character would break the quoted
    string: the plain `filename` is an ASCII fallback without them, and the exact name
    travels percent-encoded in UTF-8 as `filename*`, which every current browser prefers.
    """
    # Never a path (a client's `../x` or `C:\x` name), never a control character.
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    if name.strip(".") == "":
        name = "telechargement"
    folded = unicodedata.normalize("NFKD", name)
    fallback = "".join(
        ch if 0x20 <= ord(ch) < 0x7F and ch not in '"\\%;' else "_"
        for ch in folded
        if not unicodedata.combining(ch)
    )
    encoded = quote(name, safe="")
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"
