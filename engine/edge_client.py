"""The engine's one client of Ops: enroll with the EDGE_BUNDLE's JOIN_TOKEN, then upload log pages, check in
and report updates, all over the credential that enrolment gave.

The join token works once, so the credential it is traded for is written to PERSIST_DIR/edge/credential.json
(atomically, mode 0600) before ensure_enrolled returns; later starts reuse that file and never present the
token again. A bundle with a different token for the same edge (the edge was removed and added again)
enrolls afresh; the replace placeholder token (seed 004) always means "keep the credential you have".
The uploader and the updater share one client: enrolment happens under its lock, once, and `credential`
tells the updater whether Ops can be called yet without racing anyone for the token.

Errors are split for the callers' loops: OpsRetryable (connection trouble, timeouts, 429, 5xx: back off and
try the same request again) and OpsRejected (any other refusal: retrying the same request cannot help).
The transport is `requests` (already there for oras): httpx would load rich and click into the engine.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import requests

from joey.bundle import REPLACE_PLACEHOLDER, EdgeBundle
from joey.errors import JoeyError, error_answer
from joey.fsutil import write_atomic
from joey.opswire import LOG_PAGE_MEDIA_TYPE

log = logging.getLogger("joey.engine")
CREDENTIAL_FILE = Path("edge") / "credential.json"
# The limit on connecting to Ops and on each wait for its bytes; a stop waits for the call in flight, so this
# also bounds how long a stop can take.
DEFAULT_TIMEOUT_S = 10.0


class OpsRetryable(JoeyError):
    """Ops could not be reached or asked to come back later."""

    exit_code = 8
    http_status = 503

    def __init__(self, action: str, cause: str, retry_after: float | None = None):
        self.retry_after = retry_after
        super().__init__(f"cannot {action} now: {cause}", hint="will retry; logs stay on the edge meanwhile")


class OpsRejected(JoeyError):
    """Ops refused the request (or the edge has nothing to present): the same request will fail again."""

    exit_code = 8
    http_status = 502

    def __init__(self, action: str, cause: str, hint: str | None = None):
        super().__init__(f"Ops refused to {action}: {cause}", hint=hint)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def to_json(value: Any) -> bytes:
    """A request body as Ops receives it: compact, NaN and infinities as null (as pandas' to_json writes them).
    The uploader sizes its pages with this same function."""
    return orjson.dumps(value)


@dataclass(frozen=True)
class Credential:
    edge: str
    credential: str
    spiffe_id: str
    join_token_sha256: str   # which bundle it came from: a new token for this edge means enroll again
    enrolled_at: float

    @classmethod
    def load(cls, path: Path) -> Credential | None:
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as e:
            raise OpsRejected("reuse the stored credential", f"{path} is unreadable ({e})",
                              hint="restore it from backup, or remove the edge, add it again and delete the file"
                              ) from None


class EdgeClient:
    """One edge's calls to Ops. Thread-safe: the uploader and the updater call it from their own threads."""

    def __init__(self, bundle: EdgeBundle, persist_dir: Path, clock: Callable[[], float] = time.time,
                 timeout: float = DEFAULT_TIMEOUT_S):
        self.bundle = bundle
        self.base_url = bundle.opscenter_url
        self.credential_path = Path(persist_dir) / CREDENTIAL_FILE
        self._clock = clock
        self._timeout = timeout
        self._http = requests.Session()
        self._enrolling = threading.Lock()
        self._credential: Credential | None = None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> EdgeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def credential(self) -> Credential | None:
        """The credential once enrolled; None before (no call to Ops is made to find out)."""
        return self._credential

    def ensure_enrolled(self) -> Credential:
        """The edge's credential: the stored one if it belongs to this bundle, else trade the join token."""
        with self._enrolling:   # two threads asking at once must not both present the single-use token
            if self._credential is None:
                self._credential = self._enroll()
            return self._credential

    def _enroll(self) -> Credential:
        token = self.bundle.join_token
        stored = Credential.load(self.credential_path)
        if stored is not None and stored.edge == self.bundle.edge_name and (
                token == REPLACE_PLACEHOLDER or _sha256(token) == stored.join_token_sha256):
            log.info("Edge %s: reusing the credential in %s", stored.edge, self.credential_path)
            return stored
        if token == REPLACE_PLACEHOLDER:
            raise OpsRejected("enroll", f"this EDGE_BUNDLE carries no join token and {self.credential_path} holds "
                                        f"no credential for edge {self.bundle.edge_name!r}",
                              hint="mount the persistent volume the edge enrolled with, or remove the edge and "
                                   "add it again for a new EDGE_BUNDLE")
        answer = self._post("enroll", "/join", to_json({"edge": self.bundle.edge_name, "join_token": token}), None)
        cred = Credential(edge=self.bundle.edge_name, credential=answer["credential"],
                          spiffe_id=answer["spiffe_id"], join_token_sha256=_sha256(token),
                          enrolled_at=self._clock())
        self.credential_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(self.credential_path, json.dumps(asdict(cred), indent=1).encode(), private=True)
        log.info("Node attestation was successful (edge %s, %s)", cred.edge, cred.spiffe_id)
        return cred

    def upload_page(self, seq_start: int, seq_end: int, records: Sequence[dict[str, Any]]) -> None:
        """Send records seq_start..seq_end (inclusive) of the local log. Safe to repeat: Ops stores each seq
        once, so after any error the same page can simply be sent again."""
        self.upload_encoded(seq_start, seq_end, [to_json(r) for r in records])

    def upload_encoded(self, seq_start: int, seq_end: int, records: Sequence[bytes]) -> None:
        """upload_page with each record already encoded by `to_json` (the uploader sized the page with them)."""
        cred = self.ensure_enrolled()
        body = page_body(cred.edge, seq_start, seq_end, records)
        self._post("upload logs", "/logs", body, cred.credential)

    def upload_arrow(self, body: bytes) -> None:
        """upload_page with the records as the log store keeps them, in an `arrow_page_body` (the uploader
        sized the page with it); Ops turns them into records column by column."""
        cred = self.ensure_enrolled()
        self._post("upload logs", "/logs", body, cred.credential, LOG_PAGE_MEDIA_TYPE)

    def checkin(self, serving: dict[str, Any]) -> dict[str, Any]:
        """Say what this edge serves; Ops answers with the publish it should run (`pipeline_url`, ...)."""
        cred = self.ensure_enrolled()
        return self._post("check in", "/checkin", to_json({"edge": cred.edge, "serving": serving}), cred.credential)

    def report(self, outcome: dict[str, Any], serving: dict[str, Any]) -> None:
        """The outcome of an in-line update (status, pipeline_url/digest/version, error) and what serves now."""
        cred = self.ensure_enrolled()
        self._post("report an update", "/update_status",
                   to_json({"edge": cred.edge, **outcome, "serving": serving}), cred.credential)

    def _post(self, action: str, path: str, payload: bytes, bearer: str | None,
              media_type: str = "application/json") -> dict[str, Any]:
        headers = {"Content-Type": media_type}
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        try:
            # No redirects: requests would turn a POST into a GET, and a credential must not follow one.
            r = self._http.post(f"{self.base_url}{path}", data=payload, headers=headers, timeout=self._timeout,
                                allow_redirects=False)
        except requests.Timeout:
            raise OpsRetryable(action, f"{self.base_url} timed out") from None
        except requests.RequestException as e:
            raise OpsRetryable(action, f"{self.base_url}: {str(e) or type(e).__name__}") from None
        if 200 <= r.status_code < 300:
            answer: dict[str, Any] = r.json()
            return answer
        message, hint = error_answer(r)
        if r.status_code == 429 or r.status_code >= 500:
            raise OpsRetryable(action, f"{r.status_code} {message}", retry_after=_retry_after(r))
        raise OpsRejected(action, f"{r.status_code} {message}", hint=hint)


def page_body(edge: str, seq_start: int, seq_end: int, records: Sequence[bytes]) -> bytes:
    """The JSON of a log page (joey.opswire.LogPage) around records encoded by `to_json`."""
    head = to_json({"edge": edge, "seq_start": seq_start, "seq_end": seq_end})[:-1]
    return b"".join((head, b',"records":[', b",".join(records), b"]}"))


def arrow_page_body(edge: str, seq_start: int, seq_end: int, table: pa.Table) -> bytes:
    """The Arrow IPC stream of a log page: the table's columns, the page's edge and seq range (inclusive) in the
    schema's metadata (joey.opswire.ARROW_PAGE_KEYS)."""
    meta = {"joey.edge": edge, "joey.seq_start": str(seq_start), "joey.seq_end": str(seq_end)}
    table = table.replace_schema_metadata(meta)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _retry_after(r: requests.Response) -> float | None:
    value = r.headers.get("retry-after", "")
    return float(value) if value.isdigit() else None
