"""`packager inspect`: what an artifact holds — manifest, config, layers, sizes, model signatures — and what is
attached to it (signatures, provenance, SBOMs, the publish record), with a summary of each SBOM."""
from __future__ import annotations

import json
from pathlib import Path

from joey import referrers
from joey.names import parse
from joey.pipeline_config import PipelineConfig
from joey.transfer import is_pipeline, open_target, read_config
from packager.sbom import read_sbom


def describe(ref_text: str, *, store: Path | None = None, plain_http: bool = False) -> dict:
    ref = parse(ref_text)
    target = open_target(ref, store=store, plain_http=plain_http)
    manifest, config_bytes = read_config(target, ref.repository, ref.reference)
    info = {
        "reference": ref_text,
        "digest": manifest.digest,
        "artifactType": manifest.artifact_type,
        "annotations": manifest.annotations,
        "config": manifest.config.to_json(),
        "layers": [d.to_json() for d in manifest.layers],
        "size": len(manifest.raw) + manifest.config.size + sum(d.size for d in manifest.layers),
        "referrers": [r.to_json() for r in referrers.find(target, ref.repository, manifest.digest)],
    }
    if any(r["kind"] == "sbom" for r in info["referrers"]):
        info["sbom"] = _summary(read_sbom(target, ref.repository, manifest.digest))
    if is_pipeline(manifest):
        cfg = PipelineConfig.from_bytes(config_bytes)
        info["pipeline"] = cfg.to_json()
    else:
        info["config_content"] = json.loads(config_bytes) if config_bytes[:1] in (b"{", b"[") else None
    return info


def render(info: dict) -> str:
    lines = [f"{info['reference']}", f"  digest:       {info['digest']}",
             f"  artifactType: {info['artifactType']}", f"  total size:   {_size(info['size'])}"]
    for k, v in sorted(info["annotations"].items()):
        lines.append(f"  {k}: {v}")
    lines.append(f"  config: {info['config']['mediaType']} {info['config']['digest']} ({info['config']['size']} B)")
    lines.append("  layers:")
    for layer in info["layers"]:
        title = layer.get("annotations", {}).get("org.opencontainers.image.title", "")
        lines.append(f"    {layer['digest']}  {_size(layer['size']):>10}  {layer['mediaType']}  {title}")
    if p := info.get("pipeline"):
        lines.append(f"  pipeline {p['name']} version {p['version']}")
        for s in p["steps"]:
            sig = lambda xs: ", ".join(f"{x['name']}: {x['type']}{x['shape']}" for x in xs)  # noqa: E731
            tf = f" tensor_fields={s['tensor_fields']}" if s.get("tensor_fields") else ""
            lines.append(f"    step {s['name']} (model version {s['model_version']}){tf}")
            if s.get("modelpack_digest"):
                lines.append(f"      ModelPack: models/{s['name']}:{s['model_version']} {s['modelpack_digest']}")
            lines.append(f"      inputs:  {sig(s['inputs'])}")
            lines.append(f"      outputs: {sig(s['outputs'])}")
        if p.get("validations"):
            lines.append(f"  validations: {p['validations']}")
        lines.append(f"  engine_config: {json.dumps(p['engine_config'])}")
    lines.append("  referrers:" if info["referrers"] else "  referrers: none (unsigned, no provenance)")
    for r in info["referrers"]:
        lines.append(f"    {r['kind']:<10}  {r['digest']}  {r['artifactType']}  (via {', '.join(r['found_via'])})")
    if sbom := info.get("sbom"):
        lines.append(f"  sbom: {sbom['format']} {sbom['specVersion']}, {len(sbom['components'])} components")
        for c in sbom["components"]:
            lines.append(f"    {c['type']:<22}  {c['name']} {c['version']}  {c['detail']}")
    return "\n".join(lines)


def _summary(doc: dict | None) -> dict | None:
    """What `inspect` shows of a CycloneDX document: each component's type, name, version and its licences
    (a library) or sha256 (a model)."""
    if doc is None:
        return None
    components = []
    for c in doc.get("components") or []:
        licences = [x.get("expression") or (x.get("license") or {}).get("id") or (x.get("license") or {}).get("name")
                    for x in c.get("licenses") or []]
        hashes = [h["content"] for h in c.get("hashes") or [] if h.get("alg") == "SHA-256"]
        detail = " AND ".join(filter(None, licences)) if licences else (f"sha256:{hashes[0]}" if hashes else "")
        components.append({"type": c.get("type"), "name": c.get("name"), "version": c.get("version"),
                           "detail": detail})
    return {"format": doc.get("bomFormat"), "specVersion": doc.get("specVersion"), "components": components}


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)
