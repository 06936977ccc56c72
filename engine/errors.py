"""What can go wrong with a request to the engine, each with the HTTP status it answers with.

Every message names the column, shape, type or header at fault and what was expected; the server's single
exception handler turns any JoeyError into `{"error": message}` with `http_status`.
"""
from __future__ import annotations

from packager.errors import JoeyError


class BadRequest(JoeyError):
    """The request body or parameters cannot be used as they are."""

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


class BodyTooLarge(JoeyError):
    http_status = 413

    def __init__(self, limit: int, size: int | None = None):
        got = f" ({size} bytes)" if size is not None else ""
        super().__init__(f"request body is larger than the limit of {limit} bytes{got}",
                         hint="send fewer rows per request or raise JOEY_MAX_BODY")


class UnsupportedMediaType(JoeyError):
    http_status = 415

    def __init__(self, content_type: str, supported: tuple[str, ...]):
        super().__init__(f"unsupported Content-Type {content_type!r}; use one of: {', '.join(supported)}")


class NotAcceptable(JoeyError):
    http_status = 406

    def __init__(self, accept: str, supported: tuple[str, ...]):
        super().__init__(f"cannot answer in any type of Accept: {accept!r}; use one of: {', '.join(supported)}")


class NotReady(JoeyError):
    http_status = 503

    def __init__(self, reason: str):
        super().__init__(f"the pipeline is not ready: {reason}")


class InferenceFailed(JoeyError):
    """onnxruntime refused inputs that passed our checks (e.g. a value outside a model's index range)."""

    http_status = 400

    def __init__(self, step: str, detail: str):
        super().__init__(f"model {step!r} failed on this input: {detail}")
