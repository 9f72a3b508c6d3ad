"""The page works under Content-Security-Policy: default-src 'self' and without internet: no
inline script, style or event handler, and every asset is a static file of the app."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from django.contrib.staticfiles import finders
from django.test import Client

from security.headers import CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY_VALUE

STATIC_PREFIX = "/static/"
ASSETS_DIR = Path(__file__).resolve().parents[2] / "dashboard" / "static" / "dashboard"
# The one absolute URL the assets may hold: the SVG namespace, an identifier never fetched.
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


class PageParts(HTMLParser):
    """What a CSP check needs from a page: its scripts, styles, attributes and asset URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.inline_scripts: list[str] = []
        self.style_elements = 0
        self.forbidden_attributes: list[str] = []
        self.asset_urls: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.forbidden_attributes += [name for name in attributes if name == "style" or name.startswith("on")]
        if tag == "style":
            self.style_elements += 1
        if tag == "script":
            self._in_script = True
            if not attributes.get("src"):
                self.inline_scripts.append("<script> without src")
        for name in ("src", "href"):
            if (url := attributes.get(name)) and (tag in ("script", "link", "img")):
                self.asset_urls.append(url)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts.append(data.strip())


def parse_page(staff_client: Client) -> PageParts:
    response = staff_client.get("/dashboard/")
    parts = PageParts()
    parts.feed(response.content.decode())
    return parts


def test_the_page_carries_the_content_security_policy(staff_client: Client) -> None:
    assert staff_client.get("/dashboard/")[CONTENT_SECURITY_POLICY] == CONTENT_SECURITY_POLICY_VALUE


def test_the_page_has_no_inline_script_style_or_event_handler(staff_client: Client) -> None:
    parts = parse_page(staff_client)
    assert parts.inline_scripts == []
    assert parts.style_elements == 0
    assert parts.forbidden_attributes == []


def test_every_asset_of_the_page_is_a_static_file_of_the_dashboard(staff_client: Client) -> None:
    urls = parse_page(staff_client).asset_urls
    assert sorted(urls) == [
        "/static/dashboard/dashboard.css",
        "/static/dashboard/dashboard.js",
        "/static/dashboard/favicon.svg",
    ]
    for url in urls:
        found = finders.find(url.removeprefix(STATIC_PREFIX))
        assert found is not None and Path(str(found)).parent == ASSETS_DIR, url


def test_the_scripts_import_only_files_beside_them() -> None:
    """ES module imports are fetched too: each must name a file of the app."""
    imports = re.findall(r'^import .* from "([^"]+)";$', (ASSETS_DIR / "dashboard.js").read_text(), re.MULTILINE)
    assert imports == ["./charts.js"]
    assert all((ASSETS_DIR / name).is_file() for name in imports)


def test_no_asset_reaches_for_another_origin() -> None:
    """No CDN, no web font: the gateway may run without internet."""
    for asset in ASSETS_DIR.iterdir():
        text = asset.read_text().replace(SVG_NAMESPACE, "")
        assert re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}", text) == [], asset.name
