"""Media types of request and answer bodies: parsing Content-Type, and choosing the answer type from Accept."""
from __future__ import annotations

from dataclasses import dataclass

from joey.errors import NotAcceptable

ARROW_FILE = "application/vnd.apache.arrow.file"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
JSON = "application/json"
PANDAS_RECORDS = "application/json; format=pandas-records"

REQUEST_TYPES = (ARROW_FILE, ARROW_STREAM, PANDAS_RECORDS, JSON)
RESPONSE_TYPES = (PANDAS_RECORDS, ARROW_FILE, ARROW_STREAM)


@dataclass(frozen=True)
class MediaType:
    essence: str            # type/subtype, lower case
    format: str | None      # the `format=` parameter of JSON types

    @classmethod
    def parse(cls, header: str) -> MediaType:
        main, *params = header.split(";")
        fmt = None
        for p in params:
            key, _, value = p.partition("=")
            if key.strip().lower() == "format":
                fmt = value.strip().strip('"').lower()
        return cls(main.strip().lower(), fmt)

    @property
    def kind(self) -> str | None:
        """ARROW_FILE, ARROW_STREAM or PANDAS_RECORDS when this is one of them (JSON means records)."""
        if self.essence in (ARROW_FILE, ARROW_STREAM):
            return self.essence
        if self.essence == JSON and self.format in (None, "pandas-records"):
            return PANDAS_RECORDS
        return None



def negotiate(accept: str | None) -> str:
    """The response type for an Accept header: the first supported entry by quality, JSON by default."""
    if not accept or not accept.strip():
        return PANDAS_RECORDS
    ranked = []
    for i, entry in enumerate(accept.split(",")):
        mt = MediaType.parse(entry)
        q = 1.0
        for p in entry.split(";")[1:]:
            key, _, value = p.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        ranked.append((-q, i, mt))
    for neg_q, _, mt in sorted(ranked, key=lambda r: r[:2]):
        if neg_q >= 0:
            continue
        if mt.kind is not None:
            return mt.kind
        if mt.essence in ("*/*", "application/*"):
            return PANDAS_RECORDS
    raise NotAcceptable(accept, RESPONSE_TYPES)
