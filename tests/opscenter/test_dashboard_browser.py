"""The Ops dashboard in a real headless Chromium (Debian's chromium + chromium-driver, driven by selenium): log in,
see both edges and their counts, open one edge's logs, see an assay chart, without a console error; and over
plain HTTP: no page without the session cookie, and the admin token never in a URL."""
from __future__ import annotations

import shutil
import time

import httpx
import pytest

from engine.edge_client import EdgeClient
from joey.bundle import EdgeBundle

HOUR_MS = 3600 * 1000
T0 = (int(time.time() * 1000) // HOUR_MS - 2) * HOUR_MS   # two complete hourly windows before this hour
SERVING = {"pipeline_url": "127.0.0.1:5000/joey/pipelines/shop:v1", "pipeline_digest": "sha256:" + "ab" * 32,
           "pipeline_version": "v1-running"}
pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def _record(t: int, value: float) -> dict:
    return {"time": t, "in": {"tensor": [value]}, "out": {"variable": [value * 2]}, "anomaly": {"count": 0},
            "metadata": {"pipeline_version": "v1"}}


@pytest.fixture()
def fleet(ops, make_record, tmp_path):
    """Pipeline `shop` with edges store-a (40 records, checked in) and store-b (25 records, shifted), and an assay
    over both, run."""
    with ops.client() as c:
        pub = c.publish(make_record("shop"))
        for name, count, shift in (("store-a", 40, 0.0), ("store-b", 25, 5.0)):
            bundle = EdgeBundle.decode(c.add_edge(pub["id"], name)["docker_run_variables"]["EDGE_BUNDLE"])
            with EdgeClient(bundle, tmp_path / name) as edge:
                edge.upload_page(0, count - 1, [_record(T0 + i * 60_000, shift + i % 5) for i in range(count)])
                if name == "store-a":
                    edge.checkin(SERVING)
        assay = c.create_assay({"name": "shop-drift", "pipeline_name": "shop", "field": "out.variable[0]",
                                "baseline": {"values": [float(2 * (i % 5)) for i in range(100)]},
                                "window": {"width_seconds": 3600, "start": T0},
                                "partitions": ["store-a", "store-b"]})
        c.run_assay(assay["id"], end=T0 + 2 * HOUR_MS)
    return assay


def _chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    driver_path, browser = shutil.which("chromedriver"), shutil.which("chromium")
    if not driver_path or not browser:
        raise RuntimeError("Chromium is not installed: apt-get install -y chromium chromium-driver (scripts/setup)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1400,1000", "--no-first-run", "--disable-extensions"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(driver_path))


def test_the_dashboard_in_chromium(ops, fleet, tmp_path):
    from selenium.webdriver.common.by import By

    driver = _chromium()
    visited = []
    try:
        driver.get(f"{ops.url}/ui")
        visited.append(driver.current_url)
        assert driver.current_url == f"{ops.url}/ui/login"
        driver.save_screenshot(str(tmp_path / "1-login.png"))
        driver.find_element(By.ID, "token").send_keys(ops.token)
        driver.find_element(By.ID, "login").click()
        visited.append(driver.current_url)
        assert driver.current_url == f"{ops.url}/ui"
        rows = {r.get_attribute("data-edge"): r for r in driver.find_elements(By.CSS_SELECTOR, "#edges tr.edge")}
        assert sorted(rows) == ["store-a", "store-b"]
        counts = {name: (r.find_element(By.CSS_SELECTOR, ".records").text, r.find_element(By.CSS_SELECTOR,
                                                                                           ".drops").text)
                  for name, r in rows.items()}
        assert counts == {"store-a": ("40", "0"), "store-b": ("25", "0")}
        assert "v1-running" in rows["store-a"].text and "online" in rows["store-a"].text
        driver.save_screenshot(str(tmp_path / "2-overview.png"))

        rows["store-a"].find_element(By.LINK_TEXT, "store-a").click()
        visited.append(driver.current_url)
        assert driver.find_element(By.ID, "records").text == "40"
        logs = driver.find_elements(By.CSS_SELECTOR, "#logs tr.log")
        assert len(logs) == 40 and "out.variable" in driver.find_element(By.ID, "logs").text
        driver.save_screenshot(str(tmp_path / "3-edge-logs.png"))

        driver.back()
        driver.find_element(By.LINK_TEXT, "shop-drift").click()
        visited.append(driver.current_url)
        charts = driver.find_elements(By.CSS_SELECTOR, "figure#scores svg, figure#bins svg")
        assert len(charts) == 2 and charts[0].find_elements(By.CSS_SELECTOR, "polyline")
        assert driver.find_elements(By.CSS_SELECTOR, "#results tr.alert")   # store-b is shifted
        driver.save_screenshot(str(tmp_path / "4-assay.png"))

        driver.find_element(By.ID, "logout").click()
        driver.get(f"{ops.url}/ui")
        assert driver.current_url == f"{ops.url}/ui/login"
        console = driver.get_log("browser")
    finally:
        driver.quit()
    assert [e for e in console if e["level"] in ("SEVERE", "ERROR")] == []
    assert all(ops.token not in url for url in visited)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["1-login.png", "2-overview.png", "3-edge-logs.png",
                                                               "4-assay.png"]


def test_pages_need_the_session_cookie_and_urls_never_carry_the_token(ops, fleet):
    with httpx.Client(base_url=ops.url, follow_redirects=False) as http:
        for path in ("/ui", "/ui/edges/store-a", f"/ui/assays/{fleet['id']}"):
            r = http.get(path)
            assert (r.status_code, r.headers["location"]) == (303, "/ui/login")
        assert http.get("/ui/login").status_code == 200
        assert http.post("/ui/login", data={"token": "not-the-token"}).status_code == 401
        ok = http.post("/ui/login", data={"token": ops.token})
        assert (ok.status_code, ok.headers["location"]) == (303, "/ui")
        cookie = ok.headers["set-cookie"]
        assert ops.token not in cookie and ops.token not in ok.headers["location"]
        flags = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/ui"} <= flags and "secure" not in flags   # plain loopback
        page = http.get("/ui")
        assert page.status_code == 200 and "store-b" in page.text and ops.token not in page.text
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert http.get("/ui/edges/no-such-edge").status_code == 404
        out = http.post("/ui/logout")
        assert out.headers["location"] == "/ui/login" and 'joey_ops_session=""' in out.headers["set-cookie"]
    with httpx.Client(base_url=ops.url, follow_redirects=False) as fresh:
        assert fresh.get("/ui").status_code == 303
    with httpx.Client(base_url=ops.url, follow_redirects=False,
                      cookies={"joey_ops_session": "9999999999.forged.00"}) as forged:
        assert forged.get("/ui").status_code == 303
