"""`/docs` and `/redoc` work offline: Swagger UI and ReDoc come from an installed package, never a CDN.

Real Chromium (Debian's `chromium` through playwright) loads the pages from `redtrans serve`'s uvicorn on
loopback (keys off), with every request outside loopback refused and recorded; the screenshots are test
artifacts (their paths are printed).
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from redtrans.serve.config import ServeConfig, hash_key
from redtrans.serve.server import build_server

LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def live(**overrides: Any) -> Iterator[str]:
    config = ServeConfig(cache="none", access_log=False, engine="standin", port=_free_port(), **overrides)
    server = build_server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started:
                break
            time.sleep(0.02)
        assert server.started
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(30)


def test_docs_assets_are_local_and_behind_keys() -> None:
    with live() as base:
        page = httpx.get(f"{base}/docs").text
        assert "/docs/static/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
        assert "/docs/static/redoc.standalone.js" in httpx.get(f"{base}/redoc").text
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
            r = httpx.get(f"{base}/docs/static/{asset}")
            assert r.status_code == 200 and len(r.content) > 10_000, asset
    with live(api_keys={"ops": hash_key("k")}) as base:
        for path in ("/docs", "/redoc", "/docs/static/swagger-ui-bundle.js"):
            assert httpx.get(base + path).status_code == 401, path
        r = httpx.get(f"{base}/docs/static/swagger-ui.css", headers={"Authorization": "Bearer k"})
        assert r.status_code == 200


def test_docs_render_offline_in_chromium(tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("needs Debian's chromium (make test installs it)")
    from playwright.sync_api import Route, sync_playwright

    outside: list[str] = []

    def only_loopback(route: Route) -> None:
        host = urlparse(route.request.url).hostname or ""
        if host in LOOPBACK or route.request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with live() as base, sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1600})
            page.route("**/*", only_loopback)
            page.goto(f"{base}/docs")
            page.wait_for_selector(".opblock-summary-path", timeout=30_000)
            paths = page.locator(".opblock-summary-path").all_inner_texts()
            for expected in ("/v1/translate", "/v1/chat/completions", "/v2/translate", "/translate"):
                assert any(p.replace("\u200b", "") == expected for p in paths), (expected, paths)
            assert page.locator(".swagger-ui .info .title").inner_text().startswith("redtrans")
            shot = tmp_path / "docs.png"
            page.screenshot(path=str(shot), full_page=False)
            print(f"Swagger UI screenshot: {shot}")

            page.goto(f"{base}/redoc")
            page.wait_for_selector("[data-section-id]", timeout=30_000)
            redoc_shot = tmp_path / "redoc.png"
            page.screenshot(path=str(redoc_shot))
            print(f"ReDoc screenshot: {redoc_shot}")
        finally:
            browser.close()
    assert outside == [], f"requests left loopback: {outside}"
    assert shot.stat().st_size > 10_000
