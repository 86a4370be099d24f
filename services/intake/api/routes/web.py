"""The reference web pages, served by the gateway itself: the liaison worker's phone page and the
console. They are plain files (no build step) that use only the public API, as any other frontend
would; this router only hands them out, compressed and with caching that suits each kind of file.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Header
from fastapi import Path as PathParam
from fastapi.responses import RedirectResponse, Response

from services.intake.api.errors import error_response

router = APIRouter(include_in_schema=False)

WEB_ROOT = Path(__file__).resolve().parents[2] / "web"

# The pages load scripts, styles, recordings and map markers from the gateway only; recordings are
# fetched with the bearer token and played from blob: URLs. No inline script or style anywhere.
PAGE_CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "worker-src 'self'",
        "manifest-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
PAGES = {"": "index.html", "phone": "phone.html", "console": "console.html"}
TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
    ".webmanifest": "application/manifest+json",
    ".png": "image/png",
}
# Pages, scripts and the service worker are checked on every load (cheap 304s) so a release is seen
# at once; vendored libraries live in versioned folders and never change.
REVALIDATE = "no-cache"
IMMUTABLE = "public, max-age=31536000, immutable"


def _load(relative: str) -> tuple[bytes, bytes | None, str, str] | None:
    path = (WEB_ROOT / relative).resolve()
    if not path.is_file() or WEB_ROOT not in path.parents:
        return None
    # Keyed by the file's mtime too: an edited file is served anew without a restart.
    return _packed(path, path.stat().st_mtime_ns)


@lru_cache(maxsize=128)
def _packed(path: Path, mtime_ns: int) -> tuple[bytes, bytes | None, str, str]:
    data = path.read_bytes()
    media_type = TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    packed = None if path.suffix == ".png" else gzip.compress(data, 9, mtime=0)
    if packed is not None and len(packed) >= len(data):
        packed = None
    return data, packed, media_type, '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def _serve(relative: str, accept_encoding: str | None, if_none_match: str | None, **headers: str) -> Response:
    loaded = _load(relative)
    if loaded is None:
        return error_response(404, "no such file")
    data, packed, media_type, etag = loaded
    cache = IMMUTABLE if relative.startswith("vendor/") else REVALIDATE
    headers = {"Cache-Control": cache, "ETag": etag, "Vary": "Accept-Encoding", **headers}
    if relative.endswith(".html"):
        headers["Content-Security-Policy"] = PAGE_CSP
    if if_none_match and etag in [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]:
        return Response(status_code=304, headers=headers)
    if packed is not None and "gzip" in (accept_encoding or "").lower():
        return Response(packed, media_type=media_type, headers={**headers, "Content-Encoding": "gzip"})
    return Response(data, media_type=media_type, headers=headers)


AcceptEncoding = Annotated[str | None, Header()]
IfNoneMatch = Annotated[str | None, Header()]


def _page_route(path: str, name: str) -> None:
    def serve_page(accept_encoding: AcceptEncoding = None, if_none_match: IfNoneMatch = None) -> Response:
        return _serve(name, accept_encoding, if_none_match)

    router.add_api_route(path, serve_page, methods=["GET", "HEAD"], name=f"page_{name.removesuffix('.html')}")


def _redirect_route(path: str, to: str) -> None:
    def redirect() -> RedirectResponse:
        return RedirectResponse(to, status_code=308)

    router.add_api_route(path, redirect, methods=["GET"], name=f"redirect_{to.strip('/')}")


for _path, _name in PAGES.items():
    _page_route(f"/{_path}", _name)
    if _path:
        _redirect_route(f"/{_path}/", f"/{_path}")


@router.get("/sw.js")
def service_worker(accept_encoding: AcceptEncoding = None, if_none_match: IfNoneMatch = None) -> Response:
    """At the root, so it may look after every page; always revalidated, so updates arrive."""
    return _serve("sw.js", accept_encoding, if_none_match, **{"Service-Worker-Allowed": "/"})


@router.get("/manifest.webmanifest")
def manifest(accept_encoding: AcceptEncoding = None, if_none_match: IfNoneMatch = None) -> Response:
    return _serve("manifest.webmanifest", accept_encoding, if_none_match)


@router.get("/web/{relative:path}")
def asset(
    relative: Annotated[str, PathParam(max_length=200)],
    accept_encoding: AcceptEncoding = None,
    if_none_match: IfNoneMatch = None,
) -> Response:
    return _serve(relative, accept_encoding, if_none_match)
