"""A placeholder engine image for tests that publish: a real OCI image (one small layer) in an OCI layout.

Every registry publish makes sure its engine image is in the registry (packager/engine_image.py). Tests point
$JOEY_ENGINE_IMAGE_SOURCE at this layout once per session (tests/conftest.py), so a publish copies these few
hundred bytes instead of the 160 MB image `packager image build` makes in five minutes. It does not run:
tests that run the engine in a container build the real one (tests/packager/test_container.py).
"""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

from joey import __version__, mediatypes
from joey.descriptor import Descriptor, manifest_bytes
from joey.layout import OCILayout
from joey.names import ENGINE_NAME

REPOSITORY = f"engines/{ENGINE_NAME}"
OCI_IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"


def _layer() -> bytes:
    """A tar holding one file, the same bytes every time (fixed mtime, owner and mode)."""
    data = b"a placeholder for the Joey engine's file system\n"
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("joey-engine-placeholder")
        info.size, info.mode, info.mtime = len(data), 0o644, 0
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def placeholder_engine_image(directory: Path, tag: str = __version__) -> str:
    """Write the image into an OCI layout at `directory`; its reference, oci:DIR:engines/joey-engine:TAG."""
    layout = OCILayout(directory).init()
    layer = _layer()
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Entrypoint": ["/opt/joey/bin/joey-engine"]},
                         "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(layer).hexdigest()}"]}},
                        sort_keys=True).encode()
    cdesc, ldesc = Descriptor.for_bytes(OCI_IMAGE_CONFIG, config), Descriptor.for_bytes(OCI_LAYER_TAR, layer)
    for desc, data in ((cdesc, config), (ldesc, layer)):
        layout.write_blob(REPOSITORY, desc, io.BytesIO(data))
    layout.write_manifest(REPOSITORY, tag, manifest_bytes(cdesc, [ldesc], {}), mediatypes.OCI_MANIFEST)
    return f"oci:{directory}:{REPOSITORY}:{tag}"
