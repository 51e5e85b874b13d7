"""End-to-end detectors: one graph from image batch to detections, NMS inside (visioncompress.detection.export).

The FP32 graph must give the PyTorch detector's own detections (torchvision's post-processing) in ONNX Runtime
and OpenVINO; INT8 graphs keep their post-processing in floating point and lose at most INT8_MAX_DROP mAP
points; every exported artifact loads and runs in a process where only its runtime is imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from visioncompress.benchmark.run import benchmark
from visioncompress.config import (
    BenchmarkConfig, DetectionPostConfig, OnnxPTQConfig, OpenVinoPTQConfig, TensorRTConfig,
)
from visioncompress.detection.benchmark import measure_map
from visioncompress.detection.data import load_detection_dataset
from visioncompress.detection.export import (
    OUTPUTS, PostSettings, default_settings, export_end_to_end, fp_node_names, resolve_settings,
)
from visioncompress.detection.heads import predict
from visioncompress.detection.metrics import match_detections
from visioncompress.detection.runners import detection_runner, split_detections
from visioncompress.detection.zoo import build_detector
from visioncompress.errors import ConfigError
from visioncompress.models import load_torch_module
from visioncompress.quantize import quantize

BOX_TOLERANCE_PX = 1.0  # the bound; measured <= 3.1e-5 px (ONNX Runtime and OpenVINO f32)
SCORE_TOLERANCE = 1e-3  # the bound; measured <= 2.1e-7
INT8_MAX_DROP = 1.0  # mAP points an end-to-end INT8 detector may lose (measured: ORT U8S8 +0.19, OpenVINO -0.14)
QUICK = BenchmarkConfig(extra_batch_sizes=[], warmup=1, iterations=3)


def _ort_outputs(path, images):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return split_detections(*session.run(None, {"input": images}))


def _ov_outputs(path, images):
    import openvino as ov

    model = ov.convert_model(str(path)) if str(path).endswith(".onnx") else ov.Core().read_model(str(path))
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled(images)
    return split_detections(*[result[compiled.outputs[i]] for i in range(4)])


def _assert_same_detections(reference, exported, *, what: str, min_share: float = 1.0):
    """Every reference detection has one with its label, a box within BOX_TOLERANCE_PX and a score within
    SCORE_TOLERANCE (``match_detections``, which `make bench` reports too). ``min_share`` < 1 allows that share of
    unmatched detections (exactly tied scores, where either runtime may pick either box)."""
    found = match_detections(reference, exported, box_px=BOX_TOLERANCE_PX, score=SCORE_TOLERANCE)
    if min_share == 1.0:
        assert found["count_differs"] == 0, f"{what}: numbers of detections differ from PyTorch's: {found}"
    assert found["matched"] >= min_share * found["detections"], f"{what}: detections unmatched: {found}"
    return found["detections"]


def test_fp32_end_to_end_graph_gives_the_pytorch_detections(detection_model_dir, detection_dataset_dir, tmp_path):
    detector = load_torch_module(detection_model_dir).eval()
    data = load_detection_dataset(detection_dataset_dir)
    images = np.concatenate([b.numpy() for b, _ in data.batches("test", 16, limit=32)])
    path = export_end_to_end(detector, data.manifest.input_size, default_settings(detector), tmp_path / "e2e.onnx")
    reference = predict(detector, torch.from_numpy(images))
    n_ort = _assert_same_detections(reference, _ort_outputs(path, images), what="onnxruntime")
    n_ov = _assert_same_detections(reference, _ov_outputs(path, images), what="openvino")
    print(f"{n_ort} detections on {len(images)} images matched in ONNX Runtime and OpenVINO")
    assert n_ort == n_ov > len(images)  # a trained detector: real detections to compare, not empty lists


@pytest.mark.parametrize("name", ["retinanet_resnet18_fpn", "ssdlite320_mobilenet_v3_large"])
def test_other_one_stage_families_export_the_same_detections(name, tmp_path):
    """Untrained detectors (seeded): a threshold low enough for many candidates, and slots for every one of
    them, so ties at a top-k cut cannot pick different boxes."""
    torch.manual_seed(0)
    insize = 96
    detector = build_detector(name, 3, insize, [0.5] * 3, [0.25] * 3).eval()
    detector.score_thresh, detector.detections_per_img = 0.005, 10_000  # RetinaNet starts near 0.01
    if name.startswith("ssd"):  # SSDlite's untrained classifier scores every class alike: spread its scores out
        with torch.no_grad():
            for parameter in detector.head.classification_head.parameters():
                parameter.normal_(0.0, 0.02)
    images = torch.rand(2, 3, insize, insize)
    path = export_end_to_end(detector, insize, default_settings(detector), tmp_path / "e2e.onnx")
    reference = predict(detector, images)
    # Untrained SSDlite scores many anchors exactly alike (measured: 1 of 412 detections picked differently).
    count = _assert_same_detections(reference, _ort_outputs(path, images.numpy()), what=f"{name} onnxruntime",
                                    min_share=0.98 if name.startswith("ssd") else 1.0)
    assert count > 0


def test_post_processing_parameters_shape_the_graph(detection_model_dir, detection_dataset_dir, tmp_path):
    detector = load_torch_module(detection_model_dir).eval()
    data = load_detection_dataset(detection_dataset_dir)
    images = np.concatenate([b.numpy() for b, _ in data.batches("test", 8, limit=8)])
    assert resolve_settings(detector, DetectionPostConfig()) == default_settings(detector)
    config = DetectionPostConfig(use_default=False, score_threshold=0.3, iou=0.3, nms_pre=50, max_per_image=3,
                                 max_per_class=1, min_size=4.0)
    settings = resolve_settings(detector, config)
    assert settings == PostSettings(0.3, 0.3, 50, 3, 1, 4.0)
    import onnxruntime as ort

    path = export_end_to_end(detector, data.manifest.input_size, settings, tmp_path / "custom.onnx")
    boxes, scores, labels, num = ort.InferenceSession(str(path)).run(None, {"input": images})
    assert boxes.shape == (8, 3, 4) and scores.shape == labels.shape == (8, 3) and num.shape == (8,)
    for i, n in enumerate(num):
        valid = slice(0, int(n))
        assert (scores[i, valid] > 0.3).all() and len(set(labels[i, valid])) == int(n)  # one box per class
        sizes = boxes[i, valid, 2:] - boxes[i, valid, :2]
        assert (sizes >= 4.0).all()
        assert (scores[i, int(n):] == 0).all() and (labels[i, int(n):] == -1).all()  # the padding convention
    with pytest.raises(ConfigError, match="IOU"):
        DetectionPostConfig(iou=0)
    with pytest.raises(ConfigError, match="MAX_BBOX_PER_IMG"):
        DetectionPostConfig(max_per_image=0)


@pytest.fixture(scope="module")
def exported(detection_model_dir, detection_dataset_dir, tmp_path_factory) -> dict[str, Path]:
    """FP32 and INT8 end-to-end artifacts of the fixture detector, each in its own runtime."""
    root = tmp_path_factory.mktemp("exported")
    out = {"onnx_int8": root / "onnx", "openvino_int8": root / "openvino", "tensorrt_qdq": root / "qdq"}
    quantize(detection_model_dir, detection_dataset_dir, out["onnx_int8"],
             OnnxPTQConfig(activation_type="QUInt8", weight_type="QInt8", batch_size=8))
    quantize(detection_model_dir, detection_dataset_dir, out["openvino_int8"],
             OpenVinoPTQConfig(transformer=False, subset_size=32))
    quantize(detection_model_dir, detection_dataset_dir, out["tensorrt_qdq"], TensorRTConfig(calibration_batch_size=8))
    return out


def test_int8_detectors_keep_map_and_post_processing_in_fp(exported, detection_model_dir, detection_dataset_dir):
    import onnx
    import openvino as ov

    rows = benchmark(detection_model_dir, detection_dataset_dir, QUICK, fp32_runtimes=("onnxruntime", "openvino"))
    fp32 = {r["backend"]: r["mAP"] for r in rows}
    assert len(set(fp32.values())) == 1, f"the same FP32 detector in every runtime: {fp32}"
    data = load_detection_dataset(detection_dataset_dir)
    for name, directory in exported.items():
        metadata, runner = detection_runner(directory)
        int8 = measure_map(runner, data)[0]["mAP"]
        print(f"{name}: test mAP {int8} vs FP32 {fp32['torch']}")
        assert int8 >= fp32["torch"] - INT8_MAX_DROP, name
        info = metadata.params["detection_export"]
        assert info["outputs"] == list(OUTPUTS) and info["fp_node_count"] == len(info["fp_nodes"]) > 0
        if metadata.format == "onnx":
            graph = onnx.load(str(directory / "model.onnx")).graph
            quantized = [n.name for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
            assert quantized and not set(quantized) & set(info["fp_nodes"])
        else:
            model = ov.Core().read_model(str(directory / "model.xml"))
            quantized = [op.get_friendly_name() for op in model.get_ops() if op.get_type_name() == "FakeQuantize"]
            assert quantized and not set(quantized) & set(info["fp_nodes"])


def test_tensorrt_qdq_detector_is_symmetric_with_nms_inside(exported):
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(exported["tensorrt_qdq"] / "model.onnx"))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "NonMaxSuppression", "TopK"} <= ops
    inits = {i.name: i for i in model.graph.initializer}
    zero_points = [numpy_helper.to_array(inits[n.input[2]]) for n in model.graph.node
                   if n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2] in inits]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)  # symmetric INT8
    assert json.loads((exported["tensorrt_qdq"] / "model.json").read_text())["metrics"]["calibration_images"] == 32


def test_tensorrt_engine_with_nms_builds_on_a_gpu(exported, tmp_path):
    from visioncompress.quantize.tensorrt import build_engine, tensorrt_unavailable_reason

    reason = tensorrt_unavailable_reason()
    if reason is not None:
        pytest.skip(f"TensorRT engine build needs TensorRT and a GPU: {reason}")
    metadata = build_engine(exported["tensorrt_qdq"], tmp_path / "engine",
                            TensorRTConfig(batch_size=1, dynamic_batch=True, max_batch_size=8))
    _, runner = detection_runner(tmp_path / "engine")
    images = np.random.default_rng(0).random((3, 3, 96, 96), dtype=np.float32)
    assert len(runner.predict(images)) == 3 and metadata.format == "tensorrt-engine"


RUNTIME_ONLY = textwrap.dedent('''
    import sys
    import numpy as np
    kind, path = sys.argv[1], sys.argv[2]
    images = np.random.default_rng(0).random((3, 3, 96, 96), dtype=np.float32)
    if kind == "onnx":
        import onnxruntime
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        boxes, scores, labels, num = session.run(None, {"input": images})
    else:
        import openvino
        compiled = openvino.Core().compile_model(openvino.Core().read_model(path), "CPU")
        result = compiled(images)
        boxes, scores, labels, num = (result[compiled.outputs[i]] for i in range(4))
    assert "torch" not in sys.modules, "the runtime pulled in torch"
    assert boxes.shape[0] == scores.shape[0] == labels.shape[0] == num.shape[0] == 3
    print(int(num.sum()), boxes.shape[1])
''')


def test_exported_detectors_run_with_only_their_runtime(exported, detection_model_dir, tmp_path):
    detector = load_torch_module(detection_model_dir).eval()
    fp32 = export_end_to_end(detector, 96, default_settings(detector), tmp_path / "fp32.onnx")
    cases = [("onnx", fp32), ("onnx", exported["onnx_int8"] / "model.onnx"),
             ("onnx", exported["tensorrt_qdq"] / "model.onnx"), ("openvino", exported["openvino_int8"] / "model.xml")]
    for kind, path in cases:
        done = subprocess.run([sys.executable, "-c", RUNTIME_ONLY, kind, str(path)], capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, f"{path}: {done.stderr[-2000:]}"
        detections, slots = map(int, done.stdout.split()[-2:])
        assert slots == default_settings(detector).max_per_image and detections >= 0


def test_fp_nodes_are_the_post_processing(tmp_path):
    detector = build_detector("fcos_resnet18_fpn", 2, 64, [0.5] * 3, [0.25] * 3).eval()
    path = export_end_to_end(detector, 64, default_settings(detector), tmp_path / "e2e.onnx")
    import onnx

    names = fp_node_names(path)
    ops = {n.name: n.op_type for n in onnx.load(str(path)).graph.node}
    assert "NonMaxSuppression" in {ops[n] for n in names} and "Conv" not in {ops[n] for n in names}


# --- Faster R-CNN (detection.export_two_stage) -----------------------------------------------------------------
RCNN = "fasterrcnn_mobilenet_v3_large_320_fpn"


def _spread_rcnn(insize: int):
    """An untrained, seeded Faster R-CNN with spread-out scores: torchvision's initialisation leaves backbone
    features near 1e-8 and every RPN score at exactly 0.5 (all tied), so the backbone gets Kaiming weights and
    the heads' last layers are scaled to logits of about unit size. Slots for every detection, so that no
    top-k cut falls between tied scores."""
    torch.manual_seed(0)
    detector = build_detector(RCNN, 3, insize, [0.5] * 3, [0.25] * 3).eval()
    with torch.no_grad():
        for module in detector.backbone.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        for parameter, std in ((detector.rpn.head.cls_logits.weight, 4e-4), (detector.rpn.head.bbox_pred.weight, 1e-4),
                               (detector.roi_heads.box_predictor.cls_score.weight, 1.5e-4),
                               (detector.roi_heads.box_predictor.bbox_pred.weight, 3e-6)):
            parameter.normal_(0.0, std)
    detector.roi_heads.detections_per_img = 10_000
    return detector


@pytest.mark.slow  # 262 s wall on the shared 2-core machine (27 s CPU)
def test_faster_rcnn_exports_as_one_graph_with_the_pytorch_detections(tmp_path):
    """RPN NMS and the final per-class NMS as ONNX NonMaxSuppression, RoIAlign as ONNX RoiAlign; exported at
    batch 1, run at batch 3 (dynamic batch) in ONNX Runtime and OpenVINO."""
    import onnx

    insize = 128
    detector = _spread_rcnn(insize)
    path = export_end_to_end(detector, insize, default_settings(detector), tmp_path / "rcnn.onnx")
    types = {n.name: n.op_type for n in onnx.load(str(path)).graph.node}
    assert list(types.values()).count("NonMaxSuppression") == 2 and "RoiAlign" in types.values()
    fp_types = {types[n] for n in fp_node_names(path)}  # proposal selection, RoIAlign, decoding, NMS: not quantized
    assert {"NonMaxSuppression", "RoiAlign", "TopK", "Sigmoid", "Softmax"} <= fp_types
    assert not {"Conv", "Gemm"} & fp_types  # backbone, FPN, RPN head and box head are the quantizable core
    images = torch.rand(3, 3, insize, insize)
    reference = predict(detector, images)
    n_ort = _assert_same_detections(reference, _ort_outputs(path, images.numpy()), what="faster r-cnn onnxruntime")
    n_ov = _assert_same_detections(reference, _ov_outputs(path, images.numpy()), what="faster r-cnn openvino")
    print(f"{n_ort} Faster R-CNN detections on 3 images matched in ONNX Runtime and OpenVINO")
    assert n_ort == n_ov > 3


@pytest.mark.slow
def test_faster_rcnn_int8_keeps_proposal_selection_and_nms_in_fp(detection_short_dataset_dir, tmp_path):
    """ONNX Runtime and OpenVINO INT8 of a Faster R-CNN artifact: Q/DQ (FakeQuantize) only in the network,
    RPN proposal selection, RoIAlign, decoding and both NMS in floating point; each runs with only its runtime."""
    import onnx
    import openvino as ov

    from visioncompress.config import ModelConfig, TrainConfig
    from visioncompress.train import finetune

    fp32 = tmp_path / "fp32"  # untrained: the structure is what this test checks
    finetune(detection_short_dataset_dir, fp32, ModelConfig(model=RCNN), TrainConfig(batch_size=8, training=False))
    outputs = {"onnx": tmp_path / "onnx", "openvino": tmp_path / "openvino"}
    quantize(fp32, detection_short_dataset_dir, outputs["onnx"],
             OnnxPTQConfig(activation_type="QUInt8", weight_type="QInt8", batch_size=8))
    quantize(fp32, detection_short_dataset_dir, outputs["openvino"],
             OpenVinoPTQConfig(transformer=False, subset_size=16))
    for kind, directory in outputs.items():
        metadata, _ = detection_runner(directory)
        info = metadata.params["detection_export"]
        if kind == "onnx":
            graph = onnx.load(str(directory / "model.onnx")).graph
            types = {n.name: n.op_type for n in graph.node}
            quantized = [n for n, t in types.items() if t in ("QuantizeLinear", "DequantizeLinear")]
            path = directory / "model.onnx"
        else:
            model = ov.Core().read_model(str(directory / "model.xml"))
            types = {op.get_friendly_name(): op.get_type_name() for op in model.get_ops()}
            quantized = [n for n, t in types.items() if t == "FakeQuantize"]
            path = directory / "model.xml"
        fp_types = {types[n] for n in info["fp_nodes"] if n in types}
        assert quantized and not set(quantized) & set(info["fp_nodes"]), kind
        assert {"TopK"} <= fp_types and ({"NonMaxSuppression", "RoiAlign"} <= fp_types
                                         or {"NonMaxSuppression", "ROIAlign"} <= fp_types), (kind, fp_types)
        done = subprocess.run([sys.executable, "-c", RUNTIME_ONLY, kind, str(path)], capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, f"{path}: {done.stderr[-2000:]}"


@pytest.mark.slow  # 276 s / 771 s wall on the shared 2-core machine at load 16
@pytest.mark.parametrize("max_drop, calibration", [(0.5, 32), (0.01, 1)])
def test_openvino_ptq_with_accuracy_control_runs_and_meets_its_bound(max_drop, calibration, detection_model_dir,
                                                                     detection_dataset_dir, tmp_path):
    """MAX_ACCURACY_DROP > 0: ``nncf.quantize_with_accuracy_control`` with validation mAP (32 images) as its
    metric. The returned model meets the bound on the validation split, or the stage reports the operations
    NNCF reverted to floating point and that the bound was not reached. The second case (1 calibration image,
    a 0.01-point bound) makes the fully quantized model miss the bound, so NNCF ranks and reverts layers
    (measured: initial drop 0.03, 10 of 137 quantized operations reverted, final drop 0.0)."""
    import openvino as ov

    out = tmp_path / "ov-ac"
    metadata = quantize(detection_model_dir, detection_dataset_dir, out,
                        OpenVinoPTQConfig(transformer=False, subset_size=calibration, max_accuracy_drop=max_drop))
    report = metadata.metrics["accuracy_control"]
    print(f"accuracy control (MAX_ACCURACY_DROP={max_drop}): val mAP {metadata.metrics['val_mAP']} vs FP32 "
          f"{metadata.metrics['val_mAP_fp32']}; initial drop {report['initial_drop']}; {len(report['reverted'])} "
          f"of {report['quantized_operations']} reverted; NNCF: {report['nncf']}")
    assert metadata.params["detection_export"]["quantized_by"] == "nncf.quantize_with_accuracy_control"
    assert metadata.metrics["val_mAP_fp32"] > 0  # a detector that detects: the bound means something
    assert report["initial_drop"] is not None
    if report["initial_drop"] > max_drop:  # NNCF had to restore accuracy: it says which operations it reverted
        assert report["reverted"] and len(report["reverted"]) < report["quantized_operations"], report
    assert report["meets_max_drop"] or report["reverted"], report
    assert report["drop"] == pytest.approx(metadata.metrics["val_mAP_fp32"] - metadata.metrics["val_mAP"], abs=1e-3)
    model = ov.Core().read_model(str(out / "model.xml"))
    assert any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
    _, runner = detection_runner(out)
    data = load_detection_dataset(detection_dataset_dir)
    assert measure_map(runner, data)[0]["mAP"] >= 0 and report["nncf"]


def test_two_stage_detectors_other_than_faster_rcnn_are_refused(tmp_path):
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=3).eval()
    with pytest.raises(ConfigError, match="Faster R-CNN") as error:
        export_end_to_end(model, 64, PostSettings(0.05, 0.5, 100, 10, 0, 0.0), tmp_path / "mask.onnx")
    assert error.value.parameter == "MODEL" and not (tmp_path / "mask.onnx").exists()
