"""Answers from Ops other than success, as the classes Ops raised (by HTTP status), and Ops out of reach.
The tree: joey.errors."""
from __future__ import annotations

from typing import Any, Protocol

from joey.errors.base import JoeyError
from joey.errors.serving import BadRequest, PayloadTooLarge


class OpsError(JoeyError):
    """An Ops answer other than success; the message is Ops' own."""

    exit_code = 8
    http_status = 500

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message, hint=hint)


class Unauthorized(OpsError):
    exit_code = 6
    http_status = 401


class Forbidden(OpsError):
    exit_code = 6
    http_status = 403


class Missing(OpsError):
    exit_code = 3
    http_status = 404


class Conflict(OpsError):
    exit_code = 7
    http_status = 409


class Unavailable(OpsError):
    """The database cannot be reached or is busy: worth retrying."""

    exit_code = 8
    http_status = 503


class ObjectStoreUnavailable(Unavailable):
    """Ops' object store (the Parquet log archive) refused or failed a read or write: worth retrying."""

    def __init__(self, action: str, url: str, cause: str):
        super().__init__(f"object store: cannot {action} {url}: {cause}",
                         hint="check JOEY_OPS_S3_ENDPOINT, JOEY_OPS_S3_BUCKET and the credentials joey-ops runs "
                              "with (docs/ops.md, \"Logs in object storage\")")


class OpsUnreachable(JoeyError):
    exit_code = 8
    http_status = 502

    def __init__(self, url: str, cause: str):
        self.url = url
        super().__init__(f"cannot reach Ops at {url}: {cause}",
                         hint=f"is joey-ops running at {url}? (JOEY_OPS_URL names it)")


BY_STATUS: dict[int, type[JoeyError]] = {
    c.http_status: c for c in (BadRequest, Unauthorized, Forbidden, Missing, Conflict, PayloadTooLarge,
                                    Unavailable)}


class HTTPAnswer(Protocol):
    """What error_answer reads of a response: httpx's (the packager's OpsClient) or requests' (the engine's)."""

    @property
    def status_code(self) -> int: ...
    @property
    def text(self) -> str: ...
    def json(self) -> Any: ...


def error_answer(response: HTTPAnswer) -> tuple[str, str | None]:
    """(message, hint) of an error answer from Ops (the app's `_error` shape), or of whatever stood in its way
    (a proxy's HTML page, say)."""
    try:
        answer = response.json()
        hint = answer.get("hint")
        return str(answer["message"]), None if hint is None else str(hint)
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}: {response.text[:200]}", None
