"""Serve Joey's policy pack to the Pulumi engine (the CLI runs this file for `--policy-pack infra/policy`)."""
from pulumi_policy import PolicyPack

from infra.crossguard import ENFORCEMENT, PACK_NAME, POLICIES

PolicyPack(name=PACK_NAME, policies=POLICIES, enforcement_level=ENFORCEMENT)
