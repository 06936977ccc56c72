"""Name rules shared by specs, bundles and Ops: Kubernetes DNS-1123 labels."""
from __future__ import annotations

import re

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def is_dns_label(value: str) -> bool:
    return len(value) <= 63 and bool(DNS1123_LABEL.match(value))
