"""The root of the error tree and the errors of what a user gives: specs, models, references, settings,
names that do not exist; and a build tool that failed (the tree: joey.errors)."""
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


class ConfigError(JoeyError):
    """Bad settings (environment, flags) for a command or server."""

    exit_code = 2
    http_status = 500

    def __init__(self, name: str, problem: str):
        self.name = name
        super().__init__(f"{name}: {problem}")


class NotFound(JoeyError):
    exit_code = 3
    http_status = 404

    def __init__(self, what: str, hint: str | None = None):
        super().__init__(f"not found: {what}", hint=hint)


class ToolFailed(JoeyError):
    """A program Joey runs to build something (podman, pip) failed; the message carries its last lines."""

    exit_code = 9
    http_status = 500
