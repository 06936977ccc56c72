"""What the CLI prints: a verb's result (JSON with --json, else its text), an error, and progress bars.

Results go to stdout; errors, skips and progress bars to stderr, so `--json` output can always be piped.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from typing import Any

from joey.errors import JoeyError, SpecError
from joey.transfer import ProgressFactory, no_progress
from packager.progress import terminal_progress

INTERNAL_HINT = "run with --debug for the traceback"


def emit(a, result: Any, text: Callable[[], Iterable[str] | str]) -> int:
    """Print `result` as JSON with --json, else the lines `text()` makes of it. Returns 0, the verb's exit."""
    if getattr(a, "json", False):
        json.dump(result, sys.stdout, indent=2, sort_keys=False)
        sys.stdout.write("\n")
    else:
        lines = text()
        print(lines if isinstance(lines, str) else "\n".join(lines))
    return 0


def progress(a) -> ProgressFactory:
    """Bars on a terminal's stderr for large transfers; none with --json, whose reader is a program."""
    return no_progress if getattr(a, "json", False) else terminal_progress


def error(e: JoeyError, *, as_json: bool) -> None:
    """An error on stderr: one JSON object with --json, else one line (a spec: one line per problem)."""
    _report(str(e), e.hint, e.exit_code, as_json,
            line=str(e) if isinstance(e, SpecError) else f"error: {e.one_line()}")


def internal_error(e: BaseException, exit_code: int, *, as_json: bool) -> None:
    """A bug: one line naming the exception; the traceback only with --debug."""
    message = f"internal error: {type(e).__name__}: {e}"
    _report(message, INTERNAL_HINT, exit_code, as_json, line=f"{message} ({INTERNAL_HINT})")


def _report(message: str, hint: str | None, exit_code: int, as_json: bool, *, line: str) -> None:
    if as_json:
        json.dump({"error": message, "hint": hint, "exit_code": exit_code}, sys.stderr)
        sys.stderr.write("\n")
    else:
        print(line, file=sys.stderr)
