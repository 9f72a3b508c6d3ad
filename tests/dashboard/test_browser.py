"""The dashboard in a real browser: headless Chromium, driven by Selenium, against a real gateway
process serving a real demo MCP server.

An operator logs in through the admin's form, creates a service, a target and a route with the
admin's forms, MCP clients call tools through the demo route and the new one, and the dashboard
then draws its charts and tables by itself, with nothing in the browser console (a violation
of the Content-Security-Policy is logged there as an error). On a phone-sized screen the page
does not scroll sideways. Screenshots go to $GATEWAY_SCREENSHOT_DIR (else the test's tmp_path).

Needs the Debian packages chromium and chromium-driver: `bash scripts/ensure_browser.sh`
installs them. Without them this test fails (it never skips) and says so.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
import urllib3
from mcp import Client
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.e2e.mcp_http import MODERN_VERSION
from tests.live_servers import PROJECT_DIR, LiveGateway

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
BROWSER_MISSING = (
    "The dashboard's browser test needs {missing}: run `bash scripts/ensure_browser.sh` "
    "(it installs the Debian packages chromium and chromium-driver), then run the tests again."
)
CHROMIUM_ARGUMENTS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
)
LAPTOP = (1366, 900)
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}

OPERATOR, PASSWORD = "operator", "dashboard-browser-test"
CREATE_OPERATOR = (
    "from django.contrib.auth.models import User; "
    f"User.objects.create_superuser({OPERATOR!r}, 'operator@example.com', {PASSWORD!r})"
)
# Short metrics intervals: the charts show traffic seconds after it is sent, not a minute later.
METRICS_INTERVAL_SECONDS = "2"
WAIT_SECONDS = 45
PAGE_EXCERPT_CHARACTERS = 1500
TOOL_CALLS_PER_ROUTE = 6


# --- the gateway and the browser -------------------------------------------------------------------


def screenshot_dir(tmp_path: Path) -> Path:
    """$GATEWAY_SCREENSHOT_DIR (CI keeps it as an artifact), else the test's own tmp_path."""
    chosen = os.environ.get("GATEWAY_SCREENSHOT_DIR")
    if not chosen:
        return tmp_path
    directory = Path(chosen)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, demo_server_port: int) -> Iterator[LiveGateway]:
    """A gateway process with an operator account, serving its static files (granian serves
    STATIC_ROOT once collectstatic has filled it, as `make run` does)."""
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"], cwd=PROJECT_DIR, check=True
    )
    server = LiveGateway(workdir=Path(tmp_path_factory.mktemp("dashboard")), demo_port=demo_server_port)
    server.env["GATEWAY_METRICS_INTERVAL_SECONDS"] = METRICS_INTERVAL_SECONDS
    server.start()
    server.manage("shell", "--no-imports", "-c", CREATE_OPERATOR)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.is_file()]
    if missing:
        pytest.fail(BROWSER_MISSING.format(missing=" and ".join(missing)), pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in CHROMIUM_ARGUMENTS:
        options.add_argument(argument)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.add_argument(f"--window-size={LAPTOP[0]},{LAPTOP[1]}")
    # The console, errors and CSP violations included, readable with get_log("browser").
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT_SECONDS)
    yield driver
    driver.quit()


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], Any], what: str) -> Any:
    """Wait until ``condition`` holds; else fail saying what the browser shows instead."""
    try:
        return WebDriverWait(driver, WAIT_SECONDS).until(condition)
    except TimeoutException:
        page = driver.find_element(By.TAG_NAME, "body").text[:PAGE_EXCERPT_CHARACTERS]
        console = [entry["message"] for entry in driver.get_log("browser")]
        raise AssertionError(
            f"{what}: not within {WAIT_SECONDS}s. At {driver.current_url}, the page shows:\n{page}\n"
            f"console: {console}"
        ) from None


def save_full_page_screenshot(driver: WebDriver, path: Path) -> None:
    """The whole page, below the fold too (a window-sized screenshot would cut the tables)."""
    width, height = driver.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
    )
    clip = {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"captureBeyondViewport": True, "clip": clip})
    path.write_bytes(base64.b64decode(shot["data"]))


def console_errors(driver: WebDriver) -> list[str]:
    """The SEVERE console entries since the last call (reading the log empties it)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


# --- the operator's steps in the admin -------------------------------------------------------------


@dataclass(frozen=True)
class AdminMadeRoute:
    service: str
    target_url: str
    route: str
    path: str


def fill(driver: WebDriver, field_id: str, value: str) -> None:
    field = driver.find_element(By.ID, field_id)
    field.clear()
    field.send_keys(value)


def set_checkbox(driver: WebDriver, field_id: str, checked: bool) -> None:
    box = driver.find_element(By.ID, field_id)
    if box.is_selected() != checked:
        box.click()


def save_admin_form(driver: WebDriver) -> None:
    """Submit with "Save" and expect the admin's success message (not the form with errors)."""
    driver.find_element(By.NAME, "_save").click()
    message = wait_for(
        driver, expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ".messagelist li")), "saved"
    )
    assert "success" in (message.get_attribute("class") or ""), message.text


@pytest.fixture(scope="module")
def operator(browser: WebDriver, gateway: LiveGateway) -> WebDriver:
    """The browser, logged in to the admin through its login form."""
    browser.get(f"{gateway.url}/admin/login/?next=/admin/")
    fill(browser, "id_username", OPERATOR)
    fill(browser, "id_password", PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait_for(browser, expected_conditions.url_to_be(f"{gateway.url}/admin/"), "logged in")
    return browser


@pytest.fixture(scope="module")
def admin_made_route(operator: WebDriver, gateway: LiveGateway) -> AdminMadeRoute:
    """A service, its target (the demo MCP server) and an open route, made with the admin forms."""
    made = AdminMadeRoute(
        service="browser-demo",
        target_url=f"http://127.0.0.1:{gateway.demo_port}/mcp",
        route="browser-route",
        path="/mcp/browser",
    )
    operator.get(f"{gateway.url}/admin/routing/service/add/")
    fill(operator, "id_name", made.service)
    Select(operator.find_element(By.ID, "id_kind")).select_by_value("mcp")
    save_admin_form(operator)

    operator.get(f"{gateway.url}/admin/routing/target/add/")
    Select(operator.find_element(By.ID, "id_service")).select_by_visible_text(made.service)
    fill(operator, "id_url", made.target_url)
    save_admin_form(operator)

    operator.get(f"{gateway.url}/admin/routing/route/add/")
    fill(operator, "id_name", made.route)
    fill(operator, "id_path", made.path)
    Select(operator.find_element(By.ID, "id_service")).select_by_visible_text(made.service)
    set_checkbox(operator, "id_allow_anonymous", True)
    set_checkbox(operator, "id_tool_permissions", False)
    save_admin_form(operator)
    return made


def call_tools(url: str, calls: int) -> list[Any]:
    """``calls`` tools/call add through ``url`` with the official MCP client; their results."""

    async def main() -> list[Any]:
        with anyio.fail_after(WAIT_SECONDS):
            async with Client(url, mode=MODERN_VERSION) as client:
                return [(await client.call_tool("add", {"a": n, "b": 1})).structured_content for n in range(calls)]

    return anyio.run(main)


def wait_until_routed(gateway: LiveGateway, path: str) -> None:
    """Until the gateway's processes have picked up the new route (config propagation)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while urllib3.request("POST", f"{gateway.url}{path}", body=b"{}", retries=False).status == 404:
        assert time.monotonic() < deadline, f"{path} was never routed"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def traffic(gateway: LiveGateway, admin_made_route: AdminMadeRoute) -> None:
    """Tool calls through the seeded demo route and through the route made in the admin."""
    wait_until_routed(gateway, admin_made_route.path)
    for path in ("/mcp/demo", admin_made_route.path):
        results = call_tools(f"{gateway.url}{path}", TOOL_CALLS_PER_ROUTE)
        assert results == [{"result": n + 1} for n in range(TOOL_CALLS_PER_ROUTE)]


# --- the dashboard ---------------------------------------------------------------------------------


def chart_paths(driver: WebDriver, chart: str) -> list[str]:
    """The ``d`` of every line drawn in one chart."""
    return [
        path.get_attribute("d") or ""
        for path in driver.find_elements(By.CSS_SELECTOR, f"[data-chart={chart}] svg path.line")
    ]


def charts_drawn(driver: WebDriver) -> bool:
    """Latency has its three lines (p50, p95, p99); throughput and error rate one each."""
    drawn = {chart: [d for d in chart_paths(driver, chart) if d] for chart in ("latency", "throughput", "errors")}
    return [len(lines) for lines in drawn.values()] == [3, 1, 1]


def refresh_status(driver: WebDriver) -> str:
    return driver.find_element(By.ID, "refresh-status").text


def test_dashboard_draws_charts_and_tables_by_itself_with_no_console_errors(
    operator: WebDriver,
    gateway: LiveGateway,
    admin_made_route: AdminMadeRoute,
    traffic: None,
    tmp_path: Path,
) -> None:
    console_errors(operator)  # only the dashboard's own console counts
    operator.get(f"{gateway.url}/dashboard/")
    wait_for(operator, lambda driver: refresh_status(driver).startswith("Updated "), "first update")
    first_update = refresh_status(operator)

    wait_for(operator, charts_drawn, "charts drawn")
    routes = operator.find_element(By.ID, "routes-table").text
    assert admin_made_route.route in routes and "demo" in routes
    targets = operator.find_element(By.ID, "targets-table").text
    assert admin_made_route.service in targets and admin_made_route.target_url in targets
    assert "healthy" in targets
    wait_for(operator, lambda driver: "demo:add" in driver.find_element(By.ID, "tools-table").text, "tools listed")
    # It polls by itself: a later update arrives without reloading the page.
    wait_for(operator, lambda driver: refresh_status(driver) not in (first_update, ""), "a later update")
    assert not refresh_status(operator).startswith("Update failed")

    save_full_page_screenshot(operator, screenshot_dir(tmp_path) / "dashboard-laptop.png")
    assert console_errors(operator) == []


def test_dashboard_fits_a_phone_screen_without_scrolling_sideways(
    operator: WebDriver, gateway: LiveGateway, traffic: None, tmp_path: Path
) -> None:
    operator.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
    try:
        console_errors(operator)
        operator.get(f"{gateway.url}/dashboard/")
        wait_for(operator, charts_drawn, "charts drawn on the phone")
        assert operator.execute_script("return window.innerWidth") == PHONE["width"]
        page_width, visible_width = operator.execute_script(
            "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert page_width <= visible_width
        chart_widths = operator.execute_script(
            "return [...document.querySelectorAll('[data-chart] svg')].map((svg) => svg.getBoundingClientRect().right)"
        )
        assert len(chart_widths) == 3 and all(right <= visible_width for right in chart_widths)
        save_full_page_screenshot(operator, screenshot_dir(tmp_path) / "dashboard-phone.png")
        assert console_errors(operator) == []
    finally:
        operator.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
