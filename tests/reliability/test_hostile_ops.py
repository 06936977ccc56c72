"""Hostile bodies against a real `joey-ops` at its DEFAULT limits (docs/reliability.md, "Cost model"): what it
reads before it knows who is asking, body limits per route, parsing off the event loop, and Unicode. Each case's
peak RSS growth (VmHWM from /proc, reset before it) stays under the cost model's bound, and no answer is a 5xx."""
from __future__ import annotations

import http.client
import json
import select
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from support.ops import OpsProcess, start_ops

from joey.bundle import EdgeBundle
from joey.opswire import MAX_ADMIN_BYTES, MAX_EDGE_BYTES, MAX_JOIN_BYTES, MAX_PAGE_BYTES
from opscenter.service import EDGE_PATH

API = "/v1/api/pipelines"
EDGE = "edge-hostile"
PIPELINE = "hostile"
RECORD = {"pipeline_name": PIPELINE, "pipeline_version": "v1",
          "pipeline_url": f"127.0.0.1:5000/joey/pipelines/{PIPELINE}:v1", "pipeline_digest": "sha256:" + "ab" * 32}
# The cost model's bounds: a refused body costs what was read of it, at most its route's limit (twice: the bytes and
# their text) plus the interpreter's noise; a parsed one at most PARSE_COST times its size.
NOISE = 16 * 2**20
PARSE_COST = 32
MIB = 2**20


@pytest.fixture(scope="module")
def ops(tmp_path_factory) -> Iterator[OpsProcess]:
    workdir = tmp_path_factory.mktemp("hostile-ops")
    server = start_ops(f"sqlite:///{workdir / 'ops.db'}", workdir)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def credential(ops) -> str:
    with ops.client() as c:
        publish = c.publish(RECORD)
        bundle = EdgeBundle.decode(c.add_edge(publish["id"], EDGE)["docker_run_variables"]["EDGE_BUNDLE"])
    r = httpx.post(f"{ops.url}{EDGE_PATH}/join", json={"edge": EDGE, "join_token": bundle.join_token})
    assert r.status_code == 200, r.text
    return r.json()["credential"]


# ---- measuring -----------------------------------------------------------------------------------------------

def _status_kib(pid: int, field: str) -> int:
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1]) * 1024


@contextmanager
def peak_growth(ops: OpsProcess) -> Iterator[list[int]]:
    """How far Ops' peak RSS rose over the block above its RSS at the start: the peak is reset first (writing 5
    to /proc/PID/clear_refs), so each case is measured on its own."""
    pid = ops.proc.pid
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    start, out = _status_kib(pid, "VmRSS"), []
    yield out
    out.append(_status_kib(pid, "VmHWM") - start)


def post_raw(ops: OpsProcess, path: str, body: bytes, *, token: str | None = None,
             chunked: bool = False) -> tuple[int, dict]:
    """POST over a plain socket, reading the answer while the body is still being sent: Ops answers a body it
    refuses (413, 401) without reading it, and closes; a client that sends everything first sees a broken pipe."""
    sock = socket.create_connection(("127.0.0.1", ops.port), timeout=120)
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json", "Connection: close"]
    head += [f"Authorization: Bearer {token}"] if token else []
    head += ["Transfer-Encoding: chunked"] if chunked else [f"Content-Length: {len(body)}"]
    sender = threading.Thread(target=_send, args=(sock, ("\r\n".join(head) + "\r\n\r\n").encode(), body, chunked))
    sender.start()
    try:
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        data = answer.read()
    finally:
        try:
            sock.shutdown(socket.SHUT_RDWR)   # ends a sender still blocked on a body Ops will not read
        except OSError:
            pass                              # Ops closed it already
        sender.join()
        sock.close()
    return answer.status, json.loads(data)


def _send(sock: socket.socket, head: bytes, body: bytes, chunked: bool) -> None:
    try:
        sock.sendall(head)
        for i in range(0, len(body), MIB):
            piece = body[i:i + MIB]
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        if chunked:
            sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # Ops answered and closed before reading it all


def padded(size: int, head: bytes = b"{}") -> bytes:
    """A JSON object of exactly `size` bytes: `head` then whitespace."""
    return head + b" " * (size - len(head))


# ---- what Ops reads before it knows who is asking ------------------------------------------------------------

BIG = 60 * MIB


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
def test_a_60_mib_join_body_is_refused_413_after_at_most_its_limit(ops, chunked):
    body = b'{"edge": "x", "join_token": "' + b"A" * BIG + b'"}'
    with peak_growth(ops) as growth:
        status, answer = post_raw(ops, f"{EDGE_PATH}/join", body, chunked=chunked)
    print(f"60 MiB /edge/join: {status}, Ops peak RSS +{growth[0] / MIB:.1f} MiB")
    assert status == 413 and f"limit of {MAX_JOIN_BYTES} bytes" in answer["message"], (status, answer)
    assert growth[0] < 2 * MAX_JOIN_BYTES + NOISE, growth


def test_bodies_from_unknown_callers_are_refused_401_unread(ops, credential):
    """The admin token and an edge's credential are checked before a byte of body is read."""
    cases = [(f"{API}/list_edges", None), (f"{API}/list_edges", "not-the-token"), (f"{EDGE_PATH}/logs", None),
             (f"{EDGE_PATH}/logs", "not-a-credential"), (f"{EDGE_PATH}/checkin", credential[:-1] + "x")]
    for path, token in cases:
        with peak_growth(ops) as growth:
            status, answer = post_raw(ops, path, padded(BIG), token=token)
        print(f"60 MiB {path} with token {token and token[:4]!r}: {status}, peak RSS +{growth[0] / MIB:.1f} MiB")
        assert status == 401, (path, token, status, answer)
        assert growth[0] < NOISE, (path, token, growth)


# ---- per-route limits ------------------------------------------------------------------------------------------

ROUTES = [(f"{API}/publish", "admin", MAX_ADMIN_BYTES), (f"{API}/list_edges", "admin", MAX_ADMIN_BYTES),
          (f"{EDGE_PATH}/join", None, MAX_JOIN_BYTES), (f"{EDGE_PATH}/checkin", "edge", MAX_EDGE_BYTES),
          (f"{EDGE_PATH}/update_status", "edge", MAX_EDGE_BYTES), (f"{EDGE_PATH}/logs", "edge", MAX_PAGE_BYTES)]


@pytest.mark.parametrize("path, who, limit", ROUTES, ids=[r[0].rsplit("/", 1)[1] for r in ROUTES])
@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
def test_each_route_reads_at_most_its_limit(ops, credential, path, who, limit, chunked):
    token = {"admin": ops.token, "edge": credential, None: None}[who]
    with peak_growth(ops) as growth:
        at, _ = post_raw(ops, path, padded(limit), token=token, chunked=chunked)
        over, answer = post_raw(ops, path, padded(limit + 1), token=token, chunked=chunked)
    print(f"{path} at/over its limit: {at}/{over}, peak RSS +{growth[0] / MIB:.1f} MiB")
    assert at in (200, 400) and over == 413, (at, over, answer)   # `{}` and blanks: read, then judged
    assert f"limit of {limit} bytes for {path}" in answer["message"], answer
    assert growth[0] < 2 * limit + NOISE, growth


# ---- parsing off the event loop ---------------------------------------------------------------------------------

def test_healthz_answers_while_a_big_body_is_parsed(ops, credential):
    """A /healthz sent the moment a big body's last byte is is answered before that body is: its parsing and
    checking happen on a worker thread. (The body is a page of a million small records, refused at the end
    for a lone surrogate: every string of it is looked at first.)"""
    records = b'{"k":0},' * ((MAX_PAGE_BYTES - 200) // 8)
    body = b'{"edge": "%s", "seq_start": 0, "seq_end": 0, "records": [%s], "x": "\\ud800"}' % (
        EDGE.encode(), records[:-1])
    assert len(body) <= MAX_PAGE_BYTES
    head = (f"POST {EDGE_PATH}/logs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {credential}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    with peak_growth(ops) as growth, socket.create_connection(("127.0.0.1", ops.port), timeout=120) as big:
        big.sendall(head.encode() + body[:-1])
        assert httpx.get(f"{ops.url}/healthz").status_code == 200   # Ops has read what came so far
        big.sendall(body[-1:])
        health = httpx.get(f"{ops.url}/healthz", timeout=120)
        answered_first = not select.select([big], [], [], 0)[0]
        answer = http.client.HTTPResponse(big)
        answer.begin()
        message = json.loads(answer.read())["message"]
    print(f"{len(body) / MIB:.1f} MiB page: /healthz answered first: {answered_first}, "
          f"peak RSS +{growth[0] / MIB:.0f} MiB ({growth[0] / len(body):.1f}x the body)")
    assert health.status_code == 200
    assert answered_first, "/healthz waited for the big body's answer"
    assert answer.status == 400 and "lone surrogate" in message, message
    assert growth[0] < PARSE_COST * len(body), growth


# ---- Unicode ---------------------------------------------------------------------------------------------------

# JSON texts of strings: what JSON allows (escaped or raw UTF-8), and bytes that are not UTF-8 at all.
TEXTS = {
    "lone high surrogate": b'"\\ud800"', "lone low surrogate": b'"\\udfff"', "pair reversed": b'"\\ude00\\ud83d"',
    "high then letter": b'"\\ud83dA"', "NUL": b'"a\\u0000b"', "astral escaped": b'"\\ud83d\\ude00"',
    "astral raw": '"😀"'.encode(), "noncharacter": b'"\\uffff"', "BOM": b'"\\ufeff"',
    "raw surrogate bytes": b'"\xed\xa0\x80"', "overlong NUL": b'"\xc0\x80"', "cut sequence": b'"\xe2\x82"',
}
STORABLE = {"astral escaped", "astral raw", "noncharacter", "BOM"}


def unicode_cases(credential: str, token: str) -> list[tuple[str, bytes, str | None]]:
    return [(f"{EDGE_PATH}/join", b'{"edge": %s, "join_token": "x"}', None),
            (f"{API}/list_edges", b'{"pipeline_name": %s}', token),
            (f"{API}/remove_edge", b'{"name": %s}', token),
            (f"{API}/get_logs", b'{"pipeline_name": %s}', token),
            (f"{API}/publish", b'{"pipeline_name": "u", "pipeline_version": %s, "pipeline_url": "x"}', token),
            (f"{EDGE_PATH}/checkin", b'{"edge": "' + EDGE.encode() + b'", "serving": {"pipeline_url": %s, '
                                     b'"pipeline_digest": "d", "pipeline_version": "v"}}', credential)]


def test_any_unicode_is_answered_2xx_or_4xx(ops, credential):
    for kind, text in TEXTS.items():
        for path, template, token in unicode_cases(credential, ops.token):
            r = httpx.post(ops.url + path, content=template.replace(b"%s", text),
                           headers={"Authorization": f"Bearer {token}"} if token else {})
            assert r.status_code < 500, (path, kind, r.status_code, r.text)
            if kind not in STORABLE and kind != "NUL":
                assert r.status_code == 400, (path, kind, r.text)
    assert httpx.get(f"{ops.url}/healthz").status_code == 200


def test_log_records_keep_any_storable_text_and_refuse_the_rest(ops, credential):
    """Records are stored as JSON documents: NUL and astral text go in and come back out unchanged; a lone
    surrogate is refused, and nothing makes the export fail afterwards."""
    headers = {"Authorization": f"Bearer {credential}"}
    seq = 1_000
    for kind, text in TEXTS.items():
        page = b'{"edge": "%s", "seq_start": %d, "seq_end": %d, "records": [{"time": 1, "in": {"s": %s}}]}' % (
            EDGE.encode(), seq, seq, text)
        r = httpx.post(f"{ops.url}{EDGE_PATH}/logs", content=page, headers=headers)
        expected = 200 if kind in STORABLE | {"NUL"} else 400
        assert r.status_code == expected, (kind, r.status_code, r.text)
        seq += 1
    with ops.client() as c:
        stored = [r["in.s"] for r in c.iter_logs(PIPELINE)]
    assert stored == [json.loads(TEXTS[k]) for k in TEXTS if k in STORABLE | {"NUL"}]
