"""What Ops does: publishes, edges, enrollment, log ingestion and in-line update check-ins, each one database
transaction. Publishes are of two kinds: the packager's (its whole record, Published as it arrives) and Ops' own
of a registered pipeline version (seed 003's ids), which the publisher copies into the edge registry.

Enrollment (docs/ops.md): add_edge_to_publish makes a random JOIN_TOKEN, stores its digest and hands the
token out once, inside the EDGE_BUNDLE. The edge trades it at /edge/join for a session credential. The
trade is a conditional UPDATE ... WHERE join_token_used_at IS NULL, so of any number of concurrent trades
exactly one changes a row and wins. A token presented after its 24 h is burned all the same (and refused).
The credential stays valid while the edge calls at least once every 7 days; removing the edge deletes it.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from joey.bundle import REPLACE_PLACEHOLDER, BundleError, EdgeBundle, is_loopback
from joey.errors import BadRequest, ConfigError, Conflict, Forbidden, Missing, Unauthorized
from joey.names import registry_host
from joey.opswire import AddEdge, CheckIn, GetLogs, LogPage, PublishRecord, PublishRequest, UpdateStatus
from joey.quantity import format_cpus
from opscenter import catalog, ingest, logrecords, tokens
from opscenter.db import Database
from opscenter.publisher import STATUS_PUBLISHED, Publisher, PublishSettings
from opscenter.rollup import Rollup

EDGE_PATH = "/edge"
JOIN_TOKEN_TTL = 24 * 3600.0
SESSION_IDLE_TTL = 7 * 24 * 3600.0

_NO_DIGEST = "-" * 64  # matches no SHA-256 hex digest
_REJOIN_HINT = "remove the edge and add it again for a new EDGE_BUNDLE"


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat()


def _cpus_text(cpus: Any) -> str | None:
    """4.0 -> "4", 1.25 -> "1.25": CONFIG_CPUS as the seeds write it."""
    if isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or cpus <= 0:
        return None
    return format_cpus(cpus)


def _limits(record: dict) -> dict:
    try:
        return record["engine_config"]["engine"]["resources"]["limits"] or {}
    except (KeyError, TypeError):
        return {}


class PublicEndpoint:
    """Where edges reach Ops (the ingress), as bundles and SPIFFE IDs name it."""

    def __init__(self, public_url: str):
        parts = urlsplit(public_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ConfigError("public URL", f"{public_url!r}: expected http(s)://HOST[:PORT][/PREFIX]")
        if parts.scheme == "http" and not is_loopback(parts.hostname):
            raise ConfigError("public URL", f"{public_url!r}: edges must reach Ops over https (plain http only "
                                            "on loopback, for tests)")
        base = f"{parts.netloc}{parts.path.rstrip('/')}{EDGE_PATH}"
        # A scheme-less OPSCENTER_HOST means https (the seeds' form); plain http is spelled out.
        self.opscenter_host = base if parts.scheme == "https" else f"http://{base}"
        self.trust_domain = parts.hostname.lower()

    def spiffe_id(self, edge_name: str) -> str:
        return f"spiffe://{self.trust_domain}/edge/{edge_name}"


class OpsService:
    """Ops without HTTP: every admin and edge call of the API is one method here, and one database transaction.

    opscenter.app parses each request into its joey.opswire model and calls the method; the answers are dicts
    the app sends as JSON, and failures are joey.errors classes (Missing, Conflict, Unauthorized, ...) the app
    turns into their status. `clock` gives the time (tests move it); `publishing` starts the background
    publisher that copies registered versions into the edge registry; `rollup` moves old logs to object storage.
    """

    def __init__(self, db: Database, public_url: str, clock: Callable[[], float],
                 publishing: PublishSettings | None = None, rollup: Rollup | None = None):
        self.db = db
        self.endpoint = PublicEndpoint(public_url)
        self.clock = clock
        self.publishing = publishing
        self.publisher = Publisher(db, publishing, clock) if publishing else None
        self.rollup = rollup   # logs in object storage (opscenter/rollup.py); None: all in the database
        self.partitions = ingest.Partitions(db)

    def start(self) -> None:
        if self.publisher:
            self.publisher.start()
        if self.rollup:
            self.rollup.start()

    def stop(self) -> None:
        if self.publisher:
            self.publisher.stop()
        if self.rollup:
            self.rollup.stop()

    # ---- publishes -------------------------------------------------------------------------------------

    def publish(self, body: PublishRecord | PublishRequest) -> dict:
        if isinstance(body, PublishRequest):
            return self.request_publish(body)
        return self.record_publish(body)

    def request_publish(self, req: PublishRequest) -> dict:
        """Seed 003's publish of a registered version: answered PendingPublish, copied in the background."""
        if self.publishing is None:
            raise ConfigError("--edge-registry", "this Ops center has no edge registry to publish to: start "
                                                 "joey-ops with --edge-registry HOST/NAMESPACE (docs/ops.md)")
        edge = self.publishing.edge
        with self.db.transaction() as tx:
            view = self._publish_view(tx, catalog.new_publish(tx, req, edge.host, edge.namespace, self.clock()))
        self.publisher.wake()
        return view

    def record_publish(self, rec: PublishRecord) -> dict:
        """The packager's publish (it has pushed already): Published at once; its pipeline, version and models
        registered under ids."""
        record = rec.model_dump(mode="json")
        # Refuse now what no bundle could carry.
        self._bundle(record, rec.pipeline_url, "probe", REPLACE_PLACEHOLDER, None)
        now = self.clock()
        with self.db.transaction() as tx:
            workspace_id = None
            if rec.workspace_name is not None:
                tx.execute("INSERT INTO workspaces (name) VALUES (?) ON CONFLICT (name) DO NOTHING",
                           (rec.workspace_name,))
                workspace_id = tx.one("SELECT id FROM workspaces WHERE name = ?", (rec.workspace_name,))["id"]
            record["model_config_ids"] = catalog.register(tx, rec, record, workspace_id, now)["model_config_ids"]
            replaced = [self._resolve_publish(tx, ref) for ref in rec.replaces]
            row = tx.one(
                "INSERT INTO publishes (pipeline_name, pipeline_version, pipeline_url, workspace_id, record, replaces,"
                " status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
                (rec.pipeline_name, rec.pipeline_version, rec.pipeline_url, workspace_id, json.dumps(record),
                 json.dumps(sorted(set(replaced))), STATUS_PUBLISHED, now, now))
            for old in set(replaced):
                tx.execute("UPDATE edges SET publish_id = ? WHERE publish_id = ?", (row["id"], old))
            return self._publish_view(tx, row)

    def get_publish(self, publish_id: int) -> dict:
        with self.db.transaction() as tx:
            return self._publish_view(tx, self._publish_row(tx, publish_id))

    def list_publishes(self, pipeline: int | str) -> dict:
        """A pipeline's publishes and edges; the pipeline by id (seed 003) or by name."""
        with self.db.transaction() as tx:
            pipeline_name = catalog.pipeline_name(tx, pipeline) if isinstance(pipeline, int) else pipeline
            rows = tx.all("SELECT * FROM publishes WHERE pipeline_name = ? ORDER BY id", (pipeline_name,))
            return {"publishes": [self._publish_view(tx, r) for r in rows],
                    "edges": self._edges(tx, pipeline_name)}

    def list_pipelines(self, name: str | None) -> dict:
        with self.db.transaction() as tx:
            return {"pipelines": catalog.list_pipelines(tx, name)}

    def _publish_row(self, tx, publish_id: int) -> dict:
        row = tx.one("SELECT * FROM publishes WHERE id = ?", (publish_id,))
        if row is None:
            raise Missing(f"no publish with id {publish_id}",
                          hint="list_publishes_for_pipeline shows a pipeline's publishes")
        return row

    def _resolve_publish(self, tx, ref: int | str) -> int:
        """A publish named by id, by pipeline URL, or as PIPELINE:VERSION."""
        if isinstance(ref, int) or (ref.isascii() and ref.isdigit() and len(ref) < 19):
            return self._publish_row(tx, int(ref))["id"]
        name, _, version = ref.rpartition(":")
        row = (tx.one("SELECT id FROM publishes WHERE pipeline_url = ? ORDER BY id DESC", (ref,))
               or tx.one("SELECT id FROM publishes WHERE pipeline_name = ? AND pipeline_version = ? ORDER BY id DESC",
                         (name, version)))
        if row is None:
            raise Missing(f"replaces: no publish {ref!r}",
                          hint="name a replaced publish by its id, its pipeline URL or PIPELINE:VERSION")
        return row["id"]

    def _publish_view(self, tx, row: dict) -> dict:
        """The seeds' publish object: the packager's record plus what Ops adds. For each enrolled edge attached
        (e.g. moved here by `replaces`), the bundle it redeploys with: JOIN_TOKEN is the placeholder, as the
        edge keeps the credential it holds (seed 004)."""
        record = json.loads(row["record"])
        edges = tx.all("SELECT name FROM edges WHERE publish_id = ? AND join_token_used_at IS NOT NULL"
                       " ORDER BY name", (row["id"],))
        job = tx.one("SELECT error FROM publish_jobs WHERE publish_id = ?", (row["id"],))
        return {
            **record,
            "id": row["id"],
            **catalog.version_ids(tx, row["pipeline_name"], row["pipeline_version"]),
            "pipeline_version_name": row["pipeline_version"],
            "workspace_id": row["workspace_id"],
            "status": row["status"],
            "error": job["error"] if job else None,
            "replaces": json.loads(row["replaces"]),
            "created_at": _iso(row["created_at"]),
            "updated_at": _iso(row["updated_at"]),
            "edge_bundles": {e["name"]: self._bundle(record, row["pipeline_url"], e["name"], REPLACE_PLACEHOLDER,
                                                     row["workspace_id"]) for e in edges},
        }

    def _bundle(self, record: dict, pipeline_url: str, edge_name: str, join_token: str,
                workspace_id: int | None) -> str:
        """The EDGE_BUNDLE for an edge of a publish whose pipeline is at `pipeline_url` (for Ops' own publishes,
        the edge registry's URL, known before the copy is done)."""
        cpus = record.get("docker_run_variables", {}).get("CONFIG_CPUS") or _cpus_text(_limits(record).get("cpu"))
        try:
            return EdgeBundle(
                edge_name=edge_name, opscenter_host=self.endpoint.opscenter_host, pipeline_url=pipeline_url,
                join_token=join_token, config_cpus=cpus, oci_registry=registry_host(pipeline_url),
                workspace_id=None if workspace_id is None else str(workspace_id),
            ).encode()
        except BundleError as e:
            raise BadRequest(f"cannot make an EDGE_BUNDLE for this publish: {e}") from None

    # ---- edges -----------------------------------------------------------------------------------------

    def add_edge(self, req: AddEdge) -> dict:
        now = self.clock()
        token = tokens.new_secret()
        with self.db.transaction() as tx:
            row = self._publish_row(tx, req.pipeline_publish_id)
            if tx.one("SELECT id FROM edges WHERE name = ?", (req.name,)) is not None:
                raise Conflict(f"an edge named {req.name!r} already exists",
                               hint="edge names are unique; remove_edge it first to issue a new bundle")
            tx.execute("INSERT INTO edges (id, name, tags, publish_id, join_token_digest, join_token_created_at,"
                       " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (str(uuid.uuid4()), req.name, json.dumps(req.tags), row["id"], tokens.digest(token),
                        now, now))
            view = self._publish_view(tx, row)
        bundle = self._bundle(json.loads(row["record"]), row["pipeline_url"], req.name, token, row["workspace_id"])
        helm = dict(view.get("helm") or {})
        helm["values"] = {**(helm.get("values") or {}), "edgeBundle": bundle}
        return {**view, "docker_run_variables": {**view["docker_run_variables"], "EDGE_BUNDLE": bundle},
                "helm": helm}

    def remove_edge(self, name: str) -> None:
        with self.db.transaction() as tx:
            edge = tx.one("SELECT id FROM edges WHERE name = ?", (name,))
            if edge is None:
                raise Missing(f"no edge named {name!r}", hint="list_edges shows the edges")
            tx.execute("DELETE FROM edge_sessions WHERE edge_id = ?", (edge["id"],))
            tx.execute("DELETE FROM edge_states WHERE edge_id = ?", (edge["id"],))
            tx.execute("DELETE FROM edges WHERE id = ?", (edge["id"],))

    def list_edges(self, pipeline_name: str | None) -> list[dict]:
        with self.db.transaction() as tx:
            return self._edges(tx, pipeline_name)

    def _edges(self, tx, pipeline_name: str | None) -> list[dict]:
        sql = ("SELECT e.*, p.pipeline_name, p.pipeline_version, p.record, s.serving, s.checked_in_at,"
               " s.last_update FROM edges e JOIN publishes p ON p.id = e.publish_id"
               " LEFT JOIN edge_states s ON s.edge_id = e.id")
        rows = (tx.all(sql + " WHERE p.pipeline_name = ? ORDER BY e.name", (pipeline_name,)) if pipeline_name
                else tx.all(sql + " ORDER BY e.name"))
        out = []
        for r in rows:
            limits = _limits(json.loads(r["record"]))
            out.append({
                "id": r["id"], "name": r["name"], "tags": json.loads(r["tags"]),
                "pipeline_name": r["pipeline_name"], "pipeline_version": r["pipeline_version"],
                "publish_id": r["publish_id"], "spiffe_id": self.endpoint.spiffe_id(r["name"]),
                "cpus": limits.get("cpu"), "memory": limits.get("memory"),
                "enrolled": r["join_token_used_at"] is not None,
                "created_at": _iso(r["created_at"]), "last_seen": _iso(r["last_seen"]),
                "serving": (None if r["serving"] is None else
                            {**json.loads(r["serving"]), "checked_in_at": _iso(r["checked_in_at"])}),
                "last_update": None if r["last_update"] is None else json.loads(r["last_update"]),
            })
        return out

    # ---- enrollment and sessions -----------------------------------------------------------------------

    def join(self, edge_name: str, join_token: str) -> dict:
        now = self.clock()
        with self.db.transaction() as tx:
            edge = tx.one("SELECT * FROM edges WHERE name = ?", (edge_name,))
            # The same digest work whether or not the edge exists.
            if not tokens.matches(join_token, edge["join_token_digest"] if edge else _NO_DIGEST) or edge is None:
                raise Unauthorized(f"join token refused for edge {edge_name!r}",
                                   hint="use the EDGE_BUNDLE add_edge_to_publish returned for this edge")
            won = tx.execute("UPDATE edges SET join_token_used_at = ? WHERE id = ? AND join_token_used_at IS NULL",
                             (now, edge["id"])) == 1
            late = now - edge["join_token_created_at"] > JOIN_TOKEN_TTL
            if won and not late:
                credential = tokens.new_secret()
                tx.execute("INSERT INTO edge_sessions (credential_digest, edge_id, created_at, last_contact)"
                           " VALUES (?, ?, ?, ?)", (tokens.digest(credential), edge["id"], now, now))
                tx.execute("UPDATE edges SET last_seen = ? WHERE id = ?", (now, edge["id"]))
        # Refusals come after the commit: a late token must stay burned.
        if not won:
            raise Unauthorized(f"the join token of edge {edge_name!r} was already used",
                               hint=f"an edge keeps its credential in its persistent volume; if that was lost, "
                                    f"{_REJOIN_HINT}")
        if late:
            raise Unauthorized(f"the join token of edge {edge_name!r} expired (valid 24 h after add_edge)",
                               hint=_REJOIN_HINT)
        return {"edge": edge_name, "edge_id": edge["id"], "credential": credential,
                "spiffe_id": self.endpoint.spiffe_id(edge_name), "session_idle_ttl_seconds": SESSION_IDLE_TTL}

    def _session(self, tx, credential: str, now: float) -> dict:
        """The edge a credential belongs to, if it is live; marks the contact."""
        row = tx.one("SELECT s.last_contact, e.id, e.name, e.publish_id FROM edge_sessions s"
                     " JOIN edges e ON e.id = s.edge_id WHERE s.credential_digest = ?", (tokens.digest(credential),))
        if row is None:
            raise Unauthorized("unknown or revoked edge credential", hint=_REJOIN_HINT)
        if now - row["last_contact"] > SESSION_IDLE_TTL:
            raise Unauthorized(f"the credential of edge {row['name']!r} expired: no contact for over 7 days",
                               hint=_REJOIN_HINT)
        tx.execute("UPDATE edge_sessions SET last_contact = ? WHERE credential_digest = ?",
                   (now, tokens.digest(credential)))
        tx.execute("UPDATE edges SET last_seen = ? WHERE id = ?", (now, row["id"]))
        return row

    def authenticate(self, credential: str) -> None:
        """Refuse (401) a credential that is unknown, revoked or expired: called before a request's body is read,
        so only enrolled edges can make Ops read and parse one."""
        with self.db.transaction() as tx:
            self._session(tx, credential, self.clock())

    # ---- in-line updates ------------------------------------------------------------------------------

    def checkin(self, credential: str, req: CheckIn) -> dict:
        """Record what the edge serves; answer with the publish it is attached to (`replaces` moves it), which
        the edge runs next if that is not what it serves."""
        now = self.clock()
        with self.db.transaction() as tx:
            edge = self._edge_of(tx, credential, req.edge, now)
            tx.execute("INSERT INTO edge_states (edge_id, serving, checked_in_at) VALUES (?, ?, ?)"
                       " ON CONFLICT (edge_id) DO UPDATE SET serving = excluded.serving,"
                       " checked_in_at = excluded.checked_in_at",
                       (edge["id"], json.dumps(req.serving.model_dump()), now))
            row = self._publish_row(tx, edge["publish_id"])
        record = json.loads(row["record"])
        return {"edge": edge["name"], "publish_id": row["id"], "pipeline_name": row["pipeline_name"],
                "pipeline_version": row["pipeline_version"], "pipeline_url": row["pipeline_url"],
                "pipeline_digest": record.get("pipeline_digest")}

    def report_update(self, credential: str, req: UpdateStatus) -> dict:
        """Keep the outcome of the edge's latest in-line update (list_edges shows it as `last_update`)."""
        now = self.clock()
        outcome = {**req.model_dump(exclude={"edge"}), "reported_at": _iso(now)}
        with self.db.transaction() as tx:
            edge = self._edge_of(tx, credential, req.edge, now)
            tx.execute("INSERT INTO edge_states (edge_id, serving, checked_in_at, last_update) VALUES (?, ?, ?, ?)"
                       " ON CONFLICT (edge_id) DO UPDATE SET serving = excluded.serving,"
                       " checked_in_at = excluded.checked_in_at, last_update = excluded.last_update",
                       (edge["id"], json.dumps(req.serving.model_dump()), now, json.dumps(outcome)))
        return {"edge": edge["name"], "status": req.status}

    def _edge_of(self, tx, credential: str, name: str, now: float) -> dict:
        edge = self._session(tx, credential, now)
        if name != edge["name"]:
            raise Forbidden(f"this credential belongs to edge {edge['name']!r}, not {name!r}")
        return edge

    # ---- logs ------------------------------------------------------------------------------------------

    def ingest(self, credential: str, page: LogPage | ingest.ArrowPage) -> dict:
        """Store a page of an edge's log (JSON or Arrow, opscenter/ingest.py). Records already stored (same edge,
        same seq) are skipped, whichever replica stored them."""
        count = page.count if isinstance(page, ingest.ArrowPage) else len(page.records)
        if page.seq_end < page.seq_start or page.seq_end - page.seq_start + 1 != count:
            raise BadRequest(f"seq_start..seq_end ({page.seq_start}..{page.seq_end}) must number the "
                             f"{count} records, one seq each")
        now = self.clock()
        self.partitions.ensure(now)
        with self.db.transaction() as tx:
            edge = self._edge_of(tx, credential, page.edge, now)
            rows = ingest.rows(page, edge["name"])
            pipeline = tx.one("SELECT pipeline_name FROM publishes WHERE id = ?", (edge["publish_id"],))
            stored = ingest.store(tx, pipeline["pipeline_name"], edge["id"], edge["name"], rows, now)
        return {"edge": edge["name"], "seq_start": page.seq_start, "seq_end": page.seq_end,
                "stored": stored, "duplicates": count - stored}

    def get_logs(self, req: GetLogs) -> dict:
        """Up to `limit` records after the cursor, oldest first, flattened, from the database and the object
        store alike; `next` is the cursor to go on with, None at the end."""
        where, params = logrecords.page_filter(req, "id")
        with self.db.transaction() as tx:
            rows = tx.all(f"SELECT id, record FROM logs WHERE {where} ORDER BY id LIMIT ?", (*params, req.limit + 1))
        if self.rollup:
            rows = self.rollup.merged(req, rows)
        more = len(rows) > req.limit
        rows = rows[:req.limit]
        return {"records": [logrecords.flatten(json.loads(r["record"]), req.dataset) for r in rows],
                "next": rows[-1]["id"] if more else None}
