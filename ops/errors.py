"""Errors of the Ops center. The server answers each with its `http_status`; OpsClient raises the same class
again from that status, so the CLI exits with the same code whichever side found the problem."""
from __future__ import annotations

from packager.errors import JoeyError


class OpsError(JoeyError):
    """An Ops answer other than success; the message is Ops' own."""

    exit_code = 8
    http_status = 500

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message, hint=hint)


class BadRequest(OpsError):
    exit_code = 2
    http_status = 400


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


class PayloadTooLarge(OpsError):
    exit_code = 2
    http_status = 413


class Unavailable(OpsError):
    """The database cannot be reached or is busy: worth retrying."""

    exit_code = 8
    http_status = 503


class OpsUnreachable(JoeyError):
    exit_code = 8
    http_status = 502

    def __init__(self, url: str, cause: str):
        self.url = url
        super().__init__(f"cannot reach Ops at {url}: {cause}",
                         hint=f"is joey-ops running at {url}? (JOEY_OPS_URL names it)")


BY_STATUS: dict[int, type[OpsError]] = {
    c.http_status: c for c in (BadRequest, Unauthorized, Forbidden, Missing, Conflict, PayloadTooLarge,
                                    Unavailable)}


def error_answer(response) -> tuple[str, str | None]:
    """(message, hint) of an error answer from Ops (the app's `_error` shape), or of whatever stood in its way
    (a proxy's HTML page, say)."""
    try:
        answer = response.json()
        return str(answer["message"]), answer.get("hint")
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}: {response.text[:200]}", None
