"""Metric keys are data (bench.results.metrics.MetricKey): every name, summary column and baseline field is made from
a key and parses back to it, for any runtime name a registration allows."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.config.engines import RUNTIMES, register_runtime
from bench.results.metrics import RESERVED_ENDINGS, MetricKey, get_metric

RUNTIME_NAMES = st.text(
    alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789_-."), min_size=1, max_size=16
).filter(lambda n: not n.endswith(RESERVED_ENDINGS))


@given(runtime=RUNTIME_NAMES, batch=st.integers(1, 100_000), roofline=st.booleans())
def test_every_timed_key_round_trips_through_its_names(runtime: str, batch: int, roofline: bool) -> None:
    key = MetricKey("latency_roofline" if roofline else "latency", runtime=runtime, batch=batch)
    assert MetricKey.parse(key.name()) == key
    assert MetricKey.parse(key.column()) == key
    field = MetricKey.parse(key.baseline_field())
    assert (field.metric, field.runtime, field.batch) == (key.metric, runtime, None)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("latency_b256", MetricKey("latency", batch=256)),  # the names committed folders carry, unchanged
        ("latency_s_per_sample_b1", MetricKey("latency", batch=1)),
        ("latency_roofline_s_per_sample_b256", MetricKey("latency_roofline", batch=256)),
        ("latency_onnxruntime_b1", MetricKey("latency", runtime="onnxruntime", batch=1)),
        ("latency_onnxruntime_s_per_sample_b1", MetricKey("latency", runtime="onnxruntime", batch=1)),
        ("latency_onnxruntime_roofline_s_per_sample_b1", MetricKey("latency_roofline", runtime="onnxruntime", batch=1)),
        ("latency_onnxruntime_s_per_sample", MetricKey("latency", runtime="onnxruntime")),
        ("latency_tvm_b2_b32", MetricKey("latency", runtime="tvm_b2", batch=32)),  # the batch is the last part
        ("share_p1", MetricKey("share", exit="p1")),
        ("exit_accuracy_final", MetricKey("exit_accuracy", exit="final")),
        ("accuracy", MetricKey("accuracy")),
    ],
)
def test_names_parse_to_their_keys(text: str, key: MetricKey) -> None:
    assert MetricKey.parse(text) == key


def test_unknown_names_say_what_is_known() -> None:
    with pytest.raises(KeyError, match=r"unknown metric 'latencyb3'.*latency_<runtime>_b<N>"):
        get_metric("latencyb3")
    with pytest.raises(KeyError, match="unknown metric 'speed'"):
        MetricKey.parse("speed")


def test_a_runtime_name_a_key_could_not_carry_is_refused() -> None:
    for bad in ("my-roofline", "x_s_per_sample", "", " padded"):
        with pytest.raises(ValueError, match="runtime name"):
            register_runtime(bad, "cascade.runtime:EAGER")
    assert not any(n.endswith(RESERVED_ENDINGS) for n in RUNTIMES.names())


def test_a_latency_metric_reads_its_runtime_and_batch() -> None:
    metric = get_metric("latency_my_rt-2_b32")
    assert metric.name == "latency_my_rt-2_b32" and metric.label == "latency my_rt-2 b32 (µs/sample)"
    assert get_metric("latency_b1").label == "latency b1 (µs/sample)"
