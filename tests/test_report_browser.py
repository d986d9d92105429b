"""The HTML report in a real browser: headless Chromium driven by selenium through chromedriver.

Set-up: ``tests/browser_setup.sh`` installs Debian's ``chromium`` and ``chromium-driver`` when they are missing
(root and apt-get needed; otherwise the test skips and says why); selenium comes with the ``test`` extra.
Checks, at 1400 px (a desktop) and at 390 px (a phone, emulated with ``mobile: true`` so that the page's
``<meta name=viewport>`` counts): the header shows the srbench version, the date and the runs' hardware; the
axial, coronal and sagittal panels are displayed; the page does not scroll sideways (wide tables and panels
scroll inside their own box); box-plot text stays legible (10-point labels drawn at 100 dpi keep at least 8 CSS
pixels). At 1400 px also: the leaderboard table renders with one row per run; clicking a column header sorts its
rows (ascending, then descending, missing values last; text columns alphabetically); every <img> loads
(complete, naturalWidth > 0) although the browser cannot reach any host; no error in the browser console.
Full-page screenshots are kept as test artefacts: ``report.png``, ``report-390.png`` (and the page,
``report.html``) in pytest's tmp dir, copied to ``$SRBENCH_TEST_ARTIFACTS`` when that is set.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from test_report import craft, two_runs  # noqa: F401 - two_runs is a fixture, shared with test_report.py

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000",
         "--host-resolver-rules=MAP * ~NOTFOUND"]  # no host resolves: whatever loads is embedded


@pytest.fixture(scope="module")
def chromium() -> tuple[str, str]:
    """(chromium, chromedriver) paths, installed by tests/browser_setup.sh when missing."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        script = Path(__file__).with_name("browser_setup.sh")
        try:
            out = subprocess.run(["bash", str(script)], capture_output=True, text=True, encoding="utf-8", timeout=900)
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"headless Chromium unavailable: {script.name} failed ({exc})")
        if out.returncode != 0:
            pytest.skip(f"headless Chromium unavailable: {out.stderr.strip().splitlines()[-1:]}")
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (browser and driver):
        pytest.skip("headless Chromium unavailable: chromium or chromedriver still missing after set-up")
    return browser, driver


@pytest.fixture
def browser(chromium, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (pip install -e '.[test]')")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium[0]
    for flag in FLAGS + [f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromium[1]))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def column(driver, index: int) -> list[str]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#leaderboard tbody tr')].map(tr => {"
        " const c = tr.children[arguments[0]]; return c.dataset.v !== undefined ? c.dataset.v : c.textContent; })",
        index)


def click_header(driver, text: str) -> tuple[int, str]:
    from selenium.webdriver.common.by import By

    heads = driver.find_elements(By.CSS_SELECTOR, "#leaderboard thead th")
    [i] = [i for i, th in enumerate(heads) if th.text.split()[0].lower() == text.lower()]
    heads[i].click()
    return i, heads[i].get_attribute("aria-sort")


def full_page_screenshot(driver) -> bytes:
    import base64

    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
    return base64.b64decode(shot["data"])


def test_report_in_headless_chromium(browser, two_runs, cli, tmp_path):  # noqa: F811 - the imported fixture
    from PIL import Image
    from selenium.webdriver.support.ui import WebDriverWait

    results, bic, _ = two_runs
    mine = tmp_path / "results"
    shutil.copytree(results, mine)
    source = mine / bic.relative_to(results)
    craft(mine, source, "worse", {"psnr": -3.0, "ssim": -0.05, "gmsd": 0.05}, "2100-01-01T00:00:02+00:00")
    craft(mine, source, "better_10%", {"psnr": 2.0, "ssim": 0.01, "gmsd": -0.01}, "2100-01-01T00:00:03+00:00")
    n_runs = len(list(mine.rglob("record.json")))
    assert n_runs == 4
    page = tmp_path / "report.html"
    result = cli("report", "--results-dir", mine, "-o", page)
    assert result.exit_code == 0, result.output

    browser.get(page.as_uri())
    WebDriverWait(browser, 20).until(lambda d: d.execute_script(
        "return document.readyState === 'complete' && [...document.images].every(i => i.complete)"))
    layout_checks(browser, 1400)

    # The table: one row per run, in the leaderboard's order (PSNR, best first).
    methods = column(browser, 2)
    assert sorted(methods) == sorted(["bicubic", "nearest", "worse", "better_10%"])
    assert methods[0] == "better_10%"
    psnr_col, state = click_header(browser, "PSNR")
    assert state == "ascending"
    values = [float(v) for v in column(browser, psnr_col)]
    assert values == sorted(values) and len(values) == n_runs
    assert column(browser, 2)[0] == "nearest" and column(browser, 2)[-1] == "better_10%"
    _, state = click_header(browser, "PSNR")
    assert state == "descending"
    assert [float(v) for v in column(browser, psnr_col)] == sorted(values, reverse=True)
    method_col, _ = click_header(browser, "method")
    assert column(browser, method_col) == sorted(methods, key=str.lower)
    gmsd_col, _ = click_header(browser, "GMSD")  # lower is better; ascending puts the best first
    assert column(browser, 2)[0] == "better_10%"
    sec_col, _ = click_header(browser, "s/slice")
    secs = [float(v) for v in column(browser, sec_col)]
    assert secs == sorted(secs)

    # Every image loads; nothing can be fetched from anywhere (no host resolves), so they are embedded.
    imgs = browser.execute_script(
        "return [...document.images].map(i => [i.className, i.complete, i.naturalWidth, i.naturalHeight])")
    assert [i[0] for i in imgs] == ["boxplot"] * 3 + ["panel"] * 3
    assert all(complete and w > 0 and h > 0 for _, complete, w, h in imgs), imgs
    errors = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
    assert not errors, errors

    png = full_page_screenshot(browser)
    shot = tmp_path / "report.png"
    shot.write_bytes(png)
    with Image.open(io.BytesIO(png)) as im:
        assert im.width >= 1000 and im.height > 1000  # the whole page, figures included
        assert len(im.convert("L").getcolors(1 << 16) or range(1000)) > 50  # not a blank page

    # A phone: 390 CSS pixels wide, mobile viewport.
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True})
    browser.get(page.as_uri())
    WebDriverWait(browser, 20).until(lambda d: d.execute_script(
        "return document.readyState === 'complete' && [...document.images].every(i => i.complete)"))
    layout_checks(browser, 390)
    phone = tmp_path / "report-390.png"
    phone.write_bytes(full_page_screenshot(browser))
    with Image.open(phone) as im:
        assert im.width <= 400  # nothing wider than the phone's screen
    target = os.environ.get("SRBENCH_TEST_ARTIFACTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for path in (shot, phone, page):
            shutil.copy(path, Path(target) / path.name)


def layout_checks(driver, width: int) -> None:
    """What must hold at any width: no sideways scroll; version, date, hardware and the three planes shown;
    box-plot text legible."""
    import srbench

    state = driver.execute_script("""
        const shown = e => !!e && e.getBoundingClientRect().width > 0 && e.getBoundingClientRect().height > 0;
        const text = id => { const e = document.getElementById(id); return shown(e) ? e.textContent : null; };
        return {inner: window.innerWidth, scroll: document.documentElement.scrollWidth,
                version: text('version'), date: text('date'), hardware: text('hardware'),
                planes: [...document.querySelectorAll('figure.panel')].filter(f => shown(f.querySelector('img')))
                          .map(f => f.dataset.plane),
                boxplots: [...document.querySelectorAll('img.boxplot')]
                          .map(i => i.getBoundingClientRect().width / i.naturalWidth)};""")
    assert state["inner"] == width, state
    assert state["scroll"] <= state["inner"], f"the page scrolls sideways at {width} px: {state}"
    assert state["version"] == srbench.__version__
    assert state["date"] and state["hardware"] and "cpu" in state["hardware"], state
    assert state["planes"] == ["axial", "coronal", "sagittal"], state
    # Tick labels are 10 pt at 100 dpi (13.9 image pixels): at least 8 CSS pixels once scaled to fit.
    assert state["boxplots"] and min(state["boxplots"]) * 10 * 100 / 72 >= 8, state
