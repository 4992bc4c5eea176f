"""Security of the HTTP API: operator token, product paths, body and rate limits.

- Read-only endpoints need no login. Operator actions need
  ``Authorization: Bearer <token>`` where the token is the value of the
  environment variable named by ``web.operator_token_env`` (never a file);
  it is compared with `hmac.compare_digest`. With no token configured every
  action is refused (403) with a message saying how to set one.
- Files are served only from the configured data directories: the path is
  resolved (symlinks followed) and must lie inside one of them, so ``..`` and
  symlinks pointing outside are refused (403).
- `BodyLimitMiddleware` refuses request bodies larger than
  ``web.max_body_bytes`` (413); `RateLimiter` allows each client address
  ``web.action_rate_per_min`` actions per minute (429 beyond).
"""

from __future__ import annotations

import hmac
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dsa110_contimg.web.errors import ForbiddenError, NotFoundError, RateLimitedError

__all__ = [
    "BodyLimitMiddleware",
    "RateLimiter",
    "check_operator_token",
    "safe_product_path",
]


def check_operator_token(
    authorization: str | None, *, env_name: str, environ: Mapping[str, str]
) -> None:
    """Check an ``Authorization`` header against the configured operator token.

    Parameters
    ----------
    authorization : str or None
        The request's header value (``"Bearer <token>"``).
    env_name : str
        ``web.operator_token_env``.
    environ : mapping
        The server's environment.

    Raises
    ------
    ForbiddenError
        No token configured (403, saying how to set one), or none / a wrong
        one presented (also 403; the API does not say which).
    """
    expected = environ.get(env_name, "")
    if not expected:
        msg = (
            f"operator actions are disabled: no token is configured; set the "
            f"environment variable {env_name} (named by web.operator_token_env) "
            "to a secret before starting 'dsa110-contimg serve', and send it as "
            "'Authorization: Bearer <token>'"
        )
        raise ForbiddenError(msg)
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not presented:
        msg = "operator action needs 'Authorization: Bearer <token>'"
        raise ForbiddenError(msg)
    if not hmac.compare_digest(presented.strip().encode(), expected.encode()):
        msg = f"operator token refused (it is not the value of {env_name})"
        raise ForbiddenError(msg)


def safe_product_path(path: str | Path, roots: Iterable[Path]) -> Path:
    """Return ``path`` resolved, if it is an existing file inside a data directory.

    Parameters
    ----------
    path : str or Path
        A product path as stored (absolute or relative to the current directory).
    roots : iterable of Path
        The configured data directories.

    Returns
    -------
    Path
        The resolved file.

    Raises
    ------
    ForbiddenError
        The path contains ``..`` or resolves (through a symlink too) outside
        every data directory.
    NotFoundError
        It is inside but no regular file is there.
    """
    text = str(path)
    if "\x00" in text or ".." in Path(text).parts:
        msg = f"path {text!r} contains '..' or a NUL byte; refused"
        raise ForbiddenError(msg)
    resolved = Path(text).resolve()
    for root in roots:
        base = Path(root).resolve()
        if resolved == base or base in resolved.parents:
            break
    else:
        msg = (
            f"path {text!r} lies outside the configured data directories "
            "(paths.*); only products there are served"
        )
        raise ForbiddenError(msg)
    if not resolved.is_file():
        msg = f"product file {text} does not exist (deleted by retention, or moved)"
        raise NotFoundError(msg)
    return resolved


class BodyLimitMiddleware:
    """Refuse request bodies larger than ``max_bytes`` with 413 (ASGI middleware).

    Both a declared ``Content-Length`` and the bytes actually received count.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, or answer 413 when its body is too large."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if (
            declared is not None
            and declared.isdigit()
            and int(declared) > self.max_bytes
        ):
            await self._refuse(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLargeError
            return message

        try:
            await self.app(scope, limited, send)
        except _BodyTooLargeError:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"request body larger than web.max_body_bytes = {self.max_bytes} bytes"
        response = JSONResponse(
            {"error": "PayloadTooLarge", "detail": detail, "status": 413},
            status_code=413,
        )
        await response(scope, receive, send)


class _BodyTooLargeError(Exception):
    pass


class RateLimiter:
    """A sliding one-minute window of actions per client address.

    Parameters
    ----------
    per_minute : int
        Actions one client may send in any 60 s.
    clock : callable, optional
        Monotonic seconds (replaced in tests).
    """

    def __init__(
        self, per_minute: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.per_minute = int(per_minute)
        self._clock = clock
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, client: str) -> bool:
        """Record one action of ``client``; return False when over the limit."""
        now = self._clock()
        with self._lock:
            times = self._seen.setdefault(client, deque())
            while times and times[0] <= now - 60.0:
                times.popleft()
            if len(times) >= self.per_minute:
                return False
            times.append(now)
            return True

    def check(self, request: Request) -> None:
        """Count the request's action; raise `RateLimitedError` (429) when over."""
        client = request.client.host if request.client else "unknown"
        if self.allow(client):
            return
        msg = (
            f"more than web.action_rate_per_min = {self.per_minute} operator "
            f"actions from {client} in the last minute; wait and retry"
        )
        raise RateLimitedError(msg)
