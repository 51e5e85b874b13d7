"""Benchmark rows carry the measured figures; the report compares each variant with its own FP32."""

import json

import pytest

from visioncompress.benchmark import benchmark, read_results, write_results
from visioncompress.config import BenchmarkConfig, TorchPTQConfig
from visioncompress.quantize import quantize
from visioncompress.report import build_report, compare, kfp_scalars

REQUIRED = {"variant", "backend", "batch_size", "p50_ms", "p90_ms", "top1", "size_mb", "throughput_ips"}
FAST = BenchmarkConfig(batch_size=8, extra_batch_sizes=[], warmup=1, iterations=5, time_budget_s=2,
                       max_test_samples=300)


@pytest.fixture(scope="module")
def rows(fp32_model_dir, dataset_dir, tmp_path_factory):
    int8 = tmp_path_factory.mktemp("bench") / "int8"
    quantize(fp32_model_dir, dataset_dir, int8, TorchPTQConfig(batch_size=32))
    measured = benchmark(fp32_model_dir, dataset_dir, FAST, fp32_runtimes=("torch", "onnxruntime", "openvino"))
    return measured + benchmark(int8, dataset_dir, FAST)


def test_rows_have_every_figure(rows):
    assert {(r["variant"], r["backend"], r["batch_size"]) for r in rows} == {
        (v, b, n) for v, b in [("fp32", "torch"), ("fp32", "onnxruntime"), ("fp32", "openvino"), ("int8", "torch")]
        for n in (1, 8)}
    for row in rows:
        assert REQUIRED <= row.keys()
        assert 0 < row["p50_ms"] <= row["p90_ms"] and row["size_mb"] > 0 and row["test_images"] == 300
    fp32 = [r for r in rows if r["variant"] == "fp32"]
    # the same weights give the same accuracy in every runtime
    assert max(r["top1"] for r in fp32) - min(r["top1"] for r in fp32) <= 0.5
    int8 = next(r for r in rows if r["variant"] == "int8")
    assert int8["size_mb"] < 0.5 * fp32[0]["size_mb"]


def test_compare_and_report(rows, tmp_path):
    compared = compare(rows)
    int8 = [r for r in compared if r["variant"] == "int8"]
    for row in int8:
        base = next(r for r in rows if (r["variant"], r["backend"], r["batch_size"]) == ("fp32", "torch",
                                                                                          row["batch_size"]))
        assert row["speedup"] == pytest.approx(base["p50_ms"] / row["p50_ms"], rel=0.01)
        assert row["top1_delta"] == pytest.approx(row["top1"] - base["top1"], abs=0.01)
    write_results(rows, tmp_path / "rows.json")
    assert read_results([tmp_path / "rows.json"]) == rows
    text = build_report(rows, tmp_path / "report.md", tmp_path / "report.json")
    assert "| int8 | torch | 8 |" in text and "data:image/png;base64," in text
    assert len(json.loads((tmp_path / "report.json").read_text())) == len(rows)
    scalars = kfp_scalars(rows)
    assert "int8-torch-b8-speedup" in scalars and "fp32-openvino-top1" in scalars
