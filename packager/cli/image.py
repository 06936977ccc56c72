"""Verbs for the engine's container image: `packager image build` and `packager image push` (docs/container.md)."""
from __future__ import annotations

import logging
from pathlib import Path

from joey import __version__
from joey.names import IMAGE_ACCELS, IMAGE_PLATFORMS, engine_image
from packager.cli.flags import group, verb
from packager.cli.output import emit

TAG_HELP = "local image name (default localhost/joey-engine:<version>[-<variant>], e.g. 0.4.0-cuda)"
REGISTRY_HELP = ("HOST[:PORT]/NAMESPACE: push to its engines/joey-engine:<version>[-<variant>], where publish looks "
                 "for it")


def _variant_flags(s) -> None:
    s.add_argument("--arch", choices=IMAGE_PLATFORMS, help="the image's platform (default: this host's)")
    s.add_argument("--accel", choices=IMAGE_ACCELS, default="none",
                   help="the accelerator it is built for: cuda builds on onnxruntime-gpu (default none)")


def register(sub) -> None:
    verbs = group(sub, "image", "build the engine's container image with podman, and push it")
    s = verb(verbs, "build", cmd_build, "build the engine image (about 5 minutes the first time); prints its ID",
             store=False)
    _variant_flags(s)
    s.add_argument("--tag", help=TAG_HELP)
    s.add_argument("--context", type=Path, help="build context directory (default CACHE/engine-context[-<variant>])")
    s.add_argument("-v", "--verbose", action="store_true", help="show every command run")
    s = verb(verbs, "push", cmd_push, "push the built engine image; prints where, with the stored digest",
             store=False, net=True)
    where = s.add_mutually_exclusive_group(required=True)
    where.add_argument("dest", nargs="?", help="HOST[:PORT]/NAMESPACE/engines/joey-engine:TAG")
    where.add_argument("--registry", help=REGISTRY_HELP)
    _variant_flags(s)
    s.add_argument("--tag", help=TAG_HELP)
    s.add_argument("--creds", help="USER:PASSWORD for the registry (default: podman's own login)")
    s.add_argument("-v", "--verbose", action="store_true", help="show every command run")


def _logging(a) -> None:
    # The build's steps (cached or not, how long) are what a user watches for five minutes: on stderr.
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO, format="%(message)s")


def cmd_build(a) -> int:
    from packager.image import build_engine_image

    _logging(a)
    image_id = build_engine_image(a.tag, context_dir=a.context, arch=a.arch, accel=a.accel)
    return emit(a, {"image": a.tag or _tag(a), "id": image_id}, lambda: image_id)


def _tag(a, host: str | None = None, namespace: str = "") -> str:
    """The variant's image name, locally or in a registry."""
    from packager.image import host_platform

    return engine_image(__version__, host=host, namespace=namespace, arch=a.arch or host_platform(), accel=a.accel)


def cmd_push(a) -> int:
    from joey.names import registry_target
    from packager.image import push_engine_image

    if a.registry:
        host, namespace = registry_target(a.registry)
        dest = _tag(a, host, namespace)
    else:
        dest = a.dest
    _logging(a)
    tag = a.tag or _tag(a)
    digest = push_engine_image(tag, dest, tls_verify=not a.plain_http, creds=a.creds)
    return emit(a, {"image": tag, "reference": dest, "digest": digest}, lambda: f"{dest}@{digest}")
