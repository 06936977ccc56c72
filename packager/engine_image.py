"""The engine image of a publish: the image its commands name must be in the registry, pinned by digest.

A publish to a registry names HOST/NS/engines/joey-engine:VERSION (or the spec's or $JOEY_ENGINE_IMAGE's
image). Before the pipeline is pushed, that image must resolve; when the publish's own registry lacks it, it
is copied there, digests unchanged, from the image source: `--engine-image REF` ($JOEY_ENGINE_IMAGE_SOURCE), else
the image `packager image build` left in podman's store. With neither the publish stops, naming the commands
that fix it. `--no-engine-image` skips all this, and the record says so (`engine_image: not published`).
"""
from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING

from joey import envvars
from joey.errors import DigestMismatch, JoeyError, NotFound
from joey.names import Ref, local_engine_image, parse
from joey.registry import Registry
from joey.transfer import ProgressFactory, Target, copy, no_progress, open_target

if TYPE_CHECKING:
    from packager.publish import Destination

# The record's `engine_image` field, present only when the publish was told to leave the image out.
NOT_PUBLISHED = "not published"
# An image source in podman's store, as skopeo names that transport.
PODMAN_STORE = "containers-storage:"


class EngineImageMissing(JoeyError):
    """The engine image a publish names is not in its registry, and there is no image to copy there."""

    exit_code = 3
    http_status = 404

    def __init__(self, engine_url: str, why: str):
        self.engine_url = engine_url
        super().__init__(f"engine image {engine_url}: {why}; nothing was pushed",
                         hint="build it with `packager image build`, name one with --engine-image REF "
                              "(HOST/REPO:TAG, oci:DIR:REPO:TAG or containers-storage:IMAGE), "
                              "or publish without it: --no-engine-image")


def ensure_engine_image(dest: Destination, engine_url: str, *, source: str | None = None,
                        username: str | None = None, password: str | None = None,
                        progress: ProgressFactory = no_progress) -> str:
    """`engine_url` pinned by digest (HOST/REPO@sha256:...) once it resolves in its registry, copied into
    the publish's registry from `source` (else $JOEY_ENGINE_IMAGE_SOURCE, else podman's store) when missing."""
    ref = parse(engine_url)
    if ref.host is None:
        raise EngineImageMissing(engine_url, "names no registry (expected HOST[:PORT]/REPO:TAG)")
    ours = ref.host == dest.host
    target = dest.target if ours else Registry(ref.host, plain_http=dest.plain_http)
    digest = _resolved(target, ref)
    if digest is None:
        if not ours:
            raise EngineImageMissing(engine_url, f"{ref.host} does not have it, and a publish copies the engine "
                                                 f"image only into its own registry {dest.host}")
        digest = _copy_in(dest, ref, source or os.environ.get(envvars.ENGINE_IMAGE_SOURCE),
                          username=username, password=password, progress=progress)
    return pinned(ref, digest)


def pinned(ref: Ref, digest: str) -> str:
    """HOST/REPO@DIGEST. Not REPO:TAG@DIGEST: skopeo and podman's image library refuse a reference with both."""
    return str(Ref(repository=ref.repository, digest=digest, host=ref.host))


def _resolved(target: Target, ref: Ref) -> str | None:
    try:
        return target.resolve(ref.repository, ref.reference)[2]
    except NotFound:
        return None


def _copy_in(dest: Destination, ref: Ref, source: str | None, *, username: str | None, password: str | None,
             progress: ProgressFactory) -> str:
    """Copy the image source to `ref` in the publish's registry; the digest the registry then serves, which
    must be the source's."""
    if source and not source.startswith(PODMAN_STORE):
        src_ref = parse(source)
        try:
            src = open_target(src_ref, plain_http=dest.plain_http)
            expected = copy(src, src_ref.repository, src_ref.reference, dest.target, ref.repository, ref.tag,
                            progress=progress).digest
        except NotFound:
            raise EngineImageMissing(str(ref), f"the registry does not have it, and the image source {source} "
                                               "does not exist") from None
    else:
        expected = _push_from_podman(dest, ref, source.removeprefix(PODMAN_STORE) if source else None,
                                     username=username, password=password)
    stored = _resolved(dest.target, ref)
    if stored != expected:
        raise DigestMismatch(f"engine image {ref}", expected, stored or "nothing")
    return expected


def _push_from_podman(dest: Destination, ref: Ref, image: str | None, *, username: str | None,
                      password: str | None) -> str:
    """`podman push` of the locally built image (the one `packager image build` tags, unless `image`): podman
    keeps the image's own format (docker, for its HEALTHCHECK), which a round trip through a layout would not."""
    from packager import image as engine_build

    local = image or local_engine_image(str(ref))   # the build of the same variant (-cuda, -arm64, ...)
    if shutil.which("podman") is None or not engine_build.image_exists(local):
        raise EngineImageMissing(str(ref), f"the registry does not have it, and podman has no image {local} "
                                           "to copy there")
    username = username or os.environ.get(envvars.OCI_USERNAME)
    password = password or os.environ.get(envvars.OCI_PASSWORD)
    return engine_build.push_engine_image(local, str(ref), tls_verify=not dest.plain_http,
                                          creds=f"{username}:{password}" if username and password else None)
