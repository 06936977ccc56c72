"""`packager`: the command line. This module only wires the verbs (one module per verb group: flags, help and
a call into the library) and turns whatever they raise into an exit code and one line on stderr (one JSON
object with --json). Tracebacks only with --debug, which is accepted before or after the verb.

Exit codes (docs/cli.md): 0 done, a JoeyError's `exit_code` for every mistake and failure it names,
INTERNAL_ERROR only for a bug, INTERRUPTED for Ctrl-C. A reader that closes stdout early (`| head -1`) ends
the command quietly, as git does.
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback

from joey import __version__
from joey.errors import ConfigError, JoeyError, NotFound
from packager.cli import airgap, artifacts, assays, completion, image, login, ops, output, publishing, serve, signing
from packager.cli.flags import debug

INTERNAL_ERROR = 70   # sysexits' EX_SOFTWARE: a bug, never a user's mistake
INTERRUPTED = 130     # what shells report for SIGINT

VERB_GROUPS = (artifacts, publishing, image, airgap, signing, serve, login, ops, assays, completion)


class _UsageError(Exception):
    """argparse's complaint about the command line, raised rather than printed so --json can report it."""

    def __init__(self, parser: argparse.ArgumentParser, message: str):
        self.parser = parser
        self.error = ConfigError(parser.prog, message)
        self.error.hint = f"`{parser.prog} --help` lists the arguments"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise _UsageError(self, message)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="packager", description="Build, push and publish ML pipelines for the edge.")
    p.add_argument("--version", action="version", version=f"packager {__version__}")
    debug(p, top=True)
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verbs in VERB_GROUPS:
        verbs.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parser().parse_args(argv)
    except _UsageError as e:
        if "--json" not in argv:
            e.parser.print_usage(sys.stderr)
        output.error(e.error, as_json="--json" in argv)
        return e.error.exit_code
    as_json = getattr(args, "json", False)
    try:
        code = args.func(args)
        sys.stdout.flush()   # inside the try: a closed pipe shows here, not in the interpreter's exit
        return code
    except BrokenPipeError:
        # The reader has all it wanted. Point stdout at /dev/null so the exit's own flush stays quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
    except Exception as e:
        if args.debug:
            traceback.print_exc()
        error = _user_error(e)
        if error is None:   # a bug: say so in one line, the traceback only on request
            output.internal_error(e, INTERNAL_ERROR, as_json=as_json)
            return INTERNAL_ERROR
        output.error(error, as_json=as_json)
        return error.exit_code


def _user_error(e: Exception) -> JoeyError | None:
    """The JoeyError to report: the error itself, or for a file the user named (an OSError with a filename:
    a missing --out directory, an unreadable tar) the one that says so. None for anything else: a bug."""
    if isinstance(e, JoeyError):
        return e
    if not isinstance(e, OSError) or e.filename is None:
        return None
    if isinstance(e, FileNotFoundError):
        return NotFound(f"file {e.filename}", hint="check the path")
    return ConfigError(str(e.filename), e.strerror or type(e).__name__)

