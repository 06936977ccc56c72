"""Ops' object store: where rolled-up logs live as Parquet, in any S3-compatible service (AWS S3, MinIO, Ceph...).

Objects are keyed hive-style, PREFIX/pipeline=P/partition=EDGE/date=YYYY-MM-DD/UUID.parquet, so DuckDB, Spark
or Trino read the files with the three keys as columns (docs/ops.md, "Logs in object storage"). The values are
percent-encoded as hive partitioning expects. Settings come from flags or the environment; the secret key is
read from the environment only and never shown (repr, logs, errors).
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from joey import envvars
from joey.errors import ConfigError, ObjectStoreUnavailable

ENDPOINT, BUCKET, PREFIX = envvars.OPS_S3_ENDPOINT, envvars.OPS_S3_BUCKET, envvars.OPS_S3_PREFIX
REGION = "JOEY_OPS_S3_REGION"
# Ops' own names first, then the AWS SDKs' conventional ones.
ACCESS_KEY_IDS = (envvars.OPS_S3_ACCESS_KEY_ID, "AWS_ACCESS_KEY_ID")
SECRET_ACCESS_KEYS = (envvars.OPS_S3_SECRET_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY")
DEFAULT_REGION = "us-east-1"

# What a Parquet file holds per record; pipeline, partition and date are in its key. `record` is the record as
# Ops stored it (JSON text), so get_logs answers the same from a file as from the database.
SCHEMA = pa.schema([
    ("id", pa.int64()), ("edge_id", pa.string()), ("seq", pa.int64()), ("time", pa.int64()),
    ("received_at", pa.float64()), ("record", pa.string()),
])
# Row groups small enough that a get_logs page, filtered on `id`, reads a few of them, not the whole file.
ROW_GROUP_ROWS = 8192


@dataclass(frozen=True)
class ObjectStoreSettings:
    endpoint: str                      # http(s)://HOST[:PORT]; "" for AWS S3 itself
    bucket: str
    prefix: str = ""
    region: str = DEFAULT_REGION
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)

    @classmethod
    def configured(cls, endpoint: str | None, bucket: str | None, prefix: str | None,
                   environ: Mapping[str, str] = os.environ) -> ObjectStoreSettings | None:
        """From flags, else the environment; None when no bucket is set (logs then stay in the database)."""
        bucket = bucket or environ.get(BUCKET)
        if not bucket:
            return None
        endpoint = (endpoint or environ.get(ENDPOINT) or "").rstrip("/")
        parts = urlsplit(endpoint)
        if endpoint and (parts.scheme not in ("http", "https") or not parts.hostname or parts.path):
            raise ConfigError("--s3-endpoint", f"{endpoint!r}: expected http(s)://HOST[:PORT]")
        key_id = next((environ[n] for n in ACCESS_KEY_IDS if environ.get(n)), None)
        secret = next((environ[n] for n in SECRET_ACCESS_KEYS if environ.get(n)), None)
        if bool(key_id) != bool(secret):
            raise ConfigError(SECRET_ACCESS_KEYS[0] if key_id else ACCESS_KEY_IDS[0],
                              f"set together with {ACCESS_KEY_IDS[0] if key_id else SECRET_ACCESS_KEYS[0]}")
        return cls(endpoint, bucket, (prefix if prefix is not None else environ.get(PREFIX, "")).strip("/"),
                   environ.get(REGION) or DEFAULT_REGION, key_id, secret)


def _hive(name: str, value: str) -> str:
    return f"{name}={quote(value, safe='')}"


class ObjectStore:
    """Parquet objects in one bucket under one prefix."""

    def __init__(self, settings: ObjectStoreSettings):
        self.settings = settings
        s = settings
        parts = urlsplit(s.endpoint)
        self._fs = pafs.S3FileSystem(
            access_key=s.access_key_id, secret_key=s.secret_access_key, region=s.region,
            endpoint_override=parts.netloc or None, scheme=parts.scheme or "https",
            # an anonymous client when no key is given (e.g. a pod's own role supplies none): no guessing
            anonymous=s.access_key_id is None and bool(s.endpoint))

    def new_key(self, pipeline: str, partition: str, day_start: float) -> str:
        date = datetime.fromtimestamp(day_start, UTC).strftime("%Y-%m-%d")
        segments = [_hive("pipeline", pipeline), _hive("partition", partition), _hive("date", date),
                    f"{uuid.uuid4()}.parquet"]
        return "/".join([self.settings.prefix, *segments] if self.settings.prefix else segments)

    def url(self, key: str) -> str:
        return f"s3://{self.settings.bucket}/{key}"

    def write(self, key: str, table: pa.Table) -> None:
        try:
            pq.write_table(table, f"{self.settings.bucket}/{key}", filesystem=self._fs,
                           row_group_size=ROW_GROUP_ROWS, compression="zstd")
        except OSError as e:
            raise ObjectStoreUnavailable("write", self.url(key), str(e).splitlines()[0]) from None

    def read(self, key: str, columns: list[str] | None = None, after_id: int | None = None) -> pa.Table:
        """The object's records (those with id > after_id), the row groups that hold none left unread."""
        try:
            return pq.read_table(f"{self.settings.bucket}/{key}", filesystem=self._fs, columns=columns,
                                 schema=SCHEMA, partitioning=None,
                                 filters=None if after_id is None else [("id", ">", after_id)])
        except OSError as e:
            raise ObjectStoreUnavailable("read", self.url(key), str(e).splitlines()[0]) from None
