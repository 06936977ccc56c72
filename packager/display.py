"""The publish record as a readable table, like the seeds' notebook display of a publish."""
from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

from joey.record import ordered


def table(record: dict) -> str:
    """The record as a two-column table, like the seeds' notebook display of a publish."""
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    for key, value in ordered(record).items():
        if key == "commands":
            continue
        t.add_row(key, _replaces(value) if key == "replaces" and value else _cell(value))
    console = Console(width=160, record=True, file=open("/dev/null", "w"))
    console.print(t)
    text = "\n".join(line.rstrip() for line in console.export_text().splitlines()) + "\n"
    commands = record.get("commands") or {}
    text += _sections(commands, ("serve", "push", "docker_run", "podman_run", "helm_install", "compose"))
    # A replacing publish: each edge it moves, with the commands that redeploy that edge (seed 004).
    for edge, edge_commands in (commands.get("edges") or {}).items():
        text += _sections(edge_commands, ("docker_run", "podman_run", "helm_install"), f"edge {edge}")
    return text


def _sections(commands: dict, names: tuple[str, ...], edge: str | None = None) -> str:
    """`# NAME[ — edge E][ — note]` then the command, for each of `names` that `commands` holds."""
    text = ""
    for name in names:
        if name in commands:
            note = (commands.get("notes") or {}).get(name, "")
            text += f"\n# {name}" + (f" — {edge}" if edge else "") + (f" — {note}" if note else "") + \
                f"\n{commands[name]}\n"
    return text


def _replaces(entries: list[dict]) -> str:
    """The seeds' `Publish 10, Pipeline "name", Version v` for each replaced publish."""
    def one(r: dict) -> str:
        publish = f"Publish {r['id']}, " if r.get("id") is not None else ""   # an id only when Ops knows it
        return f'{publish}Pipeline "{r["pipeline_name"]}", Version {r["pipeline_version"]}'
    return "; ".join(one(r) for r in entries)


def _cell(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)
