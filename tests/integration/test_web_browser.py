"""The dashboard and science browser in headless Chromium while a stream runs.

A real ``stream`` (fake imager, two simulated groups, one block each) and a
real ``serve`` on a loopback port; Selenium drives Debian's ``chromium`` and
``chromium-driver``. Known truth: before data the dashboard shows its status
and an empty backlog; after the first group its mosaic preview appears, after
the second it changes to the newer mosaic; the eta-V plot then holds one
point per catalogue source (two epochs each), clicking one opens that
source's page with a two-point light curve and its cutouts, and clicking a
candidates-table row does the same. A third group arrives with one subband's
visibilities corrupt (`benchmarks.live_site.write_corrupt_copy`): its
conversion is quarantined and the dashboard's failures table lists it with
the reader's reason; after the good file is re-transferred, the requeue
button is refused without the operator token and, with the token typed in
the token field, sends the job back to pending (the dashboard says so, the
job's events record it, the table empties) and the job then converts. Screenshots go to
``test-artifacts/browser/`` (or ``$DSA110_TEST_ARTIFACTS``); their paths are
printed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.casa, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 420.0  # bounded; a quiet 2-core machine needs about a quarter of it


def _driver():
    if shutil.which("chromium") is None:
        pytest.skip("Debian chromium is not installed (scripts/setup.sh installs it)")
    driver_path = shutil.which("chromedriver")
    if driver_path is None:
        pytest.skip(
            "chromedriver is not installed (apt-get install chromium-driver; "
            "scripts/setup.sh installs it)"
        )
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium is not installed (the browser extra)"
    )
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1100",
        # no network beyond loopback: a page that needed another host breaks
        "--proxy-server=http://127.0.0.1:9",
        "--proxy-bypass-list=127.0.0.1",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(driver_path), options=options)


def _artifacts() -> Path:
    out = Path(os.environ.get("DSA110_TEST_ARTIFACTS", ROOT / "test-artifacts"))
    out = out / "browser"
    out.mkdir(parents=True, exist_ok=True)
    return out


def _api(site, path: str) -> str:
    import urllib.request

    try:
        with urllib.request.urlopen(site.url + path, timeout=10) as response:
            return response.read().decode()[:3000]
    except OSError as err:
        return f"{path}: {err}"


def _json(site, path: str):
    """The decoded JSON answer of one API request (the whole body)."""
    import urllib.request

    with urllib.request.urlopen(site.url + path, timeout=10) as response:
        return json.loads(response.read())


def _wait(predicate, what: str, site, deadline: float, step: float = 0.5):
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if not site.alive("stream") or not site.alive("serve"):
            break
        time.sleep(step)
    pytest.fail(
        f"timed out waiting for {what}; stream log tail:\n{site.log('stream')[-2500:]}"
        f"\nserve log tail:\n{site.log('serve')[-1500:]}"
        f"\njobs: {_api(site, '/api/jobs?limit=20')}"
        f"\nvariability: {_api(site, '/api/variability?limit=20')}"
    )


def _requeue_from_the_dashboard(browser, site, token, bad_group, deadline, shot):
    """The quarantined group's requeue button, without and with the token."""
    from selenium.webdriver.common.by import By

    def js(script: str):
        return browser.execute_script(script)

    browser.get(site.url + "/?poll=1")
    job_id = _wait(
        lambda: js(
            "const b = document.querySelector('#failures button[data-job]');"
            "return b ? b.dataset.job : null"
        ),
        "the quarantined group in the dashboard's failures table",
        site,
        deadline,
    )
    job = _json(site, f"/api/jobs/{job_id}")
    assert job["kind"] == "convert_group" and job["state"] == "quarantined"
    assert job["error_class"] == "InputDataError"
    assert "corrupt" in job["error_message"]
    row = browser.find_element(By.ID, "failures").text
    assert "quarantined" in row and "InputDataError" in row, row
    js("document.getElementById('failures').scrollIntoView()")
    shot("07-dashboard-quarantined")

    click = f"document.querySelector(\"#failures button[data-job='{job_id}']\").click()"
    js(click)  # no token typed yet: refused
    _wait(
        lambda: "requeue refused" in browser.find_element(By.ID, "action-result").text,
        "the refusal of a requeue without the operator token",
        site,
        deadline,
    )
    assert _json(site, f"/api/jobs/{job_id}")["state"] == "quarantined"

    assert len(site.repair(bad_group)) == 1  # the operator has it re-transferred
    browser.find_element(By.ID, "token").send_keys(token)
    js(click)
    result = _wait(
        lambda: (
            (t := browser.find_element(By.ID, "action-result").text)
            and "requeued" in t
            and t
        ),
        "the requeue's result on the dashboard",
        site,
        deadline,
    )
    assert f"job {job_id} (convert_group" in result and "now pending" in result
    _wait(
        lambda: (
            "no failed or quarantined job"
            in browser.find_element(By.ID, "failures").text
        ),
        "the failures table to empty after the requeue",
        site,
        deadline,
    )
    js("document.getElementById('action-result').scrollIntoView()")
    shot("08-dashboard-requeued")
    events = _json(site, f"/api/jobs/{job_id}/events?limit=50")["items"]
    events.reverse()  # oldest first
    at = next(i for i, e in enumerate(events) if e["to_state"] == "quarantined")
    back = [e for e in events[at:] if e["to_state"] == "pending"]
    assert back and "requeued by an operator (API" in back[0]["reason"], events
    _wait(
        lambda: _json(site, f"/api/jobs/{job_id}")["state"] == "done",
        "the requeued group to convert from the re-transferred file",
        site,
        deadline,
    )


def test_dashboard_and_browser_follow_a_running_stream(tmp_path) -> None:
    pytest.importorskip("casacore.tables")
    pytest.importorskip("uvicorn")
    from benchmarks.live_site import LiveSite
    from selenium.webdriver.common.by import By

    browser = _driver()
    site = LiveSite(tmp_path / "site", n_groups=3)
    token = secrets.token_hex(16)
    start = time.monotonic()
    deadline = start + DEADLINE_S
    shots = _artifacts()
    saved = []

    def shot(name: str) -> None:
        path = shots / f"{name}.png"
        browser.save_screenshot(str(path))
        saved.append(path)
        print(f"screenshot: {path}")

    def js(script: str):
        return browser.execute_script(script)

    try:
        site.start_stream()
        site.start_serve(operator_token=token)
        browser.get(site.url + "/?poll=1")
        # "unavailable" until the stream has created the state database
        _wait(
            lambda: (
                (t := browser.find_element(By.ID, "status").text).split(" ")[0]
                in {"healthy", "warning", "unhealthy"}
                and t
            ),
            "the dashboard's status",
            site,
            deadline,
        )
        _wait(
            lambda: js("return document.querySelector('#backlog-plot svg') !== null"),
            "the backlog plot",
            site,
            deadline,
        )
        assert browser.find_elements(By.ID, "mosaic-preview") == []
        assert (
            "no failed or quarantined job"
            in browser.find_element(By.ID, "failures").text
        )
        shot("01-dashboard-before-data")

        site.feed()
        first = _wait(
            lambda: js(
                "const i = document.getElementById('mosaic-preview');"
                "return i && i.complete && i.naturalWidth > 0 ?"
                " document.getElementById('mosaic').dataset.id : null"
            ),
            "the first mosaic preview on the dashboard",
            site,
            deadline,
        )
        queue = browser.find_element(By.ID, "queue").text
        assert "process_block" in queue and "done 1" in queue
        assert js("return document.getElementById('rtf').textContent") != "–"
        # no panel is wider than its box and the page no wider than the
        # window: long paths (the disk table) and error messages wrap
        assert js("return document.querySelectorAll('#disk td').length") > 0
        overflowing = js(
            "return [...document.querySelectorAll('section')]"
            ".filter(s => s.scrollWidth > s.clientWidth + 1).map(s => s.id)"
        )
        assert overflowing == [], overflowing
        assert js("return document.documentElement.scrollWidth <= window.innerWidth"), (
            "the dashboard is wider than the window"
        )
        shot("02-dashboard-first-mosaic")

        site.feed()
        second = _wait(
            lambda: js(
                "const i = document.getElementById('mosaic-preview');"
                "const id = document.getElementById('mosaic').dataset.id;"
                f"return i && i.complete && i.naturalWidth > 0 && id !== '{first}'"
                " ? id : null"
            ),
            "the dashboard to show the second mosaic",
            site,
            deadline,
        )
        assert second != first
        shot("03-dashboard-second-mosaic")
        # the third group arrives with one subband's visibilities corrupt:
        # its conversion is quarantined while the science pages are checked
        bad_group = site.feed(corrupt_subband=5)

        n_sources = len(site.observation.sky.name)

        def on_the_plot() -> int | None:
            # every catalogue source has eta and V once it has two epochs; a
            # log-log plot can only draw those above 0 (a debiased V, or an
            # eta, of exactly 0 is possible for a steady source)
            rows = _json(site, "/api/variability?limit=1000")["items"]
            if len(rows) < n_sources or any(r["n_epochs"] < 2 for r in rows):
                return None
            return sum(1 for r in rows if r["eta"] and r["v"])

        expected = _wait(
            on_the_plot, "eta and V of every source (two epochs)", site, deadline
        )
        assert expected > 0
        browser.get(site.url + "/variability?poll=1")
        _wait(
            lambda: (
                js(
                    "const s = document.querySelector('#etav svg');"
                    "return s ? parseInt(s.dataset.points) : 0"
                )
                >= expected
            ),
            "eta-V points for every source with eta and V above 0",
            site,
            deadline,
        )
        rows = browser.find_elements(By.CSS_SELECTOR, "#candidates tbody tr")
        assert len(rows) == n_sources
        shot("04-variability")

        point = browser.find_element(By.CSS_SELECTOR, "#etav g.pt")
        target = point.get_attribute("data-href")
        browser.execute_script("arguments[0].dispatchEvent(new Event('click'))", point)
        _wait(
            lambda: browser.current_url.endswith(target),
            "the source page after clicking an eta-V point",
            site,
            deadline,
        )
        _wait(
            lambda: (
                js(
                    "const s = document.querySelector('#lightcurve svg');"
                    "return s ? parseInt(s.dataset.points) : 0"
                )
                == 2
            ),
            "a two-point light curve",
            site,
            deadline,
        )
        assert len(browser.find_elements(By.CSS_SELECTOR, "#lightcurve rect")) >= 2
        _wait(
            lambda: js(
                "const c = document.querySelectorAll('#cutouts img');"
                "return c.length === 2 &&"
                " [...c].every(i => i.complete && i.naturalWidth > 0)"
            ),
            "the cutouts of both epochs",
            site,
            deadline,
        )
        shot("05-source")

        browser.get(site.url + "/variability")
        row = _wait(
            lambda: browser.find_elements(By.CSS_SELECTOR, "#candidates tbody tr"),
            "the candidates table",
            site,
            deadline,
        )[-1]
        name = row.get_attribute("data-source")
        row.find_elements(By.TAG_NAME, "td")[-1].click()
        _wait(
            lambda: browser.current_url.endswith(f"/sources/{name}"),
            "the source page after clicking a table row",
            site,
            deadline,
        )
        mosaics = browser.execute_script(
            "return fetch('/api/mosaics').then(r => r.json())"
        )
        browser.get(f"{site.url}/mosaics/{mosaics['items'][0]['id']}")
        _wait(
            lambda: browser.find_elements(By.CSS_SELECTOR, "#overlay a"),
            "the catalogue overlay on the mosaic page",
            site,
            deadline,
        )
        shot("06-mosaic")
        print(f"browser test: science pages done at {time.monotonic() - start:.1f} s")
        _requeue_from_the_dashboard(browser, site, token, bad_group, deadline, shot)
        print(f"browser test: {time.monotonic() - start:.1f} s with the stream")
    finally:
        browser.quit()
        site.stop()
    assert all(p.stat().st_size > 0 for p in saved)
