"""What the engine serves right now: a pipeline and where it came from, replaced as a whole, never changed.

Its own module so that the engine (engine.service) and the in-line updater (engine.updates) both use it
without importing each other.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.fetch import Fetched
from engine.runtime import Pipeline


@dataclass(frozen=True)
class Serving:
    """The pipeline requests go to, and where it came from."""

    pipeline: Pipeline
    fetched: Fetched
    since: float   # UNIX seconds

    def describe(self) -> dict[str, Any]:
        return {"pipeline_url": self.fetched.pipeline_url, "pipeline_digest": self.fetched.digest,
                "pipeline_version": self.fetched.config.version}
