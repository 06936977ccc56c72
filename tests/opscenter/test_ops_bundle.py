"""EDGE_BUNDLE: the seeds' sample bundles decode, Joey's bundles have the seeds' exact form, and anything
malformed is refused with a BundleError (never another exception)."""
from __future__ import annotations

import base64
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from joey.bundle import MAX_ENCODED_CHARS, REPLACE_PLACEHOLDER, BundleError, EdgeBundle

# Sample bundles printed in the seeds: 001/002 (keys in alphabetical order, WORKSPACE_ID, no CONFIG_CPUS)
# and 001/004 (CONFIG_CPUS and OCI_REGISTRY, JOIN_TOKEN after PIPELINE_URL; one with the replace placeholder).
SEED_XGB = ("ZXhwb3J0IEJVTkRMRV9WRVJTSU9OPTEKZXhwb3J0IEVER0VfTkFNRT14Z2ItY2NmcmF1ZC1lZGdlLXRlc3QKZXhwb3J0IEpPSU5fVE9L"
            "RU49MzE0OGFkYTUtMjg1YS00ZmNhLWIzYjgtYjUwYTQ4ZDc1MTFiCmV4cG9ydCBPUFNDRU5URVJfSE9TVD1kb2MtdGVzdC5lZGdlLndh"
            "bGxhcm9vY29tbXVuaXR5Lm5pbmphCmV4cG9ydCBQSVBFTElORV9VUkw9Z2hjci5pby93YWxsYXJvb2xhYnMvZG9jLXNhbXBsZXMvcGlw"
            "ZWxpbmVzL2VkZ2UtcGlwZWxpbmU6ZjM4OGMxMDktOGQ1Ny00ZWQyLTk4MDYtYWExM2Y4NTQ1NzZiCmV4cG9ydCBXT1JLU1BBQ0VfSUQ9NQ==")
SEED_HOUSEPRICE = (
    "ZXhwb3J0IEJVTkRMRV9WRVJTSU9OPTEKZXhwb3J0IENPTkZJR19DUFVTPTQKZXhwb3J0IEVER0VfTkFNRT1ob3VzZXByaWNlLWVkZ2UtZGVtb25z"
    "dHJhdGlvbi0wMgpleHBvcnQgT1BTQ0VOVEVSX0hPU1Q9ZG9jLXRlc3Qud2FsbGFyb29jb21tdW5pdHkubmluamEKZXhwb3J0IFBJUEVMSU5FX1VS"
    "TD1naGNyLmlvL3dhbGxhcm9vbGFicy9kb2Mtc2FtcGxlcy9waXBlbGluZXMvYXNzYXktZGVtb25zdHJhdGlvbi10dXRvcmlhbDoxZmYxOTc3Mi1m"
    "NDFmLTQyZmItYjBkMS1mODIxMzBiZjU4MDEKZXhwb3J0IEpPSU5fVE9LRU49YTQ0OGIyZjItNjgwYi00Y2ZiLThiMjItY2ZjNTI5MTk5ZjY5CmV4"
    "cG9ydCBPQ0lfUkVHSVNUUlk9Z2hjci5pbw==")
SEED_REPLACED = (
    "ZXhwb3J0IEJVTkRMRV9WRVJTSU9OPTEKZXhwb3J0IENPTkZJR19DUFVTPTQKZXhwb3J0IEVER0VfTkFNRT1ob3VzZXByaWNlLWVkZ2UtaW5saW5l"
    "LXJlcGxhY2VtZW50LWRlbW8KZXhwb3J0IE9QU0NFTlRFUl9IT1NUPWRvYy10ZXN0LmVkZ2Uud2FsbGFyb29jb21tdW5pdHkubmluamEKZXhwb3J0"
    "IFBJUEVMSU5FX1VSTD1naGNyLmlvL3dhbGxhcm9vbGFicy9kb2Mtc2FtcGxlcy9waXBlbGluZXMvZWRnZS1pbmxpbmUtcmVwbGFjZW1lbnQtZGVt"
    "bzo0NDZhZWVkOS0yZDUyLTQ3YWUtOWU1Yy1mMmEwNWVmMGQ0ZDYKZXhwb3J0IEpPSU5fVE9LRU49b21pdHRlZF9mb3JfcmVwbGFjZQpleHBvcnQg"
    "T0NJX1JFR0lTVFJZPWdoY3IuaW8=")


def _b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


GOOD_LINES = ["export BUNDLE_VERSION=1", "export CONFIG_CPUS=1.25", "export EDGE_NAME=edge-1",
              "export OPSCENTER_HOST=http://127.0.0.1:8090/edge",
              "export PIPELINE_URL=127.0.0.1:5000/joey/pipelines/ccfraud:3f2a",
              "export JOIN_TOKEN=Zm9v-YmFy_0123456789abcdefABCDEF", "export OCI_REGISTRY=127.0.0.1:5000",
              "export WORKSPACE_ID=3"]


def test_seed_sample_with_workspace_decodes():
    b = EdgeBundle.decode(SEED_XGB)
    assert (b.bundle_version, b.edge_name, b.join_token, b.opscenter_host, b.workspace_id) == (
        "1", "xgb-ccfraud-edge-test", "3148ada5-285a-4fca-b3b8-b50a48d7511b",
        "doc-test.edge.wallaroocommunity.ninja", "5")
    assert b.pipeline_url == ("ghcr.io/wallaroolabs/doc-samples/pipelines/edge-pipeline:"
                              "f388c109-8d57-4ed2-9806-aa13f854576b")
    assert b.config_cpus is None and b.oci_registry is None
    assert EdgeBundle.decode(b.encode()) == b


@pytest.mark.parametrize("sample", [SEED_HOUSEPRICE, SEED_REPLACED])
def test_seed_samples_in_joeys_key_order_reencode_byte_for_byte(sample):
    b = EdgeBundle.decode(sample)
    assert b.config_cpus == "4" and b.oci_registry == "ghcr.io" and b.workspace_id is None
    assert b.encode() == sample


def test_seed_replace_placeholder():
    assert EdgeBundle.decode(SEED_REPLACED).join_token == REPLACE_PLACEHOLDER


def test_encoded_form_is_export_lines_without_trailing_newline():
    b = EdgeBundle.decode(_b64("\n".join(GOOD_LINES)))
    text = base64.b64decode(b.encode(), validate=True).decode()
    assert text.split("\n") == GOOD_LINES
    assert not text.endswith("\n")


def test_one_trailing_newline_is_accepted():
    assert EdgeBundle.decode(_b64("\n".join(GOOD_LINES) + "\n")).edge_name == "edge-1"


def test_surrounding_whitespace_is_ignored():
    assert EdgeBundle.decode(f"  {SEED_XGB}\n").edge_name == "xgb-ccfraud-edge-test"


def _lines(replace: dict[int, str | None] | None = None, extra: list[str] = ()) -> str:
    lines = list(GOOD_LINES)
    for i, v in (replace or {}).items():
        lines[i] = v
    return _b64("\n".join([x for x in lines if x is not None] + list(extra)))


MALFORMED = {
    "empty": ("", "empty"),
    "not base64": ("this is not base64!", "not valid base64"),
    "bad padding": (SEED_XGB.rstrip("="), "not valid base64"),
    "non-UTF-8": (_b64(b"export EDGE_NAME=\xff\xfe"), "not UTF-8"),
    "not an export line": (_lines({0: "BUNDLE_VERSION=1"}), "line 1: expected `export KEY=VALUE`"),
    "blank line": (_lines(extra=["", "export X=1"]), "line 9"),
    "CRLF": (_b64("\r\n".join(GOOD_LINES)), "only letters"),
    "unknown key": (_lines(extra=["export LD_PRELOAD=/tmp/x.so"]), "unknown key 'LD_PRELOAD'"),
    "duplicate key": (_lines(extra=["export EDGE_NAME=edge-2"]), "EDGE_NAME given twice"),
    "missing key": (_lines({5: None}), "missing JOIN_TOKEN"),
    "bad edge name": (_lines({2: "export EDGE_NAME=Edge_1"}), "EDGE_NAME: must be a DNS-1123 label"),
    "long edge name": (_lines({2: f"export EDGE_NAME={'a' * 64}"}), "EDGE_NAME"),
    "command substitution": (_lines({4: "export PIPELINE_URL=$(reboot)"}), "PIPELINE_URL: only letters"),
    "backquote": (_lines({4: "export PIPELINE_URL=`id`"}), "PIPELINE_URL: only letters"),
    "semicolon": (_lines({6: "export OCI_REGISTRY=x;rm"}), "OCI_REGISTRY: only letters"),
    "space": (_lines({4: "export PIPELINE_URL=a b"}), "PIPELINE_URL: only letters"),
    "quote": (_lines({4: "export PIPELINE_URL='a'"}), "PIPELINE_URL: only letters"),
    "tilde": (_lines({4: "export PIPELINE_URL=~/x"}), "PIPELINE_URL: only letters"),
    "empty value": (_lines({6: "export OCI_REGISTRY="}), "OCI_REGISTRY: must be a non-empty string"),
    "token charset": (_lines({5: "export JOIN_TOKEN=a:b"}), "JOIN_TOKEN: expected"),
    "version": (_lines({0: "export BUNDLE_VERSION=2"}), "BUNDLE_VERSION: unsupported"),
    "cpus": (_lines({1: "export CONFIG_CPUS=lots"}), "CONFIG_CPUS"),
    "workspace": (_lines({7: "export WORKSPACE_ID=ws-1"}), "WORKSPACE_ID"),
    "opscenter scheme": (_lines({3: "export OPSCENTER_HOST=ftp://ops/edge"}), "OPSCENTER_HOST: scheme"),
    "opscenter port": (_lines({3: "export OPSCENTER_HOST=ops:99999/edge"}), "OPSCENTER_HOST: bad port"),
    "plain http": (_lines({3: "export OPSCENTER_HOST=http://ops.example.com/edge"}), "only to a loopback host"),
    "oversize": ("A" * (MAX_ENCODED_CHARS + 4), "longer than"),
    "long value": (_lines({4: f"export PIPELINE_URL={'a' * 3000}"}), "PIPELINE_URL: longer than"),
}


@pytest.mark.parametrize("text,expected", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_bundles_are_refused_with_a_clear_message(text, expected):
    with pytest.raises(BundleError) as err:
        EdgeBundle.decode(text)
    assert expected in str(err.value)
    assert str(err.value).startswith("EDGE_BUNDLE: ")


def test_messages_never_echo_the_token():
    secret = "s3cr3t-t0ken-value"
    with pytest.raises(BundleError) as err:
        EdgeBundle.decode(_lines({5: f"export JOIN_TOKEN={secret}$"}))
    assert secret not in str(err.value)


def test_encode_refuses_what_decode_would_refuse():
    with pytest.raises(BundleError, match="OPSCENTER_HOST"):
        EdgeBundle(edge_name="e", opscenter_host="ops example", pipeline_url="r/p:v", join_token="t")
    with pytest.raises(BundleError, match="JOIN_TOKEN: must be a non-empty string"):
        EdgeBundle(edge_name="e", opscenter_host="ops", pipeline_url="r/p:v", join_token=None)


_safe = st.text(alphabet=string.ascii_letters + string.digits + "._:/@%+,=-", min_size=1, max_size=80)


@given(name=st.from_regex(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", fullmatch=True),
       token=st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
       host=st.from_regex(r"((https://)?[a-z0-9.-]{1,40}|http://(127\.0\.0\.1|localhost))(:[1-9][0-9]{0,3})?"
                         r"(/[a-z0-9/-]{0,20})?", fullmatch=True),
       url=_safe,
       cpus=st.none() | st.from_regex(r"[1-9][0-9]?(\.[0-9]{1,2})?", fullmatch=True),
       workspace=st.none() | st.integers(1, 10**6).map(str))
@settings(max_examples=200, deadline=None)
def test_round_trip(name, token, host, url, cpus, workspace):
    b = EdgeBundle(edge_name=name, opscenter_host=host, pipeline_url=url, join_token=token, config_cpus=cpus,
                   workspace_id=workspace)
    assert EdgeBundle.decode(b.encode()) == b


def _decode_cleanly(text: str) -> None:
    try:
        EdgeBundle.decode(text)
    except BundleError:
        pass


@given(st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_fuzz_arbitrary_text(text):
    _decode_cleanly(text)


@given(st.binary(max_size=600))
@settings(max_examples=300, deadline=None)
def test_fuzz_base64_of_arbitrary_bytes(raw):
    _decode_cleanly(_b64(raw))


_key = st.sampled_from(["BUNDLE_VERSION", "CONFIG_CPUS", "EDGE_NAME", "OPSCENTER_HOST", "PIPELINE_URL",
                        "JOIN_TOKEN", "OCI_REGISTRY", "WORKSPACE_ID", "PATH", "edge_name"])
_line = st.one_of(st.builds(lambda k, v: f"export {k}={v}", _key, st.text(max_size=40)), st.text(max_size=40))


@given(st.lists(_line, max_size=12), st.sampled_from(["\n", "\r\n", "\n\n"]))
@settings(max_examples=400, deadline=None)
def test_fuzz_near_miss_export_lines(lines, sep):
    _decode_cleanly(_b64(sep.join(lines).encode("utf-8", "surrogatepass")))
