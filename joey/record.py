"""The publish record: what a publish produced, in the seeds' field names, and its OCI artifact form."""
from __future__ import annotations

import json
from typing import Any

from joey import mediatypes
from joey.descriptor import Descriptor, Manifest, manifest_bytes
from joey.errors import NotFound
from joey.names import record_version
from joey.transfer import Target

# The seeds' publish fields, in their order, then Joey's additions.
FIELDS = ("id", "pipeline_name", "pipeline_version", "status", "workspace_name", "engine_url", "pipeline_url",
          "pipeline_digest", "helm", "engine_config", "docker_run_variables", "user_images", "created_by",
          "created_at", "updated_at", "replaces", "error", "commands")
PUBLISH_RECORD = "application/vnd.joey.publish.v1+json"


def record_artifact(record: dict[str, Any], subject: Descriptor) -> tuple[bytes, bytes, Descriptor]:
    """(manifest, record blob, blob descriptor): the record as an OCI artifact whose subject is the pipeline."""
    blob = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
    layer = Descriptor.for_bytes(PUBLISH_RECORD, blob)
    empty = Descriptor.for_bytes(mediatypes.OCI_EMPTY, b"{}")
    return manifest_bytes(empty, [layer], {}, artifact_type=PUBLISH_RECORD, subject=subject), blob, layer


def ordered(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record.get(k) for k in FIELDS} | {k: v for k, v in record.items() if k not in FIELDS}


def read_record(target: Target, repo: str, tag: str) -> dict[str, Any]:
    raw, _, _ = target.resolve(repo, tag)
    m = Manifest.parse(raw, f"{repo}:{tag}")
    if not m.layers or m.layers[0].media_type != PUBLISH_RECORD:
        raise NotFound(f"publish record at {repo}:{tag}")
    with target.read_blob(repo, m.layers[0].digest) as f:
        record: dict[str, Any] = json.loads(f.read(1 << 20))
        return record


def list_records(target: Target, repo: str) -> list[dict[str, Any]]:
    out = [read_record(target, repo, t) for t in target.tags(repo) if record_version(t)]
    return sorted(out, key=lambda r: r.get("created_at") or "")
