"""The bench times with the core's timer, summary and capture, as many calls as its policy
says. Call counts and medians here are hand-computed from fake durations."""

import contextlib
import math

import numpy as np
import pytest

from ganbench.bench import attention, plan, shapes, timing
from ganbench.training import graphs, measure

TINY = shapes.Shape("tiny", 16, 8, 24)


class FakeTimer:
    """Stands in for measure.StepTimer: call i (1-based, counting every timer built) lasts
    ``durations(i)`` seconds; records how many timers the bench built."""

    built = []

    def __init__(self, device, durations=lambda i: i / 1000):
        self.device, self.durations, self._seconds = device, durations, []
        FakeTimer.built.append(self)

    def start(self):
        pass

    def stop(self):
        self._seconds.append(self.durations(len(self._seconds) + 1))

    def seconds(self):
        return list(self._seconds)


def count_calls(fn_calls):
    def fn():
        fn_calls.append(1)
    return fn


# ---- the policy: how many calls ---------------------------------------------------------------
def test_policy_meets_both_minimums_in_one_batch_after_a_probe():
    policy = timing.TimingPolicy(min_calls=10, min_seconds=0.25)
    step = 2 ** -7  # 7.8125 ms, exact in binary: 32 calls are exactly 0.25 s
    assert policy.calls_to_add([]) == 1  # the probe
    assert policy.calls_to_add([step]) == 31  # 0.25 s needs 32 calls, more than 10
    assert policy.calls_to_add([step] * 32) == 0
    assert policy.calls_to_add([0.5]) == 9  # one slow call: only the count is missing
    assert policy.calls_to_add([0.5] * 10) == 0


def test_policy_caps_win_over_the_minimums():
    # 0.3 s calls, at most 1 s: after the probe two more fit (0.9 s), a fourth would pass it
    policy = timing.TimingPolicy(min_calls=20, min_seconds=0, max_seconds=1.0)
    assert policy.calls_to_add([0.3]) == 2
    assert policy.calls_to_add([0.3] * 3) == 0  # 3 < 20 calls, but the time cap wins
    # calls too fast for the timer (0 s) can never meet a minimum time: max_calls ends it
    policy = timing.TimingPolicy(min_calls=5, min_seconds=1.0, max_calls=50)
    assert policy.calls_to_add([0.0]) == 49 and policy.calls_to_add([0.0] * 50) == 0


@pytest.mark.parametrize("bad", [dict(min_calls=0), dict(warmup=-1), dict(max_calls=0),
                                 dict(min_seconds=-1.0), dict(min_seconds=math.nan),
                                 dict(max_seconds=0.0)])
def test_policy_refuses_values_out_of_range(bad):
    with pytest.raises(ValueError):
        timing.TimingPolicy(**bad)


def test_time_calls_warms_up_untimed_then_times_what_the_policy_asks(monkeypatch):
    monkeypatch.setattr(measure, "StepTimer", FakeTimer)
    made = []
    # call i lasts i ms: the probe (1 ms), then ceil((10 - 1) / 1) = 9 more: 10 calls, 55 ms
    policy = timing.TimingPolicy(warmup=2, min_calls=4, min_seconds=0.010)
    seconds = timing.time_calls(count_calls(made), "cpu", policy)
    assert seconds == pytest.approx([i / 1000 for i in range(1, 11)])
    assert len(made) == 2 + 10  # the warm-up calls ran, untimed


# ---- the bench's numbers come from the core -------------------------------------------------
def test_bench_rows_follow_the_core_timer(monkeypatch):
    FakeTimer.built = []
    monkeypatch.setattr(measure, "StepTimer", FakeTimer)
    attend = plan.attention_specs()["eager-attn"].factory()
    policy = timing.TimingPolicy(warmup=1, min_calls=5, min_seconds=0)
    row = attention.bench_one("eager-attn", attend, TINY, 2, "fp32", "cpu", "fwd", policy,
                              device_name="cpu")
    # five calls of 1..5 ms: median 3, p10 1 + 0.4 * (2 - 1) = 1.4, p90 4.6 (linear)
    assert (row["median_ms"], row["count"]) == (pytest.approx(3.0), 5)
    assert row["p10_ms"] == pytest.approx(1.4) and row["p90_ms"] == pytest.approx(4.6)
    assert row["tflops"] == pytest.approx(row["flops"] / 3e-3 / 1e12)
    assert len(FakeTimer.built) == 1 and FakeTimer.built[0].device == "cpu"


def test_bench_rows_use_the_core_summary(monkeypatch):
    seen = []

    def summarize(seconds, batch_size):
        seen.append(list(seconds))
        return {"step_ms_median": 7.0, "step_ms_p10": 6.0, "step_ms_p90": 9.0,
                "timed_steps": 42, "img_per_s": 1.0}

    monkeypatch.setattr(measure, "summarize", summarize)
    attend = plan.attention_specs()["eager-attn"].factory()
    policy = timing.TimingPolicy(warmup=0, min_calls=3, min_seconds=0, max_calls=3)
    row = attention.bench_one("eager-attn", attend, TINY, 2, "fp32", "cpu", "fwd+bwd", policy,
                              device_name="cpu")
    assert (row["median_ms"], row["p10_ms"], row["p90_ms"], row["count"]) == (7.0, 6.0, 9.0, 42)
    assert len(seen[0]) == 3  # the three timed calls went to the core's summary
    assert row["graph_count"] == 42  # the (empty) graph timing is summarised there too


def test_summary_matches_numpy_percentiles():
    seconds = [0.004, 0.001, 0.010, 0.002, 0.003, 0.050]
    stats = timing.summary(seconds, prefix="graph_")
    ms = np.array(seconds) * 1e3
    assert stats == pytest.approx({"graph_median_ms": np.median(ms),
                                   "graph_p10_ms": np.percentile(ms, 10),
                                   "graph_p90_ms": np.percentile(ms, 90), "graph_count": 6})
    empty = timing.summary([])
    assert empty["count"] == 0 and math.isnan(empty["median_ms"])


# ---- CUDA-graph timing through the core's capture, with a stand-in graph on the CPU ---------
class StandInGraph:
    """Capture runs the call once (recording it), replay runs it again."""

    def __init__(self, fail_capture=None):
        self.fn_calls = None
        self.fail_capture = fail_capture
        self.replays = 0

    @contextlib.contextmanager
    def capture(self):
        if self.fail_capture:
            raise RuntimeError(self.fail_capture)
        yield

    def replay(self):
        self.replays += 1


def test_graph_timing_warms_up_captures_uploads_then_times_replays(monkeypatch):
    monkeypatch.setattr(measure, "StepTimer", FakeTimer)
    graph, made = StandInGraph(), []
    policy = timing.TimingPolicy(warmup=7, min_calls=4, min_seconds=0)
    seconds, status = timing.time_graph(count_calls(made), "cpu", policy,
                                        graph_factory=lambda: graph)
    assert status == "ok" and seconds == pytest.approx([0.001, 0.002, 0.003, 0.004])
    # GRAPH_WARMUP eager calls and the captured one; the policy's warm-up is not used
    assert len(made) == timing.GRAPH_WARMUP + 1
    assert graph.replays == 1 + 4  # one uncounted upload, four timed


def test_a_failing_capture_or_call_is_a_one_line_status_naming_the_cause():
    policy = timing.TimingPolicy(warmup=0, min_calls=2, min_seconds=0)
    seconds, status = timing.time_graph(lambda: None, "cpu", policy,
                                        graph_factory=lambda: StandInGraph("not permitted\nx"))
    assert seconds == [] and status == "capture failed: RuntimeError: not permitted"

    calls = []

    def fails_when_captured():  # fine eagerly, fails on its 4th call: the captured one
        calls.append(1)
        if len(calls) > timing.GRAPH_WARMUP:
            raise ValueError("syncs the host")

    seconds, status = timing.time_graph(fails_when_captured, "cpu", policy,
                                        graph_factory=lambda: StandInGraph())
    assert seconds == [] and status == "capture failed: ValueError: syncs the host"


def test_core_capture_raises_the_calls_own_error_over_the_captures():
    class Strict(StandInGraph):
        @contextlib.contextmanager
        def capture(self):
            yield
            raise RuntimeError("capture invalidated")  # what capture_end says after a failure

    def broken():
        raise KeyError("the real cause")

    with pytest.raises(KeyError, match="the real cause"):
        graphs.capture(Strict(), broken)
    with pytest.raises(RuntimeError, match="capture invalidated"):
        graphs.capture(Strict(), lambda: None)
    assert graphs.capture(StandInGraph(), lambda: 5) == 5
    assert graphs.on_side_stream(lambda: 6, "cpu") == 6
