"""Verbs for signatures: keygen, sign, verify (cosign-compatible, docs/signing.md)."""
from __future__ import annotations

from pathlib import Path

from packager.cli.flags import verb
from packager.cli.output import emit


def register(sub) -> None:
    s = verb(sub, "keygen", cmd_keygen, "make an ECDSA P-256 key pair: PREFIX.key (0600) and PREFIX.pub",
             store=False)
    s.add_argument("--out", required=True, type=Path, metavar="PREFIX")
    s = verb(sub, "sign", cmd_sign, "sign a pipeline (and the chart its publish record names), cosign-compatible",
             net=True)
    s.add_argument("ref")
    s.add_argument("--key", required=True, help="PEM private key file")
    s = verb(sub, "verify", cmd_verify, "check the signatures of a pipeline (and its chart) and its provenance",
             net=True)
    s.add_argument("ref")
    s.add_argument("--key", required=True, help="PEM public key file (or the PEM text)")


def cmd_keygen(a) -> int:
    from joey.signing import generate_keypair, load_signing_key

    key_path, pub_path = generate_keypair(a.out)
    out = {"private_key": str(key_path), "public_key": str(pub_path),
           "fingerprint": load_signing_key(key_path, "--out").public.fingerprint}
    return emit(a, out, lambda: f"private key {key_path} (keep it secret)\npublic key  {pub_path}  "
                                f"{out['fingerprint']}")


def cmd_sign(a) -> int:
    from joey.names import parse
    from joey.signing import load_signing_key
    from joey.transfer import open_target
    from packager.signing import sign_publish

    ref = parse(a.ref)
    key = load_signing_key(a.key, "--key")
    signed = sign_publish(open_target(ref, store=a.store, plain_http=a.plain_http), ref, key)
    return emit(a, {"signed": [s.to_json() for s in signed]},
                lambda: [f"signed {s.reference} {s.digest} -> {s.tag}" for s in signed])


def cmd_verify(a) -> int:
    from joey.names import parse
    from joey.signing import load_public_key
    from joey.transfer import open_target
    from packager.provenance import read_provenance
    from packager.signing import verify_publish

    ref = parse(a.ref)
    key = load_public_key(a.key, "--key")
    target = open_target(ref, store=a.store, plain_http=a.plain_http)
    verified = verify_publish(target, ref, key)
    prov = read_provenance(target, ref.repository, verified[0].digest, key)
    provenance = ("none" if prov is None else "unsigned statement" if not prov.signed else
                  "signed, verifies with the key" if prov.verified else "signed by another key")
    return emit(a, {"verified": [v.to_json() for v in verified],
                    "provenance": None if prov is None else {"signed": prov.signed, "verified": prov.verified}},
                lambda: [*(f"Verified OK: {v.reference} {v.digest} signed by {v.key}" for v in verified),
                         f"provenance: {provenance}"])
