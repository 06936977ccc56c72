"""Errors of serving requests: a request the engine or Ops cannot use (BadRequest and its kinds, exit 2), a
pipeline not ready, an inference-log store that cannot write or read. The tree: joey.errors."""
from __future__ import annotations

import errno
import os
from pathlib import Path

from joey.errors.base import JoeyError


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


class InferenceFailed(BadRequest):
    """onnxruntime refused inputs that passed our checks (e.g. a value outside a model's index range)."""

    def __init__(self, step: str, detail: str):
        super().__init__(f"model {step!r} failed on this input: {detail}")


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
