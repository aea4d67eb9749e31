"""The dashboard in a real browser (issue 28): headless Chromium, driven by selenium, loads the
page from a running `sluice demo`, waits for live data, checks the endpoint rows and that the
request rate moves under load, and takes a screenshot (docs/dashboard.png when
SLUICE_UPDATE_SCREENSHOT=1, else in the test's temporary folder). Skips, saying why, only when
Chromium cannot start here; .ci/setup installs it, so CI runs it."""
import json
import os
import shutil
import threading
import time
import urllib.request

import pytest

from conftest import ROOT, SLUICE, Proc, demo_ports, wait_port

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (bash .ci/setup installs it)")
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402


def chromium():
    opts = webdriver.ChromeOptions()
    for a in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1050",
              "--hide-scrollbars", "--force-device-scale-factor=1"]:
        opts.add_argument(a)
    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if not binary or not os.path.exists(driver_path):
        pytest.skip(f"Chromium or chromedriver is not installed (chromium: {binary}, chromedriver: {driver_path}); "
                    "bash .ci/setup installs Debian's chromium and chromium-driver")
    opts.binary_location = binary
    try:
        return webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=driver_path))
    except WebDriverException as e:
        pytest.skip(f"Chromium cannot start here: {e.msg}")


def wait_for(cond, timeout=15.0, what="condition"):
    end = time.time() + timeout
    while time.time() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def demo():
    port, admin, sim = demo_ports(3)
    p = Proc([SLUICE, "demo", "--port", str(port), "--servers", "3", "--sim-port", str(sim), "--admin", f"127.0.0.1:{admin}"])
    try:
        wait_port(port)
        wait_port(admin)
    except Exception:
        p.stop()  # a demo that did not come up all the way must not outlive the test
        raise
    p.port, p.admin, p.sims = port, admin, [f"127.0.0.1:{sim + i}" for i in range(3)]
    yield p
    assert p.stop() == 0


@pytest.fixture
def browser():
    d = chromium()
    yield d
    d.quit()


def load(port, stop, limit=600, deadline=20.0):
    """Chat requests to the demo until `stop` is set (bounded in count and time)."""
    end = time.time() + deadline
    for i in range(limit):
        if stop.is_set() or time.time() > end:
            return
        body = json.dumps({"model": "tiny-ab" if i % 2 else "tiny-llama", "stream": True, "max_tokens": 8,
                           "messages": [{"role": "user", "content": f"Tell me about sluice gate {i % 7}."}]}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            r.read()
        time.sleep(0.02)


def number(text):
    try:
        return float(text.split()[0])
    except (ValueError, IndexError):
        return None


def test_dashboard_shows_live_data_and_rates_that_move(demo, browser, tmp_path):
    browser.get(f"http://127.0.0.1:{demo.admin}/")
    assert browser.title == "Sluice"
    wait_for(lambda: browser.find_element(By.ID, "status").get_attribute("data-state") == "live", what="live data")

    # One row per simulated server, healthy, with its adapter once telemetry has scraped it.
    def rows():
        return {r.get_attribute("data-endpoint"): r for r in browser.find_elements(By.CSS_SELECTOR, "tr[data-endpoint]")}
    wait_for(lambda: set(rows()) == set(demo.sims), what=f"rows for {demo.sims}")
    wait_for(lambda: all(r.get_attribute("data-healthy") == "true" for r in rows().values()), what="healthy endpoints")
    wait_for(lambda: all("sql-lora" in r.text for r in rows().values()), what="the LoRA adapter in every row")
    assert browser.find_element(By.CSS_SELECTOR, "section[data-pool='default']")

    # Idle: the rate reads 0 once a second has been sampled.
    wait_for(lambda: number(browser.find_element(By.ID, "rps-now").text) == 0.0, what="an idle rate of 0")

    stop = threading.Event()
    worker = threading.Thread(target=load, args=(demo.port, stop), daemon=True)
    worker.start()
    try:
        rate = wait_for(lambda: (number(browser.find_element(By.ID, "rps-now").text) or 0) > 1
                        and number(browser.find_element(By.ID, "rps-now").text), what="a request rate under load")
        assert rate > 1
        wait_for(lambda: browser.find_element(By.ID, "p50-now").text.endswith("ms"), what="a TTFT percentile")
        time.sleep(8)  # some seconds of sparkline
        assert browser.find_elements(By.CSS_SELECTOR, "tr[data-split='tiny-ab']")
        # The sparkline has a drawn path, and the page kept up with the polls.
        path = browser.find_element(By.CSS_SELECTOR, "#rps-spark svg path").get_attribute("d")
        assert path and path.count("L") >= 2, path
        assert browser.find_element(By.ID, "status").get_attribute("data-state") == "live"
        out = os.path.join(ROOT, "docs", "dashboard.png") if os.environ.get("SLUICE_UPDATE_SCREENSHOT") == "1" \
            else str(tmp_path / "dashboard.png")
        assert browser.save_screenshot(out)
        assert os.path.getsize(out) > 10_000
    finally:
        stop.set()
        worker.join(10)
    # Load stopped: the rate falls back.
    wait_for(lambda: (number(browser.find_element(By.ID, "rps-now").text) or 0) < rate / 2, what="the rate to fall")


def test_dashboard_asks_for_the_admin_token(sluice, nginx_upstream, browser):
    p = sluice(f"""
listen: [{{address: "127.0.0.1:PORT"}}]
admin: {{address: "127.0.0.1:ADMIN_PORT", token: "dash-secret"}}
workers: 1
telemetry: {{interval: 0}}
pools: [{{name: main, endpoints: ["http://127.0.0.1:{nginx_upstream}"]}}]
""")
    wait_port(p.admin_port)
    browser.get(f"http://127.0.0.1:{p.admin_port}/admin/ui")
    wait_for(lambda: browser.find_element(By.ID, "status").get_attribute("data-state") == "token", what="the token prompt")
    assert not browser.find_elements(By.CSS_SELECTOR, "tr[data-endpoint]")
    browser.find_element(By.ID, "token").send_keys("wrong")
    browser.find_element(By.CSS_SELECTOR, "#token-form button").click()
    wait_for(lambda: browser.find_element(By.ID, "status").text == "wrong token", what="a rejected token")
    browser.find_element(By.ID, "token").send_keys("dash-secret")
    browser.find_element(By.CSS_SELECTOR, "#token-form button").click()
    wait_for(lambda: browser.find_element(By.ID, "status").get_attribute("data-state") == "live", what="live data with the token")
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, f"tr[data-endpoint='127.0.0.1:{nginx_upstream}']"), what="the endpoint row")
    # A link with the token in its fragment works too, and the token leaves the address bar.
    browser.execute_script("sessionStorage.clear()")
    browser.get(f"http://127.0.0.1:{p.admin_port}/#token=dash-secret")
    wait_for(lambda: browser.find_element(By.ID, "status").get_attribute("data-state") == "live", what="live data from #token=")
    assert "dash-secret" not in browser.current_url
