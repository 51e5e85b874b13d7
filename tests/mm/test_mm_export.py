"""OpenMMLab detectors end to end (detection.mm.export): one ONNX graph from images to padded detections, the
same convention as the torchvision detectors'; ONNX Runtime / OpenVINO INT8 with the post-processing in FP.

Runs only in the mm environment (`make test-mm`).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from visioncompress.errors import ConfigError

pytestmark = pytest.mark.mm

RETINA = "mmdet::retinanet/retinanet_r18_fpn_1x_coco.py"
YOLOX_MMDET = "mmdet::yolox/yolox_tiny_8xb8-300e_coco.py"
YOLOX_MMYOLO = "mmyolo::yolox/yolox_tiny_fast_8xb8-300e_coco.py"
FCOS = "mmdet::fcos/fcos_r18_fpn_gn-head-center-normbbox-centeronreg-giou_8xb8-amp-lsj-200e_coco.py"
RTMDET = "mmyolo::rtmdet/rtmdet_tiny_syncbn_fast_8xb32-300e_coco.py"
SIZE = 128


def _wrapper(config: str, seed: int = 0, spread: bool = False, classes=("tshirt", "trouser", "bag"), size=SIZE):
    """An untrained detector of config at 128 px; with ``spread`` its batch-norm layers take the statistics of
    noise images, so that scores differ from point to point (untrained, they are all nearly equal)."""
    from visioncompress.detection.mm.configs import load_model_config
    from visioncompress.detection.mm.model import MMDetector
    from visioncompress.detection.mm.runner import build_model

    cfg = load_model_config(config, "config", len(classes))
    torch.manual_seed(seed)
    model = build_model(cfg.model).eval()
    if spread:  # batch-norm statistics of noise images: unit-variance features, scores that differ
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.reset_running_stats()
                module.momentum = None  # a plain average over the batches below
        model.train()
        with torch.no_grad():
            for _ in range(3):
                model(torch.rand(4, 3, SIZE, SIZE) * 255, mode="tensor")
        model.eval()
        for module in model.bbox_head.modules():  # the class and objectness outputs: logits around -1
            if isinstance(module, torch.nn.Conv2d) and module.out_channels in (1, len(classes), 9 * len(classes)):
                torch.nn.init.normal_(module.weight, std=0.1)
                torch.nn.init.constant_(module.bias, -1.0)
    return MMDetector(model, classes, size, cfg.family, cfg.model)


def _data_module():
    spec = importlib.util.spec_from_file_location("mm_test_data", Path(__file__).with_name("conftest.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sorted(boxes, scores, labels):
    order = np.argsort(-scores, kind="stable")
    return boxes[order], scores[order], labels[order]


def test_unsupported_heads_are_refused_naming_the_head(tmp_path):
    from visioncompress.detection.mm.export import export_mm

    for config, head in ((FCOS, "FCOSHead"), (RTMDET, "RTMDetHead")):
        with pytest.raises(ConfigError) as err:
            export_mm(_wrapper(config), tmp_path / "m.onnx")
        assert err.value.parameter == "MODEL" and head in str(err.value)
        assert "RetinaHead" in str(err.value) and "YOLOXHead" in str(err.value)
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("config", [RETINA, YOLOX_MMDET, YOLOX_MMYOLO])
def test_export_matches_mm_predict_in_onnxruntime(tmp_path, config):
    """Boxes within 1 px, scores within 1e-3, same labels (+1) as mm's own predict, with the same settings."""
    import onnxruntime as ort

    from visioncompress.detection.export import PostSettings
    from visioncompress.detection.mm.export import apply_settings, export_mm

    wrapper = _wrapper(config, spread=True)
    settings = PostSettings(score_threshold=0.05, iou=0.5, nms_pre=1000, max_per_image=50, max_per_class=0,
                            min_size=0.0)
    apply_settings(wrapper, settings)
    path = export_mm(wrapper, tmp_path / "e2e.onnx", settings)
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(3)]
    reference = wrapper.predict(images, score_thr=0.0)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch = np.stack([im.transpose(2, 0, 1).astype(np.float32) / 255 for im in images])
    boxes, scores, labels, num = session.run(None, {"input": batch})
    assert boxes.shape == (3, 50, 4) and labels.dtype == np.int64 and num.dtype == np.int64
    compared = 0
    for i, ref in enumerate(reference):
        n = int(num[i])
        ref_boxes, ref_scores, ref_labels = _sorted(np.clip(ref["boxes"], 0, SIZE), ref["scores"], ref["labels"])
        k = min(n, settings.max_per_image)
        assert n == min(len(ref_scores), settings.max_per_image), (n, len(ref_scores))
        assert n > 5  # something to compare
        np.testing.assert_allclose(scores[i, :k], ref_scores[:k], atol=1e-3)
        np.testing.assert_allclose(boxes[i, :k], ref_boxes[:k], atol=1.0)
        np.testing.assert_array_equal(labels[i, :k], ref_labels[:k] + 1)
        assert (labels[i, n:] == -1).all() and (scores[i, n:] == 0).all() and (boxes[i, n:] == 0).all()
        compared += k
    assert compared > 20


@pytest.mark.parametrize("config, first", [(RETINA, "cls_convs"), (YOLOX_MMDET, "multi_level_cls_convs"),
                                           (YOLOX_MMYOLO, "head_module")])
def test_head_node_names_are_the_head_and_only_the_head(tmp_path, config, first):
    import onnx

    from visioncompress.detection.mm.export import export_mm, head_node_names

    wrapper = _wrapper(config)
    path = export_mm(wrapper, tmp_path / "e2e.onnx")
    names = head_node_names(path, wrapper)
    convs = {n.name for n in onnx.load(str(path)).graph.node if n.op_type == "Conv"}
    assert any(f"/{first}" in name for name in names)
    assert not any("/backbone/" in name or "/neck/" in name or name.startswith("/post/") for name in names)
    # every conv after the neck is the head's
    assert {c for c in convs if "/backbone/" not in c and "/neck/" not in c} == convs & set(names)


def test_exported_graph_runs_without_torch_in_onnxruntime_and_openvino(tmp_path):
    """The graph alone (no torch imported) in both runtimes: the same detections, dynamic batch, padding -1."""
    from visioncompress.detection.export import PostSettings
    from visioncompress.detection.mm.export import export_mm

    settings = PostSettings(score_threshold=0.1, iou=0.5, nms_pre=1000, max_per_image=40, max_per_class=0,
                            min_size=0.0)
    path = export_mm(_wrapper(YOLOX_MMYOLO, spread=True), tmp_path / "e2e.onnx", settings)
    code = (
        "import sys, numpy as np, onnxruntime as ort, openvino as ov\n"
        "x = np.random.default_rng(0).random((2, 3, 128, 128), dtype=np.float32)\n"
        "a = ort.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider']).run(None, {'input': x})\n"
        "c = ov.Core().compile_model(ov.Core().read_model(sys.argv[1]), 'CPU', {'INFERENCE_PRECISION_HINT': 'f32'})\n"
        "r = c(x); b = [r[c.outputs[i]] for i in range(4)]\n"
        "assert 'torch' not in sys.modules\n"
        "n = a[3]; assert (n > 5).all() and (np.abs(n - b[3]) <= 1).all(), (n, b[3])\n"
        "for i in range(2):\n"
        "    assert (a[2][i, n[i]:] == -1).all() and (a[1][i, n[i]:] == 0).all()\n"
        "    assert a[2][i, :n[i]].min() >= 1 and a[2][i, :n[i]].max() <= 3\n"
        "    found = 0\n"
        "    for box, score, label in zip(a[0][i, :n[i]], a[1][i, :n[i]], a[2][i, :n[i]]):\n"
        "        near = (np.abs(b[0][i] - box).max(1) < 0.5) & (np.abs(b[1][i] - score) < 1e-3) & (b[2][i] == label)\n"
        "        found += bool(near.any())\n"
        "    assert found >= n[i] - 1, (found, n[i])\n"
        "print('ok', n.tolist(), a[0].shape)\n")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("ok")


def test_tensorrt_qdq_graph_is_symmetric_with_post_processing_in_fp(tmp_path, coco_root):
    """TensorRT PTQ's CPU half on an mm detector: symmetric INT8 Q/DQ (every zero point 0, per-channel weights)
    on the weighted layers' inputs, never on their outputs (TensorRT's placement); ``/post/`` (decoding, top-k,
    NMS) not fed by a DequantizeLinear; the head's convs in FP32 (quantized, a trained YOLOX-tiny fell from 10.25
    to 0.17 mAP; see ``quantize_mm_qdq``); the graph runs in ONNX Runtime with the padding convention. Entropy:
    a histogram calibrator, which stopped on the post-processing's inf values while every tensor was calibrated."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from visioncompress.config.tensorrt import TensorRTConfig
    from visioncompress.detection.mm.export import head_node_names, quantize_mm_qdq

    wrapper = _wrapper(YOLOX_MMYOLO, spread=True, size=64)
    info = quantize_mm_qdq(wrapper, coco_root, tmp_path / "qdq.onnx",
                           TensorRTConfig(calibration_batch_size=8, calibration_method="Entropy"))
    assert info["calibration_images"] == 16  # conftest's train split
    model = onnx.load(str(tmp_path / "qdq.onnx"))
    graph = model.graph
    assert {o.domain for o in model.opset_import} == {""}  # only the standard domain: TensorRT's parser's form
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    quantizers = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert sum(n.op_type == "QuantizeLinear" for n in quantizers) > 20
    zero_points = [inits[n.input[2]] for n in quantizers if len(n.input) > 2 and n.input[2] in inits]
    assert len(zero_points) == len(quantizers)
    assert all(z.dtype == np.int8 and not z.any() for z in zero_points)  # symmetric INT8, no uint8 anywhere
    weight_scales = [inits[n.input[1]] for n in quantizers if n.op_type == "DequantizeLinear" and n.input[0] in inits
                     and inits[n.input[0]].ndim == 4]
    assert weight_scales and all(s.ndim == 1 and s.size > 1 for s in weight_scales)  # per-channel conv weights
    producer = {out: n.op_type for n in graph.node for out in n.output}
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, set()).add(node.op_type)
    dequantized = [o for n in quantizers if n.op_type == "DequantizeLinear" for o in n.output]
    assert dequantized and all("Conv" in consumers.get(o, ()) for o in dequantized)  # only a Conv's input tensors
    assert not any(producer.get(n.input[0]) == "Conv" for n in quantizers if n.op_type == "QuantizeLinear")
    post = [n for n in graph.node if n.name.startswith("/post/")]
    assert {"NonMaxSuppression", "TopK"} <= {n.op_type for n in post}
    assert not any(producer.get(i) == "DequantizeLinear" for n in post for i in n.input)
    assert set(info["fp_nodes"]) >= {n.name for n in post}
    head = set(head_node_names(tmp_path / "qdq.onnx", wrapper))
    head_convs = [n for n in graph.node if n.op_type == "Conv" and n.name in head]
    assert head_convs and info["fp_head_nodes"] == len(head)
    assert not any(producer.get(i) == "DequantizeLinear" for n in head_convs for i in n.input)
    assert any(producer.get(n.input[1]) == "DequantizeLinear" for n in graph.node if n.op_type == "Conv")
    session = ort.InferenceSession(str(tmp_path / "qdq.onnx"), providers=["CPUExecutionProvider"])
    batch = np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32)
    boxes, scores, labels, num = session.run(None, {"input": batch})
    assert boxes.shape[:2] == scores.shape == labels.shape and num.shape == (2,) and (num > 0).all()
    for i in range(2):
        assert (labels[i, num[i]:] == -1).all() and 1 <= labels[i, :num[i]].min() <= labels[i, :num[i]].max() <= 3


TRAINED_SIZE = 96


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """YOLOX-tiny (mmdet) trained briefly from scratch on a larger version of the conftest COCO set, at 96 px."""
    from bench.mm_detection import train_detector

    root = _data_module().make_coco(tmp_path_factory.mktemp("mmx") / "coco",
                                    counts=(("train", 64), ("val", 8), ("test", 32)))
    torch.manual_seed(0)
    wrapper, _ = train_detector(YOLOX_MMDET, root, tmp_path_factory.mktemp("mmx-train"), insize=TRAINED_SIZE,
                                iters=160, batch_size=4, lr=0.02)
    return wrapper, root


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino", "tensorrt-qdq"])
def test_int8_loses_at_most_one_map_point_against_fp32(tmp_path, trained, runtime):
    """tensorrt-qdq: TensorRT PTQ's symmetric QDQ graph, measured in ONNX Runtime (the CPU half's output; the
    engine built from it on a GPU node runs the same INT8 arithmetic in TensorRT's kernels)."""
    import onnx
    import onnxruntime as ort
    import openvino as ov

    from visioncompress.config import OnnxPTQConfig, OpenVinoPTQConfig, TensorRTConfig
    from visioncompress.detection.mm.export import (
        CocoImages, coco_map_exported, default_settings, export_mm, quantize_mm_onnx, quantize_mm_openvino,
        quantize_mm_qdq,
    )

    wrapper, root = trained
    settings = default_settings(wrapper)
    images = CocoImages(root, "test", TRAINED_SIZE)
    fp32 = ort.InferenceSession(str(export_mm(wrapper, tmp_path / "fp32.onnx", settings)))
    fp32_map = coco_map_exported(lambda b: fp32.run(None, {"input": b}), images)
    assert fp32_map > 5, fp32_map  # the model learned something (measured 10.25), so the bound below can fail

    if runtime == "onnxruntime":
        config = OnnxPTQConfig(batch_size=8, activation_type="QuantType.QUInt8", per_channel=True,
                               quant_format="QDQ", weight_type="QuantType.QInt8")
        info = quantize_mm_onnx(wrapper, root, tmp_path / "int8.onnx", config, settings)
        graph = onnx.load(str(tmp_path / "int8.onnx")).graph
        producer = {out: n.op_type for n in graph.node for out in n.output}
        assert sum(n.op_type == "QuantizeLinear" for n in graph.node) > 20 and info["fp_nodes"]
        post = [n for n in graph.node if n.op_type in ("NonMaxSuppression", "TopK", "Exp", "Sigmoid")
                and n.name.startswith("/post/")]
        assert post and not any(producer.get(i) == "DequantizeLinear" for n in post for i in n.input)
        # the head stays FP32 (measured: quantized, mAP 10.25 -> 3.56; see quantize_mm_onnx): its convs' weights
        # are float initializers, not DequantizeLinear outputs
        head_convs = [n for n in graph.node if n.op_type == "Conv" and "multi_level_conv_reg" in n.name]
        assert info["fp_head_nodes"] > 0 and len(head_convs) == 3
        assert not any(producer.get(n.input[1]) == "DequantizeLinear" for n in head_convs)
        int8 = ort.InferenceSession(str(tmp_path / "int8.onnx"))
        int8_map = coco_map_exported(lambda b: int8.run(None, {"input": b}), images)
    elif runtime == "tensorrt-qdq":
        quantize_mm_qdq(wrapper, root, tmp_path / "qdq.onnx", TensorRTConfig(calibration_batch_size=8), settings)
        int8 = ort.InferenceSession(str(tmp_path / "qdq.onnx"))
        int8_map = coco_map_exported(lambda b: int8.run(None, {"input": b}), images)
    else:
        quantize_mm_openvino(wrapper, root, tmp_path / "int8.xml",
                             OpenVinoPTQConfig(transformer=False, subset_size=48), settings)
        compiled = ov.Core().compile_model(str(tmp_path / "int8.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        int8_map = coco_map_exported(lambda b: [v for v in compiled(b).values()], images)
    print(f"{runtime}: mAP fp32 {fp32_map:.2f}, int8 {int8_map:.2f}")
    assert int8_map >= fp32_map - 1.0, (runtime, fp32_map, int8_map)


def test_detect_ptq_stages_take_an_mm_artifact(tmp_path, detection_dataset_dir):
    """PLATFORM mmdet / mmyolo through detect_ptq_onnx / detect_ptq_openvino: the stages see an mm-module
    artifact, quantize its end-to-end graph and write the same artifact as for a torchvision detector."""
    from visioncompress.artifacts import read_model_metadata
    from visioncompress.config import OnnxPTQConfig, OpenVinoPTQConfig
    from visioncompress.detection.data import load_detection_dataset
    from visioncompress.detection.mm.stage import _base_metadata, write_mm_artifact
    from visioncompress.detection.onnx_ptq import quantize_detector_onnx
    from visioncompress.detection.openvino_ptq import quantize_detector_openvino
    from visioncompress.detection.runners import detection_runner

    data = load_detection_dataset(detection_dataset_dir)
    wrapper = _wrapper(YOLOX_MMDET, spread=True, classes=data.manifest.classes, size=data.manifest.input_size)
    model_dir = tmp_path / "fp32"
    write_mm_artifact(wrapper, _base_metadata(data, "yolox_tiny_8xb8-300e_coco", "finetune",
                                              {"PLATFORM": "mmdet"}, {}, {}), model_dir)
    images = next(iter(data.batches("test", 2)))[0].numpy()
    for stage, config in [(quantize_detector_onnx, OnnxPTQConfig(batch_size=8)),
                          (quantize_detector_openvino, OpenVinoPTQConfig(subset_size=16))]:
        out = tmp_path / stage.__name__
        metadata = stage(model_dir, detection_dataset_dir, out, config)
        assert read_model_metadata(out).format == metadata.format in ("onnx", "openvino-ir")
        assert metadata.precision == "int8" and metadata.parent["format"] == "mm-module"
        assert metadata.params["detection_export"]["fp_node_count"] > 0
        predictions = detection_runner(out)[1].predict(images)  # the benchmark's runner for the artifact
        assert len(predictions) == 2 and all(len(p["boxes"]) > 0 for p in predictions)
        assert all(1 <= int(label) <= len(wrapper.classes) for p in predictions for label in p["labels"])


@pytest.mark.slow
def test_openvino_qat_of_the_trained_detector_keeps_fp32_map(tmp_path, trained):
    """detect_qat_openvino's steps (``stage.quantization_aware_training`` then ``export.save_mm_openvino``) on the
    trained YOLOX-tiny: NNCF's quantizers calibrated on its training images, one epoch at batch 16 through the mm
    Runner, the end-to-end IR compiled in f32 (its FakeQuantize ops run as INT8) within one mAP point of FP32."""
    import copy

    import openvino as ov

    from visioncompress.config import OpenVinoQATConfig, TrainConfig
    from visioncompress.detection.mm.export import (
        CocoImages, coco_map_exported, default_settings, export_mm, save_mm_openvino,
    )
    from visioncompress.detection.mm.stage import quantization_aware_training

    wrapper, root = trained
    settings = default_settings(wrapper)
    images = CocoImages(root, "test", TRAINED_SIZE)
    fp32 = ov.Core().compile_model(
        ov.convert_model(str(export_mm(wrapper, tmp_path / "fp32.onnx", settings))), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    fp32_map = coco_map_exported(lambda b: [v for v in fp32(b).values()], images)
    assert fp32_map > 5, fp32_map

    qat = copy.deepcopy(wrapper)  # the module-scoped fixture stays FP32
    config = OpenVinoQATConfig(qat_epochs=1, qat_learning_rate=0.002, batch_size=16, transformer=False,
                               subset_size=16)
    trained_with = quantization_aware_training(qat, root, tmp_path / "runner", config,
                                               TrainConfig(optimizer="SGD", workers=0, seed=0), split="train")
    assert trained_with["iterations"] == 4 and trained_with["lr"] == 0.002  # 64 images at 16, QAT_LEARNING_RATE
    info = save_mm_openvino(qat, tmp_path / "qat.xml", settings)
    ops = [op.get_type_name() for op in ov.Core().read_model(str(tmp_path / "qat.xml")).get_ordered_ops()]
    # an activation quantizer before every convolution (the weights' ones are folded into INT8 constants)
    assert ops.count("FakeQuantize") == info["fake_quantize_ops"] >= ops.count("Convolution") > 50
    compiled = ov.Core().compile_model(str(tmp_path / "qat.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    qat_map = coco_map_exported(lambda b: [v for v in compiled(b).values()], images)
    print(f"openvino QAT: mAP fp32 {fp32_map:.2f}, qat int8 {qat_map:.2f}")
    assert qat_map >= fp32_map - 1.0, (fp32_map, qat_map)


def test_benchmark_measures_an_mm_artifact_as_its_fp32_end_to_end_graphs(tmp_path, detection_dataset_dir):
    """``benchmark(..., fp32_runtimes=...)`` on an mm-module artifact (bench.mm_detection's FP32, pruned and
    distilled rows): the end-to-end export in ONNX Runtime and OpenVINO beside mm's own predict, the same
    detector: each of the graph's five best detections is one of mm's (same score); mm's own may have more at the
    border, where the export clips boxes to the input (``detection.mm.export``; measured on this untrained
    detector: the graph's best 0.924 is mm's third, mm's two best are boxes the export clips away)."""
    from visioncompress.benchmark import benchmark
    from visioncompress.config import BenchmarkConfig
    from visioncompress.detection.benchmark import fp32_exported_artifacts
    from visioncompress.detection.data import load_detection_dataset
    from visioncompress.detection.mm.stage import _base_metadata, write_mm_artifact
    from visioncompress.detection.runners import detection_runner

    data = load_detection_dataset(detection_dataset_dir)
    wrapper = _wrapper(YOLOX_MMDET, spread=True, classes=data.manifest.classes, size=data.manifest.input_size)
    model_dir = tmp_path / "fp32"
    write_mm_artifact(wrapper, _base_metadata(data, "yolox_tiny_8xb8-300e_coco", "finetune",
                                              {"PLATFORM": "mmdet"}, {}, {}), model_dir)
    quick = BenchmarkConfig(batch_size=2, extra_batch_sizes=[], warmup=0, iterations=2, time_budget_s=1,
                            max_test_samples=4)
    rows = benchmark(model_dir, detection_dataset_dir, quick, fp32_runtimes=("onnxruntime", "openvino"))
    forms = {(r["backend"], r["format"], r["precision"], r["batch_size"]) for r in rows}
    assert forms == {(backend, fmt, "fp32", n) for backend, fmt in (
        ("torch", "mm-module"), ("onnxruntime", "onnx"), ("openvino", "openvino-ir")) for n in (1, 2)}
    assert all(r["variant"] == "fp32" and r["test_images"] == 4 and r["p50_ms"] > 0 for r in rows)

    images = next(iter(data.batches("test", 2)))[0].numpy()
    reference = detection_runner(model_dir)[1].predict(images)
    (tmp_path / "exports").mkdir()
    for converted in fp32_exported_artifacts(model_dir, ("onnxruntime", "openvino"), tmp_path / "exports"):
        predictions = detection_runner(converted)[1].predict(images)
        assert len(predictions) == len(reference) == 2
        for mine, theirs in zip(predictions, reference):
            assert len(mine["scores"]) > 0 and len(theirs["scores"]) > 0
            best = np.sort(np.asarray(mine["scores"]))[::-1][:5]
            gaps = np.abs(best[:, None] - np.asarray(theirs["scores"])[None, :]).min(axis=1)
            assert (gaps < 1e-3).all(), (converted.name, best, gaps)
