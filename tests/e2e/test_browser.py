"""The dashboard in a real browser: Debian's chromium driven by Playwright, on the demo.

``poolwarden demo --serve 0 --json`` runs the overheating-host scenario and keeps its
service up; the browser logs in with the demo's user, finds the overheating CPU on the
(former) master on the board, acknowledges the incident on its page, and watches the
board — left open in another tab, not reloaded — show the acknowledgement through its
live updates. A screenshot of the board is kept in ``tests/artifacts/board.png``.

Browser downloads are not possible here: Playwright launches ``/usr/bin/chromium``
(installed by ``tools/system-deps.sh``) with a fresh profile.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).parent.parent / "artifacts"
CPU = "snmp/temperature/CPU1 Temp"


@pytest.fixture(scope="module")
def demo() -> Iterator[dict[str, Any]]:
    """The demo, served; its JSON summary (one document, then it keeps serving)."""
    proc = subprocess.Popen([sys.executable, "-m", "poolwarden", "demo", "--json",
                             "--serve", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line == "}\n":
                break
        assert lines, proc.stderr.read() if proc.stderr else "no output"
        yield json.loads("".join(lines))
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err[-2000:]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[BrowserContext]:
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": 1400, "height": 900})
        try:
            yield context
        finally:
            context.close()


def board_row(page: Page, host: str) -> Any:
    return page.locator("#board tbody tr", has_text=CPU).filter(has_text=host)


def test_log_in_acknowledge_and_watch_the_board(demo: dict[str, Any],
                                                browser: BrowserContext) -> None:
    started = time.monotonic()
    api, host = demo["api"], demo["host"]
    board = browser.new_page()
    board.goto(api["ui"])
    expect(board).to_have_url(f"{api['url']}/ui/login?next=%2Fui%2F")
    board.get_by_label("User name").fill(api["login"]["user"])
    board.get_by_label("Password").fill("not the password")
    board.get_by_role("button", name="Log in").click()
    expect(board.get_by_role("alert")).to_contain_text("Wrong user name or password")

    board.get_by_label("User name").fill(api["login"]["user"])
    board.get_by_label("Password").fill(api["login"]["password"])
    board.get_by_role("button", name="Log in").click()
    expect(board).to_have_url(api["ui"])
    expect(board.locator("header .user")).to_contain_text(f"{api['login']['user']} (admin)")

    # Chromium keeps the __Host- Secure cookie on http://127.0.0.1 (a secure context).
    [cookie] = [c for c in browser.cookies() if c["name"] == "__Host-poolwarden_session"]
    assert (cookie["secure"], cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (
        True, True, "Strict", "/")
    assert "expires" not in cookie or cookie["expires"] == -1  # ends with the browser

    row = board_row(board, host)
    expect(row).to_have_count(1)
    expect(row).to_contain_text("CRITICAL")
    expect(row.locator("a.inc")).to_contain_text("open")
    expect(board.locator(".counts")).to_contain_text("unhandled")
    incident_url = row.locator("a.inc").get_attribute("href")
    assert incident_url is not None

    # Acknowledge in a second tab; the board tab is left alone.
    incident = browser.new_page()
    incident.goto(f"{api['url']}{incident_url}")
    expect(incident.locator("h1")).to_contain_text(CPU)
    expect(incident.locator("table.timeline")).to_contain_text("opened")
    incident.get_by_label("Comment").fill("CPU fan ordered")
    incident.get_by_role("button", name="Acknowledge").click()
    expect(incident.locator(".facts")).to_contain_text("acknowledged by web:demo")
    expect(incident.locator("table.timeline")).to_contain_text("CPU fan ordered")
    expect(incident.get_by_role("button", name="Acknowledge")).to_have_count(0)

    # The board updates by itself (live fragment every 5 s), no reload.
    expect(row.locator("a.inc")).to_contain_text("acknowledged by web:demo", timeout=15_000)
    assert board.locator("#board").get_attribute("data-updated")
    expect(row).to_have_class("r-critical handled")

    # Other pages render with the demo's data.
    incident.goto(f"{api['url']}/ui/pools/{demo['pool']}")
    expect(incident.locator("table.layout")).to_contain_text(host)
    expect(incident.locator("table").first).to_contain_text("master")
    incident.goto(f"{api['url']}/ui/hosts/{host}")
    expect(incident.locator("section.chart-box svg.chart")).to_be_visible()
    incident.goto(f"{api['url']}/ui/notifications")
    expect(incident.locator("table.grid")).to_contain_text("sent")

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "board.png"
    shot.unlink(missing_ok=True)
    board.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Logout ends the session on the server: the board sends the browser back to login.
    board.get_by_role("button", name="Log out").click()
    expect(board).to_have_url(f"{api['url']}/ui/login")
    incident.goto(f"{api['url']}/ui/")
    expect(incident).to_have_url(f"{api['url']}/ui/login?next=%2Fui%2F")
    assert time.monotonic() - started < 60
