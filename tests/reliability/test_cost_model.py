"""The cost model in docs/reliability.md matches the code: each limit's documented default is the constant the
code enforces, every limit of a component is in its table, and every setting named is one Joey reads.

A row is keyed by the constant named in its `limit` cell (`MAX_PAGE_BYTES`), else by its environment variable
(`JOEY_MAX_BODY`); rows with neither (`—`) document behaviour, not a limit. A component's rows are checked once
it has a mapping in LIMITS: key -> the value in code.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from joey import envvars, opswire
from opscenter import app as ops_app
from packager import airgap, spec

DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"

LIMITS: dict[str, dict[str, int]] = {
    "Ops center": {
        "MAX_JOIN_BYTES": opswire.MAX_JOIN_BYTES, "MAX_EDGE_BYTES": opswire.MAX_EDGE_BYTES,
        "MAX_PAGE_BYTES": opswire.MAX_PAGE_BYTES, "MAX_PAGE_RECORDS": opswire.MAX_PAGE_RECORDS,
        "MAX_ADMIN_BYTES": opswire.MAX_ADMIN_BYTES, "MAX_EXPORT_PAGE": opswire.MAX_EXPORT_PAGE,
        "PARSE_SLOTS": ops_app.PARSE_SLOTS,
    },
    "Packager": {
        "MAX_SPEC_BYTES": spec.MAX_SPEC_BYTES, "MAX_DEPTH": spec.MAX_DEPTH,
        "MAX_TENSOR_VALUES": spec.MAX_TENSOR_VALUES, "IMPORT_MAX_RATIO": airgap.IMPORT_MAX_RATIO,
        "IMPORT_MIN_BYTES": airgap.IMPORT_MIN_BYTES, "IMPORT_MAX_MEMBERS": airgap.IMPORT_MAX_MEMBERS,
    },
}

_UNITS = {"": 1, "B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
_DEFAULT = re.compile(r"^(?P<n>\d[\d,]*)\s*(?P<unit>B|KiB|MiB|GiB|Ki|Mi|Gi)?$")
_CONSTANT = re.compile(r"`([A-Z][A-Z0-9_]+)`")


def tables() -> dict[str, list[dict[str, str]]]:
    """The rows of each `### component` table under `## Cost model`, as {column header: cell}."""
    text = DOC.read_text()
    assert "\n## Cost model\n" in text, "docs/reliability.md has no Cost model section"
    section = text.split("\n## Cost model\n", 1)[1].split("\n## ", 1)[0]
    out: dict[str, list[dict[str, str]]] = {}
    for part in section.split("\n### ")[1:]:
        title, _, body = part.partition("\n")
        lines = [line for line in body.splitlines() if line.startswith("|")]
        header = [c.strip() for c in lines[0].strip("|").split("|")]
        out[title.strip()] = [dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True))
                              for line in lines[2:]]
    return out


def key(row: dict[str, str]) -> str | None:
    """The constant named in the limit cell, else the environment variable; None for a row without either."""
    for cell in (row.get("limit", ""), row.get("env var", "")):
        found = _CONSTANT.search(cell)
        if found:
            return found.group(1)
    return None


def default_value(cell: str) -> int:
    m = _DEFAULT.match(cell.strip())
    assert m, f"default {cell!r} is not a number with an optional unit (KiB, MiB, GiB)"
    return int(m["n"].replace(",", "")) * _UNITS[m["unit"] or ""]


@pytest.mark.parametrize("component", LIMITS)
def test_each_documented_default_is_the_constant_in_code(component):
    rows = tables().get(component)
    assert rows, f"docs/reliability.md has no '### {component}' table under Cost model"
    documented = {key(r): default_value(r["default"]) for r in rows if key(r)}
    assert documented == LIMITS[component], f"{component}: the table and the code disagree"


@pytest.mark.parametrize("component", LIMITS)
def test_each_setting_named_is_one_joey_reads(component):
    settings = {v for k, v in vars(envvars).items() if k.isupper() and isinstance(v, str)}
    for row in tables()[component]:
        for name in re.findall(r"`(JOEY_[A-Z0-9_]+)`", row.get("env var", "")):
            assert name in settings, f"{component}: {name} is not in joey/envvars.py"
