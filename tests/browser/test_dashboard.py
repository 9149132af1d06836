"""The managers' dashboard in headless Chromium against a real server on 127.0.0.1.

Each chart carries the numbers it draws in data-* attributes; these must equal the API's answers
for the same period and segment (forecasts, segments, goal attainment, models, lead scores) or,
where the API has no route, the scoring functions on the same stored funnel (KPI history, stage
conversions). No console error and no request off 127.0.0.1 are allowed, except the one
"Failed to load resource" line Chromium logs for each page a test deliberately gets refused.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import pytest

from scoring.api_keys import create_key, revoke_key
from scoring.kpis import STAGE_CONVERSION_PREFIX, compute_kpis, overall_kpis
from scoring.store import FunnelStore
from tests.api.conftest import home_settings, lead_payload
from tests.browser.conftest import Server, Watch

FORECAST_KPIS = 9
SESSION_COOKIE = "funnelcast_session"


def _numbers(text: str | None) -> list[float | None]:
    if not text:
        return []
    return [None if part == "" else float(part) for part in text.split(",")]


def _same(shown: Sequence[float | None], expected: Sequence[Any], rel: float = 1e-5) -> None:
    """Chart figures (6 significant digits) against the API's numbers."""
    assert len(shown) == len(expected), (shown, expected)
    for got, want in zip(shown, expected, strict=True):
        if want is None or (isinstance(want, float) and math.isnan(want)):
            assert got is None, (shown, expected)
        else:
            assert got == pytest.approx(float(want), rel=rel, abs=1e-9), (shown, expected)


def _sign_in(page: Any, server: Server, key: str) -> None:
    page.goto(f"{server.base_url}/dashboard")
    assert page.url.endswith("/dashboard/sign-in")
    page.fill("#key", key)
    page.click("button[type=submit]")
    page.wait_for_selector("#models")


def _kpi_charts(page: Any) -> dict[str, dict[str, Any]]:
    charts: dict[str, dict[str, Any]] = page.eval_on_selector_all(
        "#kpis figure.kpi",
        """figures => Object.fromEntries(figures.map(f => {
            const svg = f.querySelector('svg.fan-chart');
            return [f.dataset.kpi, {
                periods: svg.dataset.forecastPeriods, p10: svg.dataset.p10, p50: svg.dataset.p50,
                p90: svg.dataset.p90, history: svg.dataset.history,
                historyPeriods: svg.dataset.historyPeriods,
                drawn: svg.querySelectorAll('polyline').length,
                band: svg.querySelectorAll('polygon').length}];
        }))""",
    )
    return charts


def _check_kpis(page: Any, server: Server, freq: str, segment: str) -> dict[str, Any]:
    """The fan charts against GET /v1/forecast and the history against compute_kpis."""
    section = page.locator("#kpis")
    assert section.get_attribute("data-freq") == freq
    assert section.get_attribute("data-segment") == segment
    charts = _kpi_charts(page)
    assert len(charts) == FORECAST_KPIS
    params: dict[str, Any] = {
        "freq": freq,
        "periods": section.get_attribute("data-periods"),
        "draws": section.get_attribute("data-draws"),
        "seed": section.get_attribute("data-seed"),
    }
    if segment:
        params["segment"] = segment
    with server.api() as api:
        response = api.get("/v1/forecast", params=params)
    assert response.status_code == 200, response.text
    answer = response.json()
    filters = dict([segment.split("=", 1)]) if segment else None
    history = compute_kpis(server.funnel, freq, segment=filters)  # type: ignore[arg-type]
    history["start"] = history["period_start"].astype(str).str[:10]
    for kpi, chart in charts.items():
        rows = [row for row in answer["rows"] if row["kpi"] == kpi]
        assert chart["periods"] == ",".join(row["period_start"] for row in rows)
        for figure in ("p10", "p50", "p90"):
            _same(_numbers(chart[figure]), [row[figure] for row in rows])
        starts = chart["historyPeriods"].split(",")
        shown = history.set_index("start").loc[starts, kpi]
        _same(_numbers(chart["history"]), list(shown))
        assert chart["drawn"] >= 2 and chart["band"] == 1, kpi  # the history line, the fan
    return charts


def _check_funnel(page: Any, server: Server, segment: str) -> None:
    figure = page.locator("#funnel figure.funnel-chart")
    assert figure.locator("svg.bar-chart rect").count() >= 2
    stages = json.loads(figure.get_attribute("data-stages"))
    counts = _numbers(figure.get_attribute("data-counts"))
    conversions = _numbers(figure.get_attribute("data-conversions"))
    filters = dict([segment.split("=", 1)]) if segment else None
    overall = overall_kpis(server.funnel, filters).iloc[0]
    for index, stage in enumerate(stages[1:], start=1):
        expected = overall[STAGE_CONVERSION_PREFIX + stage]
        assert conversions[index] == pytest.approx(expected, rel=1e-12)
        assert counts[index] / counts[index - 1] == pytest.approx(expected, rel=1e-12)  # type: ignore[operator]


def _check_segments(page: Any, server: Server) -> None:
    section = page.locator("#segments")
    columns = json.loads(section.get_attribute("data-columns"))
    with server.api() as api:
        response = api.get("/v1/segments", params={"columns": columns})
    assert response.status_code == 200, response.text
    ranked = response.json()["segments"]
    chart = section.locator("svg.bar-chart")
    shown = _numbers(chart.get_attribute("data-values"))
    assert shown, "no segment drawn"
    best = ranked[: len(shown)]
    _same(shown, [s["expected_value_per_lead"] for s in best])
    _same(_numbers(chart.get_attribute("data-low")), [s["expected_value_p10"] for s in best])
    _same(_numbers(chart.get_attribute("data-high")), [s["expected_value_p90"] for s in best])
    rows = section.locator("tbody tr")
    table = [json.loads(rows.nth(i).get_attribute("data-segment")) for i in range(rows.count())]
    assert table == [s["segment"] for s in ranked[: len(table)]]


def _check_leads(page: Any, server: Server) -> None:
    rows = page.locator("#leads tbody tr")
    assert rows.count() == 10
    shown = {
        row.get_attribute("data-lead-id"): float(row.get_attribute("data-probability"))
        for row in (rows.nth(i) for i in range(rows.count()))
    }
    leads = server.funnel.leads.set_index("lead_id", drop=False)
    payload = [lead_payload(leads.loc[lead_id], server.funnel.features) for lead_id in shown]
    with server.api("integration") as api:
        response = api.post("/v1/leads/score", json={"leads": payload})
    assert response.status_code == 200, response.text
    scored = {r["lead_id"]: r["probability"] for r in response.json()["results"]}
    assert scored == pytest.approx(shown, rel=1e-9)
    assert list(shown.values()) == sorted(shown.values(), reverse=True)
    open_leads = server.funnel.leads[server.funnel.leads["outcome"] == "open"]
    assert set(shown) <= set(open_leads["lead_id"])


def _check_models(page: Any, server: Server) -> None:
    with server.api() as api:
        models = api.get("/v1/models").json()["models"]
    cards = page.locator("#models article.model")
    assert cards.count() == len(models) == 5
    for model in models:
        card = page.locator(f'#models article[data-model="{model["name"]}"]')
        assert card.get_attribute("data-version") == model["version"]
        for metric, value in model["metrics"].items():
            if metric.startswith("baseline."):
                continue
            row = card.locator(f'tr[data-metric="{metric}"]')
            assert float(row.get_attribute("data-value")) == pytest.approx(value, rel=1e-12)
    curve = page.locator("#models svg.calibration-chart")
    predicted = _numbers(curve.get_attribute("data-predicted"))
    observed = _numbers(curve.get_attribute("data-observed"))
    assert len(predicted) == len(observed) == 10
    assert curve.locator("circle").count() == 10
    assert all(0 <= v <= 1 for v in [*predicted, *observed])  # type: ignore[operator]
    assert predicted == sorted(predicted)  # type: ignore[type-var]


def _check_goal(page: Any, server: Server, goal_id: int) -> dict[str, Any]:
    """A goal card against GET /v1/goals/{id}/attainment (same draws and seed)."""
    card = page.locator(f"#goal-{goal_id}")
    card.wait_for()
    with server.api() as api:
        response = api.get(f"/v1/goals/{goal_id}/attainment")
    assert response.status_code == 200, response.text
    attainment = response.json()["attainment"]
    assert card.get_attribute("data-status") == attainment["status"]
    assert float(card.get_attribute("data-probability")) == attainment["probability"]
    for figure in ("p10", "p50", "p90"):
        assert float(card.get_attribute(f"data-{figure}")) == pytest.approx(
            attainment["forecast"][figure], rel=1e-12
        )
    chart = card.locator("svg.interval-chart")
    assert float(chart.get_attribute("data-p50")) == pytest.approx(
        attainment["forecast"]["p50"], rel=1e-5
    )
    assert float(chart.get_attribute("data-target")) == float(card.get_attribute("data-target"))
    history = card.locator("svg.line-chart")
    assert len(_numbers(history.get_attribute("data-values"))) >= 1
    assert attainment["what_it_takes"]["message"] in card.inner_text()
    return dict(attainment)


def _no_horizontal_scroll(page: Any, width: int) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= width


def test_a_wrong_key_is_refused(server: Server, open_page: Any) -> None:
    page, watch = open_page()
    page.goto(f"{server.base_url}/dashboard")
    assert page.url.endswith("/dashboard/sign-in")
    with watch.refusal(page, 401):
        page.fill("#key", "fck_this-is-not-a-key")
        page.click("button[type=submit]")
        page.wait_for_selector("#sign-in-error")
    assert "unknown or revoked" in page.inner_text("#sign-in-error")
    with watch.refusal(page, 403):
        page.fill("#key", server.keys["integration"])
        page.click("button[type=submit]")
        page.wait_for_selector("#sign-in-error")
    assert "cannot open the dashboard" in page.inner_text("#sign-in-error")
    assert SESSION_COOKIE not in {c["name"] for c in page.context.cookies()}
    page.goto(f"{server.base_url}/dashboard")
    assert page.url.endswith("/dashboard/sign-in")
    watch.clean()


def test_a_viewer_sees_every_chart_with_the_apis_numbers(server: Server, open_page: Any) -> None:
    goal = {
        "name": "Q3 win rate",
        "kpi": "win_rate",
        "direction": "at_least",
        "target": 0.2,
        "period_start": "2026-07-01",
        "period_end": "2026-09-30",
    }
    with server.api("manager") as api:
        created = api.post("/v1/goals", json=goal)
    assert created.status_code == 201, created.text
    page, watch = open_page()
    _sign_in(page, server, server.keys["viewer"])

    _check_goal(page, server, created.json()["id"])
    month = _check_kpis(page, server, "month", "")
    _check_funnel(page, server, "")
    _check_segments(page, server)
    _check_leads(page, server)
    _check_models(page, server)

    page.select_option("#freq-picker", "quarter")  # the picker submits itself
    page.wait_for_url("**freq=quarter**")
    page.wait_for_selector("#models")
    quarter = _check_kpis(page, server, "quarter", "")
    assert quarter["won_revenue"]["p50"] != month["won_revenue"]["p50"]
    assert quarter["won_revenue"]["periods"] != month["won_revenue"]["periods"]

    segment = page.eval_on_selector("#segment-picker", "s => s.options[1].value")
    page.select_option("#segment-picker", segment)
    page.wait_for_url("**segment=**")
    page.wait_for_selector("#models")
    in_segment = _check_kpis(page, server, "quarter", segment)
    assert in_segment["lead_count"]["p50"] != quarter["lead_count"]["p50"]
    _check_funnel(page, server, segment)

    # A viewer has no goal form, and a hand-made post is refused.
    assert page.locator("#add-goal").count() == 0
    assert page.locator(".edit-goal").count() == 0
    csrf = page.get_attribute("form.sign-out input[name=csrf_token]", "value")
    refused = page.request.post(
        f"{server.base_url}/dashboard/goals", form={**goal, "target": "0.3", "csrf_token": csrf}
    )
    assert refused.status == 403
    with watch.refusal(page, 403):
        page.goto(f"{server.base_url}/dashboard/goals/new")
    assert "Managers only" in page.inner_text("main")
    with server.api() as api:
        assert len(api.get("/v1/goals").json()["goals"]) == 1

    cookie = next(c for c in page.context.cookies() if c["name"] == SESSION_COOKIE)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/dashboard"
    assert server.keys["viewer"] not in cookie["value"]
    assert not any(server.keys["viewer"] in url for url in watch.urls)
    watch.clean()


def test_a_manager_adds_and_edits_a_goal(
    server: Server, open_page: Any, output_folder: Any
) -> None:
    page, watch = open_page()
    _sign_in(page, server, server.keys["manager"])
    page.click("#add-goal")
    page.fill("#name", "Q3 conversion")
    page.select_option("#kpi", "conversion_rate")
    page.fill("#target", "25")  # a percentage where a share is expected
    page.fill("#period_start", "2026-07-01")
    page.fill("#period_end", "2026-06-01")
    with watch.refusal(page, 422):
        page.click("form.goal-form button[type=submit]")
        page.wait_for_selector(".field-error")
    target_error = page.locator('.field-error[data-field="target"]')
    assert "write 25 % as 0.25" in target_error.inner_text()
    assert target_error.evaluate("e => e.previousElementSibling.id") == "target"
    assert page.locator('.field-error[data-field="period_end"]').count() == 1
    assert page.input_value("#name") == "Q3 conversion"  # what was typed is kept

    page.select_option("#kpi", "won_deals")
    page.fill("#target", "10")
    page.fill("#period_end", "2026-09-30")
    page.click("form.goal-form button[type=submit]")
    page.wait_for_url("**/dashboard#goal-*")
    goal_id = int(page.url.rsplit("-", 1)[1])
    added = _check_goal(page, server, goal_id)
    assert added["status"] == "on_track"

    page.click(f"#goal-{goal_id} .edit-goal")
    assert page.input_value("#target") == "10"
    page.fill("#target", "1000000")
    page.click("form.goal-form button[type=submit]")
    page.wait_for_url(f"**/dashboard#goal-{goal_id}")
    edited = _check_goal(page, server, goal_id)
    assert edited["status"] == "off_track"
    assert page.locator(f"#goal-{goal_id}").get_attribute("data-target") == "1000000.0"

    page.screenshot(path=str(output_folder / "dashboard-desktop.png"), full_page=True)
    _no_horizontal_scroll(page, 1366)
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(100)
    _no_horizontal_scroll(page, 390)
    page.screenshot(path=str(output_folder / "dashboard-phone.png"), full_page=True)
    watch.clean()


def test_signing_out_or_revoking_the_key_ends_the_session(server: Server, open_page: Any) -> None:
    store = FunnelStore.open(home_settings(server.home).store_url)
    try:
        key = create_key(store.engine, "viewer", "browser-revoked")
        page, watch = open_page(390, 844)
        _sign_in(page, server, key)
        page.click("form.sign-out button")
        page.wait_for_url("**/dashboard/sign-in")
        page.goto(f"{server.base_url}/dashboard")
        assert page.url.endswith("/dashboard/sign-in")

        _sign_in(page, server, key)
        revoke_key(store.engine, "browser-revoked")
        page.goto(f"{server.base_url}/dashboard")
        assert page.url.endswith("/dashboard/sign-in")
        assert SESSION_COOKIE not in {c["name"] for c in page.context.cookies()}
    finally:
        store.close()
    watch.clean()


class _Page:
    def wait_for_timeout(self, milliseconds: float) -> None:
        del milliseconds


def test_watch_allows_only_the_provoked_refusal() -> None:
    watch = Watch()
    with watch.refusal(_Page(), 401):
        watch.errors.append("Failed to load resource: the server responded with a status of 401")
    assert watch.errors == [] and len(watch.expected) == 1
    with pytest.raises(AssertionError), watch.refusal(_Page(), 401):
        watch.errors.append("Uncaught TypeError: x is undefined")
