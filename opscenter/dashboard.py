"""The Ops dashboard under /ui: pipelines and their publishes, edges and their state, one edge's recent logs,
assay charts. Pages are rendered on the server (jinja2 templates in opscenter/templates, charts as inline SVG
from opscenter/svgcharts.py): no script, nothing fetched from elsewhere, so it works offline.

Behind the admin token: /ui/login trades it for a session cookie (opscenter/uisession.py: HttpOnly,
SameSite=Strict, Secure whenever Ops is reached over https); every other page without a valid one redirects to
the form. Answers forbid caching and framing, and a Content-Security-Policy allows only this server's stylesheet.
"""
from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from joey import opswire as models
from joey.errors import Missing
from opscenter import logrecords, svgcharts
from opscenter.assays import AssayService
from opscenter.service import OpsService
from opscenter.uisession import COOKIE, TTL_S, Sessions

UI = "/ui"
SILENT_AFTER_S = 10 * 60        # an enrolled edge not heard from for this long is `silent` (JoeyEdgeSilent alike)
RECENT_LOGS = 50
MAX_FORM_BYTES = 4096
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

_env = Environment(loader=PackageLoader("opscenter", "templates"), autoescape=select_autoescape(["html"]))


def _when(t: str | float | None) -> str:
    """An ISO time or UNIX seconds as the pages show it, UTC to the second."""
    if t is None:
        return "—"
    try:
        moment = datetime.fromisoformat(t) if isinstance(t, str) else datetime.fromtimestamp(t, UTC)
    except (ValueError, OverflowError, OSError):   # an edge's clock far off: show what it wrote
        return str(t)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 80 else text[:79] + "…"


_env.filters.update(when=_when, cell=_cell,
                    ms=lambda ms: _when(ms / 1000) if ms is not None else "—")


def _page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(_env.get_template(template).render(ui=UI, **context), status, headers=HEADERS)


class Dashboard:
    """What the pages show, read from the Ops service, the assay service and a few queries of its own."""

    def __init__(self, service: OpsService, assays: AssayService):
        self.service, self.assays, self.db = service, assays, service.db

    def edges(self) -> list[dict]:
        """list_edges' edges plus `state`, `last_check_in`, `records` received and `drops`: the sequence numbers
        below the highest received that never arrived (the edge dropped them, its store full)."""
        with self.db.transaction() as tx:
            counts = {r["edge_id"]: r for r in tx.all("SELECT edge_id, COUNT(*) AS n, MAX(seq) AS top FROM logs"
                                                      " GROUP BY edge_id")}
        now = self.service.clock()
        out = []
        for edge in self.service.list_edges(None):
            seen = [t for t in (edge["last_seen"], (edge["serving"] or {}).get("checked_in_at")) if t]
            last = max(datetime.fromisoformat(t).timestamp() for t in seen) if seen else None
            state = ("pending" if not edge["enrolled"] else
                     "online" if last is not None and now - last < SILENT_AFTER_S else "silent")
            c = counts.get(edge["id"])
            out.append({**edge, "state": state, "last_check_in": (edge["serving"] or {}).get("checked_in_at"),
                        "records": c["n"] if c else 0, "drops": c["top"] + 1 - c["n"] if c else 0})
        return out

    def overview(self) -> dict:
        with self.db.transaction() as tx:
            publishes = tx.all("SELECT id, pipeline_name, pipeline_version, status, created_at FROM publishes"
                               " ORDER BY id DESC LIMIT 500")
        pipelines = self.service.list_pipelines(None)["pipelines"]
        for p in pipelines:
            p["publishes"] = [x for x in publishes if x["pipeline_name"] == p["name"]]
        assays = self.assays.list(None)["assays"]
        for a in assays:
            scored = [r for r in self.assays.results(models.AssayResults(id=a["id"]))["results"]
                      if r["score"] is not None]
            a["latest"] = sorted({r["partition"] or "": r for r in scored}.values(), key=lambda r: r["partition"] or "")
        return {"pipelines": pipelines, "edges": self.edges(), "assays": assays}

    def edge(self, name: str) -> dict:
        edge = next((e for e in self.edges() if e["name"] == name), None)
        if edge is None:
            raise Missing(f"no edge named {name!r}", hint="the dashboard's front page lists the edges")
        with self.db.transaction() as tx:
            rows = tx.all("SELECT seq, record FROM logs WHERE edge_id = ? ORDER BY id DESC LIMIT ?",
                          (edge["id"], RECENT_LOGS))
        records = [{"seq": r["seq"], **logrecords.flatten(json.loads(r["record"]))} for r in rows]
        columns = list(dict.fromkeys(k for r in records for k in r))
        return {"edge": edge, "records": records, "columns": columns}

    def assay(self, assay_id: int) -> dict:
        got = self.assays.results(models.parse(models.AssayResults, {"id": assay_id, "limit": models.MAX_EXPORT_PAGE}))
        assay, results = got["assay"], got["results"]
        series: dict[str, list] = {}
        latest: dict[str, list[float]] = {"baseline": assay["bins"]["baseline"]}
        for r in sorted(results, key=lambda r: r["partition"] or ""):
            name = r["partition"] or "all edges"
            series.setdefault(name, []).append((r["window_start"], r["score"], r["alert"]))
            if r["records"]:
                latest[name] = r["bins"]["window"]
        edges = assay["bins"]["edges"]
        labels = ["< min", *(f"{edges[i]:.3g}–{edges[i + 1]:.3g}" for i in range(len(edges) - 1)), "> max"]
        return {"assay": assay, "results": results[::-1],
                "score_chart": svgcharts.score_chart(f"{assay['metric']} of {assay['field']} per window", series,
                                                     assay["alert_threshold"]),
                "bins_chart": svgcharts.bins_chart("bins: baseline and each series' latest window", labels, latest)}


def routes(service: OpsService, assays: AssayService, admin_token: str) -> list[Route]:
    sessions, dashboard = Sessions(admin_token, service.clock), Dashboard(service, assays)

    def signed_in(render: Callable[[Request], Any]) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            if not sessions.valid(request.cookies.get(COOKIE)):
                return RedirectResponse(f"{UI}/login", 303, headers=HEADERS)
            try:
                return await run_in_threadpool(render, request)
            except Missing as e:
                return _page("missing.html", 404, message=str(e), signed_in=True)
        return handle

    async def login_form(request: Request) -> Response:
        return _page("login.html")

    async def login(request: Request) -> Response:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                return _page("login.html", 413, error="that form is too large")
        token = parse_qs(body.decode("utf-8", "replace")).get("token", [""])[0]
        if not sessions.token_matches(token):
            return _page("login.html", 401, error="wrong admin token")
        answer = RedirectResponse(UI, 303, headers=HEADERS)
        # Secure whenever edges reach Ops over https: behind a TLS ingress, the request itself may look plain.
        secure = request.url.scheme == "https" or not service.endpoint.opscenter_host.startswith("http://")
        answer.set_cookie(COOKIE, sessions.issue(), max_age=TTL_S, path=UI, secure=secure, httponly=True,
                          samesite="strict")
        return answer

    async def logout(request: Request) -> Response:
        answer = RedirectResponse(f"{UI}/login", 303, headers=HEADERS)
        answer.delete_cookie(COOKIE, path=UI, httponly=True, samesite="strict")
        return answer

    async def stylesheet(request: Request) -> Response:
        css = resources.files("opscenter").joinpath("templates/dashboard.css").read_text()
        return Response(css, media_type="text/css", headers={"Cache-Control": "max-age=300"})

    return [
        Route(f"{UI}/login", login_form, methods=["GET"]),
        Route(f"{UI}/login", login, methods=["POST"]),
        Route(f"{UI}/logout", logout, methods=["POST"]),
        Route(f"{UI}/static/dashboard.css", stylesheet, methods=["GET"]),
        Route(UI, signed_in(lambda r: _page("overview.html", signed_in=True, **dashboard.overview())),
              methods=["GET"]),
        Route(f"{UI}/edges/{{name}}", signed_in(lambda r: _page("edge.html", signed_in=True,
                                                                **dashboard.edge(r.path_params["name"]))),
              methods=["GET"]),
        Route(f"{UI}/assays/{{id:int}}", signed_in(lambda r: _page("assay.html", signed_in=True,
                                                                   **dashboard.assay(r.path_params["id"]))),
              methods=["GET"]),
    ]
