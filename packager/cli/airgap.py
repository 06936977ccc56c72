"""Verbs for air-gapped sites: export a publish to one tar, import it into another registry."""
from __future__ import annotations

import sys
from pathlib import Path

from packager.cli.flags import verb
from packager.cli.output import emit, progress
from packager.cli.publishing import REGISTRY_HELP


def register(sub) -> None:
    s = verb(sub, "export", cmd_export, "write a publish (pipeline, record, chart, engine image) to one OCI-layout "
                                        "tar", net=True)
    s.add_argument("publish", metavar="PUBLISH", help="the publish's pipeline reference (NAME:VERSION or a URL)")
    s.add_argument("--out", required=True, type=Path)
    s = verb(sub, "import", cmd_import, "push an exported tar into a registry, digests unchanged", net=True,
             store=False)
    s.add_argument("file", type=Path)
    s.add_argument("--registry", required=True, help=REGISTRY_HELP)


def cmd_export(a) -> int:
    from packager.airgap import export_publish

    ex = export_publish(a.publish, a.out, store=a.store, plain_http=a.plain_http, progress=progress(a))
    if not a.json:   # what was left out is a warning, beside the result rather than in it
        for what, why in ex.skipped.items():
            print(f"skipped {what}: {why}", file=sys.stderr)
    return emit(a, {"out": str(ex.path), "refs": ex.refs, "skipped": ex.skipped},
                lambda: [*(f"{name}  {digest}" for name, digest in ex.refs.items()), f"wrote {ex.path}"])


def cmd_import(a) -> int:
    from packager.airgap import import_bundle

    refs = import_bundle(a.file, a.registry, plain_http=a.plain_http, progress=progress(a))
    return emit(a, {"refs": refs}, lambda: [f"{name}  {digest}" for name, digest in refs.items()])
