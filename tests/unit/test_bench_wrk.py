"""The bench's reading of wrk's output, on outputs wrk 4.1 really printed."""

from __future__ import annotations

import pytest

from bench import wrk

# taskset -c 1 wrk -t1 -c64 -d5s --latency -s hot.lua (a bare ASGI app)
CLEAN = """\
Running 5s test @ http://127.0.0.1:18911/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    10.79ms    6.04ms  68.89ms   70.38%
    Req/Sec     5.84k     1.67k   12.85k    82.00%
  Latency Distribution
     50%   10.55ms
     75%   13.94ms
     90%   19.01ms
     99%   29.87ms
  29637 requests in 5.10s, 6.36MB read
Requests/sec:   5806.39
Transfer/sec:      1.25MB
"""

# bench/lua/codes.lua against a server that answers 404: wrk's non-2xx/3xx
# line, then the script's own line from done().
NOT_FOUND = """\
Running 2s test @ http://127.0.0.1:18933/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    18.40ms   76.63ms 832.23ms   96.45%
    Req/Sec     1.10k   351.28     1.64k    60.00%
  Latency Distribution
     50%    4.14ms
     75%    6.44ms
     90%   11.85ms
     99%  419.42ms
  2199 requests in 2.01s, 1.09MB read
  Non-2xx or 3xx responses: 2199
Requests/sec:   1096.57
Transfer/sec:    556.85KB
bench-distinct-paths: 2
"""

# wrk -t1 -c300 -d3s --timeout 1s against a server too slow for it.
TIMEOUTS = """\
Running 3s test @ http://127.0.0.1:18935/
  1 threads and 300 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    20.88ms   71.64ms 870.45ms   98.44%
    Req/Sec   493.50    124.62   830.00     80.00%
  Latency Distribution
     50%   11.87ms
     75%   16.83ms
     90%   21.45ms
     99%  427.16ms
  1479 requests in 3.04s, 3.98MB read
  Socket errors: connect 0, read 0, write 0, timeout 3
Requests/sec:    487.23
Transfer/sec:      1.31MB
"""


def test_a_clean_run_gives_its_rate_and_percentiles_in_milliseconds():
    result = wrk.parse_output(CLEAN)
    assert result.requests == 29637
    assert result.duration_s == pytest.approx(5.10)
    assert result.requests_per_s == pytest.approx(5806.39)
    assert (result.p50_ms, result.p75_ms, result.p90_ms, result.p99_ms) == pytest.approx(
        (10.55, 13.94, 19.01, 29.87)
    )
    assert result.latency_avg_ms == pytest.approx(10.79)
    assert result.latency_max_ms == pytest.approx(68.89)
    assert result.socket_errors == 0
    assert result.non_2xx_3xx == 0
    assert result.distinct_paths is None


def test_non_2xx_responses_and_the_scripts_distinct_paths_are_read():
    result = wrk.parse_output(NOT_FOUND)
    assert result.non_2xx_3xx == 2199
    assert result.distinct_paths == 2
    assert result.p99_ms == pytest.approx(419.42)


def test_socket_errors_add_up_across_kinds():
    result = wrk.parse_output(TIMEOUTS)
    assert result.timeouts == 3
    assert result.socket_errors == 3
    assert result.requests_per_s == pytest.approx(487.23)
    mixed = TIMEOUTS.replace("connect 0, read 0, write 0, timeout 3", "connect 1, read 20, write 4, timeout 3")
    assert wrk.parse_output(mixed).socket_errors == 28


@pytest.mark.parametrize(
    ("printed", "milliseconds"),
    [
        pytest.param("812.00us", 0.812, id="microseconds"),
        pytest.param("2.50ms", 2.5, id="milliseconds"),
        pytest.param("1.04s", 1040.0, id="seconds"),
        pytest.param("1.50m", 90_000.0, id="minutes"),
    ],
)
def test_every_time_unit_wrk_prints_becomes_milliseconds(printed, milliseconds):
    text = CLEAN.replace("     99%   29.87ms", f"     99%   {printed}")
    assert wrk.parse_output(text).p99_ms == pytest.approx(milliseconds)


def test_output_without_a_latency_distribution_is_refused():
    without = "\n".join(line for line in CLEAN.splitlines() if "%   " not in line or "Latency" in line)
    with pytest.raises(wrk.WrkOutputError, match="latency distribution"):
        wrk.parse_output(without)


@pytest.mark.parametrize(
    "text",
    [pytest.param("", id="empty"), pytest.param("unable to connect to 127.0.0.1:1 Connection refused\n", id="refused")],
)
def test_output_that_is_not_a_wrk_report_is_refused(text):
    with pytest.raises(wrk.WrkOutputError):
        wrk.parse_output(text)


def test_the_command_pins_wrk_and_passes_script_arguments_after_the_url():
    cmd = wrk.command(
        url="http://127.0.0.1:8000/", script="codes.lua", script_args=["/tmp/codes.txt", "", "7"],
        seconds=10, connections=64, cpu=1,
    )
    assert cmd[:3] == ["taskset", "-c", "1"]
    assert cmd[3:8] == ["wrk", "-t1", "-c64", "-d10s", "--latency"]
    assert cmd[-4:] == ["http://127.0.0.1:8000/", "/tmp/codes.txt", "", "7"]
    assert cmd[cmd.index("-s") + 1].endswith("bench/lua/codes.lua")


def test_without_a_cpu_wrk_is_not_pinned():
    cmd = wrk.command(url="http://127.0.0.1:8000/", script="hot.lua", script_args=["x"], seconds=1, connections=1)
    assert cmd[0] == "wrk"
