"""Kubernetes resource quantities (memory) and LOCAL_INFERENCE_STORAGE sizes, and their byte values; the one
reading of a setting that must be a positive number (seconds, CPUs, records).

The one definition of a storage size: the engine parses LOCAL_INFERENCE_STORAGE with storage_bytes, and the
chart's values.schema.json checks localInferenceStorage with STORAGE_PATTERN.
"""
from __future__ import annotations

import re

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_QUANTITY = re.compile(r"^(?P<num>[0-9]+(?:\.[0-9]+)?)(?P<unit>Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
# LOCAL_INFERENCE_STORAGE: a whole number with a binary unit. The seeds write both `512Mi` and docker's `100m`,
# `1g`: a single lower-case letter there means the binary multiple (k = Ki, m = Mi, ...), never Kubernetes'
# milli or decimal mega. The chart's values.schema.json carries this same pattern (a test holds them equal).
_STORAGE_UNITS = "Ki|Mi|Gi|Ti|k|m|g|t"
STORAGE_PATTERN = f"[1-9][0-9]*({_STORAGE_UNITS})"
_STORAGE = re.compile(f"^(?P<num>[1-9][0-9]*)(?P<unit>{_STORAGE_UNITS})$")
_SHORT_UNITS = {"k": "Ki", "m": "Mi", "g": "Gi", "t": "Ti"}


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
    """Bytes in a LOCAL_INFERENCE_STORAGE value: a positive whole number with Ki, Mi, Gi or Ti, or with k, m,
    g or t meaning the same (`100m` = `100Mi`)."""
    m = _STORAGE.match(str(quantity).strip())
    if not m:
        raise ValueError(f"{quantity!r} is not a size like 512Mi or 100m (a positive whole number with Ki, Mi, "
                         "Gi or Ti, or k, m, g or t for the same)")
    return int(m["num"]) * _BINARY[_SHORT_UNITS.get(m["unit"], m["unit"])]


def positive_number(text: str, of: str = "") -> float:
    """A finite number greater than zero, as the engine's and Ops' settings take them; ValueError naming `of` (the
    unit, e.g. "seconds") if not."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise ValueError(f"{text!r} is not a positive number" + (f" of {of}" if of else ""))
    return value


def docker_memory(quantity: str) -> str:
    """The same amount in docker's --memory syntax (b, k, m, g; binary multiples)."""
    n = memory_bytes(quantity)
    for suffix, scale in (("g", 2**30), ("m", 2**20), ("k", 2**10)):
        if n % scale == 0:
            return f"{n // scale}{suffix}"
    return f"{n}b"


def cpus_value(cpus: float | int | str) -> int | float:
    """A CPU count as a number written the seeds' way: whole counts as integers (2, not 2.0), fractions to
    millicores (1.25). The chart's `engine.cpus` takes this; `format_cpus` is its text."""
    value = round(float(cpus), 3)
    return int(value) if value.is_integer() else value


def format_cpus(cpus: float | int | str) -> str:
    """CONFIG_CPUS, `docker run --cpus` and every other place a CPU count is written as text: 2, 0.5, 1.25."""
    return str(cpus_value(cpus))
