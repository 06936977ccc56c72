"""EdgeArgs: what every edge location runs, whichever component runs it (EdgeSite or DockerEdge)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi

from infra.ops_edge import BundleSource
from joey.pipeline_config import EngineConfig


@dataclass(frozen=True)
class EdgeArgs:
    edge_name: str
    pipeline_url: str
    engine: EngineConfig                         # the publish's engine config
    image: pulumi.Input[str]                     # engine image, REPOSITORY@sha256:...
    registry_host: str
    registry_username: str
    registry_password: pulumi.Output[str]        # secret
    bundle: BundleSource                         # EDGE_BUNDLE: given (secret), from Ops, or none
    verify_key: str = ""                         # PEM public key; empty: no signature check
    after: Sequence[pulumi.Resource] = ()        # what enrolling with Ops waits for: the stack's own Ops center
