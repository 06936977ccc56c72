"""Verbs for the engine's container image: `packager image build` and `packager image push` (docs/container.md)."""
from __future__ import annotations

import logging
from pathlib import Path

from joey import __version__
from joey.names import engine_image
from packager.cli.flags import group, verb
from packager.cli.output import emit

DEFAULT_TAG = engine_image(__version__)   # packager.image.DEFAULT_TAG, without importing the build tooling

REGISTRY_HELP = "HOST[:PORT]/NAMESPACE: push to its engines/joey-engine:<version>, where publish looks for it"


def register(sub) -> None:
    verbs = group(sub, "image", "build the engine's container image with podman, and push it")
    s = verb(verbs, "build", cmd_build, "build the engine image (about 5 minutes the first time); prints its ID",
             store=False)
    s.add_argument("--tag", default=DEFAULT_TAG, help=f"local image name (default {DEFAULT_TAG})")
    s.add_argument("--context", type=Path, help="build context directory (default CACHE/engine-context)")
    s.add_argument("-v", "--verbose", action="store_true", help="show every command run")
    s = verb(verbs, "push", cmd_push, "push the built engine image; prints where, with the stored digest",
             store=False, net=True)
    where = s.add_mutually_exclusive_group(required=True)
    where.add_argument("dest", nargs="?", help="HOST[:PORT]/NAMESPACE/engines/joey-engine:TAG")
    where.add_argument("--registry", help=REGISTRY_HELP)
    s.add_argument("--tag", default=DEFAULT_TAG, help=f"local image name (default {DEFAULT_TAG})")
    s.add_argument("--creds", help="USER:PASSWORD for the registry (default: podman's own login)")
    s.add_argument("-v", "--verbose", action="store_true", help="show every command run")


def _logging(a) -> None:
    # The build's steps (cached or not, how long) are what a user watches for five minutes: on stderr.
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO, format="%(message)s")


def cmd_build(a) -> int:
    from packager.image import build_engine_image

    _logging(a)
    image_id = build_engine_image(a.tag, context_dir=a.context)
    return emit(a, {"image": a.tag, "id": image_id}, lambda: image_id)


def cmd_push(a) -> int:
    from joey.names import registry_target
    from packager.image import push_engine_image

    if a.registry:
        host, namespace = registry_target(a.registry)
        dest = engine_image(__version__, host=host, namespace=namespace)
    else:
        dest = a.dest
    _logging(a)
    digest = push_engine_image(a.tag, dest, tls_verify=not a.plain_http, creds=a.creds)
    return emit(a, {"image": a.tag, "reference": dest, "digest": digest}, lambda: f"{dest}@{digest}")
