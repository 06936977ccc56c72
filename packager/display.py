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
        t.add_row(key, _cell(value))
    console = Console(width=160, record=True, file=open("/dev/null", "w"))
    console.print(t)
    text = "\n".join(line.rstrip() for line in console.export_text().splitlines()) + "\n"
    commands = record.get("commands") or {}
    for name in ("serve", "push", "docker_run", "podman_run", "helm_install", "compose"):
        if name in commands:
            note = (commands.get("notes") or {}).get(name, "")
            text += f"\n# {name}" + (f" — {note}" if note else "") + f"\n{commands[name]}\n"
    return text


def _cell(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)
