"""The publish record: what a publish produced, in the seeds' field names, as JSON and as a readable table."""
from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

from . import mediatypes
from .descriptor import Descriptor, manifest_bytes

# The seeds' publish fields, in their order, then Joey's additions.
FIELDS = ("id", "pipeline_name", "pipeline_version", "status", "workspace_name", "engine_url", "pipeline_url",
          "pipeline_digest", "helm", "engine_config", "docker_run_variables", "user_images", "created_by",
          "created_at", "updated_at", "replaces", "error", "commands")
PUBLISH_RECORD = "application/vnd.joey.publish.v1+json"
TAG_PREFIX = "publish-"


def record_tag(pipeline_version: str) -> str:
    """The tag under which a publish record sits beside its pipeline in pipelines/<name>."""
    return f"{TAG_PREFIX}{pipeline_version}"


def record_artifact(record: dict, subject: Descriptor) -> tuple[bytes, bytes, Descriptor]:
    """(manifest, record blob, blob descriptor): the record as an OCI artifact whose subject is the pipeline."""
    blob = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
    layer = Descriptor.for_bytes(PUBLISH_RECORD, blob)
    empty = Descriptor.for_bytes(mediatypes.OCI_EMPTY, b"{}")
    return manifest_bytes(empty, [layer], {}, artifact_type=PUBLISH_RECORD, subject=subject), blob, layer


def ordered(record: dict) -> dict:
    return {k: record.get(k) for k in FIELDS} | {k: v for k, v in record.items() if k not in FIELDS}


def table(record: dict) -> str:
    """The record as a two-column table, like the seeds' notebook display of a publish."""
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    for key, value in ordered(record).items():
        if key == "commands":
            continue
        t.add_row(key, _cell(value))
    console = Console(width=160, record=True, file=open("/dev/null", "w"))
    console.print(t)
    text = "\n".join(line.rstrip() for line in console.export_text().splitlines()) + "\n"
    commands = record.get("commands") or {}
    for name in ("docker_run", "podman_run", "helm_install", "compose"):
        if name in commands:
            note = (commands.get("notes") or {}).get(name, "")
            text += f"\n# {name}" + (f" — {note}" if note else "") + f"\n{commands[name]}\n"
    return text


def _cell(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)
