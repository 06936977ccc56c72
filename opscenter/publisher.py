"""The publisher: Ops' background worker that carries out the publishes Ops makes itself (seed 003's id body).

For each it copies the pipeline version's artifact, its chart and (when the build registry has it) its engine
image from the build registry into the edge registry with joey.transfer.copy, checks that the edge registry
then serves each manifest under the digest it had, copies what is attached to them (signatures, provenance,
SBOM, publish record: joey.referrers, with the referrers index and cosign's tags), and fills the publish in:
`Published` with the edge registry's URLs, or `Error` with `error`.

Work is claimed through the database, not held in memory: a worker takes a publish_jobs row with a conditional
UPDATE (of any number of workers, replicas included, one wins) and renews the claim's lease while it copies.
A worker that dies (Ops restarted mid-copy) stops renewing; once the lease is over any worker takes the publish
over and copies again (blobs already there are skipped). A publish is tried MAX_ATTEMPTS times at most, so none
stays `Publishing` forever.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass, field

from joey.errors import (
    DigestMismatch,
    JoeyError,
    NotFound,
    PlainHTTPRegistry,
    RegistryError,
    RegistryUnreachable,
    Unavailable,
)
from joey.names import (
    Ref,
    chart_reference,
    chart_repository,
    chart_url,
    engine_repository,
    image_parts,
    parse,
    pipeline_ref,
    registry_target,
)
from joey.referrers import copy_referrers
from joey.registry import Registry
from joey.transfer import copy
from opscenter.db import Database

log = logging.getLogger("joey.ops.publisher")

STATUS_PUBLISHING = "Publishing"
STATUS_PUBLISHED = "Published"
STATUS_ERROR = "Error"
DEFAULT_LEASE_S = 60.0
MAX_ATTEMPTS = 5
RETRY_FIRST_S, RETRY_MAX_S = 1.0, 30.0
# How often an idle worker looks for work a replica created (its own are signalled at once).
POLL_S = 2.0


@dataclass(frozen=True)
class RegistryAccess:
    """How Ops reaches a registry. The password is a secret: it is kept out of repr, and so out of every log."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    plain_http: bool = False

    def target(self, host: str) -> Registry:
        # "" rather than None: no falling back to the OCI_USERNAME/OCI_PASSWORD that Ops' own environment has.
        return Registry(host, plain_http=self.plain_http, username=self.username or "",
                        password=self.password or "")


@dataclass(frozen=True)
class EdgeRegistry:
    """The registry edges pull from: HOST[:PORT]/NAMESPACE, and how Ops pushes to it."""

    host: str
    namespace: str
    access: RegistryAccess = RegistryAccess()

    @classmethod
    def parse(cls, target: str, access: RegistryAccess) -> EdgeRegistry:
        host, namespace = registry_target(target)
        return cls(host, namespace, access)


@dataclass(frozen=True)
class PublishSettings:
    edge: EdgeRegistry
    build: RegistryAccess = RegistryAccess()   # how Ops reads the build registries that records name
    lease: float = DEFAULT_LEASE_S


class Publisher:
    def __init__(self, db: Database, settings: PublishSettings, clock: Callable[[], float]):
        self.db, self.settings, self.clock = db, settings, clock
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake, self._stopping = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="joey-ops-publisher", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking work. A copy still running after `timeout` is given up: its claim is released so the next
        start (or a replica) takes the publish over at once."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                with self.db.transaction() as tx:
                    tx.execute("UPDATE publish_jobs SET claimed_by = NULL, claimed_at = NULL WHERE claimed_by = ?",
                               (self.worker_id,))

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                job = self.claim()
            except JoeyError as e:   # the database away: look again later
                log.warning("looking for publishes to copy: %s", e.one_line())
                job = None
            if job is None:
                self._wake.wait(POLL_S)
                self._wake.clear()
                continue
            try:
                self._carry_out(job)
            except JoeyError as e:   # the outcome could not be recorded: the lease runs out, the publish is retried
                log.warning("recording the outcome of publish %d: %s", job["publish_id"], e.one_line())

    # ---- claims ----------------------------------------------------------------------------------------

    def claim(self) -> dict | None:
        """Take one publish that is due and not held under a live lease; None when there is none."""
        now = self.clock()
        stale = now - self.settings.lease
        due = ("done_at IS NULL AND not_before <= ? AND (claimed_at IS NULL OR claimed_at < ?)")
        with self.db.transaction() as tx:
            job = tx.one(f"SELECT * FROM publish_jobs WHERE {due} ORDER BY publish_id LIMIT 1", (now, stale))
            if job is None:
                return None
            if tx.execute(f"UPDATE publish_jobs SET claimed_by = ?, claimed_at = ?, attempts = attempts + 1"
                          f" WHERE publish_id = ? AND {due}", (self.worker_id, now, job["publish_id"], now,
                                                                stale)) != 1:
                return None
            if job["attempts"] >= MAX_ATTEMPTS:
                self._finish(tx, job["publish_id"], STATUS_ERROR, now,
                             error=f"gave up after {job['attempts']} attempts; the last: {job['error']}")
                return None
            tx.execute("UPDATE publishes SET status = ?, updated_at = ? WHERE id = ?",
                       (STATUS_PUBLISHING, now, job["publish_id"]))
            source = tx.one("SELECT source FROM pipeline_versions WHERE id = ?", (job["pipeline_version_id"],))
        return {**job, "attempts": job["attempts"] + 1, "source": json.loads(source["source"])}

    def _renew(self, publish_id: int, done: threading.Event) -> None:
        while not done.wait(self.settings.lease / 3):
            try:
                with self.db.transaction() as tx:
                    tx.execute("UPDATE publish_jobs SET claimed_at = ? WHERE publish_id = ? AND claimed_by = ?",
                               (self.clock(), publish_id, self.worker_id))
            except JoeyError as e:
                log.warning("renewing the claim on publish %d: %s", publish_id, e.one_line())

    def _carry_out(self, job: dict) -> None:
        publish_id = job["publish_id"]
        done = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(publish_id, done), daemon=True,
                                   name=f"joey-ops-lease-{publish_id}")
        renewer.start()
        try:
            fields = self.copy(job["source"])
        except Exception as e:  # noqa: BLE001 - every failure ends in the publish's state, none kills the worker
            transient = _transient(e)
            text = e.one_line() if isinstance(e, JoeyError) else f"internal error: {type(e).__name__}: {e}"
            if not isinstance(e, JoeyError):
                log.exception("publish %d", publish_id)
            self._settle(job, None, text, retry=transient and job["attempts"] < MAX_ATTEMPTS)
        else:
            self._settle(job, fields, None, retry=False)
        finally:
            done.set()
            renewer.join()

    def _settle(self, job: dict, fields: dict | None, error: str | None, *, retry: bool) -> None:
        """Record the outcome, if the claim is still this worker's (a replica may have taken over)."""
        now, publish_id = self.clock(), job["publish_id"]
        with self.db.transaction() as tx:
            held = tx.one("SELECT claimed_by FROM publish_jobs WHERE publish_id = ?", (publish_id,))
            if held is None or held["claimed_by"] != self.worker_id:
                log.warning("publish %d was taken over by another worker; dropping this copy", publish_id)
                return
            if retry:
                delay = min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** (job["attempts"] - 1))
                log.warning("publish %d, attempt %d: %s; retrying in %.0f s", publish_id, job["attempts"],
                            error, delay)
                tx.execute("UPDATE publish_jobs SET claimed_by = NULL, claimed_at = NULL, not_before = ?, error = ?"
                           " WHERE publish_id = ?", (now + delay, error, publish_id))
                return
            if fields is not None:
                row = tx.one("SELECT record FROM publishes WHERE id = ?", (publish_id,))
                tx.execute("UPDATE publishes SET record = ? WHERE id = ?",
                           (json.dumps({**json.loads(row["record"]), **fields}), publish_id))
            self._finish(tx, publish_id, STATUS_PUBLISHED if fields is not None else STATUS_ERROR, now, error)
        log.info("publish %d %s%s", publish_id, "published" if fields is not None else "failed",
                 f": {error}" if error else "")

    @staticmethod
    def _finish(tx, publish_id: int, status: str, now: float, error: str | None) -> None:
        tx.execute("UPDATE publishes SET status = ?, updated_at = ? WHERE id = ?", (status, now, publish_id))
        tx.execute("UPDATE publish_jobs SET done_at = ?, claimed_by = NULL, claimed_at = NULL, error = ?"
                   " WHERE publish_id = ?", (now, error, publish_id))

    # ---- the copy --------------------------------------------------------------------------------------

    def copy(self, source: dict) -> dict:
        """Copy what the source record names into the edge registry; the publish's fields that change."""
        edge = self.settings.edge
        dst = edge.access.target(edge.host)
        name, version = source["pipeline_name"], source["pipeline_version"]
        src_ref = parse(source["pipeline_url"])
        if not src_ref.host:
            raise NotFound(f"a registry for {source['pipeline_url']}",
                           hint="Ops copies from a registry: publish with `packager publish --registry`")
        src = self.settings.build.target(src_ref.host)
        pipeline = pipeline_ref(name, version, host=edge.host, namespace=edge.namespace)
        digest = _copy_verified(src, src_ref.repository, src_ref.reference, dst, pipeline.repository, version)
        if source.get("pipeline_digest") and digest != source["pipeline_digest"]:
            raise DigestMismatch(source["pipeline_url"], source["pipeline_digest"], digest)
        copy_referrers(src, src_ref.repository, dst, pipeline.repository, digest)
        fields = {"pipeline_url": str(pipeline), "docker_run_variables": {"PIPELINE_URL": str(pipeline)}}
        engine = self._copy_engine(source.get("engine_url"), dst)
        fields["engine_url"] = engine or source.get("engine_url")
        helm = source.get("helm")
        if helm and helm.get("chart") and helm.get("version"):
            fields["helm"] = self._copy_chart(name, helm, dst, fields, engine)
        return fields

    def _copy_chart(self, name: str, helm: dict, dst: Registry, fields: dict, engine: str | None) -> dict:
        edge = self.settings.edge
        src_ref = parse(helm["chart"])
        src = self.settings.build.target(src_ref.host)
        repo = chart_repository(edge.namespace, name)
        digest = _copy_verified(src, src_ref.repository, helm["version"], dst, repo, helm["version"])
        copy_referrers(src, src_ref.repository, dst, repo, digest)
        # The chart is copied byte for byte, so its defaults still name the build registry: the values an
        # install sets name the edge registry's copies.
        values = deepcopy(helm.get("values") or {})
        values["pipelineUrl"] = fields["pipeline_url"]
        values["ociRegistry"] = {**(values.get("ociRegistry") or {}), "registry": edge.host}
        if engine:
            repository, tag, image_digest = image_parts(engine)
            values["image"] = {"repository": repository, **({"tag": tag} if tag else {}),
                               **({"digest": image_digest} if image_digest else {})}
        return {"chart": chart_url(name, host=edge.host, namespace=edge.namespace),
                "reference": chart_reference(digest, host=edge.host, namespace=edge.namespace),
                "version": helm["version"], "values": values}

    def _copy_engine(self, engine_url: str | None, dst: Registry) -> str | None:
        """The engine image's edge-registry URL once copied; None when the build registry does not have it
        (a public image, or one edges pull from elsewhere: the publish keeps naming it as it was)."""
        if not engine_url:
            return None
        try:
            ref = parse(engine_url)
            if not ref.host:
                return None
            src = self.settings.build.target(ref.host)
            src.resolve(ref.repository, ref.reference)
        except JoeyError as e:   # not found, not reachable, not ours to read: nothing to copy
            log.info("engine image %s is not copied (%s); the publish names it as it is", engine_url,
                     e.one_line())
            return None
        edge = self.settings.edge
        repo = engine_repository(edge.namespace, ref.repository.rsplit("/", 1)[-1])
        digest = _copy_verified(src, ref.repository, ref.reference, dst, repo, ref.tag)
        # The copy keeps the source's pin: its digest when it has one (skopeo and podman refuse :TAG@sha256:…),
        # else its tag.
        copied = str(Ref(repo, tag=ref.tag or "latest", digest=ref.digest, host=edge.host))
        log.info("engine image %s copied as %s (%s)", engine_url, copied, digest)
        return copied


def _copy_verified(src, src_repo: str, reference: str, dst, dst_repo: str, tag: str | None) -> str:
    """Copy a manifest (an image index with each of its manifests) and check that the destination then serves
    it under the source's digest; that digest."""
    raw, media_type, digest = src.resolve(src_repo, reference)
    children = json.loads(raw).get("manifests")
    if isinstance(children, list):
        for child in children:
            copy(src, src_repo, child["digest"], dst, dst_repo, None)
        dst.write_manifest(dst_repo, tag, raw, media_type)
    else:
        copy(src, src_repo, digest, dst, dst_repo, tag)
    served = dst.resolve(dst_repo, tag or digest)[2]
    if served != digest:
        raise DigestMismatch(f"{dst_repo}:{tag or digest} in the edge registry", digest, served)
    return digest


def _transient(e: BaseException) -> bool:
    """Failures that a later attempt may not meet: the network, a registry's 5xx or 429, the database."""
    if isinstance(e, RegistryError):
        return e.status >= 500 or e.status == 429
    if isinstance(e, PlainHTTPRegistry):   # only the setting can help
        return False
    return isinstance(e, (RegistryUnreachable, Unavailable)) or not isinstance(e, JoeyError)
