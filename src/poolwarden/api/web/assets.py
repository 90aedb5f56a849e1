"""The dashboard's static files (CSS, script, icon), served by poolwarden itself.

No CDN and no external fonts: the dashboard must work on a management network with no
way out, and every byte it runs is in this package. Files are read once at import and
served from memory under a fixed allow-list of names (no path ever reaches the file
system). URLs carry a hash of the content (``?v=…``), so browsers may cache them for a
long time and still fetch a new version after an upgrade.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import Response

STATIC = Path(__file__).parent / "static"
_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".svg": "image/svg+xml", ".txt": "text/plain; charset=utf-8"}


def _load() -> dict[str, tuple[bytes, str, str]]:
    found = {}
    for path in sorted(STATIC.iterdir()):
        if path.is_file() and path.suffix in _TYPES:
            body = path.read_bytes()
            found[path.name] = (body, _TYPES[path.suffix], hashlib.sha256(body).hexdigest()[:12])
    return found


FILES = _load()


def asset_url(name: str) -> str:
    """The URL of a static file, versioned by its content."""
    return f"/ui/static/{name}?v={FILES[name][2]}"


def static_router(route_class: type) -> APIRouter:
    """``GET /ui/static/{name}``: public (the login page needs its CSS), read-only."""
    router = APIRouter(route_class=route_class, include_in_schema=False)

    @router.get("/ui/static/{name}")
    def static(name: str) -> Response:
        found = FILES.get(name)
        if found is None:
            return Response("no such file", status_code=404, media_type="text/plain")
        body, media_type, version = found
        return Response(body, media_type=media_type, headers={
            "Cache-Control": "public, max-age=604800", "ETag": f'"{version}"'})

    return router


__all__ = ["FILES", "asset_url", "static_router"]
