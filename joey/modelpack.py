"""A model as a CNCF ModelPack artifact: its config and manifest, made from a pipeline step alone.

The weight layer is the pipeline's own model layer (same digest, so a registry stores the file once); the config
carries the spec's `descriptor` / `config` / `modelfs`. Nothing in it depends on when or where it is built, so
the pipeline config can name each model's manifest by digest before anything is pushed.
"""
from __future__ import annotations

import json

from joey import annotations as ann
from joey import mediatypes
from joey.descriptor import Descriptor, manifest_bytes


def model_config(name: str, version: str, sha256: str, framework: str) -> bytes:
    """The ModelPack config: `descriptor` (name, version), `config` (format) and `modelfs` (the file's diffId:
    an uncompressed layer's is its digest)."""
    return json.dumps({"descriptor": {"name": name, "version": version},
                       "config": {"format": framework},
                       "modelfs": {"type": "layers", "diffIds": [f"sha256:{sha256}"]}},
                      sort_keys=True, separators=(",", ":")).encode()


def model_manifest(name: str, version: str, sha256: str, size: int, file: str,
                   framework: str) -> tuple[bytes, bytes, Descriptor]:
    """(manifest, config, weight layer) of the ModelPack artifact of one model file. The layer's filepath is
    the file's name in the pipeline, so a ModelPack client writes `<name>.onnx` into the directory it is given."""
    config = model_config(name, version, sha256, framework)
    layer = Descriptor(mediatypes.MODEL_WEIGHT_RAW, f"sha256:{sha256}", size,
                       annotations={ann.TITLE: file, ann.MODEL_FILEPATH: file})
    raw = manifest_bytes(Descriptor.for_bytes(mediatypes.MODEL_CONFIG, config), [layer],
                         {ann.TITLE: name, ann.VERSION: version}, artifact_type=mediatypes.MODEL_MANIFEST)
    return raw, config, layer
