"""One error hierarchy for the packager, the engine and Ops.

Each subclass builds its own message from its fields (as MLServer's errors.py does); the CLI prints
`str(err)` plus the hint on one line and exits with `exit_code`, and each server answers `http_status` with a
JSON body. An exit code has one meaning (docs/cli.md's table; tests/packager/test_cli.py holds the two together):

    2 bad input or usage · 3 not found · 4 registry · 5 integrity · 6 authentication/authorisation ·
    7 conflict · 8 Ops unreachable, unavailable or refusing · 9 a build tool failed ·
    1 any other failure (the engine stopped; never a code the packager gives a user's mistake)

The tree (exit code, HTTP status); the classes live by concern in base.py (what a user gives, and the root),
transport.py (registries and integrity), serving.py (requests and the log store) and ops.py (answers from Ops):

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

from joey.errors.base import (
    ConfigError,
    JoeyError,
    ModelError,
    NotFound,
    ReferenceError_,
    SpecError,
    SpecIssue,
    ToolFailed,
)
from joey.errors.ops import (
    BY_STATUS,
    Conflict,
    Forbidden,
    Missing,
    ObjectStoreUnavailable,
    OpsError,
    OpsUnreachable,
    Unauthorized,
    Unavailable,
    error_answer,
)
from joey.errors.serving import (
    BadColumn,
    BadLogsQuery,
    BadRequest,
    DuplicateColumn,
    InferenceFailed,
    MalformedBody,
    MissingColumn,
    NonNumeric,
    NoRows,
    NotAcceptable,
    NotReady,
    NullValues,
    OverLimit,
    PayloadTooLarge,
    RaggedColumn,
    StoreFull,
    StoreReadError,
    StoreWriteError,
    UnboundInputs,
    UnsupportedMediaType,
    ValueOutOfRange,
    WrongWidth,
)
from joey.errors.transport import (
    ArchiveTooLarge,
    BadArtifact,
    DigestMismatch,
    PlainHTTPRegistry,
    ReferrersContention,
    RegistryError,
    RegistryUnreachable,
    SizeMismatch,
    UnsafePath,
)

# What `from joey.errors import …` offers: every class of the tree, and the Ops-answer helpers.
__all__ = [
    "ArchiveTooLarge", "BadArtifact", "BadColumn", "BadLogsQuery", "BadRequest", "BY_STATUS", "ConfigError",
    "Conflict", "DigestMismatch", "DuplicateColumn", "error_answer", "Forbidden", "InferenceFailed",
    "JoeyError", "MalformedBody", "Missing", "MissingColumn", "ModelError", "NonNumeric", "NoRows",
    "NotAcceptable", "NotFound", "NotReady", "NullValues", "ObjectStoreUnavailable", "OpsError",
    "OpsUnreachable", "OverLimit", "PayloadTooLarge", "PlainHTTPRegistry", "RaggedColumn", "ReferenceError_",
    "ReferrersContention", "RegistryError", "RegistryUnreachable", "SizeMismatch", "SpecError", "SpecIssue",
    "StoreFull", "StoreReadError", "StoreWriteError", "ToolFailed", "Unauthorized", "Unavailable",
    "UnboundInputs", "UnsafePath", "UnsupportedMediaType", "ValueOutOfRange", "WrongWidth",
]
