"""The bench's ratios, verdicts, counters and tables: pure logic, no servers."""

from __future__ import annotations

import dataclasses

import pytest

from bench import report, run, seed
from bench.report import Check, Figure, Verification, WorkloadResult
from bench.wrk import WrkResult


def wrk_result(rps: float, *, p99: float = 5.0, requests: int | None = None, **errors) -> WrkResult:
    return WrkResult(
        requests=requests if requests is not None else int(rps * 10),
        duration_s=10.0,
        requests_per_s=rps,
        latency_avg_ms=p99 / 2,
        latency_max_ms=p99 * 2,
        p50_ms=p99 / 3,
        p75_ms=p99 / 2,
        p90_ms=p99 / 1.5,
        p99_ms=p99,
        **errors,
    )


def verified(checked: int = 200, failed: int = 0) -> Verification:
    result = Verification()
    for n in range(checked):
        result.record("wrong Location" if n < failed else None)
    return result


def workload(key: str, rps: float, **kwargs) -> WorkloadResult:
    values = {"verification": verified(), "unexpected_statuses": 0}
    values.update(kwargs)
    wrk = values.pop("wrk", None) or wrk_result(rps, **values.pop("wrk_kwargs", {}))
    return WorkloadResult(key=key, title=key, wrk=wrk, **values)


CEILING = 10_000.0


@pytest.mark.parametrize(
    ("key", "rps", "state"),
    [
        pytest.param("hot", 7_000, report.MET, id="hot-at-0.70"),
        pytest.param("hot", 6_999, report.NOT_MET, id="hot-below-0.70"),
        pytest.param("uniform", 4_500, report.MET, id="uniform-at-0.45"),
        pytest.param("uniform", 4_499, report.NOT_MET, id="uniform-below-0.45"),
        pytest.param("uniform_query", 3_500, report.MET, id="query-at-0.35"),
        pytest.param("uniform_query", 3_499, report.NOT_MET, id="query-below-0.35"),
        pytest.param("unknown", 4_000, report.MET, id="unknown-at-0.40"),
        pytest.param("unknown", 3_999, report.NOT_MET, id="unknown-below-0.40"),
        pytest.param("uniform_small", 100, report.MET, id="small-data-set-has-only-a-p99-target"),
        pytest.param("create", 3_000, report.MET, id="create-at-3000"),
        pytest.param("create", 2_999, report.NOT_MET, id="create-below-3000"),
        pytest.param("hot_limited", 100, report.MET, id="limited-hot-has-only-a-p99-target"),
    ],
)
def test_each_workload_is_held_to_its_own_target(key, rps, state):
    assert report.judge(workload(key, rps), CEILING, postgres=True).state == state


@pytest.mark.parametrize("key", ["hot", "uniform", "uniform_query", "unknown", "uniform_small"])
def test_every_redirect_workload_with_a_p99_over_10_ms_misses_its_target_however_fast(key):
    assert report.judge(workload(key, 9_000, wrk_kwargs={"p99": 10.0}), CEILING, postgres=True).state == report.MET
    verdict = report.judge(workload(key, 9_000, wrk_kwargs={"p99": 10.1}), CEILING, postgres=True)
    assert verdict.state == report.NOT_MET
    assert verdict.reasons == ["p99 10.1 ms > 10 ms"]


def test_a_run_with_the_access_log_off_has_no_target_of_its_own():
    assert report.judge(workload("hot_log_off", 100), CEILING, postgres=True).state == report.NONE


@pytest.mark.parametrize(
    ("on", "off", "state"),
    [
        pytest.param(9_000, 10_000, report.MET, id="at-0.90"),
        pytest.param(8_999, 10_000, report.NOT_MET, id="below-0.90"),
        pytest.param(10_500, 10_000, report.MET, id="on-faster-than-off"),
    ],
)
def test_the_access_log_may_cost_at_most_a_tenth_of_a_workloads_speed(on, off, state):
    measured, verdict = report.judge_log_on_vs_off(workload("hot", on), workload("hot_log_off", off))
    assert measured == pytest.approx(on / off)
    assert verdict.state == state


@pytest.mark.parametrize(
    ("measured", "target", "text"),
    [
        pytest.param(0.898, 0.90, "0.898 < 0.90", id="rounds-to-the-target"),
        pytest.param(0.8999, 0.90, "0.8999 < 0.90", id="closer-still"),
        pytest.param(0.62, 0.70, "0.62 < 0.70", id="plainly-below"),
    ],
)
def test_a_figure_just_under_its_target_is_shown_with_the_digits_that_tell_them_apart(measured, target, text):
    assert report.below(measured, target) == text
    _, verdict = report.judge_log_on_vs_off(workload("hot", measured * 10_000), workload("hot_log_off", 10_000))
    assert (verdict.state, verdict.reasons) == (report.NOT_MET, [report.below(measured, 0.90)])


def test_a_missing_run_with_the_access_log_off_fails_the_comparison():
    crashed = WorkloadResult(key="uniform_log_off", title="uniform, access log off", error="wrk exited with 1")
    assert report.judge_log_on_vs_off(workload("uniform", 5_000), crashed)[1].state == report.FAILED
    pairs = report.log_off_pairs([workload("uniform", 5_000), workload("create", 2_000)])
    assert pairs == []


def test_the_on_off_table_pairs_each_redirect_workload_with_its_twin():
    runs = [workload("hot", 9_500), workload("hot_log_off", 10_000), workload("create", 2_000),
            workload("uniform", 4_000), workload("uniform_log_off", 5_000)]
    lines, verdicts = report.log_off_table(runs)
    assert len(lines) == 2 + 2
    assert lines[2].split(" | ")[1:7] == ["9,500", "5.00 ms", "10,000", "5.00 ms", "0.95", ">= 0.90"]
    assert [v.state for v in verdicts] == [report.MET, report.NOT_MET]


def test_visit_tracking_may_cost_at_most_a_tenth_of_a_workloads_speed():
    measured, verdict = report.judge_tracking_on_vs_off(workload("hot", 8_900), workload("hot_tracking_off", 10_000))
    assert measured == pytest.approx(0.89)
    assert (verdict.state, verdict.reasons) == (report.NOT_MET, ["0.89 < 0.90"])
    assert report.judge_tracking_on_vs_off(workload("hot", 9_000), workload("hot_tracking_off", 10_000))[1].state == report.MET


def test_each_twin_pairs_only_with_its_own_comparison():
    runs = [workload("hot", 9_000), workload("hot_log_off", 9_500), workload("hot_tracking_off", 12_000),
            workload("uniform", 4_000), workload("uniform_log_off", 4_100)]
    assert [(on.key, off.key) for on, off in report.twin_pairs(runs, report.TRACKING_OFF)] == [("hot", "hot_tracking_off")]
    assert [(on.key, off.key) for on, off in report.log_off_pairs(runs)] == [
        ("hot", "hot_log_off"), ("uniform", "uniform_log_off")]
    lines, verdicts = report.twin_table(runs, report.TRACKING_OFF)
    assert lines[0].startswith("| workload | req/s, visit tracking on | p99 | req/s, visit tracking off |")
    assert lines[2].split(" | ")[1:7] == ["9,000", "5.00 ms", "12,000", "5.00 ms", "0.75", ">= 0.90"]
    assert [v.state for v in verdicts] == [report.NOT_MET]


def test_a_twin_has_no_target_of_its_own_and_is_not_a_redirect_workload_of_the_p99_row():
    assert report.judge(workload("hot_tracking_off", 100), CEILING, postgres=True).state == report.NONE
    assert report.base_key("uniform_query_tracking_off") == "uniform_query"
    assert report.base_key("uniform_query") == "uniform_query"
    runs = [workload("hot", 9_000, ceiling_rps=10_000.0), workload("hot_tracking_off", 9_500, ceiling_rps=10_000.0,
                                                                     wrk_kwargs={"p99": 50.0})]
    lines = report.summary_table(runs, 10_000.0, postgres=True)
    assert "| visit tracking on vs off | on >= 0.90 of off, every workload | hot 0.95 | met |" in lines
    assert lines[-1] == "| p99, every redirect workload | <= 10 ms | hot 5.00 ms | met |"


def test_the_summary_is_the_issues_table_of_targets():
    runs = [
        workload("hot", 7_500, ceiling_rps=10_000.0), workload("hot_log_off", 8_000, ceiling_rps=10_000.0),
        workload("uniform", 4_000, ceiling_rps=10_000.0),
        workload("uniform_log_off", 4_100, ceiling_rps=10_000.0),
        workload("unknown", 4_500, ceiling_rps=10_000.0, wrk_kwargs={"p99": 12.0}),
        workload("unknown_log_off", 4_500, ceiling_rps=10_000.0),
        workload("create", 2_000),
    ]
    lines = report.summary_table(runs, 10_000.0, postgres=True)
    assert lines[2] == "| hot: one code | >= 0.70 of ceiling | 0.75 | met |"
    assert lines[3] == "| uniform over every link | >= 0.45 of ceiling | 0.40 | not met |"
    assert lines[4] == "| unknown codes | >= 0.40 of ceiling | 0.45 | met |"
    assert lines[5] == (
        "| access log on vs off | on >= 0.90 of off, every workload | hot 0.94, uniform 0.98, unknown 1.00 | met |"
    )
    assert lines[6] == "| p99, every redirect workload | <= 10 ms | hot 5.00 ms, uniform 5.00 ms, unknown 12.0 ms | not met |"
    assert len(lines) == 7



def test_a_paced_run_is_what_the_p99_target_is_held_to():
    saturated = workload("hot", 9_000, wrk_kwargs={"p99": 18.0})
    assert report.judge(saturated, CEILING, postgres=True).reasons == ["p99 18.0 ms > 10 ms"]
    calm = dataclasses.replace(saturated, paced=wrk_result(4_500, p99=3.0))
    assert report.p99_of(calm) == 3.0
    assert report.judge(calm, CEILING, postgres=True).state == report.MET
    stalled = dataclasses.replace(saturated, paced=wrk_result(4_500, p99=10.5))
    assert report.judge(stalled, CEILING, postgres=True).reasons == ["paced p99 10.5 ms > 10 ms"]
    lines = report.summary_table([calm, workload("uniform", 5_000, wrk_kwargs={"p99": 4.0})], CEILING, postgres=True)
    assert lines[-1] == (
        "| p99, every redirect workload (at half the rate it reached; saturated p99 in the tables below) "
        "| <= 10 ms | hot 3.00 ms, uniform 4.00 ms | met |"
    )
    table, _ = report.workload_table([], [calm], postgres=True)
    assert "18.0 ms (paced at 4,500/s: p50 1.00 ms, p99 3.00 ms)" in table[-1]


def test_the_halves_of_an_on_off_off_on_run_add_up_to_one_result():
    first = workload("hot", 8_000, wrk=wrk_result(8_000, p99=6.0, requests=40_000, timeouts=1),
                     verification=verified(200, failed=1), unexpected_statuses=2)
    second = workload("hot", 6_000, wrk=wrk_result(6_000, p99=9.0, requests=30_000),
                      verification=verified(200), unexpected_statuses=0)
    both = report.merged(first, second)
    assert both.wrk.requests == 70_000 and both.wrk.duration_s == 20.0
    assert both.wrk.requests_per_s == 3_500.0  # requests over the time of both halves
    assert (both.wrk.p50_ms, both.wrk.p99_ms) == (3.0, 9.0)  # the worse half's percentiles
    assert both.wrk.timeouts == 1 and both.unexpected_statuses == 2
    assert (both.verification.checked, both.verification.failed) == (400, 1)
    failed = dataclasses.replace(second, wrk=None, error="wrk exited with 1")
    assert report.merged(first, failed) is failed


def test_the_lookups_of_two_halves_are_one_row():
    rows = [("hot", {"local": 90.0, "redis": 10.0}), ("hot, access log off", {"local": 5.0}),
            ("hot", {"local": 10.0, "sql": 1.0})]
    assert run._merge_lookups(rows) == [("hot", {"local": 100.0, "redis": 10.0, "sql": 1.0}),
                                        ("hot, access log off", {"local": 5.0})]


# --- the settings the service runs with -------------------------------------------


def test_the_bench_reads_the_base_configmaps_settings_file():
    fields = run.parse_settings_env("# comment\n\nLINKGATE_ACCESS_LOG=true\nLINKGATE_QUERY_DENY=a,b=c\n")
    assert fields == {"access_log": "true", "query_deny": "a,b=c"}
    with pytest.raises(ValueError, match="line 1"):
        run.parse_settings_env("ACCESS_LOG=true")


def test_the_service_runs_with_production_settings_and_only_the_benchs_own_overrides(tmp_path):
    from bench import stack

    storage = stack.Storage("db", "pfx:", None, "redis://127.0.0.1:6379/0", tmp_path)
    bench = run.Bench(run.Config(), tmp_path)
    production = run.production_settings()
    fields = bench.service_fields(storage, 9999)
    assert production["access_log"] == "true"  # what the base ConfigMap ships
    assert {k: v for k, v in fields.items() if k not in run.OVERRIDES} == {
        k: v for k, v in production.items() if k not in run.OVERRIDES
    }
    assert set(fields) - set(production) <= set(run.OVERRIDES)
    assert (fields["workers"], fields["port"], fields["hashids_salt"]) == ("1", "9999", run.SALT)
    assert bench.service_fields(storage, 9999, access_log=False)["access_log"] == "false"
    env = bench.service_env(storage, 9999)
    assert env["LINKGATE_ENV"] == production["env"]


def test_creates_count_only_on_postgresql():
    verdict = report.judge(workload("create", 5_000), CEILING, postgres=False)
    assert verdict.state == report.NOT_MET
    assert "not on PostgreSQL" in verdict.reasons


def test_a_failed_verification_fails_the_workload_however_fast():
    fast_but_wrong = workload("hot", 9_999, verification=verified(failed=1))
    assert report.judge(fast_but_wrong, CEILING, postgres=True).state == report.FAILED


def test_a_workload_that_did_not_run_fails():
    crashed = WorkloadResult(key="uniform", title="uniform", error="RuntimeError: wrk exited with 1")
    verdict = report.judge(crashed, CEILING, postgres=True)
    assert verdict.state == report.FAILED
    assert verdict.reasons == ["RuntimeError: wrk exited with 1"]


def test_unexpected_statuses_spoil_a_fast_figure():
    verdict = report.judge(workload("hot", 9_000, unexpected_statuses=3), CEILING, postgres=True)
    assert verdict.state == report.NOT_MET
    assert verdict.reasons == ["3 unexpected statuses"]


@pytest.mark.parametrize(
    ("timeouts", "state"),
    [pytest.param(90, report.MET, id="within-0.1%"), pytest.param(101, report.NOT_MET, id="beyond-0.1%")],
)
def test_a_few_socket_errors_are_tolerated_many_are_not(timeouts, state):
    result = workload("hot", 9_000, wrk=wrk_result(9_000, requests=100_000, timeouts=timeouts))
    assert report.judge(result, CEILING, postgres=True).state == state


def test_a_failed_check_spoils_the_unknown_code_workload():
    check = Check("SQL lookups by code 12 <= 1 x 10 distinct unknown codes sent", False)
    verdict = report.judge(workload("unknown", 9_000, checks=[check]), CEILING, postgres=True)
    assert verdict.state == report.NOT_MET
    assert verdict.reasons == [f"failed: {check.text}"]


def test_without_a_ceiling_ratios_cannot_be_met():
    verdict = report.judge(workload("uniform", 9_000), None, postgres=True)
    assert verdict.reasons == ["no ceiling measured"]


def test_the_ceiling_is_the_mean_of_the_runs_that_produced_a_figure():
    ceilings = [
        workload("ceiling", 9_000),
        workload("ceiling", 11_000),
        WorkloadResult(key="ceiling", title="ceiling", error="did not start"),
    ]
    assert report.ceiling_rps(ceilings) == 10_000
    assert report.ceiling_rps([]) is None


def test_a_workload_is_compared_with_the_ceiling_runs_on_either_side_of_it():
    before, after = workload("ceiling", 8_000), workload("ceiling", 12_000)
    assert report.adjacent_ceiling(before, after) == 10_000
    broken = WorkloadResult(key="ceiling", title="ceiling", error="wrk exited with 1")
    assert report.adjacent_ceiling(before, broken) == 8_000
    # 7,000 req/s is 0.70 of its neighbours, though only 0.58 of a faster run elsewhere
    hot = workload("hot", 7_000, ceiling_rps=report.adjacent_ceiling(before, after))
    assert report.judge(hot, 12_000, postgres=True).state == report.MET


@pytest.mark.parametrize(
    ("small", "large", "state"),
    [
        pytest.param(1_000, 800, report.MET, id="large-20%-slower"),
        pytest.param(1_000, 799, report.NOT_MET, id="large-over-20%-slower"),
        pytest.param(800, 1_000, report.MET, id="small-slower-counts-too"),
    ],
)
def test_ten_thousand_and_a_million_links_must_be_within_20_percent(small, large, state):
    verdict = report.judge_scaling(workload("uniform_small", small), workload("uniform", large))
    assert verdict.state == state


@pytest.mark.parametrize(
    ("measured", "state"),
    [
        pytest.param(200.0, report.MET, id="at-200"),
        pytest.param(200.5, report.NOT_MET, id="over-200"),
        pytest.param(None, report.NOT_MET, id="not-measured"),
    ],
)
def test_redis_memory_per_link_must_stay_within_200_bytes(measured, state):
    assert report.judge_memory(measured).state == state


def test_verification_counts_every_failure_but_keeps_only_a_few_examples():
    result = verified(checked=200, failed=50)
    assert (result.checked, result.failed, len(result.examples)) == (200, 50, 5)
    assert result.text() == "150/200 FAILED"
    assert Verification().text() == "not run"
    assert not Verification().ok


def test_the_table_shows_each_workload_against_its_neighbouring_ceiling():
    ceilings = [workload("ceiling", 9_000), workload("ceiling", 11_000), workload("ceiling", 13_000)]
    workloads = [
        workload("hot", 7_000, ceiling_rps=10_000.0),
        workload("uniform", 1_200, ceiling_rps=12_000.0),
    ]
    lines, verdicts = report.workload_table(ceilings, workloads, postgres=True)
    assert len(lines) == 2 + 1 + 2  # header, one row for every ceiling run, one per workload
    assert [v.state for v in verdicts] == [report.MET, report.NOT_MET]
    ceiling = lines[2].split(" | ")
    assert ceiling[0] == "| ceiling: bare ASGI 302 (3 runs, before and after each workload)"
    assert ceiling[1] == "11,000"
    assert ceiling[7] == "runs 9,000-13,000"
    assert ceiling[10] == "600/600 |"
    hot = lines[3].split(" | ")
    assert hot[1:4] == ["7,000", "1.67 ms", "5.00 ms"]
    assert hot[6:8] == ["10,000", "0.70"]
    assert hot[9] == "met"
    assert hot[10] == "200/200 |"
    assert "ratio 0.10 < 0.45" in lines[4]


def test_a_failed_ceiling_run_fails_the_bench():
    ceilings = [workload("ceiling", 9_000), WorkloadResult(key="ceiling", title="c", error="did not start")]
    lines, verdicts = report.workload_table(ceilings, [workload("hot", 7_000)], postgres=True)
    assert report.exit_code(verdicts) == 1
    assert "FAILED (1 runs failed)" in lines[2]


def test_only_a_failed_workload_or_figure_makes_the_run_exit_non_zero():
    base = report.Report(
        date="today", machine={}, versions={}, settings={},
        ceilings=[workload("ceiling", 10_000)], workloads=[workload("uniform", 100)],
        figures=[Figure("seeding", "1 links/s")], postgres=True,
    )
    text, code = report.render(base)
    assert code == 0  # an unmet target is a result, not a failure
    assert "| uniform |" in text
    broken = dataclasses.replace(base, workloads=[workload("uniform", 100, verification=verified(failed=1))])
    assert report.render(broken)[1] == 1
    missing = dataclasses.replace(base, figures=[Figure("10k vs 1M", "-", verdict=report.judge_scaling(None, None))])
    assert report.render(missing)[1] == 1


# --- the service's own counters, as /metrics shows them -------------------------

METRICS_BEFORE = """\
# TYPE linkgate_http_requests_total counter
linkgate_http_requests_total{method="GET",route="/{code}",status="302"} 10.0
linkgate_http_requests_total{method="GET",route="/readyz",status="200"} 1.0
# TYPE linkgate_cache_lookups_total counter
linkgate_cache_lookups_total{layer="local",result="hit"} 5.0
linkgate_cache_lookups_total{layer="redis",result="miss"} 5.0
"""

METRICS_AFTER = """\
# TYPE linkgate_http_requests_total counter
linkgate_http_requests_total{method="GET",route="/{code}",status="302"} 110.0
linkgate_http_requests_total{method="GET",route="/{code}",status="503"} 2.0
linkgate_http_requests_total{method="GET",route="/metrics",status="200"} 1.0
linkgate_http_requests_total{method="GET",route="/readyz",status="200"} 1.0
# TYPE linkgate_cache_lookups_total counter
linkgate_cache_lookups_total{layer="local",result="hit"} 55.0
linkgate_cache_lookups_total{layer="redis",result="hit"} 40.0
linkgate_cache_lookups_total{layer="redis",result="miss"} 17.0
"""


def test_statuses_other_than_the_expected_one_count_as_unexpected_but_metrics_scrapes_do_not():
    before, after = run.parse_metrics(METRICS_BEFORE), run.parse_metrics(METRICS_AFTER)
    assert run.unexpected_statuses(before, after, 302) == 2
    assert run.unexpected_statuses(before, after, 404) == 102


def test_counter_deltas_select_samples_by_label():
    before, after = run.parse_metrics(METRICS_BEFORE), run.parse_metrics(METRICS_AFTER)
    name = "linkgate_cache_lookups_total"
    assert run.counter_delta(before, after, name, layer="redis", result="miss") == 12
    assert run.counter_delta(before, after, name, layer="redis") == 52
    assert run.lookup_counts(before, after) == {"local": 50, "redis": 40, "sql": 12, "error": 0}


def test_the_lookup_table_shows_shares_of_each_workloads_lookups():
    lines = report.lookups_table([("hot", {"local": 50, "redis": 40, "sql": 10, "error": 0}), ("create", {})])
    assert lines[2] == "| hot | 100 | 50.0% | 40.0% | 10.0% | 0.0% |"
    assert lines[3] == "| create | 0 | - | - | - | - |"


# --- seed data --------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1_234, 999_999, 9_999_999])
def test_seeded_targets_are_80_characters(n):
    assert len(seed.target_url(n)) == 80


def test_the_query_workload_expects_the_deny_list_and_the_targets_own_ref_to_win():
    location = seed.expected_location(7, seed.VISITOR_QUERY)
    assert location == seed.target_url(7) + "&utm_source=x&utm_medium=y"
    assert "fbclid" not in location
    assert location.count("ref=") == 1


def test_unknown_codes_have_the_seeded_shape_and_are_never_seeded():
    import random

    known = ["abcdef", "ghijkl", "mnopqr"]
    codes = run.seed.unknown_codes(known, 50, alphabet="abcdefghijklmnopqr", rng=random.Random(1))
    assert len(codes) == len(set(codes)) == 50
    assert not set(codes) & set(known)
    assert {len(code) for code in codes} == {6}


# --- SQL lookups per unknown code ---------------------------------------------------


def unknown_run(distinct: int | None) -> WorkloadResult:
    return workload("unknown", 3_000, wrk=dataclasses.replace(wrk_result(3_000), distinct_paths=distinct))


@pytest.mark.parametrize(
    ("lookups", "passed"),
    [
        pytest.param(1_200, True, id="one-per-code"),
        pytest.param(900, True, id="fewer-than-codes"),
        pytest.param(1_201, False, id="a-code-looked-up-twice"),
    ],
)
def test_sql_lookups_may_not_exceed_the_distinct_unknown_codes_asked_for(lookups, passed):
    checks = run._sql_lookup_checks(
        unknown_run(1_000), (50, 3), (50 + lookups, 3), [1_250], extra_codes=200, loads_per_code=1
    )
    assert [check.passed for check in checks] == [passed]
    assert f"SQL lookups by code {lookups:,} {'<=' if passed else '>'} 1 x 1,200" in checks[0].text


def test_a_sequential_scan_makes_sql_lookups_uncountable():
    checks = run._sql_lookup_checks(unknown_run(1_000), (0, 0), (10, 1), [10], extra_codes=0, loads_per_code=1)
    assert not checks[0].passed
    assert "not countable" in checks[0].text


def test_without_postgresql_statistics_redis_misses_bound_the_lookups():
    assert run._sql_lookup_checks(unknown_run(1_000), None, None, [1_000], extra_codes=200, loads_per_code=1)[0].passed
    assert not run._sql_lookup_checks(unknown_run(1_000), None, None, [1_001], extra_codes=200, loads_per_code=1)[0].passed
    assert not run._sql_lookup_checks(unknown_run(None), (0, 0), (0, 0), [0], extra_codes=0, loads_per_code=1)[0].passed


def test_sql_lookups_spanning_both_unknown_code_runs_are_held_to_both_runs_codes():
    runs = [unknown_run(1_000), unknown_run(1_000)]
    passed = run._sql_lookup_checks(runs, (0, 0), (2_400, 0), [2_300], extra_codes=400, loads_per_code=1)
    assert passed[0].passed and "1 x 2,400" in passed[0].text
    assert not run._sql_lookup_checks(runs, (0, 0), (2_401, 0), [2_300], extra_codes=400, loads_per_code=1)[0].passed
    assert not run._sql_lookup_checks([runs[0], unknown_run(None)], (0, 0), (0, 0), [0], extra_codes=0,
                                      loads_per_code=1)[0].passed


def test_the_paced_runs_codes_are_counted_with_the_runs_it_follows():
    """The paced run draws unknown codes from a pool of its own: its SQL loads are allowed, and only those."""
    first = unknown_run(1_000)
    first.paced = dataclasses.replace(wrk_result(1_500), distinct_paths=300)
    passed = run._sql_lookup_checks([first], (0, 0), (1_500, 0), [1_500], extra_codes=200, loads_per_code=1)
    assert passed[0].passed and "1 x 1,500" in passed[0].text
    assert not run._sql_lookup_checks([first], (0, 0), (1_501, 0), [1_500], extra_codes=200,
                                      loads_per_code=1)[0].passed


def test_requests_whose_client_left_are_not_unexpected_answers():
    # wrk closes its connections with requests in flight when its time is up; the service
    # counts those as 499, which is no answer and no failure of the workload.
    def snapshot(**statuses: float) -> run.Snapshot:
        return {("linkgate_http_requests_total", (("method", "POST"), ("route", "/api/v1/links"), ("status", s))): n
                for s, n in statuses.items()}

    before = snapshot(**{"201": 100.0, "499": 0.0, "400": 0.0})
    after = snapshot(**{"201": 900.0, "499": 40.0, "400": 3.0})
    assert run.unexpected_statuses(before, after, 201) == 3
