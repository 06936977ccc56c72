"""Kubernetes resource quantities (memory, storage) and their byte values."""
from __future__ import annotations

import re

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_QUANTITY = re.compile(r"^(?P<num>[0-9]+(?:\.[0-9]+)?)(?P<unit>Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
# LOCAL_INFERENCE_STORAGE takes only the binary units the seeds list.
_STORAGE = re.compile(r"^(?P<num>[0-9]+)(?P<unit>Ki|Mi|Gi|Ti)$")


def memory_bytes(quantity: str) -> int:
    """Bytes in a Kubernetes memory quantity such as `900Mi` or `1.5G`; ValueError if malformed."""
    m = _QUANTITY.match(str(quantity).strip())
    if not m:
        raise ValueError(f"{quantity!r} is not a Kubernetes quantity (e.g. 900Mi, 2Gi, 512M)")
    unit = m["unit"] or ""
    scale = _BINARY.get(unit) or _DECIMAL[unit]
    try:
        value = int(float(m["num"]) * scale)
    except OverflowError:
        raise ValueError(f"{quantity!r} is too large") from None
    if value <= 0:
        raise ValueError(f"{quantity!r} must be greater than zero")
    return value


def storage_bytes(quantity: str) -> int:
    """Bytes in a LOCAL_INFERENCE_STORAGE value: a whole number with Ki, Mi, Gi or Ti."""
    m = _STORAGE.match(str(quantity).strip())
    if not m or int(m["num"]) <= 0:
        raise ValueError(f"{quantity!r} is not a size like 512Mi (a positive whole number with Ki, Mi, Gi or Ti)")
    return int(m["num"]) * _BINARY[m["unit"]]


def docker_memory(quantity: str) -> str:
    """The same amount in docker's --memory syntax (b, k, m, g; binary multiples)."""
    n = memory_bytes(quantity)
    for suffix, scale in (("g", 2**30), ("m", 2**20), ("k", 2**10)):
        if n % scale == 0:
            return f"{n // scale}{suffix}"
    return f"{n}b"
