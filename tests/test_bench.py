"""The benchmark harness's own logic, without load: wrk's report read right, and the issue's targets judged right."""
from __future__ import annotations

from bench.arms import BASELINE, all_arms, baseline_arms
from bench.load import parse_wrk
from bench.report import Cell, baseline_table, load_table, targets

WRK_REPORT = """Running 2s test @ http://127.0.0.1:40000/predictions/
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.10ms  500.00us  12.00ms   90.00%
  Latency Distribution
     50%  850.00us
     75%    2.50ms
     90%    3.00ms
     99%    1.20s
  1600 requests in 2.00s, 300.00KB read
  Non-2xx or 3xx responses: 3
  Socket errors: connect 0, read 1, write 0, timeout 2
Requests/sec:    800.50
Transfer/sec:    150.00KB
"""


def test_wrks_report_is_read_with_its_units():
    figures = parse_wrk(WRK_REPORT)
    assert (figures.rps, figures.p50_ms, figures.p99_ms, figures.requests, figures.errors) == (800.5, 0.85, 1200.0, 1600, 6)


def cell(rps: float, p99: float = 10.0, errors: int = 0) -> Cell:
    return Cell(rps=[rps, rps], p50=[1.0], p99=[p99], errors=errors)


def test_targets_are_judged_on_the_medians_and_errors_count():
    arms = all_arms()
    names = {arm.name for arm in arms}
    assert {"drum-compat fastapi", "bare FastAPI + uvicorn", "raw ASGI + uvicorn (httptools)"} <= names
    drum = "DRUM 1.18 (gunicorn sync)"
    cells = {(drum, "predict 10 rows", 8): cell(100, 20), ("drum-compat fastapi", "predict 10 rows", 8): cell(210, 15),
             ("drum-compat gunicorn (gevent)", "predict 10 rows", 8): cell(140, 25, errors=1)}
    arms_with_drum = arms if drum in names else [*arms, type(arms[0])(drum, "drum", ())]
    judged = {label: met for label, met, _ in targets(cells, {}, {}, arms_with_drum)}
    assert judged["10 rows, 8 conns: fastapi vs DRUM"] is True
    assert judged["10 rows, 8 conns: gunicorn vs DRUM"] is False  # 1.4x
    assert judged["10 rows, 8 conns: drum-compat gunicorn (gevent) p99 <= DRUM's"] is False
    assert judged["no answer but 2xx in any load cell"] is False
    cells["drum-compat fastapi", "predict 10 rows", 8].cpu_us = [900.0, 1100.0, 1500.0]
    table = load_table(cells, arms_with_drum, ["predict 10 rows"], [8])
    assert "| predict 10 rows | 8 | drum-compat fastapi | 210 |" in table
    rows = {line.split(" | ")[2]: line for line in table.splitlines()[2:]}
    assert rows["drum-compat fastapi"].endswith("| 2.10x | - | 1100 |")  # the median of the workers' CPU per request
    assert rows[drum].endswith("| - |")  # no CPU figure taken


def test_the_large_requests_floor_is_shown_beside_drums_time(tmp_path):
    from bench.arms import work_alone_seconds
    from bench.report import WORK_ALONE, large_table

    csv = tmp_path / "small.csv"
    csv.write_bytes(b"a,b\n" + b"1,2\n" * 1000)
    floor = work_alone_seconds(csv)  # the real work, in its own process
    assert 0 < floor < 30
    drum = "DRUM 1.18 (gunicorn sync)"
    arms = [*all_arms(), type(all_arms()[0])(drum, "drum", ())]
    large = {drum: (2.0, 500 * 1024 * 1024), "drum-compat fastapi": (1.9, 400 * 1024 * 1024), WORK_ALONE: (1.8, None)}
    figures = {label: (met, shown) for label, met, shown in targets({}, large, {}, arms)}
    assert figures["50 MB: drum-compat fastapi time <= 0.8x DRUM"] == (False, "0.95x; the work alone 0.90x")
    assert f"| {WORK_ALONE} | 1.80 | - | 0.90x | - |" in large_table(large, drum, 50)


def test_a_ratio_target_is_judged_round_by_round():
    """The arms of one round run back to back: each round's ratio, then their median, not the ratio of two medians
    taken over rounds the machine ran at different speeds."""
    on, off = "drum-compat fastapi, guards on", "drum-compat fastapi, guards off"
    cells = {(on, "predict 10 rows", 8): Cell(rps=[90, 100, 110], p50=[1.0], p99=[10.0]),
             (off, "predict 10 rows", 8): Cell(rps=[80, 110, 106], p50=[1.0], p99=[10.0])}
    figures = {label: (met, shown) for label, met, shown in targets(cells, {}, {}, all_arms())}
    # rounds 1.125x, 0.91x, 1.04x: the median round meets 0.95x, where the medians' ratio (100 / 106) would not
    assert figures["guards on vs off (fastapi)"] == (True, "1.04x (needs 0.95x; medians 0.94x)")


def test_a_baseline_runs_the_default_stacks_of_another_drum_compat_and_is_compared_round_by_round():
    baseline = baseline_arms("/elsewhere/bin/drum-compat")
    assert [arm.name for arm in baseline] == [BASELINE + name for name in
                                              ("drum-compat gunicorn (gevent)", "drum-compat gunicorn (sync)", "drum-compat fastapi")]
    ours = {arm.name: arm for arm in all_arms()}
    for arm in baseline:
        twin = ours[arm.name.removeprefix(BASELINE)]
        assert arm.command == ("/elsewhere/bin/drum-compat", *twin.command[1:]) and arm.env == twin.env
    # round by round: a slow second round falls on both arms, so the paired ratio stays 1.10x
    cells = {("drum-compat fastapi", "ping", 8): Cell(rps=[1100, 550, 1100], p50=[1], p99=[2.0]),
             (BASELINE + "drum-compat fastapi", "ping", 8): Cell(rps=[1000, 500, 1000], p50=[1], p99=[3.0])}
    table = baseline_table(cells, [*all_arms(), *baseline], ["ping"], [8], BASELINE)
    assert table.splitlines()[2:] == ["| ping | 8 | drum-compat fastapi | 1.10x | ±25% | ±25% | 2.00 | 3.00 |"]
