"""EDGE_BUNDLE: the base64 block of `export KEY=VALUE` lines that tells an edge engine how to reach Ops.

This is the only module that builds or reads one. The form is the seeds' (001-004): standard base64 (with
padding) of newline-separated `export KEY=VALUE` lines, no trailing newline, values unquoted. Because people
`eval "$(base64 -d <<<$EDGE_BUNDLE)"` such blocks, every value is restricted to characters a POSIX shell
takes literally in an unquoted assignment; anything else is refused on both encode and decode.
"""
from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from dataclasses import dataclass, fields
from urllib.parse import urlsplit

from joey.errors import JoeyError
from joey.names import is_dns_label, is_host

SUPPORTED_VERSION = "1"
# What Ops writes as JOIN_TOKEN in the bundles it shows for edges moved to a replacing publish (seed 004):
# such an edge keeps the credential it already holds, so no token is handed out again.
REPLACE_PLACEHOLDER = "omitted_for_replace"
# Base64 text longer than this is refused before decoding: real bundles are about 500 characters.
MAX_ENCODED_CHARS = 8192
MAX_VALUE_CHARS = 2048

# Order of the seeds' newer bundles (seed 001/004: CONFIG_CPUS and OCI_REGISTRY present), WORKSPACE_ID last.
_KEY_ORDER = ("BUNDLE_VERSION", "CONFIG_CPUS", "EDGE_NAME", "OPSCENTER_HOST", "PIPELINE_URL", "JOIN_TOKEN",
              "OCI_REGISTRY", "WORKSPACE_ID")
_REQUIRED = frozenset({"BUNDLE_VERSION", "EDGE_NAME", "OPSCENTER_HOST", "PIPELINE_URL", "JOIN_TOKEN"})
_LINE = re.compile(r"export ([A-Za-z_][A-Za-z0-9_]*)=(.*)", re.DOTALL)
# Taken literally by sh in `export K=V`: no quotes, `$`, backquote, `\`, spaces, globs, `;&|<>(){}`, `~`, `#`.
_SHELL_SAFE = re.compile(r"[A-Za-z0-9._:/@%+,=-]+")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
_CPUS = re.compile(r"(?:0|[1-9][0-9]{0,3})(?:\.[0-9]{1,3})?")
_DIGITS = re.compile(r"[1-9][0-9]{0,17}")


class BundleError(JoeyError):
    """A malformed EDGE_BUNDLE. Messages name the line or key at fault, never a value (it may hold a token)."""

    exit_code = 2
    http_status = 400

    def __init__(self, problem: str):
        super().__init__(f"EDGE_BUNDLE: {problem}",
                         hint="use the EDGE_BUNDLE exactly as add_edge_to_publish returned it")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _opscenter_url(value: str) -> str:
    """OPSCENTER_HOST as a URL: no scheme means https (the seeds' form); plain http only to a loopback host,
    so an edge never sends its credential or logs in the clear over a network."""
    url = value if "://" in value else f"https://{value}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise BundleError("OPSCENTER_HOST: scheme must be http:// or https:// (or none, meaning https)")
    if not parts.hostname or parts.query or parts.fragment:
        raise BundleError("OPSCENTER_HOST: expected HOST[:PORT][/PATH]")
    try:
        _ = parts.port   # urllib checks the port only when it is read
    except ValueError:
        raise BundleError("OPSCENTER_HOST: bad port") from None
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise BundleError("OPSCENTER_HOST: plain http:// only to a loopback host; Ops is reached over https")
    return url.rstrip("/")


@dataclass(frozen=True)
class EdgeBundle:
    """One edge's bundle. Optional keys are None when absent (older seed bundles carry fewer keys)."""

    edge_name: str
    opscenter_host: str
    pipeline_url: str
    join_token: str
    bundle_version: str = SUPPORTED_VERSION
    config_cpus: str | None = None
    oci_registry: str | None = None
    workspace_id: str | None = None

    def __post_init__(self) -> None:
        for key in sorted(_REQUIRED):
            if getattr(self, key.lower()) is None:
                raise BundleError(f"{key}: must be a non-empty string")
        for key, value in self.to_env().items():
            if not isinstance(value, str) or not value:
                raise BundleError(f"{key}: must be a non-empty string")
            if len(value) > MAX_VALUE_CHARS:
                raise BundleError(f"{key}: longer than {MAX_VALUE_CHARS} characters")
            if not _SHELL_SAFE.fullmatch(value):
                raise BundleError(f"{key}: only letters, digits and . _ : / @ % + , = - are allowed "
                                  "(no spaces, quotes or shell metacharacters)")
        if self.bundle_version != SUPPORTED_VERSION:
            raise BundleError(f"BUNDLE_VERSION: unsupported version; this Joey reads version {SUPPORTED_VERSION}")
        if not is_dns_label(self.edge_name):
            raise BundleError("EDGE_NAME: must be a DNS-1123 label (lower-case letters, digits and '-', "
                              "starting and ending with a letter or digit, at most 63 characters)")
        if not _TOKEN.fullmatch(self.join_token):
            raise BundleError("JOIN_TOKEN: expected 1-256 characters of A-Z a-z 0-9 _ -")
        _opscenter_url(self.opscenter_host)
        if self.config_cpus is not None and not _CPUS.fullmatch(self.config_cpus):
            raise BundleError("CONFIG_CPUS: expected a number of CPUs such as 1, 4 or 1.25")
        if self.workspace_id is not None and not _DIGITS.fullmatch(self.workspace_id):
            raise BundleError("WORKSPACE_ID: expected a positive integer")
        if self.oci_registry is not None and not is_host(self.oci_registry):
            raise BundleError("OCI_REGISTRY: expected HOST[:PORT] (localhost, a dotted name, or NAME:PORT)")

    @property
    def opscenter_url(self) -> str:
        """Where the edge calls Ops: OPSCENTER_HOST with its scheme made explicit."""
        return _opscenter_url(self.opscenter_host)

    def to_env(self) -> dict[str, str]:
        """The bundle's variables by name, in the seeds' order, absent optional keys left out."""
        values = {f.name.upper(): getattr(self, f.name) for f in fields(self)}
        return {k: values[k] for k in _KEY_ORDER if values[k] is not None}

    def encode(self) -> str:
        text = "\n".join(f"export {k}={v}" for k, v in self.to_env().items())
        return base64.b64encode(text.encode("ascii")).decode("ascii")

    @classmethod
    def decode(cls, text: str) -> EdgeBundle:
        if not isinstance(text, str):
            raise BundleError("expected base64 text")
        text = text.strip()
        if not text:
            raise BundleError("empty")
        if len(text) > MAX_ENCODED_CHARS:
            raise BundleError(f"longer than {MAX_ENCODED_CHARS} characters")
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise BundleError("not valid base64 (standard alphabet, with padding)") from None
        try:
            plain = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BundleError("decoded bytes are not UTF-8 text") from None
        lines = plain.split("\n")
        if len(lines) > 1 and lines[-1] == "":
            lines.pop()  # one trailing newline, as `base64 -d` users often add
        values: dict[str, str] = {}
        for n, line in enumerate(lines, start=1):
            m = _LINE.fullmatch(line)
            if m is None:
                raise BundleError(f"line {n}: expected `export KEY=VALUE`")
            key, value = m.groups()
            if key not in _KEY_ORDER:
                raise BundleError(f"line {n}: unknown key {key!r}; known keys: {', '.join(_KEY_ORDER)}")
            if key in values:
                raise BundleError(f"line {n}: {key} given twice")
            values[key] = value
        missing = sorted(_REQUIRED - values.keys())
        if missing:
            raise BundleError(f"missing {', '.join(missing)}")
        return cls(**{k.lower(): v for k, v in values.items()})
