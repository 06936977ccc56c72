"""Ops' catalog: pipelines, pipeline versions and model configs under integer ids (seed 003's `pipeline_id`,
`pipeline_version_id`, `model_config_ids`), and the publishes Ops makes itself of a registered version.

The packager's publish (its whole record) registers the pipeline, the version (its UUID is the seeds'
`pipeline_version_name`) and the version's models, and keeps the record as the version's `source`: where its
artifact, chart and engine image are in the build registry. Seed 003's `{"pipeline_id", "pipeline_version_id",
"model_config_ids"}` then makes a new publish, PendingPublish, that the publisher copies into the edge registry.
Every function runs inside the caller's transaction.
"""
from __future__ import annotations

import json

from joey.errors import BadRequest, Missing
from joey.names import pipeline_ref
from joey.opswire import PublishRecord, PublishRequest

STATUS_PENDING = "PendingPublish"
_FIND_HINT = "list_pipelines shows the pipelines with their versions' and model configs' ids"


def register(tx, rec: PublishRecord, record: dict, workspace_id: int | None, now: float) -> dict:
    """Upsert the record's pipeline, version and models; their ids as the publish answer carries them."""
    tx.execute("INSERT INTO pipelines (name, workspace_id, created_at, updated_at) VALUES (?, ?, ?, ?)"
               " ON CONFLICT (name) DO UPDATE SET updated_at = excluded.updated_at,"
               " workspace_id = COALESCE(excluded.workspace_id, pipelines.workspace_id)",
               (rec.pipeline_name, workspace_id, now, now))
    pipeline_id = tx.one("SELECT id FROM pipelines WHERE name = ?", (rec.pipeline_name,))["id"]
    tx.execute("INSERT INTO pipeline_versions (pipeline_id, name, source, created_at, updated_at)"
               " VALUES (?, ?, ?, ?, ?) ON CONFLICT (pipeline_id, name) DO UPDATE SET source = excluded.source,"
               " updated_at = excluded.updated_at",
               (pipeline_id, rec.pipeline_version, json.dumps(record), now, now))
    version_id = tx.one("SELECT id FROM pipeline_versions WHERE pipeline_id = ? AND name = ?",
                        (pipeline_id, rec.pipeline_version))["id"]
    for m in rec.models:
        tx.execute("INSERT INTO model_configs (pipeline_version_id, model_name, model_version, sha256, created_at)"
                   " VALUES (?, ?, ?, ?, ?) ON CONFLICT (pipeline_version_id, model_name) DO UPDATE SET"
                   " model_version = excluded.model_version, sha256 = excluded.sha256",
                   (version_id, m.name, m.model_version, m.sha256, now))
    return {"pipeline_id": pipeline_id, "pipeline_version_id": version_id,
            "model_config_ids": _model_config_ids(tx, version_id)}


def version_ids(tx, pipeline_name: str, version: str) -> dict:
    """{"pipeline_id", "pipeline_version_id"} of a publish's pipeline version (None for publishes recorded
    before Ops kept ids)."""
    row = tx.one("SELECT p.id AS pipeline_id, v.id AS pipeline_version_id FROM pipelines p"
                 " LEFT JOIN pipeline_versions v ON v.pipeline_id = p.id AND v.name = ? WHERE p.name = ?",
                 (version, pipeline_name))
    return row or {"pipeline_id": None, "pipeline_version_id": None}


def pipeline_name(tx, pipeline_id: int) -> str:
    row = tx.one("SELECT name FROM pipelines WHERE id = ?", (pipeline_id,))
    if row is None:
        raise Missing(f"no pipeline with id {pipeline_id}", hint=_FIND_HINT)
    return row["name"]


def new_publish(tx, req: PublishRequest, edge_host: str, edge_namespace: str, now: float) -> dict:
    """The publishes row (PendingPublish) and its publish_jobs row for the publisher; the publishes row."""
    v = tx.one("SELECT v.id, v.pipeline_id, v.name, v.source, p.name AS pipeline_name, p.workspace_id"
               " FROM pipeline_versions v JOIN pipelines p ON p.id = v.pipeline_id WHERE v.id = ?",
               (req.pipeline_version_id,))
    if v is None:
        raise Missing(f"no pipeline version with id {req.pipeline_version_id}", hint=_FIND_HINT)
    if v["pipeline_id"] != req.pipeline_id:
        raise BadRequest(f"pipeline_version_id {v['id']} is a version of pipeline {v['pipeline_id']} "
                         f"({v['pipeline_name']!r}), not of pipeline_id {req.pipeline_id}", hint=_FIND_HINT)
    known = _model_config_ids(tx, v["id"])
    chosen = known if req.model_config_ids is None else list(dict.fromkeys(req.model_config_ids))
    stray = [i for i in chosen if i not in known]
    if stray:
        raise BadRequest(f"model_config_ids {stray}: not model configs of pipeline version {v['id']} "
                         f"(its are {known})", hint=_FIND_HINT)
    source = json.loads(v["source"])
    # Until the copy is done the seeds show no URLs; the edge-registry URL is known now all the same (edges
    # attached early are given it in their bundle).
    record = {"pipeline_name": v["pipeline_name"], "pipeline_version": v["name"],
              "pipeline_digest": source.get("pipeline_digest"), "engine_config": source.get("engine_config", {}),
              "workspace_name": source.get("workspace_name"), "created_by": source.get("created_by"),
              "pipeline_url": None, "engine_url": None, "helm": None, "docker_run_variables": {},
              "user_images": [], "model_config_ids": chosen}
    url = str(pipeline_ref(v["pipeline_name"], v["name"], host=edge_host, namespace=edge_namespace))
    row = tx.one("INSERT INTO publishes (pipeline_name, pipeline_version, pipeline_url, workspace_id, record, replaces,"
                 " status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
                 (v["pipeline_name"], v["name"], url, v["workspace_id"], json.dumps(record), "[]", STATUS_PENDING,
                  now, now))
    tx.execute("INSERT INTO publish_jobs (publish_id, pipeline_version_id, model_config_ids, attempts, not_before)"
               " VALUES (?, ?, ?, 0, ?)", (row["id"], v["id"], json.dumps(chosen), now))
    return row


def list_pipelines(tx, name: str | None) -> list[dict]:
    """Pipelines (all, or the one named), each with its versions, oldest first, and their model configs."""
    pipelines = (tx.all("SELECT * FROM pipelines WHERE name = ? ORDER BY id", (name,)) if name
                 else tx.all("SELECT * FROM pipelines ORDER BY id"))
    out = []
    for p in pipelines:
        versions = []
        for v in tx.all("SELECT id, name, source FROM pipeline_versions WHERE pipeline_id = ? ORDER BY id",
                        (p["id"],)):
            models = tx.all("SELECT id, model_name, model_version, sha256 FROM model_configs"
                            " WHERE pipeline_version_id = ? ORDER BY id", (v["id"],))
            versions.append({"id": v["id"], "name": v["name"],
                             "pipeline_digest": json.loads(v["source"]).get("pipeline_digest"),
                             "model_configs": models})
        out.append({"id": p["id"], "name": p["name"], "workspace_id": p["workspace_id"], "versions": versions})
    return out


def _model_config_ids(tx, version_id: int) -> list[int]:
    return [r["id"] for r in tx.all("SELECT id FROM model_configs WHERE pipeline_version_id = ? ORDER BY id",
                                    (version_id,))]
