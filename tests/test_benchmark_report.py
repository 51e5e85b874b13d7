"""Benchmark rows carry the measured figures and say how they ran; the report compares each variant with FP32
in its own runtime (PyTorch: TorchScript, as its INT8 model) and with the fastest floating-point row of any
runtime; an OpenVINO row called FP32 runs in FP32."""

import json

import pytest

from visioncompress.benchmark import benchmark, read_results, write_results
from visioncompress.benchmark.runners import openvino_float_precisions
from visioncompress.config import BenchmarkConfig, TorchPTQConfig
from visioncompress.cpu import cpu_features
from visioncompress.quantize import quantize
from visioncompress.report import build_report, compare, kfp_scalars
from visioncompress.report.build import pareto_front

REQUIRED = {"variant", "backend", "batch_size", "p50_ms", "p90_ms", "top1", "size_mb", "throughput_ips",
            "insize", "architecture", "execution", "precision"}
FAST = BenchmarkConfig(batch_size=8, extra_batch_sizes=[], warmup=1, iterations=5, time_budget_s=2,
                       max_test_samples=300)


@pytest.fixture(scope="module")
def rows(fp32_model_dir, dataset_dir, tmp_path_factory):
    int8 = tmp_path_factory.mktemp("bench") / "int8"
    quantize(fp32_model_dir, dataset_dir, int8, TorchPTQConfig(batch_size=32))
    measured = benchmark(fp32_model_dir, dataset_dir, FAST, fp32_runtimes=("torch", "onnxruntime", "openvino"))
    return measured + benchmark(int8, dataset_dir, FAST)


def _expected_variants():
    torch_rows = [("fp32", "torch"), ("fp32-eager", "torch")] + ([("bf16", "torch")] if cpu_features().bf16 else [])
    openvino = [(p, "openvino") for p in openvino_float_precisions()]
    return torch_rows + openvino + [("fp32", "onnxruntime"), ("int8", "torch")]


def test_rows_have_every_figure(rows):
    assert {(r["variant"], r["backend"], r["batch_size"]) for r in rows} == {
        (v, b, n) for v, b in _expected_variants() for n in (1, 8)}
    for row in rows:
        assert REQUIRED <= row.keys()
        assert row["insize"] == 32 and row["architecture"] == "resnet18"
        assert 0 < row["p50_ms"] <= row["p90_ms"] and row["size_mb"] > 0 and row["test_images"] == 300
    fp32 = [r for r in rows if r["precision"] == "fp32" and r["variant"].startswith("fp32")]
    # the same weights give the same accuracy in every runtime; BF16/FP16 carry their own accuracy
    assert max(r["top1"] for r in fp32) - min(r["top1"] for r in fp32) <= 0.5
    for row in rows:
        if row["precision"] in ("bf16", "fp16"):
            assert abs(row["top1"] - fp32[0]["top1"]) <= 2.0
    int8 = next(r for r in rows if r["variant"] == "int8")
    assert int8["size_mb"] < 0.5 * fp32[0]["size_mb"]


def test_fp32_rows_run_in_fp32(rows):
    """OpenVINO's FP32 row is compiled with the f32 hint (its default is bf16 on BF16 CPUs); PyTorch's FP32
    row is TorchScript like its INT8 model, eager is a row of its own."""
    by_key = {(r["variant"], r["backend"]): r for r in rows}
    assert "INFERENCE_PRECISION_HINT=f32" in by_key["fp32", "openvino"]["execution"]
    for precision, hint in (("bf16", "bf16"), ("fp16", "f16")):
        if (precision, "openvino") in by_key:
            assert f"INFERENCE_PRECISION_HINT={hint}" in by_key[precision, "openvino"]["execution"]
    assert by_key["fp32", "torch"]["execution"] == "TorchScript trace+freeze"
    assert by_key["fp32-eager", "torch"]["execution"] == "eager"
    assert by_key["int8", "torch"]["format"] == "torchscript"


def test_compare_and_report(rows, tmp_path):
    compared = compare(rows)
    for row in compared:
        base = next(r for r in rows if (r["variant"], r["backend"], r["batch_size"]) == ("fp32", row["backend"],
                                                                                          row["batch_size"]))
        assert row["speedup"] == pytest.approx(base["p50_ms"] / row["p50_ms"], abs=0.006)
        assert row["top1_delta"] == pytest.approx(row["top1"] - base["top1"], abs=0.01)
        floats = [r for r in rows if r["batch_size"] == row["batch_size"] and r["precision"] != "int8"]
        fastest = min(floats, key=lambda r: r["p50_ms"])
        assert row["speedup_vs_float"] == pytest.approx(fastest["p50_ms"] / row["p50_ms"], abs=0.006)
        assert row["fastest_float"] == f"{fastest['variant']}/{fastest['backend']}"
    write_results(rows, tmp_path / "rows.json")
    assert read_results([tmp_path / "rows.json"]) == rows
    text = build_report(rows, tmp_path / "report.md", tmp_path / "report.json", plot_path=tmp_path / "plot.png")
    assert "| int8 | torch | TorchScript | 8 |" in text and "data:image/png;base64," in text
    assert "Pareto front" in text and "fp32-eager/torch: eager" in text
    assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"
    assert len(json.loads((tmp_path / "report.json").read_text())) == len(rows)
    scalars = kfp_scalars(rows)
    assert "int8-torch-b8-speedup" in scalars and "fp32-openvino-top1" in scalars
    assert "int8-torch-b8-speedup_vs_float" in scalars


def test_pareto_front_keeps_only_undominated_rows():
    def row(name, ms, top1):
        return {"variant": name, "backend": "x", "batch_size": 1, "p50_ms": ms, "top1": top1}

    a, b, c, d = row("a", 1.0, 80.0), row("b", 2.0, 85.0), row("c", 3.0, 84.0), row("d", 4.0, 90.0)
    assert [r["variant"] for r in pareto_front([c, d, a, b])] == ["a", "b", "d"]
    # a tie in latency keeps the more accurate one
    assert [r["variant"] for r in pareto_front([row("e", 1.0, 79.0), a])] == ["a"]
