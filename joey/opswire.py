"""Request bodies of the Ops API, parsed once into typed objects; a bad body is one 400 naming each field."""
from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    RootModel,
    Tag,
    ValidationError,
    field_validator,
)

from joey.errors import BadRequest
from joey.names import is_dns_label

MAX_TAGS = 32
MAX_PAGE_RECORDS = 10_000
MAX_EXPORT_PAGE = 10_000
# A log page may also come as an Arrow IPC stream of the log store's flat columns (docs/ops.md, "Ingest"); the
# page's edge and seq range (inclusive, as in LogPage) are these keys of the schema's metadata.
LOG_PAGE_MEDIA_TYPE = "application/vnd.apache.arrow.stream"
ARROW_PAGE_KEYS = ("joey.edge", "joey.seq_start", "joey.seq_end")
MAX_PAGE_COLUMNS = 1024
# Body limits, per route (Ops answers 413 beyond them without reading further). Each is far above the largest body
# its model accepts, even with every character \u-escaped; parsing costs up to ~27x the body (docs/reliability.md).
MAX_PAGE_BYTES = 8 * 2**20        # one /edge/logs body: a page of records as the uploader sends it
MAX_JOIN_BYTES = 8 * 2**10        # /edge/join: an edge name and a join token, read before anyone is authenticated
MAX_EDGE_BYTES = 256 * 2**10      # /edge/checkin, /edge/update_status
MAX_ADMIN_BYTES = 1 * 2**20       # the admin API; a publish record (helm values, engine config) is the largest
# A model's `max_bytes` (ClassVar) is its route's limit, MAX_ADMIN_BYTES when it names none; its `documents` are
# the fields stored as JSON documents (escaped text), where any string JSON allows can be kept, NUL included.
# Database ids are 64-bit: anything larger can name nothing (and must not reach the SQL as an overflow).
Id = Annotated[int, Field(ge=1, le=2**63 - 1)]
A = TypeVar("A")
B = TypeVar("B")


def _dns_label(what: str) -> AfterValidator:
    """The check of a str field that names something in Kubernetes (a DNS-1123 label); `what` names the field."""
    def check(value: str) -> str:
        if not is_dns_label(value):
            raise ValueError(f"{what} must be a DNS-1123 label: lower-case letters, digits and '-', starting and "
                             "ending with a letter or digit, at most 63 characters")
        return value
    return AfterValidator(check)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Helm(BaseModel):
    """The seeds' `helm` object: where the chart is, and the values an install needs."""

    model_config = ConfigDict(extra="allow", strict=True)
    chart: str | None = None
    reference: str | None = None
    version: str | None = None
    values: dict[str, Any] = Field(default_factory=dict)


class ModelRef(BaseModel):
    """One model of a pushed pipeline, as the packager names it: Ops keeps it as a model config."""

    model_config = ConfigDict(extra="ignore", strict=True)
    name: str = Field(min_length=1, max_length=253)
    model_version: str | None = Field(default=None, max_length=128)
    sha256: str | None = Field(default=None, max_length=128)


class PublishRecord(BaseModel):
    """What the packager sends after pushing a pipeline. Fields Ops does not know are kept and echoed back.
    Ops registers its pipeline, pipeline version and `models` (model configs) under integer ids."""

    model_config = ConfigDict(extra="allow", strict=True)
    pipeline_name: Annotated[str, _dns_label("pipeline_name")]
    pipeline_version: str = Field(min_length=1, max_length=128)
    pipeline_url: str = Field(min_length=1, max_length=2048)
    pipeline_digest: str | None = None
    engine_url: str | None = None
    engine_config: dict[str, Any] = Field(default_factory=dict)
    helm: Helm | None = None
    docker_run_variables: dict[str, str] = Field(default_factory=dict)
    workspace_name: str | None = Field(default=None, min_length=1, max_length=128)
    created_by: str | None = None
    replaces: list[Id | Annotated[str, Field(min_length=1, max_length=2048)]] = Field(default_factory=list,
                                                                                         max_length=100)
    user_images: list[str] = Field(default_factory=list)
    models: list[ModelRef] = Field(default_factory=list, max_length=1000)


class PublishRequest(_Body):
    """Seed 003's publish: a registered pipeline version, which Ops copies into its edge registry."""

    pipeline_id: Id
    pipeline_version_id: Id
    model_config_ids: list[Id] | None = Field(default=None, max_length=1000)


def _publish_kind(body: Any) -> str:
    """The packager sends its whole record (it names a pipeline_url); seed 003 sends ids only."""
    if isinstance(body, dict) and "pipeline_version_id" in body and "pipeline_url" not in body:
        return "ids"
    return "record"


class PublishBody(RootModel[PublishRequest | PublishRecord]):
    """The body of /publish: either kind, told apart before validation so each kind's errors name its fields."""

    root: Annotated[Annotated[PublishRequest, Tag("ids")] | Annotated[PublishRecord, Tag("record")],
                    Discriminator(_publish_kind)]


class PublishId(_Body):
    """seed 003 sends {"id": N}; {"publish_id": N} (its parameter list) is accepted too."""

    id: Id | None = None
    publish_id: Id | None = None

    @property
    def value(self) -> int:
        return _exactly_one(self.id, self.publish_id, "the publish", "`id` or `publish_id`")


class PipelineRef(_Body):
    """A pipeline by its integer id (seed 003) or by its name."""

    pipeline_id: Id | None = None
    pipeline_name: str | None = None

    @property
    def given(self) -> int | str:
        return _exactly_one(self.pipeline_id, self.pipeline_name, "the pipeline", "`pipeline_id` or `pipeline_name`")


def _exactly_one(first: A | None, second: B | None, what: str, fields: str) -> A | B:
    """The one of two alternative fields that was given; BadRequest for both or neither."""
    if first is not None and second is None:
        return first
    if second is not None and first is None:
        return second
    raise BadRequest(f"give {what} as exactly one of {fields}")


class ListPipelines(_Body):
    pipeline_name: str | None = None


class AddEdge(_Body):
    pipeline_publish_id: Id
    name: Annotated[str, _dns_label("edge name")]
    tags: list[str] = Field(default_factory=list, max_length=MAX_TAGS)

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[str]) -> list[str]:
        if any(not t or len(t) > 128 for t in v):
            raise ValueError("each tag must be 1-128 characters")
        return v


class EdgeName(_Body):
    name: str


class ListEdges(_Body):
    pipeline_name: str | None = None


class GetLogs(_Body):
    pipeline_name: str
    partition: str | None = None
    limit: int = Field(default=1000, ge=1, le=MAX_EXPORT_PAGE)
    dataset: list[str] | None = None
    after: int = Field(default=0, ge=0, le=2**63 - 1, description="Cursor: the `next` of the previous answer.")


class Join(_Body):
    max_bytes: ClassVar[int] = MAX_JOIN_BYTES
    edge: str
    join_token: str = Field(max_length=1024)


class LogPage(_Body):
    """One upload from an edge: records seq_start..seq_end (inclusive) of its local log, in order."""

    max_bytes: ClassVar[int] = MAX_PAGE_BYTES
    documents: ClassVar[frozenset[str]] = frozenset({"records"})
    edge: str
    seq_start: int = Field(ge=0, lt=2**62)
    seq_end: int = Field(ge=0, lt=2**62)
    records: list[dict[str, Any]] = Field(max_length=MAX_PAGE_RECORDS)


class Serving(_Body):
    """What an edge says it serves."""

    pipeline_url: str = Field(max_length=2048)
    pipeline_digest: str = Field(max_length=128)
    pipeline_version: str = Field(max_length=128)


class CheckIn(_Body):
    """An edge asking which pipeline to run (docs/engine-api.md, "In-line updates")."""

    max_bytes: ClassVar[int] = MAX_EDGE_BYTES
    edge: str
    serving: Serving


class UpdateStatus(_Body):
    """The outcome of an edge's latest in-line update: `updated` (it serves the new pipeline) or `failed` (it
    serves on the previous one, `serving`)."""

    max_bytes: ClassVar[int] = MAX_EDGE_BYTES
    edge: str
    status: Literal["updated", "failed"]
    pipeline_url: str = Field(max_length=2048)
    pipeline_digest: str | None = Field(default=None, max_length=128)
    pipeline_version: str | None = Field(default=None, max_length=128)
    error: str | None = Field(default=None, max_length=4096)
    serving: Serving


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], body: Any) -> M:
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    try:
        return model.model_validate(body)
    except ValidationError as e:
        issues = []
        for err in e.errors(include_url=False):
            # A discriminated root model's errors start with the kind's tag: the body's fields are named without.
            loc = err["loc"][1:] if issubclass(model, RootModel) else err["loc"]
            where = ".".join(str(p) for p in loc) or "body"
            issues.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
        raise BadRequest("; ".join(issues)) from None


# ---- assays (docs/ops.md, "Assays"): drift checks over edge logs. Times are epoch milliseconds, as records' `time`.

MAX_BASELINE_VALUES = 100_000
MAX_ASSAY_BINS = 100
Millis = Annotated[int, Field(ge=0, lt=2**62)]


class BaselineWindow(_Body):
    """A baseline from logs: the field's values of records with start <= time < end (of one edge, if named)."""

    start: Millis
    end: Millis
    partition: str | None = None


class BaselineValues(_Body):
    """A baseline given as a reference dataset: the field's values themselves."""

    values: list[float] = Field(min_length=1, max_length=MAX_BASELINE_VALUES)


class AssayWindow(_Body):
    """Rolling windows [start + k*interval, start + k*interval + width); start defaults to the assay's creation."""

    width_seconds: int = Field(ge=1, le=366 * 86400)
    interval_seconds: int | None = Field(default=None, ge=1, le=366 * 86400)
    start: Millis | None = None


class AssayBins(_Body):
    mode: Literal["quantile", "equal"] = "quantile"
    count: int = Field(default=5, ge=1, le=MAX_ASSAY_BINS)


class AssayCreate(_Body):
    """One drift check: `field` of one pipeline's records (e.g. "out.variable[0]", "in.tensor[1]") against the
    baseline, per window, one series per named edge location (`partitions`) or one over all of them."""

    max_bytes: ClassVar[int] = 8 * 2**20   # a reference dataset of MAX_BASELINE_VALUES numbers fits
    name: Annotated[str, _dns_label("assay name")]
    pipeline_name: str
    field: str = Field(pattern=r"^(in|out|anomaly|metadata)(\.[^.\[\]]+)+(\[\d{1,6}\])*$", max_length=512)
    baseline: BaselineWindow | BaselineValues
    window: AssayWindow
    bins: AssayBins = Field(default_factory=AssayBins)
    metric: Literal["psi", "maxdiff", "sumdiff"] = "psi"
    alert_threshold: float = Field(default=0.25, ge=0, allow_inf_nan=False)
    partitions: list[str] | None = Field(default=None, min_length=1, max_length=MAX_TAGS)
    active: bool = True


class AssayId(_Body):
    id: Id


class ListAssays(_Body):
    pipeline_name: str | None = None


class RunAssay(_Body):
    """Compute (again) the assay's complete windows that start in [start, end); all of them by default."""

    id: Id
    start: Millis | None = None
    end: Millis | None = None


class AssayResults(_Body):
    id: Id
    partition: str | None = None
    start: Millis | None = None
    end: Millis | None = None
    limit: int = Field(default=1000, ge=1, le=MAX_EXPORT_PAGE)
