"""The report in a real browser: headless Chromium driven by selenium.

Chromium and chromedriver come from Debian (``apt-get install chromium chromium-driver``;
``scripts/test.sh`` installs them when it can). Outside CI a machine without them skips
these tests and says why; under CI (``CI`` set) they must run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from _report_fixtures import campaign, coverage, history, outcome, summary

from conform import report
from conform.outcome import Verdict

CHROMIUM = os.environ.get("FX_CONFORM_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("FX_CONFORM_CHROMEDRIVER", "/usr/bin/chromedriver")
LOAD_LIMIT_S = 3.0

pytestmark = pytest.mark.slow


def _missing() -> str | None:
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (Path(path).is_file() or shutil.which(path)):
            return f"{path} is missing (apt-get install {package})"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    missing = _missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"the browser tests must run under CI, but {missing}")
        pytest.skip(f"browser tests need Chromium: {missing}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--disable-extensions"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _open(driver, path: Path) -> None:
    driver.get(path.resolve().as_uri())
    driver.get_log("browser")  # drop anything logged before this page


def _shown(driver) -> list[str]:
    """Ids of the triage rows a reader sees (one round trip, whatever the number of rows)."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#triage-table tbody.origin'))"
        ".filter(function (b) { return b.offsetParent !== null; }).map(function (b) { return b.id; });")


def _page(tmp_path: Path, outcomes=None, **kwargs) -> Path:
    outcomes = campaign(400) if outcomes is None else outcomes
    return report.write(tmp_path, outcomes, summary(outcomes), **kwargs)


def test_the_report_loads_without_console_errors(browser, tmp_path: Path) -> None:
    path = _page(tmp_path, history=history(3), coverage=coverage(tmp_path))
    browser.get(path.resolve().as_uri())
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert errors == [], errors
    controls = browser.find_element("id", "triage-controls")
    assert controls.is_displayed(), "the script ran (the page's CSP admits it)"
    assert "origins shown" in browser.find_element("id", "triage-shown").text
    assert len(browser.find_elements("css selector", "svg.plot")) == 3


def test_search_and_filters_hide_and_show_rows(browser, tmp_path: Path) -> None:
    outcomes = [
        outcome(1, verdict=Verdict.FAIL, transform="split_module", place="upstream:outputs", message="apples"),
        outcome(2, verdict=Verdict.FAIL, transform="normalize", place="reference:outputs", message="pears"),
        outcome(3, verdict=Verdict.KNOWN, transform="normalize", place="fingerprint", known_id="normalize-known",
                message="plums"),
    ]
    _open(browser, _page(tmp_path, outcomes))
    assert len(_shown(browser)) == 3
    search = browser.find_element("id", "triage-search")
    search.send_keys("pears")
    shown = _shown(browser)
    assert len(shown) == 1
    assert "pears" in browser.find_element("id", shown[0]).text
    assert browser.find_element("id", "triage-shown").text == "1 of 3 origins shown"
    search.clear()
    search.send_keys(" ")  # clear() fires no input event
    assert len(_shown(browser)) == 3
    from selenium.webdriver.support.select import Select

    Select(browser.find_element("id", "triage-verdict")).select_by_value("known")
    shown = _shown(browser)
    assert len(shown) == 1 and "plums" in browser.find_element("id", shown[0]).text
    Select(browser.find_element("id", "triage-verdict")).select_by_value("")
    Select(browser.find_element("id", "triage-transform")).select_by_value("normalize")
    assert len(_shown(browser)) == 2


def test_clicking_a_header_sorts_the_rows(browser, tmp_path: Path) -> None:
    outcomes = [outcome(i, verdict=Verdict.FAIL, place=f"p{i % 3}") for i in range(6)]
    outcomes += [outcome(10 + i, verdict=Verdict.FAIL, place="p1") for i in range(5)]
    _open(browser, _page(tmp_path, outcomes))

    def counts() -> list[int]:
        return [int(c.text) for c in browser.find_elements("css selector", "#triage-table td[data-col=count]")]

    header = browser.find_element("css selector", "#triage-table th[data-sort=count]")
    header.click()
    assert counts() == sorted(counts()) and counts()[0] == 2
    header.click()
    assert counts() == sorted(counts(), reverse=True) and counts()[0] == 7


def test_a_script_in_a_message_is_shown_as_text(browser, tmp_path: Path) -> None:
    evil = "<script>alert('boom')</script><img src=x onerror=alert(2)>"
    outcomes = [outcome(1, verdict=Verdict.FAIL, message=evil, exception=evil)]
    _open(browser, _page(tmp_path, outcomes))
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 - reading it is what raises
    browser.find_element("css selector", "#triage-table details summary").click()
    message = browser.find_element("css selector", "#triage-table dd.msg")
    assert message.text == evil
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


def test_a_report_of_fifty_thousand_outcomes_stays_usable(browser, tmp_path: Path) -> None:
    outcomes = []
    for i in range(50_000):
        if i % 50 == 0:
            outcomes.append(outcome(i, verdict=Verdict.FAIL if i % 100 else Verdict.KNOWN,
                                    known_id=None if i % 100 else "normalize-known",
                                    transform=("split_module", "normalize", "shape_prop")[i % 3],
                                    place=f"upstream:p{(i // 50) % 300}", t=i / 500))
        else:
            outcomes.append(outcome(i, transform=("split_module", "normalize", "shape_prop")[i % 3], t=i / 500))
    path = _page(tmp_path, outcomes, history=history(10))
    size = path.stat().st_size
    assert size < 5_000_000, f"index.html is {size / 1e6:.1f} MB"
    browser.get(path.resolve().as_uri())
    load = browser.execute_script(
        "var t = performance.timing; return (t.loadEventEnd - t.navigationStart) / 1000;")
    assert 0 < load < LOAD_LIMIT_S, f"the page took {load:.2f} s to load"
    search = browser.find_element("id", "triage-search")
    search.send_keys("upstream:p1")
    search.send_keys("7")
    # one keystroke's filtering, timed inside the page
    took = browser.execute_script(
        "var s = document.getElementById('triage-search'), t = performance.now();"
        "s.dispatchEvent(new Event('input')); return (performance.now() - t) / 1000;")
    assert took < 0.5, f"filtering took {took:.2f} s"
    shown = _shown(browser)
    total = len(browser.find_elements("css selector", "#triage-table tbody.origin"))
    assert total == 300 and len(shown) == 11  # p17, p170 ... p179


def test_a_link_to_an_origin_shows_its_examples(browser, tmp_path: Path) -> None:
    _open(browser, _page(tmp_path, campaign(2000)))
    link = browser.find_element("css selector", "ol.origins a")
    target = link.get_attribute("href").split("#", 1)[1]
    link.click()
    body = browser.find_element("id", target)
    assert body.find_element("css selector", "details").get_attribute("open") is not None
    top = browser.execute_script("return arguments[0].getBoundingClientRect().top;", body)
    covered = browser.execute_script(
        "return document.querySelector('header').getBoundingClientRect().bottom"
        " + document.querySelector('#triage-table thead').getBoundingClientRect().height;")
    assert covered - 1 <= top < browser.execute_script("return window.innerHeight;"), \
        "in view, below the sticky headers"
    assert body.find_element("css selector", "article.example").is_displayed()
