"""In-line updates: the engine moves to a replacement pipeline without a restart, and only to one that works.

One background loop (engine.worker; started once the first pipeline serves) looks every JOEY_UPDATE_INTERVAL
seconds at what it should run:

- with EDGE_BUNDLE it checks in with Ops (POST {OPSCENTER_HOST}/checkin, the edge's credential, saying what it
  serves); Ops answers with the publish the edge is attached to, which `replaces` moves. A URL that differs
  from Ops' previous answer (at first: the bundle's) becomes the one to run;
- it re-resolves that URL (a tag, such as `...:stable`, may be moved by a re-push): a digest other than the one
  served is a replacement.

A replacement is pulled and verified like the first pipeline (fetch.pull, with the signature check when
JOEY_VERIFY_KEY is set), loaded, warmed up and smoke-tested (`smoke_test`) while the old one serves on; then the
engine's serving pipeline is swapped in one assignment: a request holds the pipeline it started with, so requests
in flight finish on the old one and the next ones run the new one. Only then does the cache's `current` move,
so a restart serves the new pipeline. If anything fails the old pipeline simply goes on serving; the failure is
in GET /status and, with EDGE_BUNDLE, reported to Ops (POST {OPSCENTER_HOST}/update_status), where list_edges
shows it. A digest that failed to load or to pass the smoke test is not tried again by this process; one whose
signature was refused, or that could not be fetched, is tried again at the next look.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.edge_client import DEFAULT_TIMEOUT_S, EdgeClient, OpsRejected, OpsRetryable
from engine.fetch import Fetched, commit, is_transient, pull, resolve
from engine.runtime import Pipeline
from engine.serving import Serving
from engine.settings import Settings
from engine.worker import Worker
from joey.errors import JoeyError
from joey.signing import SignatureError

log = logging.getLogger("engine")

UPDATED, FAILED = "updated", "failed"
# What /status says the thread is doing.
WATCHING, UPDATING, RETRYING, STOPPED, OFF = "watching", "updating", "retrying", "stopped", "off"
_KEEP = object()


class SmokeTestFailed(JoeyError):
    """A replacement pipeline loaded, but its smoke inference shows it cannot be served."""

    exit_code = 5

    def __init__(self, pipeline: str, detail: str):
        super().__init__(f"smoke test of pipeline {pipeline!r} failed: {detail}")


def smoke_test(pipeline: Pipeline) -> None:
    """One row of zeros through every step; the last model's outputs must be finite and as wide as its declared
    shapes. Without a fixed-shape first input there is nothing to make a row from, and only loading counts."""
    sample = pipeline.sample()
    name = pipeline.config.name
    if sample is None:
        log.warning("No smoke inference for pipeline %s: the first model's input shape is open", name)
        return
    try:
        # One row, not the warm-up's two: a model exported with a fixed batch of 1 takes it.
        result = pipeline.run(sample.slice(0, 1))
    except JoeyError as e:
        raise SmokeTestFailed(name, f"one row of zeros: {e.one_line()}") from None
    except Exception as e:  # noqa: BLE001 - whatever a broken model makes the runtime raise
        raise SmokeTestFailed(name, f"one row of zeros: {type(e).__name__}: {e}") from None
    last = pipeline.config.steps[-1]
    for sig in last.model.outputs:
        column = f"out.{sig.name}"
        if column not in result.column_names:
            raise SmokeTestFailed(name, f"model {last.name!r} gave no output {sig.name!r}")
        values = result.column(column).combine_chunks()
        rows = pc.list_value_length(values).to_pylist() if _is_list(values.type) else [1] * len(values)
        if sig.width is not None and rows != [sig.width]:
            raise SmokeTestFailed(name, f"output {sig.name!r} of model {last.name!r} has {rows[0] if rows else 0} "
                                        f"value(s) per row; its declared shape {list(sig.shape)} has {sig.width}")
        flat = values.flatten() if _is_list(values.type) else values
        if pa.types.is_floating(flat.type):
            numbers = flat.to_numpy(zero_copy_only=False)
            if not np.isfinite(numbers).all():
                bad = numbers[~np.isfinite(numbers)][0]
                raise SmokeTestFailed(name, f"output {sig.name!r} of model {last.name!r} is {bad} for a row "
                                            "of zeros; outputs must be finite")


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


@dataclass(frozen=True)
class Outcome:
    """The end of one update attempt, as /status shows it and Ops stores it."""

    status: str                  # UPDATED or FAILED
    pipeline_url: str            # what was to be run
    pipeline_digest: str | None
    pipeline_version: str | None
    error: str | None
    at: float                    # when it ended (UNIX seconds)
    seconds: float               # from the decision to update to the swap (or the failure)


class Host(Protocol):
    """What the updater needs of the engine (engine.service.Engine is one): what serves, and how to load and
    swap in a replacement."""

    serving: Serving | None
    draining: bool

    def prepare(self, fetched: Fetched) -> Pipeline: ...

    def swap(self, pipeline: Pipeline, fetched: Fetched) -> Pipeline: ...


class Updater:
    """Looks for a replacement pipeline every `interval` seconds and swaps it in once it works (module docstring).
    `link`: the engine's client of Ops (shared with the log uploader, which enrolls), None without EDGE_BUNDLE."""

    def __init__(self, host: Host, settings: Settings, target_url: str, link: EdgeClient | None):
        self.host = host
        self.settings = settings
        self.interval = settings.update_interval
        self.link = link
        bundle = settings.edge_bundle
        self._target = target_url     # the URL to run: PIPELINE_URL (a tag is watched), or what Ops named
        self._ops_url = bundle.pipeline_url if bundle else None   # Ops' previous answer
        self._bad: dict[str, str] = {}  # digest -> why it cannot be served
        self._unreported: Outcome | None = None
        self._worker = Worker("pipeline-updater", self._tick, on_exit=self._exited, first_pause=self.interval)
        self._lock = threading.Lock()   # the fields /status reads
        self._resting = WATCHING if self.interval > 0 else OFF   # the state between updates
        self._state = self._resting
        self._last_check_at: float | None = None
        self._last_checkin_at: float | None = None   # the last check-in Ops answered
        self._last_error: str | None = None
        self._last: Outcome | None = None
        self._counts = {"updates": 0, "failures": 0}

    # ------------------------------------------------------------------------------------------- control
    def start(self) -> None:
        """Look every `interval` seconds (the engine calls this once a pipeline serves, if the interval is not 0)."""
        log.info("In-line updates: every %gs, %s %s", self.interval,
                 "asking Ops which publish to run and re-resolving" if self.link else "re-resolving", self._target)
        self._worker.start()

    def stop(self) -> None:
        self._worker.stop(DEFAULT_TIMEOUT_S + 5)

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"state": self._state, "interval_s": self.interval, "watching": self._target,
                    "source": "ops" if self.link else "tag", "last_check_at": self._last_check_at,
                    "last_checkin_at": self._last_checkin_at,
                    "last_error": self._last_error, **self._counts,
                    "last_update": asdict(self._last) if self._last else None}

    # ------------------------------------------------------------------------------------------- the loop
    def _tick(self) -> float:
        try:
            self.look()
        except Exception as e:  # noqa: BLE001 - the old pipeline serves on whatever happens here
            log.error("In-line update: %s: %s", type(e).__name__, e, exc_info=e)
            self._set(RETRYING, f"{type(e).__name__}: {e}")
        return self.interval

    def _exited(self, error: BaseException | None) -> None:
        self._set(STOPPED)

    def look(self) -> None:
        """One look for a replacement, and the update if there is one."""
        serving = self.host.serving
        if serving is None or self.host.draining:
            return
        reached_ops = self._ask_ops(serving)
        self._send_report()
        try:
            settings = self.settings.for_url(self._target)
            digest = resolve(settings)
        except Exception as e:
            if not (is_transient(e) or isinstance(e, JoeyError)):
                raise
            message = f"cannot resolve {self._target}: {_message(e)}"
            if message != self._last_error:
                log.warning("In-line update: %s; serving on, looking again in %gs", message, self.interval)
            self._set(RETRYING, message)
            return
        with self._lock:
            self._last_check_at = time.time()
        if digest == serving.fetched.digest:
            if self._state == RETRYING and reached_ops:
                self._set(WATCHING, None)
            return
        if digest in self._bad:
            return
        self._update(settings, digest, serving.fetched)
        self._send_report()

    def _ask_ops(self, serving: Serving) -> bool:
        """With EDGE_BUNDLE: check in, and run what Ops names if that changed. False if Ops could not say."""
        link = self._ops()
        if link is None:
            return self.link is None
        try:
            answer = link.checkin(serving.describe())
        except (OpsRetryable, OpsRejected) as e:
            if e.one_line() != self._last_error:
                log.warning("In-line update: %s; serving on, asking again in %gs", e.one_line(), self.interval)
            self._set(RETRYING, e.one_line())
            return False
        with self._lock:
            self._last_checkin_at = time.time()
        url = answer.get("pipeline_url")
        if isinstance(url, str) and url and url != self._ops_url:
            log.info("Ops: edge %s now runs publish %s: %s", link.bundle.edge_name, answer.get("publish_id"), url)
            self._ops_url = self._target = url
        return True

    def _update(self, settings: Settings, digest: str, keeping: Fetched) -> None:
        started = time.monotonic()
        # A digest tried before (its signature was refused) is tried at every look: said once, not every time.
        level = logging.DEBUG if self._last and self._last.pipeline_digest == digest else logging.INFO
        log.log(level, "In-line update: %s now names %s (serving %s); pulling it", settings.pipeline_url, digest,
                keeping.digest)
        self._set(UPDATING, None)
        fetched: Fetched | None = None
        try:
            fetched = pull(settings)
            if fetched.digest == keeping.digest:
                self._set(WATCHING)
                return
            pipeline = self.host.prepare(fetched)
            smoke_test(pipeline)
        except Exception as e:
            if is_transient(e) and not isinstance(e, SignatureError):
                # The registry is away or busy: not the replacement's fault; the next look tries again.
                log.warning("In-line update: cannot fetch %s now (%s); serving on, trying again in %gs",
                            settings.pipeline_url, _message(e), self.interval)
                self._set(RETRYING, _message(e))
                return
            self.refused(settings.pipeline_url, fetched.digest if fetched else digest, fetched, e,
                         time.monotonic() - started, keeping)
            return
        old = self.host.swap(pipeline, fetched)
        try:
            commit(settings, fetched, self.settings.pipeline_url)
        except OSError as e:   # it serves all the same; a restart would start from the previous pipeline
            log.error("In-line update: cannot record %s as the current pipeline: %s", fetched.digest, e)
        seconds = time.monotonic() - started
        log.info("In-line update: swapped pipeline %s version %s (%s) for version %s (%s) in %.2fs",
                 fetched.config.name, fetched.config.version, fetched.digest, old.config.version, old.digest, seconds)
        self._finish(Outcome(UPDATED, settings.pipeline_url, fetched.digest, fetched.config.version, None,
                             time.time(), round(seconds, 3)), self._resting, None, updates=1)

    def refused(self, url: str, digest: str, fetched: Fetched | None, e: Exception, seconds: float,
                keeping: Fetched) -> None:
        """A replacement that cannot be served (refused signature, load failure, failed smoke test): logged,
        kept as the last outcome (for /status and Ops), and, unless a signature may still come, not tried again."""
        message = _message(e)
        if not isinstance(e, SignatureError):
            self._bad[digest] = message
        last = self._last
        again = last is not None and (last.status, last.pipeline_digest, last.error) == (FAILED, digest, message)
        log.log(logging.DEBUG if again else logging.ERROR,
                "In-line update to %s (%s) failed: %s; serving on the previous pipeline %s version %s (%s)", url,
                digest, message, keeping.config.name, keeping.config.version, keeping.digest,
                exc_info=None if isinstance(e, JoeyError) else e)
        if again:   # the same refusal at another look: counted, logged and reported once
            self._set(self._resting, message)
            return
        outcome = Outcome(FAILED, url, digest, fetched.config.version if fetched else None, message, time.time(),
                          round(seconds, 3))
        self._finish(outcome, self._resting, message, failures=1)

    def _finish(self, outcome: Outcome, state: str, error: str | None, **counts: int) -> None:
        with self._lock:
            self._last = outcome
            self._state, self._last_error = state, error
            for k, n in counts.items():
                self._counts[k] += n
        if self.link is not None:
            self._unreported = outcome

    def _send_report(self) -> None:
        """The latest outcome to Ops, until Ops has it (an older one is not worth sending once superseded)."""
        outcome, link, serving = self._unreported, self._ops(), self.host.serving
        if outcome is None or link is None or serving is None:
            return
        try:
            link.report({"status": outcome.status, "pipeline_url": outcome.pipeline_url,
                         "pipeline_digest": outcome.pipeline_digest,
                         "pipeline_version": outcome.pipeline_version, "error": outcome.error},
                        serving.describe())
        except OpsRetryable as e:
            log.warning("In-line update: cannot report to Ops now (%s); trying again in %gs", e.one_line(),
                        self.interval)
            return
        except OpsRejected as e:
            log.error("In-line update: Ops refused the report: %s", e.one_line())
        self._unreported = None

    def _ops(self) -> EdgeClient | None:
        """The client of Ops once it may be called: the log uploader enrolls through the same client, and
        calling before it holds the credential would race it for the single-use join token."""
        return self.link if self.link is not None and self.link.credential is not None else None

    def _set(self, state: str, error: str | None | object = _KEEP) -> None:
        with self._lock:
            self._state = state
            if error is not _KEEP:
                self._last_error = error


def _message(e: BaseException) -> str:
    return e.one_line() if isinstance(e, JoeyError) else f"{type(e).__name__}: {e}"
