"""The engine's side of edge observability: enroll with the EDGE_BUNDLE's JOIN_TOKEN, then upload log pages.

The join token works once, so the credential it is traded for is written to PERSIST_DIR/edge/credential.json
(atomically, mode 0600) before ensure_enrolled returns; later starts reuse that file and never present the
token again. A bundle with a different token for the same edge (the edge was removed and added again)
enrolls afresh; the replace placeholder token (seed 004) always means "keep the credential you have".

Errors are split for the upload loop: OpsRetryable (connection trouble, timeouts, 429, 5xx: back off and try
the same page again) and OpsRejected (any other refusal: retrying the same request cannot help).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import httpx

from joey.errors import error_answer
from joey.bundle import REPLACE_PLACEHOLDER, EdgeBundle
from joey.errors import JoeyError
from joey.fsutil import write_atomic

log = logging.getLogger("joey.engine")
CREDENTIAL_FILE = Path("edge") / "credential.json"


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


@dataclass(frozen=True)
class Credential:
    edge: str
    credential: str
    spiffe_id: str
    join_token_sha256: str   # which bundle it came from: a new token for this edge means enroll again
    enrolled_at: float

    @classmethod
    def load(cls, path: Path) -> "Credential | None":
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as e:
            raise OpsRejected("reuse the stored credential", f"{path} is unreadable ({e})",
                              hint="restore it from backup, or remove the edge, add it again and delete the file")


class EdgeClient:
    def __init__(self, bundle: EdgeBundle, persist_dir: Path, clock: Callable[[], float] = time.time,
                 timeout: float = 30.0):
        self.bundle = bundle
        self.base_url = bundle.opscenter_url
        self.credential_path = Path(persist_dir) / CREDENTIAL_FILE
        self._clock = clock
        self._http = httpx.Client(timeout=timeout)
        self._credential: Credential | None = None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "EdgeClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def ensure_enrolled(self) -> Credential:
        """The edge's credential: the stored one if it belongs to this bundle, else trade the join token."""
        if self._credential is not None:
            return self._credential
        token = self.bundle.join_token
        stored = Credential.load(self.credential_path)
        if stored is not None and stored.edge == self.bundle.edge_name and (
                token == REPLACE_PLACEHOLDER or _sha256(token) == stored.join_token_sha256):
            log.info("Edge %s: reusing the credential in %s", stored.edge, self.credential_path)
            self._credential = stored
            return stored
        if token == REPLACE_PLACEHOLDER:
            raise OpsRejected("enroll", f"this EDGE_BUNDLE carries no join token and {self.credential_path} holds "
                                        f"no credential for edge {self.bundle.edge_name!r}",
                              hint="mount the persistent volume the edge enrolled with, or remove the edge and "
                                   "add it again for a new EDGE_BUNDLE")
        answer = self._post("enroll", "/join", {"edge": self.bundle.edge_name, "join_token": token}, None)
        cred = Credential(edge=self.bundle.edge_name, credential=answer["credential"],
                          spiffe_id=answer["spiffe_id"], join_token_sha256=_sha256(token),
                          enrolled_at=self._clock())
        self.credential_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(self.credential_path, json.dumps(asdict(cred), indent=1).encode())
        self._credential = cred
        log.info("Node attestation was successful (edge %s, %s)", cred.edge, cred.spiffe_id)
        return cred

    def upload_page(self, seq_start: int, seq_end: int, records: Sequence[dict[str, Any]]) -> None:
        """Send records seq_start..seq_end (inclusive) of the local log. Safe to repeat: Ops stores each seq
        once, so after any error the same page can simply be sent again."""
        cred = self.ensure_enrolled()
        self._post("upload logs", "/logs", {"edge": cred.edge, "seq_start": seq_start, "seq_end": seq_end,
                                            "records": list(records)}, cred.credential)

    def _post(self, action: str, path: str, body: dict, bearer: str | None) -> dict:
        headers = {"Content-Type": "application/json"}
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        try:
            payload = json.dumps(body, allow_nan=False)
        except ValueError:  # NaN or infinity in a record: null, as pandas' to_json writes them
            payload = json.dumps(_finite(body), allow_nan=False)
        try:
            r = self._http.post(f"{self.base_url}{path}", content=payload.encode(), headers=headers)
        except httpx.TimeoutException:
            raise OpsRetryable(action, f"{self.base_url} timed out") from None
        except httpx.TransportError as e:
            raise OpsRetryable(action, f"{self.base_url}: {str(e) or type(e).__name__}") from None
        if r.is_success:
            return r.json()
        message, hint = error_answer(r)
        if r.status_code == 429 or r.status_code >= 500:
            raise OpsRetryable(action, f"{r.status_code} {message}", retry_after=_retry_after(r))
        raise OpsRejected(action, f"{r.status_code} {message}", hint=hint)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _retry_after(r: httpx.Response) -> float | None:
    value = r.headers.get("retry-after", "")
    return float(value) if value.isdigit() else None
