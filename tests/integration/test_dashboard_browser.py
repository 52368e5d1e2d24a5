"""The dashboard in a real browser: headless Chromium, driven by Selenium, against `mantis up`.

One walk through what a person does: open the page, see the example job's workers Started,
read the output tail and filter it with MQL (a bad query shows the master's 400), kill the job
(the token asked for, then a confirmation) and see it end, submit a new job from the page (its
stage 2 made scalable first, through the API), scale that stage and see the new worker start;
then the page on a phone's screen. The browser's console must hold no error but the bad
query's 400. Chromium and chromedriver are the Debian packages (`make test` installs them:
scripts/install_chromium.sh). On a failure the page's screenshot is saved in the test's tmp
folder (`dashboard-failure.png`); the last views are kept there too (`dashboard.png`,
`dashboard-phone.png`).
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException
from selenium.common.exceptions import StaleElementReferenceException as StaleElement
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

from mesoslite.local import free_port
from tests.integration.up_process import UpProcess, nothing_left

pytestmark = pytest.mark.timeout(120)

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
)
JOB = "synthetic-counts-1"
T = TypeVar("T")


@pytest.fixture
def up(tmp_path: Path) -> Iterator[UpProcess]:
    process = UpProcess(
        tmp_path / "data", free_port(), "--agents", "2", "--example", console=tmp_path / "up.out"
    )
    try:
        process.wait_for(f"example job {JOB} submitted", timeout=60)
        yield process
    finally:
        process.kill()
        nothing_left(process.data)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    if not CHROMEDRIVER.exists():
        pytest.fail(f"{CHROMEDRIVER} is missing: run scripts/install_chromium.sh (make test does)")
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not look for drivers online
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


def wait(
    driver: WebDriver, what: str, check: Callable[[WebDriver], T | None], timeout: float = 30
) -> T:
    """`check`'s first truthy value, polled until `timeout` (then a failure naming `what`)."""
    waiting = WebDriverWait(driver, timeout, 0.1, (NoSuchElementException, StaleElement))
    result = waiting.until(check, message=what)
    assert result  # until() returns only a truthy value
    return result


def texts(driver: WebDriver, css: str) -> list[str]:
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, css)]


def api(up: UpProcess, path: str, body: dict[str, Any] | None = None) -> Any:
    """A GET (or, with a body, a POST with the API token) of the master's API; its JSON."""
    request = urllib.request.Request(up.url + path)
    if body is not None:
        request.data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
        request.add_header("Authorization", f"Bearer {(up.data / 'api-token').read_text().strip()}")
    with urllib.request.urlopen(request, timeout=5) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


def click(driver: WebDriver, css: str) -> None:
    """Click what `css` selects once it is there (the page may have just redrawn it)."""

    def clicked(d: WebDriver) -> bool:
        d.find_element(By.CSS_SELECTOR, css).click()
        return True

    wait(driver, f"{css} clicked", clicked)


def confirm(driver: WebDriver, expected: str) -> None:
    wait(driver, "the confirmation", lambda d: d.find_element(By.ID, "confirm").is_displayed())
    question = driver.find_element(By.ID, "confirm-text").text
    assert expected in question, question
    click(driver, "#confirm-ok")


def started(driver: WebDriver, css: str = "") -> list[str]:
    return texts(driver, f"{css} tr.worker td.state")


def ended(driver: WebDriver) -> str | None:
    state = driver.find_element(By.ID, "job-state").text
    return state if state in ("Failed", "Completed") else None


def walk_through(driver: webdriver.Chrome, up: UpProcess, shots: Path) -> None:
    token = (up.data / "api-token").read_text().strip()
    driver.get(up.url + "/")
    wait(driver, "the stream live", lambda d: texts(d, "#conn") == ["live"])
    wait(driver, "the example job's 3 workers Started", lambda d: started(d) == ["Started"] * 3)
    assert texts(driver, "#job-id") == [JOB]
    stage2 = 'section.stage[data-stage="2"]'
    assert not driver.find_element(By.CSS_SELECTOR, f"{stage2} button.scale").is_displayed()
    # a laptop's screen: the lists beside the job, a stage's three charts side by side
    nav, job = (driver.find_element(By.CSS_SELECTOR, css) for css in ("nav", "#job"))
    assert job.location["x"] >= nav.location["x"] + nav.size["width"], (nav.rect, job.rect)
    charts = driver.find_elements(By.CSS_SELECTOR, f"{stage2} figure.chart")
    assert len({c.location["y"] for c in charts}) == 1, [c.rect for c in charts]

    # the output tail, then MQL: a bad query shows the master's 400, a good one filters
    wait(driver, "output lines", lambda d: len(texts(d, "#tail li")) >= 3)
    assert all(json.loads(line)["key"].startswith("k") for line in texts(driver, "#tail li"))
    mql = driver.find_element(By.ID, "mql")
    mql.send_keys("select key form x")
    click(driver, "#apply")
    error = wait(driver, "the query's error", lambda d: d.find_element(By.ID, "tail-error").text)
    assert "line 1, column 12" in error and "form" in error, error
    assert texts(driver, "#tail li") == []
    mql.clear()
    mql.send_keys('select key where key == "k1"')
    click(driver, "#apply")
    lines = wait(
        driver, "filtered lines", lambda d: t if len(t := texts(d, "#tail li")) >= 2 else None
    )
    assert all(json.loads(line) == {"key": "k1"} for line in lines), lines
    assert not driver.find_element(By.ID, "tail-error").is_displayed()
    chart = f'{stage2} figure[data-metric="cpuCores"] polyline.series'
    wait(driver, "a chart drawn", lambda d: d.find_elements(By.CSS_SELECTOR, chart))

    # kill, with the token asked for first, then a confirmation: the job ends
    click(driver, "#kill")
    wait(driver, "the token asked", lambda d: d.find_element(By.ID, "token-dialog").is_displayed())
    driver.find_element(By.ID, "token-input").send_keys(token)
    click(driver, "#token-ok")
    confirm(driver, f"Kill {JOB}?")
    state = wait(driver, "the job ended", ended)
    assert api(up, f"/api/v1/jobs/{JOB}")["jobMetadata"]["state"] == state
    assert not driver.find_element(By.ID, "kill").is_displayed()

    # stage 2 made scalable (REST), a job submitted from the page, its stage 2 scaled 2 -> 3
    cluster = api(up, "/api/v1/jobClusters/synthetic-counts")
    info = cluster["jars"][-1]["schedulingInfo"]
    info["stages"]["2"]["scalable"] = True
    update = {"name": "synthetic-counts", "user": "test", "version": "2", "schedulingInfo": info}
    api(up, "/api/v1/jobClusters/synthetic-counts/actions/updateSchedulingInfo", update)
    click(driver, 'li.cluster[data-name="synthetic-counts"] button.submit')
    confirm(driver, "Submit a new job of synthetic-counts?")
    second = "synthetic-counts-2"
    click(driver, f'li.job[data-job-id="{second}"]')
    wait(driver, "the new job's 3 workers Started", lambda d: started(d) == ["Started"] * 3)
    box = driver.find_element(By.CSS_SELECTOR, f"{stage2} input.scale-to")
    box.clear()
    box.send_keys("3")
    click(driver, f"{stage2} button.scale")
    confirm(driver, f"Scale stage 2 of {second} to 3 workers?")
    wait(
        driver,
        "stage 2's 3 workers Started",
        lambda d: started(d, stage2) == ["Started"] * 3,
        timeout=40,
    )
    stages = api(up, f"/api/v1/jobs/{second}")["stageMetadataList"]
    assert [s["numWorkers"] for s in stages] == [1, 3]
    history = driver.find_element(By.CSS_SELECTOR, f"{stage2} .history summary").text
    assert history == "Scaling history (1)", history

    # a phone's screen: one column, the charts one under another, nothing wider than it
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True},
    )
    wait(driver, "the phone's width", lambda d: d.execute_script("return innerWidth") == 390)
    overflow = driver.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the page is {overflow}px wider than a phone's screen"
    charts = driver.find_elements(By.CSS_SELECTOR, f"{stage2} figure.chart")
    assert len({c.location["x"] for c in charts}) == 1, [c.location for c in charts]
    driver.save_screenshot(str(shots / "dashboard-phone.png"))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_dashboard_in_chromium(up: UpProcess, browser: webdriver.Chrome, tmp_path: Path) -> None:
    try:
        walk_through(browser, up, tmp_path)
    except BaseException:
        browser.save_screenshot(str(tmp_path / "dashboard-failure.png"))
        raise
    browser.save_screenshot(str(tmp_path / "dashboard.png"))
    errors = [
        entry["message"]
        for entry in browser.get_log("browser")  # type: ignore[no-untyped-call]
        if entry["level"] == "SEVERE"
        and not ("jobconnectbyid" in entry["message"] and "status of 400" in entry["message"])
    ]
    assert not errors, errors
