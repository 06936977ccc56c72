"""Errors of moving artifacts: a registry that refuses or cannot be reached (exit 4), content that is not what
it claims to be (exit 5). The tree: joey.errors."""
from __future__ import annotations

from joey.errors.base import JoeyError


class RegistryError(JoeyError):
    """A registry answered with an error status; the hint says what that status usually means."""

    exit_code = 4
    http_status = 502
    _hints = {
        401: "check OCI_USERNAME/OCI_PASSWORD (or `docker login`)",
        403: "the credentials are valid but may not push/pull this repository",
        404: "check the reference: repository or tag does not exist",
        405: "the registry does not allow this operation (read-only or deletes disabled?)",
        413: "the registry refused the size of the upload",
        429: "the registry is rate-limiting; retry later",
    }

    def __init__(self, action: str, status: int, url: str, detail: str = ""):
        self.action, self.status, self.url, self.detail = action, status, url, detail
        msg = f"Failed to {action}: registry said {status} for {url}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg, hint=self._hints.get(status))


class RegistryUnreachable(JoeyError):
    exit_code = 4
    http_status = 502

    def __init__(self, host: str, cause: str, plain_http: bool):
        hint = None if plain_http else "is it a plain-HTTP registry? add --plain-http"
        super().__init__(f"registry {host} unreachable: {cause}", hint=hint)


class PlainHTTPRegistry(RegistryUnreachable):
    """TLS spoken to a registry that answers in plain HTTP: retrying cannot help, only the setting can."""

    hint = "add --plain-http (for the engine: JOEY_PLAIN_HTTP=true)"

    def __init__(self, host: str):
        super().__init__(host, "TLS handshake failed (the server may speak plain HTTP)", plain_http=True)


class ReferrersContention(JoeyError):
    """The referrers index tag of a subject kept changing under this writer (registries without the referrers
    API have no conditional PUT, so concurrent publishers retry until each finds its entry listed)."""

    exit_code = 4
    http_status = 503

    def __init__(self, where: str, attempts: int):
        super().__init__(f"could not list a referrer in the index {where}: it changed under each of {attempts} "
                         "attempts (other publishers attaching to the same manifest)",
                         hint="retry the command; nothing it attached is lost, only not yet listed")


class DigestMismatch(JoeyError):
    exit_code = 5
    http_status = 502

    def __init__(self, what: str, expected: str, actual: str):
        self.expected, self.actual = expected, actual
        super().__init__(f"digest mismatch for {what}: expected {expected}, got {actual}",
                         hint="the content was altered in the registry or in transit; nothing was written")


class SizeMismatch(JoeyError):
    exit_code = 5
    http_status = 502

    def __init__(self, what: str, expected: int, actual: int):
        super().__init__(f"size mismatch for {what}: expected {expected} bytes, got {actual}",
                         hint="the content was altered in the registry or in transit; nothing was written")


class UnsafePath(JoeyError):
    exit_code = 5
    http_status = 400

    def __init__(self, title: str):
        super().__init__(f"refusing to write {title!r}: it would land outside the output directory")


class BadArtifact(JoeyError):
    exit_code = 5
    http_status = 502

    def __init__(self, ref: str, problem: str):
        super().__init__(f"{ref} is not a Joey pipeline artifact: {problem}")


class ArchiveTooLarge(JoeyError):
    """An archive that would expand past what may be written for it (a decompression bomb, or a lie in a header)."""

    exit_code = 5
    http_status = 400

    def __init__(self, path: str, limit: int, setting: str):
        super().__init__(f"{path} expands to more than {limit} bytes, the most importing it may write; nothing "
                         "was extracted", hint=f"set {setting} (bytes, or a quantity such as 20Gi) if it is genuine")
