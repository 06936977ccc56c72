"""The flags many verbs share (--json, --store, --plain-http, --ops, --debug), declared once."""
from __future__ import annotations

import argparse
from pathlib import Path


def verb(sub, name: str, func, help_: str, *, json_: bool = True, store: bool = True, net: bool = False,
         ops: bool = False) -> argparse.ArgumentParser:
    """A verb's parser, with the shared flags it takes; `func(args) -> exit code` runs it."""
    s = sub.add_parser(name, help=help_, description=help_)
    s.set_defaults(func=func)
    debug(s)
    if json_:
        s.add_argument("--json", action="store_true", help="print the result (or the error) as JSON")
    if store:
        s.add_argument("--store", type=Path, default=None,
                       help="local OCI layout directory (default $JOEY_STORE or ~/.local/share/joey/store)")
    if net:
        s.add_argument("--plain-http", action="store_true", help="talk HTTP, not HTTPS, to the registry")
    if ops:
        s.add_argument("--ops", help="the Ops center URL (default $JOEY_OPS_URL; admin token from $JOEY_OPS_TOKEN)")
    return s


def group(sub, name: str, help_: str):
    """A verb with verbs of its own (`edge add`): the subparsers to add them to."""
    g = sub.add_parser(name, help=help_, description=help_)
    debug(g)
    return g.add_subparsers(dest=f"{name}_verb", required=True, metavar="VERB")


def debug(p: argparse.ArgumentParser, *, top: bool = False) -> None:
    """--debug, accepted before or after any verb. Below the top it is SUPPRESSed when absent, so a verb's
    parser does not reset what the top one already read."""
    p.add_argument("--debug", action="store_true", default=False if top else argparse.SUPPRESS,
                   help="show tracebacks")
