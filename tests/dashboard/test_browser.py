"""The dashboard in a real headless Chromium, against a real local fleet: a server
and agents replaying the drive, the dashboard as its own process, signed in with the
fleet's own analyst ("demo") and reader ("viewer") credentials."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from oodida.demo import EXAMPLES, KMEANS, STATS, speeding
from oodida.testing import LocalFleet, stop_processes
from oodida.wire.messages import ModuleSource, WindowSpec
from tests.dashboard.helpers import VEHICLES, Dashboard, secret_of, start_dashboard

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.timeout(240)]

# Records, in the page itself, when each iteration row first appeared (the browser's
# clock is this machine's, as is the server's `closed` stamp).
WATCH_ITERATIONS = """
window.__seen = {}; window.__marker = 'no reload';
function scan() { document.querySelectorAll('#iterations tr[id^="iteration-"]').forEach(function (e) {
  if (!(e.id in window.__seen)) window.__seen[e.id] = Date.now() / 1000; }); }
scan(); window.__initial = Object.keys(window.__seen);
new MutationObserver(scan).observe(document.body, {childList: true, subtree: true});
"""


def wait(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Until `check()` is true; an element swapped out under it (stale) counts as not yet."""
    from selenium.common.exceptions import StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except StaleElementReferenceException:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def fresh(browser: Any, css: str, act: Callable[[Any], Any] = lambda e: e.text) -> Any:
    """`act` on the element now at `css`: fragments are swapped live, so an element
    found a moment ago may be gone (stale); look again until it holds."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    def attempt() -> Any:
        try:
            found = browser.find_elements(By.CSS_SELECTOR, css)
            return found and (act(found[0]) or True)
        except StaleElementReferenceException:
            return False

    return wait(f"{css} to hold still", attempt, 10)


def sign_in(browser: Any, url: str, identity: str, secret: str, role: str = "analyst") -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.delete_all_cookies()
    browser.get(f"{url}/signin")
    browser.find_element(By.ID, "identity").clear()
    browser.find_element(By.ID, "identity").send_keys(identity)
    Select(browser.find_element(By.ID, "role")).select_by_value(role)
    browser.find_element(By.ID, "secret").send_keys(secret)
    browser.find_element(By.ID, "signin").click()


def reason(browser: Any) -> str:
    from selenium.webdriver.common.by import By

    found = browser.find_elements(By.ID, "reason")
    return found[0].text if found else ""


def on_signin_with(browser: Any, words: str, timeout: float = 30.0) -> str:
    return wait(f"the sign-in page saying {words!r}",
                lambda: browser.current_url.endswith("/signin") and words in reason(browser) and reason(browser),
                timeout)


def shot(browser: Any, report_dir: Path, name: str) -> Path:
    path = report_dir / f"{name}.png"
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1600, max(1100, min(int(height) + 120, 5000)))  # the whole page
    try:
        browser.save_screenshot(str(path))
    finally:
        browser.set_window_size(1600, 1100)
    assert path.stat().st_size > 10_000, f"{path} looks empty"
    return path


def fleet_call(fleet: LocalFleet, work: Callable[[Any], Any]) -> Any:
    """Run `work(client)` with a fresh analyst client of the fleet."""

    async def go() -> Any:
        client = await fleet.client()
        try:
            return await work(client)
        finally:
            await client.close()

    return asyncio.run(asyncio.wait_for(go(), 60))


def submit(fleet: LocalFleet, spec: Any) -> int:
    return fleet_call(fleet, lambda c: c.submit(spec)).assignment  # type: ignore[no-any-return]


def state_of(fleet: LocalFleet, assignment: int) -> str:
    async def look(c: Any) -> str:
        status = await c.status()
        return next(a.state for a in status.assignments if a.assignment == assignment)

    return fleet_call(fleet, look)  # type: ignore[no-any-return]


def test_analyst_sees_every_vehicle_on_the_fleet_page(browser: Any, fleet: LocalFleet, dashboard: Dashboard,
                                                      report_dir: Path) -> None:
    from selenium.webdriver.common.by import By

    sign_in(browser, dashboard.url, "demo", secret_of(fleet.analyst_credentials))
    wait("the fleet page", lambda: browser.current_url.endswith("/fleet"))
    [cookie] = [c for c in browser.get_cookies() if c["name"] == "oodida_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and len(cookie["value"]) >= 40, cookie
    assert not browser.execute_script("return document.cookie.includes('oodida_session')")  # no script reads it
    for vehicle in fleet.vehicle_ids:
        wait(f"{vehicle} online", lambda v=vehicle: "online" in browser.find_element(By.ID, f"vehicle-{v}").text, 5)
    count = browser.find_element(By.ID, "fleet-count")
    assert count.get_attribute("data-vehicles") == str(VEHICLES)
    # live: the frames/s column fills in from successive status reads, with no reload
    browser.execute_script("window.__marker = 'no reload'")
    wait("frames/s of every vehicle, from the live stream",
         lambda: all(e.text not in ("", "—") for e in browser.find_elements(By.CSS_SELECTOR, "td.fps"))
         and browser.execute_script("return document.body.getAttribute('data-updated')"), 20)
    assert browser.execute_script("return window.__marker") == "no reload"
    shot(browser, report_dir, "fleet")


def test_iterations_arrive_live_and_a_deploy_shows_on_the_chart(browser: Any, fleet: LocalFleet, dashboard: Dashboard,
                                                                report_dir: Path) -> None:
    from selenium.webdriver.common.by import By

    spec = msgspec.structs.replace(speeding(), iterations=5, window=WindowSpec(amount=2.0, unit="s", kind="next"))
    assignment = submit(fleet, spec)
    sign_in(browser, dashboard.url, "demo", secret_of(fleet.analyst_credentials))
    wait("the fleet page", lambda: browser.current_url.endswith("/fleet"))
    browser.get(f"{dashboard.url}/assignments/{assignment}")
    browser.execute_script(WATCH_ITERATIONS)
    initial = set(browser.execute_script("return window.__initial"))

    closed: dict[int, float] = {}
    deployed = threading.Event()
    failures: list[BaseException] = []

    async def follow_and_deploy() -> None:
        client = await fleet.client()
        try:
            async for item in client.results(assignment, follow=True):
                if not hasattr(item, "iteration"):
                    return
                closed[item.iteration] = item.closed
                if item.iteration == 1:  # a second analyst replaces the module mid-run
                    v2 = ModuleSource(name="speeding_v2.py", source=(EXAMPLES / "speeding_v2.py").read_text())
                    deployer = await fleet.client()
                    try:
                        async for _ in deployer.deploy(assignment=assignment, side="on_board", module=v2):
                            pass
                    finally:
                        await deployer.close()
                    deployed.set()
        finally:
            await client.close()

    def run() -> None:
        try:
            asyncio.run(asyncio.wait_for(follow_and_deploy(), 150))
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            failures.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    wait("the deploy", deployed.is_set, 90)
    wait("the deploy marker on a chart", lambda: any(
        "deploy" in e.text for e in browser.find_elements(By.CSS_SELECTOR, "#charts .marker-deploy")), 15)
    thread.join(150)
    assert not failures, failures
    assert len(closed) == 5
    wait("the last iteration on the page", lambda: browser.find_elements(By.ID, "iteration-5"), 10)
    seen = browser.execute_script("return window.__seen")
    late = {}
    for n, t in closed.items():
        key = f"iteration-{n}"
        if key in initial:
            continue
        assert key in seen, f"{key} never appeared; seen {sorted(seen)}"
        late[n] = seen[key] - t
    assert late, "no iteration closed while the page was open"
    assert all(delay <= 2.0 for delay in late.values()), f"seconds from close to the page: {late}"
    assert browser.execute_script("return window.__marker") == "no reload"
    # the deploy took over at a later iteration: the version table says which, the chart marks it
    wait("the deploy in the version table, with the iteration it took over at",
         lambda: "deploy" in (t := browser.find_element(By.ID, "versions").text) and "iteration" in t, 10)
    assert browser.find_elements(By.CSS_SELECTOR, "#charts svg.chart .point")
    print(f"iteration close -> page, seconds: {late}")
    shot(browser, report_dir, "assignment")


def test_built_in_methods_get_their_charts(browser: Any, fleet: LocalFleet, dashboard: Dashboard,
                                           report_dir: Path) -> None:
    from selenium.webdriver.common.by import By

    stats = msgspec.structs.replace(
        STATS, iterations=2, window=WindowSpec(amount=2.0, unit="s", kind="next"), name="statistics",
        on_board=["mean", "min", "max", "quantiles", "histogram"],
        params={**STATS.params, "q": [0.1, 0.25, 0.5, 0.75, 0.9]},
    )
    kmeans = msgspec.structs.replace(KMEANS, iterations=3, window=WindowSpec(amount=5.0, unit="s", kind="latest"))
    first, second = submit(fleet, stats), submit(fleet, kmeans)
    sign_in(browser, dashboard.url, "demo", secret_of(fleet.analyst_credentials))
    wait("the fleet page", lambda: browser.current_url.endswith("/fleet"))
    browser.get(f"{dashboard.url}/assignments/{first}")
    wait("both iterations", lambda: browser.find_elements(By.ID, "iteration-2"), 60)
    titles = [e.get_attribute("aria-label") for e in browser.find_elements(By.CSS_SELECTOR, "#charts svg.chart")]
    for signal in ("SPEED", "STEER_ANGLE_SENSOR.STEER_ANGLE"):
        for what in ("mean", "min", "max", "quantiles"):
            assert f"{what} of {signal}" in titles, titles
        assert f"histogram of {signal}, iteration 2" in titles, titles
    assert browser.find_elements(By.CSS_SELECTOR, "svg.histogram rect.bar")
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.series polygon.band")) >= 2 * 4  # spreads and quantile bands
    wait("every vehicle ok in the table", lambda: len(rows := browser.find_elements(By.CSS_SELECTOR,
                                                                                    "#vehicles tbody tr"))
         == VEHICLES and all("ok" in r.text for r in rows), 10)
    shot(browser, report_dir, "assignment-statistics")
    browser.get(f"{dashboard.url}/assignments/{second}")
    wait("three k-means iterations", lambda: browser.find_elements(By.ID, "iteration-3"), 60)
    wait("the centroids", lambda: len(browser.find_elements(By.CSS_SELECTOR, "svg.centroids circle.centroid")) >= 3 * 3)
    shot(browser, report_dir, "assignment-kmeans")


def test_assignments_page_and_analyst_cancel(browser: Any, fleet: LocalFleet, dashboard: Dashboard,
                                             report_dir: Path) -> None:
    from selenium.webdriver.common.by import By

    stats = submit(fleet, msgspec.structs.replace(STATS, iterations=3, name="stats for the page"))
    doomed = submit(fleet, msgspec.structs.replace(STATS, iterations=0, name="until cancelled"))
    sign_in(browser, dashboard.url, "demo", secret_of(fleet.analyst_credentials))
    wait("the fleet page", lambda: browser.current_url.endswith("/fleet"))
    browser.get(f"{dashboard.url}/assignments")
    wait("the assignment rows", lambda: browser.find_elements(By.ID, f"assignment-{doomed}"))
    assert browser.find_element(By.ID, f"assignment-{stats}")
    texts: list[str] = []
    fresh(browser, f"#assignment-{doomed}", lambda e: texts.append(e.text))
    assert "running" in texts[0]
    shot(browser, report_dir, "assignments")
    fresh(browser, f"#assignment-{doomed} button.cancel", lambda e: e.click())
    wait("the cancel's answer", lambda: f"assignment {doomed} is cancelled" in browser.page_source)
    assert state_of(fleet, doomed) == "cancelled"


def test_reader_sees_no_cancel_and_a_forged_cancel_is_refused_by_the_server(
    browser: Any, fleet: LocalFleet, dashboard: Dashboard, report_dir: Path
) -> None:
    from selenium.webdriver.common.by import By

    running = submit(fleet, msgspec.structs.replace(STATS, iterations=0, name="reader looks on"))
    try:
        sign_in(browser, dashboard.url, "viewer", secret_of(fleet.reader_credentials), role="reader")
        wait("the fleet page", lambda: browser.current_url.endswith("/fleet"))
        assert len(browser.find_elements(By.CSS_SELECTOR, "tr[id^='vehicle-']")) == VEHICLES
        browser.get(f"{dashboard.url}/assignments")
        wait("the assignment", lambda: browser.find_elements(By.ID, f"assignment-{running}"))
        assert not browser.find_elements(By.CSS_SELECTOR, "button.cancel")
        browser.get(f"{dashboard.url}/assignments/{running}")
        wait("the state", lambda: "running" in browser.find_element(By.ID, "a-summary").text, 10)
        assert not browser.find_elements(By.CSS_SELECTOR, "button.cancel")
        shot(browser, report_dir, "reader-assignment")
        # forge the analyst's form, with the reader's own valid CSRF token
        browser.execute_script(
            "var f = document.createElement('form'); f.method = 'post'; f.action = arguments[0];"
            "var i = document.createElement('input'); i.name = 'csrf';"
            "i.value = document.querySelector('form.signout input[name=csrf]').value;"
            "f.appendChild(i); document.body.appendChild(f); f.submit();",
            f"/assignments/{running}/cancel",
        )
        flash = wait("the refusal", lambda: [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".flash")])
        # the server's words (wire's role table on the server side), not the dashboard's
        assert "refused" in flash[0] and "not allowed from a reader" in flash[0], flash
        assert state_of(fleet, running) == "running"
        # and without the token the dashboard itself refuses before anything is sent
        browser.execute_script(
            "var f = document.createElement('form'); f.method = 'post'; f.action = arguments[0];"
            "document.body.appendChild(f); f.submit();", f"/assignments/{running}/cancel")
        wait("the CSRF refusal", lambda: "CSRF" in browser.page_source)
        assert state_of(fleet, running) == "running"
    finally:
        fleet_call(fleet, lambda c: c.cancel(running))


def test_a_wrong_secret_ends_on_the_sign_in_page_with_the_reason(browser: Any, fleet: LocalFleet,
                                                                 dashboard: Dashboard, report_dir: Path) -> None:
    sign_in(browser, dashboard.url, "demo", "not-the-secret-of-demo-at-all")
    text = on_signin_with(browser, "refused")
    assert "wrong proof" in text, text
    shot(browser, report_dir, "signin-wrong-secret")


def test_a_revoked_credential_ends_the_dashboard_session(browser: Any, fleet: LocalFleet, dashboard: Dashboard,
                                                         report_dir: Path) -> None:
    from selenium.webdriver.common.by import By

    config = str(fleet.workdir / "server.toml")
    added = subprocess.run([sys.executable, "-m", "oodida", "credentials", "add", "temp-reader", "--role", "reader",
                            "--config", config], capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr
    secret = added.stdout.strip().splitlines()[-1]
    sign_in(browser, dashboard.url, "temp-reader", secret, role="reader")
    wait("the fleet page", lambda: browser.current_url.endswith("/fleet"))
    assert browser.find_element(By.ID, "vehicle-car-1")
    revoked = subprocess.run([sys.executable, "-m", "oodida", "credentials", "revoke", "temp-reader", "--config",
                              config],
                             capture_output=True, text=True, timeout=60)
    assert revoked.returncode == 0, revoked.stderr
    # no click, no reload: the server ends the connection, the page's stream says so
    text = on_signin_with(browser, "revoked", timeout=20)
    assert "the server ended the session" in text, text
    shot(browser, report_dir, "signin-revoked")
    browser.get(f"{dashboard.url}/fleet")  # the old cookie opens nothing
    assert browser.current_url.endswith("/signin")


def test_an_expired_session_ends_on_the_sign_in_page(browser: Any, fleet: LocalFleet, tmp_path: Path,
                                                     report_dir: Path) -> None:
    short = start_dashboard(fleet, tmp_path, "--session-max-age", "4")
    try:
        sign_in(browser, short.url, "demo", secret_of(fleet.analyst_credentials))
        wait("the fleet page", lambda: browser.current_url.endswith("/fleet"))
        text = on_signin_with(browser, "expired", timeout=15)
        assert "sign in again" in text
        shot(browser, report_dir, "signin-expired")
    finally:
        stop_processes([short.proc], 10)  # type: ignore[list-item]


def test_a_vehicle_that_goes_offline_comes_first_with_since_when(browser: Any, fleet: LocalFleet,
                                                                  dashboard: Dashboard, report_dir: Path) -> None:
    """Last in this module: it takes car-3 away from the fleet the others share."""
    from selenium.webdriver.common.by import By

    sign_in(browser, dashboard.url, "viewer", secret_of(fleet.reader_credentials), role="reader")
    wait("the fleet page", lambda: browser.current_url.endswith("/fleet"))
    fresh(browser, "#vehicle-car-3", lambda e: None)
    browser.execute_script("window.__marker = 'no reload'")
    fleet.kill_agent("car-3")
    wait("car-3 offline, first", lambda: (rows := browser.find_elements(By.CSS_SELECTOR, "#fleet-table tbody tr"))
         and rows[0].get_attribute("id") == "vehicle-car-3" and "offline since" in rows[0].text, 20)
    texts: list[str] = []
    fresh(browser, "#vehicle-car-3", lambda e: texts.append(e.text))
    assert "offline" in texts[0].split("\n")[0] or "offline" in texts[0]
    assert browser.find_element(By.ID, "fleet-count").get_attribute("data-online") == str(VEHICLES - 1)
    assert browser.execute_script("return window.__marker") == "no reload"
    shot(browser, report_dir, "fleet-offline")
