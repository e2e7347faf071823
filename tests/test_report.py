"""The HTML report: the data the template gets, and the page itself in headless Chromium."""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from skylab.experiment.config import load_config
from skylab.report import html
from skylab.report.html import build_report_data, generate, render_report
from skylab.store.gitstore import TrialStore
from skylab.store.notes import Status
from tests.browser import chromium, open_report, screenshot
from tests.conftest import SKYLAB, run_skylab
from tests.factory import add_trial

XSS_DESCRIPTION = '"><img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
XSS_CODE = "# </script><script>window.__xss=3</script>\nLR = 1\n"


def populate(store: TrialStore) -> None:
    add_trial(store, "mar28", 3.50, description="baseline")
    add_trial(store, "mar28", 3.60, description="higher LR")
    add_trial(store, "mar28", None, status=Status.CRASH, description="DEPTH=64")
    add_trial(store, "mar28", 3.30, description=XSS_DESCRIPTION, files={"train.py": XSS_CODE})
    add_trial(store, "mar28", 3.40, description="wider")
    add_trial(store, "mar28", 3.10, description="longer warmdown")


def test_report_data_headline_chart_and_chain(store: TrialStore, experiment: Path) -> None:
    populate(store)
    data = build_report_data(store, load_config(experiment))
    h = data.headline
    assert (h.best, h.best_trial, h.baseline) == (3.10, "mar28/6", 3.50)
    assert h.improvement == pytest.approx(0.40) and h.improvement_pct == pytest.approx(100 * 0.40 / 3.50)
    assert (h.trials, h.kept, h.reverted, h.failed) == (6, 3, 2, 1)
    chart = json.loads(data.chart_json)
    assert [p[2] for p in chart["points"]] == ["kept", "reverted", "failed", "kept", "reverted", "kept"]
    assert [p[0] for p in chart["points"]] == [3.5, 3.6, None, 3.3, 3.4, 3.1] and chart["best"] == 3.1
    assert [p[3] for p in chart["points"]][:2] == ["mar28/1", "mar28/2"]
    assert chart["range"][0] < 3.1 and chart["range"][1] > 3.6  # everything fits: no outlier here
    assert [step["trial"] for step in data.chain] == ["mar28/1", "mar28/4", "mar28/6"]
    details = json.loads(gzip.decompress(base64.b64decode(data.details_chunks[0])))
    assert "<" not in data.details_chunks[0] and "</script>" in details["mar28/4"]["diff"]


def test_everything_from_trials_is_escaped_in_the_html(store: TrialStore, experiment: Path) -> None:
    populate(store)
    html = render_report(build_report_data(store, load_config(experiment)))
    assert "<script>window.__xss" not in html and "<img src=x" not in html
    assert "&lt;img src=x onerror=&#34;window.__xss=1&#34;&gt;" in html or "&lt;img src=x" in html
    assert html.count("<script") == 5  # four data blocks (details, rows, chart, files) and our own script
    assert html.count('<script type="application/json"') == 1  # the files; the rest travel gzip
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html  # no CDN


def test_report_cli_writes_one_self_contained_file(
    store: TrialStore, experiment: Path, tmp_path: Path
) -> None:
    populate(store)
    target = tmp_path / "out" / "report.html"
    target.parent.mkdir()  # -o names a file in a folder that exists, as for any tool
    result = run_skylab("report", "-o", str(target), "-C", str(experiment), check=True)
    assert str(target) in result.stdout.replace("\n", "")
    assert target.read_text().startswith("<!doctype html>")
    default = run_skylab("report", "--tag", "mar28", "-C", str(experiment), check=True)
    assert ".skylab/reports/mar28.html" in default.stdout.replace("\n", "")


def test_live_report_refreshes_itself_and_the_final_one_does_not(store: TrialStore, experiment: Path) -> None:
    populate(store)
    config = load_config(experiment)
    live = render_report(build_report_data(store, config, live=True))
    final = render_report(build_report_data(store, config, live=False))
    assert "location.reload" in live and "live · refreshes" in live
    assert "location.reload" not in final


def shown_text(driver: Any, element_id: str, timeout: float = 10) -> str:
    """An element's text once the page has filled it in (it may do so asynchronously)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: d.find_element(By.ID, element_id).text.strip() != "")
    return str(driver.find_element(By.ID, element_id).text)


def browser_errors(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_report_in_chromium(store: TrialStore, experiment: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    populate(store)
    path = generate(store, load_config(experiment), tmp_path / "report.html")
    with chromium(tmp_path / "profile") as driver:
        d: Any = driver
        open_report(d, path)
        assert browser_errors(d) == []
        assert d.execute_script("return window.__xss === undefined")
        assert len(d.find_elements(By.CSS_SELECTOR, "#chart .point")) == 6
        assert len(d.find_elements(By.CSS_SELECTOR, "#chart path.failed")) == 1
        rows = d.find_elements(By.CSS_SELECTOR, "#trials tbody tr")
        assert XSS_DESCRIPTION in [r.find_elements(By.TAG_NAME, "td")[-1].text for r in rows]

        d.find_element(By.CSS_SELECTOR, 'th[data-key="value"]').click()
        order = [r.get_attribute("data-trial") for r in d.find_elements(By.CSS_SELECTOR, "#trials tbody tr")]
        assert order == ["mar28/6", "mar28/4", "mar28/5", "mar28/1", "mar28/2", "mar28/3"]  # crash last
        d.find_element(By.CSS_SELECTOR, 'th[data-key="value"]').click()
        order = [r.get_attribute("data-trial") for r in d.find_elements(By.CSS_SELECTOR, "#trials tbody tr")]
        assert order[:2] == ["mar28/2", "mar28/1"]

        Select(d.find_element(By.ID, "status-filter")).select_by_value("crash")
        visible = [r for r in d.find_elements(By.CSS_SELECTOR, "#trials tbody tr") if r.is_displayed()]
        assert [r.get_attribute("data-trial") for r in visible] == ["mar28/3"]
        assert d.find_element(By.ID, "shown-count").text == "1 of 1 matching, 6 trials"
        Select(d.find_element(By.ID, "status-filter")).select_by_value("")

        d.find_element(By.CSS_SELECTOR, 'tr[data-trial="mar28/4"]').click()
        diff = shown_text(d, "details-diff")  # details unpack in the background: wait for them
        assert "+# </script><script>window.__xss=3</script>" in diff
        assert d.execute_script("return window.__xss === undefined")
        assert d.find_elements(By.CSS_SELECTOR, "#details-diff .d-add")
        screenshot(d, "report-details.png")
        assert browser_errors(d) == []


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shortened demo, run once: smoke profile (5 s trials), three trials."""
    directory = tmp_path_factory.mktemp("demo") / "exp"
    env = {**os.environ, "SKYLAB_PROFILE": "smoke", "COLUMNS": "200"}
    env.setdefault("SKYLAB_CACHE", str(tmp_path_factory.mktemp("cache")))
    result = subprocess.run(
        [SKYLAB, "demo", str(directory), "--trials", "3", "--time-budget", "5"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = directory / ".skylab" / "reports" / "demo.html"
    assert f"report: {report}" in result.stdout.replace("\n", "")
    assert "3 trials" in result.stdout and "demo/3" in result.stdout
    return report


@pytest.mark.slow
def test_demo_runs_the_real_loop_end_to_end(demo_report: Path) -> None:
    directory = demo_report.parents[2]
    rows = json.loads(run_skylab("history", "--json", "-C", str(directory), check=True).stdout)
    searched = [r for r in rows if r["strategy"] != "fresh"]
    fresh = [r for r in rows if r["strategy"] == "fresh"]
    assert len(searched) == 3 and all(r["status"] == "success" for r in rows)
    assert rows[0]["description"].startswith("baseline") and rows[0]["decision"] == "keep"
    assert all(r["params"] for r in rows)
    selected = any(r["decision"] == "keep" for r in searched[1:])  # then measured on fresh seeds
    assert [len(r["measurements"]) for r in fresh] == ([2] if selected else [])
    train = (directory / "train.py").read_text()
    assert "\nDEPTH = 4" in train  # the CPU-sized constants are the committed baseline
    assert (
        subprocess.run(["git", "status", "--porcelain"], cwd=directory, capture_output=True, text=True).stdout
        == ""
    )


@pytest.mark.slow
def test_demo_report_in_chromium(demo_report: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    with chromium(tmp_path / "profile") as driver:
        d: Any = driver
        open_report(d, demo_report)
        assert browser_errors(d) == []
        assert len(d.find_elements(By.CSS_SELECTOR, "#chart .point")) == 3
        assert re.match(r"\d\.\d{6}", d.find_element(By.ID, "best-value").text)
        shot = screenshot(d, "demo-report.png")
        assert shot.stat().st_size > 10_000


def test_report_of_a_run_is_written_after_each_trial(tmp_path: Path) -> None:
    from tests.loop_experiment import make_loop_experiment

    exp = make_loop_experiment(tmp_path / "q")
    result = run_skylab("run", "--tag", "t", "--max-trials", "2", "-C", str(exp), check=True)
    report = exp / ".skylab" / "reports" / "t.html"
    assert f"live report: {report}" in result.stdout.replace("\n", "")
    html = report.read_text()
    packed_rows = html.split('id="trial-rows">')[1].split("</script>")[0]
    rows = json.loads(gzip.decompress(base64.b64decode(packed_rows)))["rows"]
    assert len(rows) == 2 and "location.reload" not in html  # final: not live


def swept(store: TrialStore) -> None:
    """A sweep over tiny-bigram's parameters: gains from 3.497 to 3.471, one diverged run at 5.8,
    two crashes."""
    values = [3.497, 3.49, 5.8, 3.485, None, 3.48, 3.4755, None, 3.478, 3.471, 3.49, 3.474]
    for n, value in enumerate(values):
        params: dict[str, int | float | str | bool] = {
            "LEARNING_RATE": round(0.01 * (n + 1), 3),
            "BATCH_SIZE": [256, 1024, 4096][n % 3],
            "WEIGHT_DECAY": 0.0,
        }
        status = Status.SUCCESS if value is not None else Status.CRASH
        text = f"LEARNING_RATE = {params['LEARNING_RATE']}\nBATCH_SIZE = {params['BATCH_SIZE']}\n"
        add_trial(
            store,
            "apr1",
            value,
            status=status,
            params=params,
            description=f"lr {params['LEARNING_RATE']}",
            files={"train.py": text},
        )


def test_robust_range_keeps_the_gains_in_view_and_clips_the_outlier(
    store: TrialStore, experiment: Path
) -> None:
    swept(store)
    data = build_report_data(store, load_config(experiment))
    chart = json.loads(data.chart_json)
    low, high = chart["range"]
    assert low < 3.471 and 3.497 < high < 3.6  # the 5.8 outlier is outside, clipped to the edge
    assert data.params == ["LEARNING_RATE", "BATCH_SIZE", "WEIGHT_DECAY"] and data.show_vram is not False
    assert list(data.importances) and abs(sum(data.importances.values()) - 1) < 1e-6
    assert data.unchanged["apr1/2"] == ["WEIGHT_DECAY"]  # what apr1/2 kept from its parent apr1/1
    changed = [step["changed"] for step in data.chain]
    assert changed[0] == [] and ("LEARNING_RATE", "0.01", "0.02") in changed[1]


def test_analysis_report_in_chromium(store: TrialStore, experiment: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    swept(store)
    path = generate(store, load_config(experiment), tmp_path / "report.html")
    with chromium(tmp_path / "profile") as driver:
        d: Any = driver
        open_report(d, path)
        assert browser_errors(d) == []
        chart = d.find_element(By.ID, "chart")
        assert chart.size["width"] > 1000  # full width in a 1300 px window
        assert len(d.find_elements(By.CSS_SELECTOR, "#chart .point")) == 12
        assert len(d.find_elements(By.CSS_SELECTOR, "#chart path.failed")) == 2  # in the failed lane
        (outlier,) = d.find_elements(By.CSS_SELECTOR, "#chart path.clipped")
        assert outlier.get_attribute("data-trial") == "apr1/3"
        assert d.find_element(By.ID, "best-tick").text == "3.4710"  # a tick at the best value
        ActionChains(d).move_to_element(outlier).perform()
        tooltip = d.find_element(By.ID, "tooltip")
        assert tooltip.is_displayed() and "apr1/3" in tooltip.text and "5.800000" in tooltip.text
        # zoom: drag from the 6th trial to the 10th
        points = d.find_elements(By.CSS_SELECTOR, "#chart .point")
        ActionChains(d).move_to_element(points[5]).click_and_hold().move_to_element(
            points[9]
        ).release().perform()
        assert len(d.find_elements(By.CSS_SELECTOR, "#chart .point")) == 5
        assert d.find_element(By.ID, "zoom-reset").is_displayed()
        d.find_element(By.ID, "zoom-reset").click()
        assert len(d.find_elements(By.CSS_SELECTOR, "#chart .point")) == 12
        ticks = [t.text for t in d.find_elements(By.CSS_SELECTOR, "#chart text.tick")]
        d.find_element(By.ID, "log-scale").click()
        assert d.find_element(By.CSS_SELECTOR, "#chart .axis-label:last-of-type").text.endswith("(log)")
        assert [t.text for t in d.find_elements(By.CSS_SELECTOR, "#chart text.tick")] != ticks
        # parameters: importance, one slice per parameter, parallel coordinates; columns in the table
        assert len(d.find_elements(By.CSS_SELECTOR, "#importance tr")) == 3
        assert len(d.find_elements(By.CSS_SELECTOR, "#slices svg")) == 3
        assert len(d.find_elements(By.CSS_SELECTOR, "#parallel polyline")) == 10
        headers = [th.text for th in d.find_elements(By.CSS_SELECTOR, "#trials th")]
        assert headers[-4:] == ["LEARNING_RATE", "BATCH_SIZE", "WEIGHT_DECAY", "description"]
        assert "VRAM GB" in headers
        d.find_element(By.CSS_SELECTOR, 'th[data-key="p1"]').click()  # sort by BATCH_SIZE, numerically
        first = d.find_elements(By.CSS_SELECTOR, "#trials tbody tr")[0]
        assert first.get_attribute("data-p1") == "256"
        d.find_element(By.ID, "only-changed").click()
        assert "only-changed" in d.find_element(By.ID, "trials").get_attribute("class")
        # compare two trials that are not parent and child
        Select(d.find_element(By.ID, "compare-a")).select_by_value("apr1/1")
        Select(d.find_element(By.ID, "compare-b")).select_by_value("apr1/10")
        d.find_element(By.ID, "compare-go").click()
        fields = shown_text(d, "compare-fields")
        assert "param.LEARNING_RATE 0.01 0.1" in fields and "val_bpb 3.497 3.471" in fields
        diff = d.find_element(By.ID, "compare-diff").text
        assert "-LEARNING_RATE = 0.01" in diff and "+LEARNING_RATE = 0.1" in diff
        d.execute_script("window.scrollTo(0, 0)")
        screenshot(d, "report-analysis.png")
        assert browser_errors(d) == []


def test_a_long_table_is_paged_and_sorts_over_every_trial(
    store: TrialStore, experiment: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    for n in range(520):
        add_trial(store, "long", 3.0 + ((n * 37) % 520) / 1000, keep=False, description=f"trial {n}")
    monkeypatch.setattr(html, "DETAILS_CHUNK", 100)  # 6 chunks of details, unpacked one at a time
    monkeypatch.setattr(html, "FILLED_LISTS", 300)  # and compare lists filled when first used
    path = generate(store, load_config(experiment), tmp_path / "report.html")
    with chromium(tmp_path / "profile") as driver:
        d: Any = driver
        open_report(d, path)
        assert browser_errors(d) == []
        assert len(d.find_elements(By.CSS_SELECTOR, "#trials tbody tr")) == 500
        assert d.find_element(By.ID, "shown-count").text == "500 of 520 trials"
        d.find_element(By.CSS_SELECTOR, 'th[data-key="value"]').click()  # over all 520, not the page
        first = d.find_elements(By.CSS_SELECTOR, "#trials tbody tr")[0]
        assert (
            float(first.get_attribute("data-value")) == 3.0 and first.get_attribute("data-trial") == "long/1"
        )
        d.find_element(By.ID, "show-all").click()
        assert len(d.find_elements(By.CSS_SELECTOR, "#trials tbody tr")) == 520
        assert not d.find_element(By.ID, "show-all").is_displayed()
        assert len(d.find_elements(By.CSS_SELECTOR, "#chart .point")) == 520  # fewer than 2 per pixel: all
        assert d.find_element(By.ID, "chart-note").text == ""
        d.set_window_size(420, 1700)  # now more than two trials a pixel: min-max decimation
        d.execute_script("window.dispatchEvent(new Event('resize'))")
        drawn = {p.get_attribute("data-trial") for p in d.find_elements(By.CSS_SELECTOR, "#chart .point")}
        assert 100 < len(drawn) < 520 and "long/1" in drawn  # the lowest value is never dropped
        assert re.fullmatch(r"\d+ of 520 trials drawn: .*", d.find_element(By.ID, "chart-note").text)
        assert len(Select(d.find_element(By.ID, "compare-a")).options) == 1  # the first trial, until used
        d.find_element(By.CSS_SELECTOR, '#trials tbody tr[data-trial="long/450"]').click()  # chunk 4
        WebDriverWait(d, 10).until(lambda d: d.find_element(By.ID, "details-title").text == "Trial long/450")
        assert "trial: 450" in d.find_element(By.ID, "details-note").text
        compare_a = Select(d.find_element(By.ID, "compare-a"))
        d.find_element(By.ID, "compare-a").click()  # fills the list
        assert len(compare_a.options) == 520 and compare_a.first_selected_option.text == "long/1"
        compare_a.select_by_value("long/7")
        d.find_element(By.ID, "compare-go").click()
        WebDriverWait(d, 10).until(lambda d: d.find_element(By.ID, "compare-name-a").text == "long/7")
        fields = d.find_element(By.ID, "compare-fields").text
        assert "description trial 6 trial 519" in fields  # long/7 against long/520: chunks 0 and 5
        assert browser_errors(d) == []


def test_a_trials_loss_curve_is_drawn_over_the_best_and_the_start_in_chromium(
    store: TrialStore, experiment: Path, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.factory import rewrite_note

    curves = {"baseline": "9.1 6.2 5.4 5.1", "better": "8.5 5.9 5.0 4.8", "worse": "9.9 7.5 6.6 6.2"}
    for description, value in (("baseline", 3.5), ("better", 3.3), ("worse", 3.6), ("no curve", 3.7)):
        ref = add_trial(store, "c", value, description=description)
        if description in curves:
            note = store.note_for(ref.commit)
            assert note is not None
            note.other["loss_curve"] = curves[description]
            rewrite_note(store, ref.commit, note)
    data = build_report_data(TrialStore.open(experiment), load_config(experiment))
    assert json.loads(data.chart_json)["curves"] == {
        "start": ["c/1", [9.1, 6.2, 5.4, 5.1]],
        "best": ["c/2", [8.5, 5.9, 5.0, 4.8]],
    }
    path = generate(TrialStore.open(experiment), load_config(experiment), tmp_path / "report.html")
    with chromium(tmp_path / "profile") as driver:
        d: Any = driver
        open_report(d, path)
        d.find_element(By.CSS_SELECTOR, 'tr[data-trial="c/3"]').click()
        legend = shown_text(d, "details-curve-legend")
        assert "this trial c/3: 9.9 7.5 6.6 6.2" in legend
        assert "the best c/2: 8.5 5.9 5 4.8" in legend and "the start c/1: 9.1 6.2 5.4 5.1" in legend
        kinds = [
            p.get_attribute("class") for p in d.find_elements(By.CSS_SELECTOR, "#details-curve polyline")
        ]
        assert kinds == ["curve curve-trial", "curve curve-best", "curve curve-start"]
        screenshot(d, "report-curves.png")
        d.find_element(By.CSS_SELECTOR, 'tr[data-trial="c/4"]').click()  # no curve of its own: none drawn
        WebDriverWait(d, 10).until(lambda drv: drv.find_element(By.ID, "details-title").text == "Trial c/4")
        assert not d.find_element(By.ID, "details-curve-block").is_displayed()
        assert browser_errors(d) == []
