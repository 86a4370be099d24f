"""How the gateway hands out the reference pages: types, compression, caching, the pages' CSP, and
nothing outside the web folder. No browser and no services needed."""

from __future__ import annotations

import gzip
import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.intake.api.routes import web

WEB = web.WEB_ROOT


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()
    app.include_router(web.router)
    return TestClient(app)


@pytest.mark.parametrize("path", ["/", "/phone", "/console"])
def test_pages_come_with_their_csp_and_are_revalidated(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp


def test_pages_have_no_inline_script_or_style(client):
    for page in ("index.html", "phone.html", "console.html"):
        html = (WEB / page).read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), page
        assert "<style" not in html and " style=" not in html and " on" + "click=" not in html, page


def test_text_is_compressed_when_asked_and_etags_save_the_transfer(client):
    plain = client.get("/web/phone.js", headers={"Accept-Encoding": "identity"})
    packed = client.get("/web/phone.js", headers={"Accept-Encoding": "gzip"})
    assert plain.headers.get("content-encoding") is None
    assert packed.headers["content-encoding"] == "gzip" and packed.headers["vary"] == "Accept-Encoding"
    assert packed.content == plain.content  # the client unpacked it
    assert int(packed.headers["content-length"]) < len(plain.content)
    assert len(gzip.compress((WEB / "phone.js").read_bytes())) < len(plain.content)
    again = client.get("/web/phone.js", headers={"If-None-Match": plain.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


def test_vendored_libraries_are_immutable_and_the_service_worker_covers_the_site(client):
    chart = client.get("/web/vendor/chartjs-4.6.1/chart.umd.min.js")
    assert chart.status_code == 200 and "immutable" in chart.headers["cache-control"]
    worker = client.get("/sw.js")
    assert worker.headers["service-worker-allowed"] == "/" and worker.headers["cache-control"] == "no-cache"
    manifest = client.get("/manifest.webmanifest")
    assert manifest.headers["content-type"] == "application/manifest+json"
    assert client.get("/web/icons/icon-192.png").headers["content-type"] == "image/png"


@pytest.mark.parametrize(
    "path", ["/web/../api/routes/web.py", "/web/%2e%2e/api/routes/web.py", "/web/nothing.js", "/web/"]
)
def test_nothing_outside_the_web_folder_is_served(client, path):
    assert client.get(path).status_code == 404


def test_a_trailing_slash_is_sent_to_the_page(client):
    response = client.get("/phone/", follow_redirects=False)
    assert response.status_code == 308 and response.headers["location"] == "/phone"
