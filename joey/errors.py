"""One error hierarchy for the packager, the engine and Ops.

Each subclass builds its own message from its fields (as MLServer's errors.py does); the CLI prints
`str(err)` plus the hint on one line and exits with `exit_code`, and each server answers `http_status` with a
JSON body. An exit code has one meaning (docs/cli.md's table; tests/packager/test_cli.py holds the two together):

    2 bad input or usage · 3 not found · 4 registry · 5 integrity · 6 authentication/authorisation ·
    7 conflict · 8 Ops unreachable, unavailable or refusing · 9 a build tool failed ·
    1 any other failure (the engine stopped; never a code the packager gives a user's mistake)

The tree (exit code, HTTP status):

    JoeyError                          1  500
    ├── SpecError                      2  400   a spec's problems, all at once (SpecIssue each)
    ├── ModelError                     2  400
    ├── ReferenceError_                2  400
    ├── ConfigError                    2  500   settings: environment, flags, the command line
    ├── BadRequest                     2  400   a request to the engine or Ops that cannot be used as it is
    │   ├── MalformedBody              2  400
    │   ├── MissingColumn              2  400
    │   ├── UnboundInputs              2  400
    │   ├── WrongWidth                 2  400
    │   ├── RaggedColumn               2  400
    │   ├── BadColumn                  2  400
    │   ├── NonNumeric                 2  400
    │   ├── NullValues                 2  400
    │   ├── NoRows                     2  400
    │   ├── BadLogsQuery               2  400
    │   ├── OverLimit                  2  400
    │   ├── DuplicateColumn            2  400
    │   ├── ValueOutOfRange            2  400
    │   ├── InferenceFailed            2  400
    │   ├── PayloadTooLarge            2  413   the engine's and Ops' body limits
    │   ├── NotAcceptable              2  406
    │   └── UnsupportedMediaType       2  415
    ├── NotFound                       3  404
    ├── RegistryError                  4  502
    ├── RegistryUnreachable            4  502
    │   └── PlainHTTPRegistry          4  502
    ├── ReferrersContention            4  503
    ├── DigestMismatch                 5  502
    ├── SizeMismatch                   5  502
    ├── UnsafePath                     5  400
    ├── BadArtifact                    5  502
    ├── ArchiveTooLarge                5  400
    ├── ToolFailed                     9  500   podman or pip, building the engine image
    ├── NotReady                       1  503
    ├── StoreWriteError                1  500   the engine's log store could not make records durable
    │   └── StoreFull                  1  507   ... because its volume is full
    ├── StoreReadError                 1  500
    ├── OpsError                       8  500   an answer from Ops; the message is Ops' own
    │   ├── Unauthorized               6  401
    │   ├── Forbidden                  6  403
    │   ├── Missing                    3  404
    │   ├── Conflict                   7  409
    │   └── Unavailable                8  503
    │       └── ObjectStoreUnavailable 8  503
    └── OpsUnreachable                 8  502

The apps subclass these codes' meanings for their own failures, next to the code that raises them:
packager (ChartError 2, ChartPushError 4, EngineImageMissing 3, ImageError and WheelError of ToolFailed 9),
joey.signing.SignatureError 5, joey.bundle.BundleError 2, the engine (AcceleratorUnavailable 5,
SmokeTestFailed 5, OpsRetryable 8, OpsRejected 8).
"""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


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


class PlainHTTPRegistry(RegistryUnreachable):
    """TLS spoken to a registry that answers in plain HTTP: retrying cannot help, only the setting can."""

    hint = "add --plain-http (for the engine: JOEY_PLAIN_HTTP=true)"

    def __init__(self, host: str):
        super().__init__(host, "TLS handshake failed (the server may speak plain HTTP)", plain_http=True)


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


class ConfigError(JoeyError):
    """Bad settings (environment, flags) for a command or server."""

    exit_code = 2
    http_status = 500

    def __init__(self, name: str, problem: str):
        self.name = name
        super().__init__(f"{name}: {problem}")


# --- requests to the engine and Ops


class BadRequest(JoeyError):
    """The request body or parameters cannot be used as they are."""

    exit_code = 2
    http_status = 400


class MalformedBody(BadRequest):
    def __init__(self, fmt: str, detail: str):
        super().__init__(f"malformed {fmt} body: {detail}")


class MissingColumn(BadRequest):
    def __init__(self, column: str, model_input: str, step: str, available: list[str]):
        have = ", ".join(repr(c) for c in available) or "none"
        super().__init__(f"missing column {column!r}: it feeds input {model_input!r} of model {step!r} "
                         f"(the request has columns {have})")


class UnboundInputs(BadRequest):
    def __init__(self, step: str, inputs: list[str], available: list[str]):
        super().__init__(f"cannot bind the request's columns ({', '.join(map(repr, available)) or 'none'}) to "
                         f"the inputs of model {step!r} ({', '.join(map(repr, inputs))}); name the columns "
                         "like the inputs")


class WrongWidth(BadRequest):
    def __init__(self, column: str, expected: int, got: int, row: int | None = None):
        where = f" in row {row}" if row is not None else ""
        super().__init__(f"column {column!r} has {got} value(s) per row{where}; the model expects {expected}")


class RaggedColumn(BadRequest):
    def __init__(self, column: str, row: int, got: int, first: int):
        super().__init__(f"column {column!r}: row {row} has {got} value(s) but row 0 has {first}; every row "
                         "must have the same number of values")


class BadColumn(BadRequest):
    def __init__(self, column: str, detail: str):
        super().__init__(f"column {column!r}: {detail}")


class NonNumeric(BadRequest):
    def __init__(self, column: str, found: str, expected: str):
        super().__init__(f"column {column!r} holds {found}; the model expects numbers ({expected})")


class NullValues(BadRequest):
    def __init__(self, column: str, row: int):
        super().__init__(f"column {column!r} has a missing (null) value in row {row}")


class NoRows(BadRequest):
    def __init__(self) -> None:
        super().__init__("the request has no rows")


class BadLogsQuery(BadRequest):
    def __init__(self, detail: str):
        super().__init__(f"bad /logs request: {detail}; send {{}} or {{\"limit\": N}}")


class PayloadTooLarge(BadRequest):
    """A request body over its server's limit: Ops' per route (its message names the route), the engine's per
    format (`over_limit`, whose hint names the variable that raises it)."""

    http_status = 413

    @classmethod
    def over_limit(cls, limit: int, size: int | None = None, variable: str = "JOEY_MAX_BODY") -> PayloadTooLarge:
        got = f" ({size} bytes)" if size is not None else ""
        return cls(f"request body is larger than the limit of {limit} bytes{got}",
                   hint=f"send fewer rows per request or raise {variable}")


class UnsupportedMediaType(BadRequest):
    http_status = 415

    def __init__(self, content_type: str, supported: tuple[str, ...]):
        super().__init__(f"unsupported Content-Type {content_type!r}; use one of: {', '.join(supported)}")


class NotAcceptable(BadRequest):
    http_status = 406

    def __init__(self, accept: str, supported: tuple[str, ...]):
        super().__init__(f"cannot answer in any type of Accept: {accept!r}; use one of: {', '.join(supported)}")


class NotReady(JoeyError):
    http_status = 503

    def __init__(self, reason: str):
        super().__init__(f"the pipeline is not ready: {reason}")


class InferenceFailed(BadRequest):
    """onnxruntime refused inputs that passed our checks (e.g. a value outside a model's index range)."""

    def __init__(self, step: str, detail: str):
        super().__init__(f"model {step!r} failed on this input: {detail}")


class OverLimit(BadRequest):
    """A request larger in one dimension (rows, columns, keys, cells) than the engine's bound for it; the
    message names the environment variable that sets the bound (docs/reliability.md, the cost model)."""

    def __init__(self, what: str, limit: int, variable: str, got: str | None = None):
        found = f" ({got})" if got else ""
        super().__init__(f"the request has more {what} than the limit of {limit}{found}",
                         hint=f"send fewer per request or raise {variable}")


class DuplicateColumn(BadRequest):
    def __init__(self, column: str, count: int):
        super().__init__(f"column {column!r} appears {count} times; column names must be unique")


class ValueOutOfRange(BadRequest):
    def __init__(self, column: str, row: int, value: object, dtype: str):
        super().__init__(f"column {column!r}, row {row}: value {value} does not fit the model's input type "
                         f"{dtype}")


class StoreWriteError(JoeyError):
    """Records could not be made durable (an I/O error, or a full disk: StoreFull); nothing of the failed append
    is kept. As OSError does for an errno, constructing one gives the subclass its cause calls for."""

    http_status = 500

    def __new__(cls, directory: Path, cause: OSError) -> StoreWriteError:
        if cls is StoreWriteError and cause.errno == errno.ENOSPC:
            cls = StoreFull
        return super().__new__(cls, directory, cause)

    def __init__(self, directory: Path, cause: OSError):
        self.errno = cause.errno
        self.directory = directory
        reason = os.strerror(cause.errno) if cause.errno else str(cause)
        super().__init__(f"inference log store {directory}: could not write records: {reason}",
                         hint=self._hint(directory))

    def _hint(self, directory: Path) -> str:
        return "the volume reported an error; check the disk"


class StoreFull(StoreWriteError):
    """The log store's volume is full (ENOSPC): the records wait on the caller until space returns."""

    http_status = 507

    def _hint(self, directory: Path) -> str:
        return f"the volume holding {directory} is full: free space or set LOCAL_INFERENCE_STORAGE below its size"


class StoreReadError(JoeyError):
    """Stored records could not be read back."""

    http_status = 500

    def __init__(self, directory: Path, problem: str):
        super().__init__(f"inference log store {directory}: {problem}")


# --- answers from Ops
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


class ToolFailed(JoeyError):
    """A program Joey runs to build something (podman, pip) failed; the message carries its last lines."""

    exit_code = 9
    http_status = 500


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


class ReferrersContention(JoeyError):
    """The referrers index tag of a subject kept changing under this writer (registries without the referrers
    API have no conditional PUT, so concurrent publishers retry until each finds its entry listed)."""

    exit_code = 4
    http_status = 503

    def __init__(self, where: str, attempts: int):
        super().__init__(f"could not list a referrer in the index {where}: it changed under each of {attempts} "
                         "attempts (other publishers attaching to the same manifest)",
                         hint="retry the command; nothing it attached is lost, only not yet listed")
