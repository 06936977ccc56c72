"""A small OCI distribution client on top of oras-py's Registry (session, auth).

oras-py handles the authentication dance (Basic, or Bearer tokens from the realm); credentials come from
joey/credentials.py (containers auth.json, the docker config and its helpers). Here we add what Joey needs on top: streamed monolithic blob uploads (no file
in memory), existence checks to skip blobs the registry has, streamed downloads that are verified
(size, then sha256) before anything is moved into place, and errors that say what a status means.
"""
from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import oras.provider
import requests

from joey import credentials, envvars, mediatypes
from joey.descriptor import Descriptor, digest_of
from joey.errors import DigestMismatch, NotFound, PlainHTTPRegistry, RegistryError, RegistryUnreachable
from joey.verify import Progress

_CHUNK = 4 * 2**20
TIMEOUT = (10, 300)  # connect, read


_DO_REQUEST = getattr(oras.provider.Registry.do_request, "__wrapped__", oras.provider.Registry.do_request)


class _Body:
    """A file body for requests that reports progress and can be rewound for an auth retry."""

    def __init__(self, f: IO[bytes], size: int, progress: Progress | None = None):
        self.f, self.size, self.progress = f, size, progress

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.f.read(_CHUNK):
            if self.progress:
                self.progress(len(chunk))
            yield chunk


class Registry:
    """One registry host. Credentials: arguments, else OCI_USERNAME/OCI_PASSWORD, else the stored logins
    (joey/credentials.py)."""

    def __init__(self, host: str, *, plain_http: bool = False, username: str | None = None,
                 password: str | None = None):
        self.host = host
        self.plain_http = plain_http
        self.scheme = "http" if plain_http else "https"
        username = username if username is not None else os.environ.get(envvars.OCI_USERNAME)
        password = password if password is not None else os.environ.get(envvars.OCI_PASSWORD)
        self._oras = oras.provider.Registry(host, insecure=plain_http, auth_backend="token")
        self._basic: str | None = None
        if not (username and password):
            username, password = credentials.lookup(host) or (None, None)
        if username and password:
            self._oras.auth.set_basic_auth(username, password)
            self._basic = base64.b64encode(f"{username}:{password}".encode()).decode()
        self._challenged = False

    # -- plumbing
    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.host}/v2/{path}"

    def _request(self, method: str, url: str, *, action: str, ok: tuple[int, ...] = (200,),
                 **kw: Any) -> requests.Response:
        headers = kw.pop("headers", {}) or {}
        try:
            self._authenticate_once()
            if self._challenged and self._basic and not getattr(self._oras.auth, "token", None):
                headers.setdefault("Authorization", f"Basic {self._basic}")
            # oras-py's do_request is wrapped in a retry that sleeps ~2 minutes on a dead registry and would resend
            # an already-consumed streamed body; callers here decide about retrying (the engine backs off itself).
            r: requests.Response = _DO_REQUEST(self._oras, url, method, headers=headers, **kw)
        except requests.exceptions.SSLError as e:
            raise _tls_error(self.host, e) from None
        except requests.exceptions.ConnectionError as e:
            raise RegistryUnreachable(self.host, _root_cause(e), self.plain_http) from None
        except requests.exceptions.Timeout:
            raise RegistryUnreachable(self.host, "timed out", self.plain_http) from None
        except ValueError as e:  # oras: "Cannot respond to request for authentication."
            raise RegistryError(action, 401, url, str(e)) from None
        if r.status_code not in ok:
            raise RegistryError(action, r.status_code, url, _error_detail(r))
        return r

    def check_login(self) -> None:
        """Authenticate against /v2/ now: a wrong password fails here, before anything is sent."""
        self._challenged = False
        self._request("GET", self.url(""), action="log in")

    def _authenticate_once(self) -> None:
        """Ping /v2/ once so the auth scheme is known before any streamed body is sent."""
        if self._challenged:
            return
        self._challenged = True
        r = self._oras.session.get(self.url(""), timeout=TIMEOUT)
        if r.status_code == 401 and "basic" in r.headers.get("Www-Authenticate", "").lower():
            if not self._basic:
                raise RegistryError("authenticate", 401, self.url(""), "credentials required")
            r = self._oras.session.get(self.url(""), headers={"Authorization": f"Basic {self._basic}"},
                                       timeout=TIMEOUT)
            if r.status_code == 401:
                raise RegistryError("authenticate", 401, self.url(""), "invalid username or password")

    # -- blobs
    def blob_exists(self, repository: str, digest: str) -> bool:
        r = self._request("HEAD", self.url(f"{repository}/blobs/{digest}"), action="check blob", ok=(200, 404))
        return r.status_code == 200

    def write_blob(self, repository: str, desc: Descriptor, src: IO[bytes] | Path,
                   progress: Progress | None = None) -> bool:
        """Upload a blob (POST then one monolithic PUT, streamed). False when the registry already has it."""
        if self.blob_exists(repository, desc.digest):
            return False
        r = self._request("POST", self.url(f"{repository}/blobs/uploads/"), action="start upload", ok=(202,))
        location = r.headers.get("Location", "")
        if not location.startswith("http"):
            location = f"{self.scheme}://{self.host}{location}"
        sep = "&" if "?" in location else "?"
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(desc.size)}
        with (open(src, "rb") if isinstance(src, Path) else _nullctx(src)) as f:
            self._request("PUT", f"{location}{sep}digest={desc.digest}", action=f"push blob {desc.digest}",
                          ok=(201,), data=_Body(f, desc.size, progress), headers=headers)
        return True

    @contextmanager
    def read_blob(self, repository: str, digest: str) -> Iterator[IO[bytes]]:
        r = self._request("GET", self.url(f"{repository}/blobs/{digest}"), action=f"pull blob {digest}",
                          stream=True)
        try:
            r.raw.decode_content = True
            yield r.raw
        finally:
            r.close()

    # -- manifests
    def resolve(self, repository: str, reference: str) -> tuple[bytes, str, str]:
        r = self._request("GET", self.url(f"{repository}/manifests/{reference}"),
                          action=f"resolve {self.host}/{repository}:{reference}", ok=(200, 404),
                          headers={"Accept": mediatypes.MANIFEST_ACCEPT})
        if r.status_code == 404:
            raise NotFound(f"{self.host}/{repository}:{reference}",
                           hint="check the reference: repository or tag does not exist")
        raw = r.content
        digest = digest_of(raw)
        if reference.startswith("sha256:") and digest != reference:
            raise DigestMismatch(f"manifest {repository}@{reference}", reference, digest)
        media_type = r.headers.get("Content-Type", mediatypes.OCI_MANIFEST).split(";")[0]
        return raw, media_type, digest

    def write_manifest(self, repository: str, tag: str | None, raw: bytes, media_type: str) -> str:
        reference = tag or digest_of(raw)
        self._request("PUT", self.url(f"{repository}/manifests/{reference}"),
                      action=f"push manifest {repository}:{reference}", ok=(201,), data=raw,
                      headers={"Content-Type": media_type})
        return digest_of(raw)

    def tags(self, repository: str) -> list[str]:
        out: list[str] = []
        url = self.url(f"{repository}/tags/list?n=1000")
        while url:
            r = self._request("GET", url, action=f"list tags of {repository}", ok=(200, 404))
            if r.status_code == 404:
                return out
            out.extend(r.json().get("tags") or [])
            link = r.headers.get("Link", "")
            url = ""
            if 'rel="next"' in link:
                nxt = link.split(";")[0].strip("<> ")
                url = nxt if nxt.startswith("http") else f"{self.scheme}://{self.host}{nxt}"
        return out

    def referrers(self, digest: str, repository: str) -> list[dict[str, Any]] | None:
        """The referrers API's listing; None when the registry has no such API (the spec forbids a 404 from one
        that has it: distribution 2.8 answers 404)."""
        r = self._request("GET", self.url(f"{repository}/referrers/{digest}"), action="list referrers",
                          ok=(200, 404))
        return (r.json().get("manifests") or []) if r.status_code == 200 else None

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> bool:
        """Link a blob this registry holds in `from_repository` into `repository` without sending it again;
        False when the registry would rather have it uploaded (it answers 202: mounting is optional)."""
        r = self._request("POST", self.url(f"{repository}/blobs/uploads/?mount={digest}&from={from_repository}"),
                          action=f"mount blob {digest}", ok=(201, 202))
        return r.status_code == 201


@contextmanager
def _nullctx(f: IO[bytes]) -> Iterator[IO[bytes]]:
    yield f


def _root_cause(e: Exception) -> str:
    text = str(e)
    for marker in ("Connection refused", "Name or service not known", "timed out", "Connection reset"):
        if marker in text:
            return marker.lower()
    return text.split(":")[-1].strip()[:200] or type(e).__name__


# OpenSSL's words for a TLS hello answered in plain HTTP (OpenSSL 1.1 and 3.0; 3.2 and later).
_PLAIN_HTTP_ANSWERS = ("WRONG_VERSION_NUMBER", "record layer failure", "http request", "packet length too long")
_SSL_REASON = re.compile(r"\[SSL: [A-Z_]+\] ([^(']+)")


def _tls_error(host: str, e: requests.exceptions.SSLError) -> RegistryUnreachable:
    """One clean line from the nest of wrapped SSL errors requests raises."""
    text = str(e)
    if any(answer in text for answer in _PLAIN_HTTP_ANSWERS):
        return PlainHTTPRegistry(host)
    reason = _SSL_REASON.search(text)
    return RegistryUnreachable(host, f"TLS failed: {reason.group(1).strip() if reason else 'handshake error'}",
                               plain_http=False)


def _error_detail(r: requests.Response) -> str:
    try:
        errors = r.json().get("errors") or []
        return "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)[:300]
    except ValueError:
        return ""
