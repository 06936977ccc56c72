"""OpsClient: the packager CLI's way to the Ops admin API. Ops' errors come back as the joey.errors classes Ops
raised (by HTTP status) with Ops' message and hint; a server that cannot be reached is OpsUnreachable."""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from joey import envvars
from joey.errors import BY_STATUS, ConfigError, OpsError, OpsUnreachable, Unauthorized, error_answer

API = "/v1/api/pipelines"
ASSAYS_API = "/v1/api/assays"


class OpsClient:
    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 30.0):
        url = url or os.environ.get(envvars.OPS_URL)
        token = token or os.environ.get(envvars.OPS_TOKEN)
        if not url:
            raise ConfigError(envvars.OPS_URL, "not set: give the Ops center's URL, e.g. http://127.0.0.1:8090")
        if not token:
            raise ConfigError(envvars.OPS_TOKEN, "not set: give the admin token joey-ops was started with")
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout,
                                  headers={"Authorization": f"Bearer {token}"})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OpsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, action: str, endpoint: str, body: dict[str, Any], api: str = API) -> dict[str, Any]:
        try:
            r = self._http.post(f"{api}/{endpoint}", json=body)
        except httpx.ConnectError as e:
            raise OpsUnreachable(self.url, f"connection refused or host unknown ({e})") from None
        except httpx.TimeoutException:
            raise OpsUnreachable(self.url, "timed out") from None
        except httpx.TransportError as e:
            raise OpsUnreachable(self.url, str(e) or type(e).__name__) from None
        if r.is_success:
            answer: dict[str, Any] = r.json()   # every Ops endpoint answers an object (joey/opswire.py)
            return answer
        message, hint = error_answer(r)
        if r.status_code == 401:
            raise Unauthorized(f"{action}: {message}", hint="check JOEY_OPS_TOKEN: it must be the token joey-ops "
                                                            "was started with")
        raise BY_STATUS.get(r.status_code, OpsError)(f"{action}: {message}", hint=hint)

    def publish(self, record: dict[str, Any]) -> dict[str, Any]:
        """Register a pushed pipeline; the answer is the record with `id`, `status`, times."""
        return self._call("publish", "publish", record)

    def get_publish_status(self, publish_id: int) -> dict[str, Any]:
        return self._call("get publish status", "get_publish_status", {"id": publish_id})

    def list_publishes(self, pipeline: str) -> dict[str, Any]:
        """{"publishes": [...], "edges": [...]} of one pipeline."""
        return self._call("list publishes", "list_publishes_for_pipeline", {"pipeline_name": pipeline})

    def add_edge(self, publish_id: int, name: str, tags: Sequence[str] = ()) -> dict[str, Any]:
        """The publish with docker_run_variables.EDGE_BUNDLE and helm.values.edgeBundle for the new edge."""
        return self._call("add edge", "add_edge_to_publish",
                          {"pipeline_publish_id": publish_id, "name": name, "tags": list(tags)})

    def remove_edge(self, name: str) -> None:
        self._call("remove edge", "remove_edge", {"name": name})

    def list_edges(self, pipeline: str | None = None) -> list[dict[str, Any]]:
        edges: list[dict[str, Any]] = self._call("list edges", "list_edges", {"pipeline_name": pipeline})["edges"]
        return edges

    def get_logs(self, pipeline: str, *, partition: str | None = None, limit: int = 1000,
                 dataset: Sequence[str] | None = None, after: int = 0) -> dict[str, Any]:
        """One page: {"records": [flattened records], "next": cursor or None}."""
        body: dict[str, Any] = {"pipeline_name": pipeline, "limit": limit, "after": after}
        if partition is not None:
            body["partition"] = partition
        if dataset is not None:
            body["dataset"] = list(dataset)
        return self._call("get logs", "get_logs", body)

    def iter_logs(self, pipeline: str, *, partition: str | None = None, dataset: Sequence[str] | None = None,
                  page_size: int = 1000) -> Iterator[dict[str, Any]]:
        """Every record of the pipeline (or partition), oldest first, a page at a time."""
        after = 0
        while True:
            page = self.get_logs(pipeline, partition=partition, dataset=dataset, limit=page_size, after=after)
            yield from page["records"]
            if page["next"] is None:
                return
            after = page["next"]

    # ---- assays (docs/ops.md, "Assays"); times are epoch milliseconds, as the records' `time` ------------

    def create_assay(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The assay, its baseline bins fixed: spec is {"name", "pipeline_name", "field", "baseline",
        "window", "bins"?, "metric"?, "alert_threshold"?, "partitions"?, "active"?}."""
        return self._call("create assay", "create", spec, ASSAYS_API)

    def list_assays(self, pipeline: str | None = None) -> list[dict[str, Any]]:
        assays: list[dict[str, Any]] = self._call("list assays", "list", {"pipeline_name": pipeline},
                                                  ASSAYS_API)["assays"]
        return assays

    def run_assay(self, assay_id: int, *, start: int | None = None, end: int | None = None) -> dict[str, Any]:
        """Compute (again) the complete windows starting in [start, end): {"assay", "results"}."""
        body = {k: v for k, v in {"id": assay_id, "start": start, "end": end}.items() if v is not None}
        return self._call("run assay", "run", body, ASSAYS_API)

    def assay_results(self, assay_id: int, *, partition: str | None = None, start: int | None = None,
                      end: int | None = None, limit: int = 1000) -> dict[str, Any]:
        """The latest `limit` stored windows, oldest first: {"assay", "results"}."""
        body = {k: v for k, v in {"id": assay_id, "partition": partition, "start": start, "end": end,
                                  "limit": limit}.items() if v is not None}
        return self._call("get assay results", "get_results", body, ASSAYS_API)
