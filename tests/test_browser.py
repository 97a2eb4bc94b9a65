"""The review in a real browser: headless Chromium (Debian's `chromium`, driven by Playwright)
against `flowfence serve` on 127.0.0.1, then report.html opened from disk.

From `flowfence run` on the bundled demo to a dismissed and an accepted namespace with a
reason, the next `flowfence run` honouring both, and a hostile reason shown as text. Screenshots
of each page go to the test's folder, and also to $FLOWFENCE_SCREENSHOTS_DIR when it is set
(docs/images/ for the README's tour). Skips when Chromium or Playwright is missing, fails then
under FLOWFENCE_REQUIRE_TOOLS=1 (tests/tools.py).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tools
from conftest import DemoInputs
from serve_support import serving

from flowfence.cli.app import main
from flowfence.review import decisions as dec

SCREENSHOTS_ENV = "FLOWFENCE_SCREENSHOTS_DIR"
HOSTILE = 'retired <script>alert("x")</script><img src=x onerror=alert(1)>'
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def _playwright() -> None:
    if importlib.util.find_spec("playwright") is not None:
        return
    message = "playwright not installed (drives Chromium)"
    if tools.required():
        pytest.fail(f"{message}; {tools.REQUIRE_ENV}=1 requires it", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def browser_page() -> Iterator[Any]:
    chromium = tools.need("chromium", "the browser tests drive it headless")
    _playwright()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            dialogs: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.dialogs = dialogs
            yield page
        finally:
            browser.close()


def shoot(page: Any, folder: Path, name: str, *, full: bool = False) -> Path:
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=full)
    assert path.stat().st_size > 10_000, f"{name}: an empty screenshot"
    target = os.environ.get(SCREENSHOTS_ENV)
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)
    return path


def entry(out: Path, ns: str) -> dict[str, Any]:
    data = json.loads((out / "report.json").read_text())
    found: dict[str, Any] = next(e for e in data["namespaces"] if e["namespace"] == ns)
    return found


def test_review_in_the_browser(browser_page: Any, demo_inputs: DemoInputs, tmp_path: Path) -> None:
    page, out, shots = browser_page, tmp_path / "out", tmp_path / "screenshots"
    assert main(demo_inputs.run_args(out)) == 0
    assert entry(out, "cart")["stagedAction"] == "Learn"
    existing = str(demo_inputs.policies)
    # A known default author, whoever runs the test (it shows in the screenshots).
    who = {"USER": "reviewer", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    args = ("--existing-policies", existing, "--now", demo_inputs.now)
    with serving(out, *args, env=who) as server:
        # The overview: every namespace, sortable.
        page.goto(server.origin + "/")
        assert page.locator("#namespaces tbody tr").count() == 15
        shoot(page, shots, "overview")
        page.click("#namespaces thead >> text=egress rules")
        page.click("#namespaces thead >> text=egress rules")  # again: descending
        assert page.locator("#namespaces tbody tr").first.get_attribute("data-namespace") == (
            "monitoring"
        )
        # The traffic map: a cell leads to the rules behind it.
        page.goto(server.origin + "/map")
        assert page.locator(".map svg a").count() > 10
        shoot(page, shots, "traffic-map")
        links = page.eval_on_selector_all(
            ".map svg a",
            "els => els.map(e => e.getAttribute('xlink:href') || e.getAttribute('href'))",
        )
        page.locator(".map svg a").nth(links.index("/namespaces/frontend")).click()
        page.wait_for_url("**/namespaces/frontend")
        # A namespace: its rules, YAML, what it would deny; dismiss it with a hostile reason.
        page.goto(server.origin + "/")
        page.click("#namespaces >> text=cart")
        page.wait_for_url("**/namespaces/cart")
        assert page.locator("table.rules").first.is_visible()
        assert "namespace-isolation.cart" in page.locator("#yaml").inner_text()
        shoot(page, shots, "namespace")
        page.fill("textarea[name=reason]", HOSTILE)
        page.fill("input[name=author]", "alice")
        page.click("button[value=dismiss]")
        page.wait_for_selector("#flash")
        assert dec.load(out).entries["cart"].reason == HOSTILE
        # Shown at once, as text: no dialog opened, no element made from the reason.
        assert page.locator("#decision .reason").inner_text() == HOSTILE
        assert page.locator("#decision img, #decision script").count() == 0
        assert "next flowfence run applies it" in page.locator("#decision").inner_text()
        # Accept another one with an expiry.
        page.goto(server.origin + "/namespaces/ads")
        page.fill("textarea[name=reason]", "reviewed in the browser")
        page.fill("input[name=expires]", "30d")
        page.click("button[value=accept]")
        page.wait_for_selector("#flash")
        accepted = dec.load(out).entries["ads"]
        assert (accepted.decision, accepted.reason) == ("accept", "reviewed in the browser")
        assert accepted.author == "reviewer"  # the default: $USER, as on the command line
        assert accepted.expires is not None
        shoot(page, shots, "namespace-decided")
        # The next run honours both.
        assert main(demo_inputs.run_args(out)) == 0
        assert entry(out, "cart")["stagedAction"] == "Ignore"
        assert not (out / "policies" / "cart.yaml").exists()
        assert entry(out, "ads")["stagedAction"] == "Set"
        assert "stagedAction: Set" in (out / "policies" / "ads.yaml").read_text()
        page.goto(server.origin + "/")
        row = page.locator('#namespaces tr[data-namespace="cart"]')
        assert "dismiss" in row.inner_text() and "next run" not in row.inner_text()
        assert page.dialogs == []
    # report.html from disk: self-contained, the reason as text, the overview filterable.
    page.goto((out / "report.html").as_uri())
    assert page.locator("#namespaces tbody tr").count() == 15
    assert HOSTILE in page.locator("#ns-cart").inner_text()
    assert page.locator("#ns-cart img, #ns-cart script").count() == 0
    page.fill("#filter", "dismiss")
    visible = page.locator("#namespaces tbody tr:visible")
    assert visible.count() == 1 and "cart" in visible.inner_text()
    page.fill("#filter", "")
    shoot(page, shots, "report-html")
    assert page.dialogs == []
