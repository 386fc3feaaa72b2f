"""Headless Chromium (Debian's ``chromium`` package) driven by Playwright, signed in to the Airflow UI
of an embedded stack the way a person signs in: the simple auth manager's login form."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pushbutton.airflow_client import PASSWORD_FILE, read_password
from tests.prerequisites import missing

CHROMIUM = Path(os.environ.get("PUSHBUTTON_CHROMIUM", "/usr/bin/chromium"))
INSTALL = "apt-get install chromium (Debian's package; .ci/run installs it), or set PUSHBUTTON_CHROMIUM"
# no background networking: this machine's closed network refuses Chromium's own connections
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def airflow_ui(settings: Any, username: str = "admin") -> Iterator[Any]:
    """A Playwright page signed in to the stack's Airflow UI; the browser is closed afterwards."""
    if not CHROMIUM.is_file():
        missing(f"Chromium at {CHROMIUM}", INSTALL)
    try:
        from playwright import sync_api
    except ImportError:
        missing("the playwright package", "install the dev requirements (make venv)")
    password = read_password(Path(settings.home) / "airflow" / PASSWORD_FILE, username)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(30_000)
            page.goto(f"{settings.airflow_url}/")
            page.get_by_label("Username").fill(username)
            page.get_by_label("Password").fill(password)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(lambda url: "/auth/login" not in url)
            yield page
        finally:
            browser.close()
