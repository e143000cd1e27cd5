"""Safe defaults of the reward-model server: where it may listen, who may call it, and how much a request may send.

- A server on anything but a loopback address needs a token; without one it refuses to start.
- The token comes from a file or the `TRL_ANCHOR_SERVE_TOKEN` environment variable, never from the command line
  (which other users can read in the process list). Clients send it as `Authorization: Bearer <token>`, or as the
  password of HTTP Basic auth, which is what aiohttp (OpenRLHF's client) sends for a URL of the form
  `http://user:<token>@host:port/get_reward`. Both are compared in constant time (`hmac.compare_digest`).
- Bodies must be `application/json` (a browser page cannot send that cross-origin without a CORS preflight, which
  the server never grants), at most `max_request_bytes` long, UTF-8, and sent within `body_timeout` seconds.
"""

import asyncio
import base64
import binascii
import hmac
import ipaddress
import json
import os
import stat
from pathlib import Path

from starlette.requests import Request
from transformers.utils import logging

from .config import TOKEN_ENV_VAR
from .protocol import ApiError

logger = logging.get_logger(__name__)

MIN_TOKEN_LENGTH = 16
_TOKEN_HINT = 'Generate one with: python -c "import secrets; print(secrets.token_urlsafe(32))"'


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback address (127.0.0.0/8, ::1) or `localhost`; hostnames count as not loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_token(token_file: str | None = None, environ: dict | None = None) -> str | None:
    """The server's token from `token_file`, else from `$TRL_ANCHOR_SERVE_TOKEN`; `None` when neither is set."""
    environ = os.environ if environ is None else environ
    if token_file is not None:
        path = Path(token_file)
        token, source = path.read_text(encoding="utf-8").strip(), f"token file {path}"
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            logger.warning(f"{source} is readable by other users; restrict it with `chmod 600 {path}`.")
    elif TOKEN_ENV_VAR in environ:
        token, source = environ[TOKEN_ENV_VAR].strip(), f"${TOKEN_ENV_VAR}"
    else:
        return None
    if len(token) < MIN_TOKEN_LENGTH:
        raise ValueError(f"The {source} holds a token of {len(token)} characters; use at least {MIN_TOKEN_LENGTH}. "
                         f"{_TOKEN_HINT}")
    if not token.isascii() or not token.isprintable() or any(c.isspace() for c in token):
        raise ValueError(f"The {source} must hold one printable ASCII token without spaces. {_TOKEN_HINT}")
    return token


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve on a non-loopback address without a token."""
    if token is None and not is_loopback(host):
        raise ValueError(
            f"Refusing to listen on {host!r} without authentication: anyone who can reach that address could use the "
            f"reward model. Set a token with --token_file FILE or ${TOKEN_ENV_VAR} (clients send it as "
            f"`Authorization: Bearer <token>`), or bind 127.0.0.1. {_TOKEN_HINT}"
        )


def _presented_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, credentials = authorization.partition(" ")
    scheme, credentials = scheme.lower(), credentials.strip()
    if scheme == "bearer":
        return credentials
    if scheme == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2]
    return None


def authorize(request: Request, token: str | None) -> None:
    """Raise 401 unless the request presents `token` (no-op when the server has none)."""
    if token is None:
        return
    presented = _presented_token(request.headers.get("authorization"))
    if presented is None or not hmac.compare_digest(presented.encode("utf-8"), token.encode("utf-8")):
        raise ApiError(
            401,
            "unauthorized",
            "Missing or wrong token: send `Authorization: Bearer <token>`.",
            headers={"WWW-Authenticate": 'Bearer realm="trl-anchor"'},
        )


async def read_json_body(request: Request, max_bytes: int, timeout: float):
    """The request's JSON body, enforcing the content type, the size limit, the read timeout and UTF-8."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", f"Send `Content-Type: application/json`, got {content_type!r}.")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, "body_too_large", f"The body has {declared} bytes; the limit is {max_bytes}.")
    body = bytearray()

    async def read() -> None:
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > max_bytes:
                raise ApiError(413, "body_too_large", f"The body exceeds the limit of {max_bytes} bytes.")

    try:
        await asyncio.wait_for(read(), timeout)
    except asyncio.TimeoutError:
        raise ApiError(408, "body_timeout", f"The body was not received within {timeout:g} s.") from None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ApiError(400, "invalid_utf8", f"The body is not valid UTF-8 (byte {error.start}).") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        where = f"line {error.lineno}, column {error.colno}"
        raise ApiError(400, "invalid_json", f"The body is not valid JSON: {error.msg} ({where}).") from None
    except RecursionError:
        raise ApiError(400, "invalid_json", "The body nests JSON too deeply.") from None
