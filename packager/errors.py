"""One error hierarchy for the packager, the engine and Ops.

Each subclass builds its own message from its fields (as MLServer's errors.py does); the CLI prints
`str(err)` plus the hint on one line, and each server maps `http_status` to a JSON answer.
"""
from __future__ import annotations

from dataclasses import dataclass


class JoeyError(Exception):
    """Base class. `exit_code` is for the CLI, `http_status` for the servers."""

    exit_code = 1
    http_status = 500
    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    def one_line(self) -> str:
        return f"{self} — {self.hint}" if self.hint else str(self)


@dataclass(frozen=True)
class SpecIssue:
    """One problem in a spec file, located as SPEC:LINE:COL."""

    file: str
    line: int
    col: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}:{self.col}: {where}{self.message}"


class SpecError(JoeyError):
    """A spec with one or more problems; all of them are reported at once."""

    exit_code = 2
    http_status = 400

    def __init__(self, issues: list[SpecIssue]):
        self.issues = sorted(issues, key=lambda i: (i.file, i.line, i.col, i.path))
        super().__init__("\n".join(str(i) for i in self.issues))

    def one_line(self) -> str:
        return str(self)


class ModelError(JoeyError):
    exit_code = 2
    http_status = 400

    def __init__(self, path: str, problem: str):
        self.path, self.problem = path, problem
        super().__init__(f"model {path}: {problem}")


class ReferenceError_(JoeyError):
    exit_code = 2
    http_status = 400

    def __init__(self, ref: str, problem: str):
        self.ref = ref
        super().__init__(f"bad reference {ref!r}: {problem}",
                         hint="use HOST[:PORT]/NAMESPACE/pipelines/NAME:VERSION, NAME[:VERSION] "
                              "for the local store, or oci:DIR:NAME:VERSION")


class NotFound(JoeyError):
    exit_code = 3
    http_status = 404

    def __init__(self, what: str, hint: str | None = None):
        super().__init__(f"not found: {what}", hint=hint)


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


class ConfigError(JoeyError):
    """Bad settings (environment, flags) for a command or server."""

    exit_code = 2
    http_status = 500

    def __init__(self, name: str, problem: str):
        self.name = name
        super().__init__(f"{name}: {problem}")
