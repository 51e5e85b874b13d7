"""OpenMMLab family: compat fixes, PKD/CWD/pkd_yolo distillation, GroupFisher pruning, COCO mAP, errors.

Runs only in the mm environment: `make test-mm`. Everything is weights-free at 128 px on a tiny COCO set.
"""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from visioncompress.errors import ConfigError

pytestmark = pytest.mark.mm

RETINA = "mmdet::retinanet/retinanet_r18_fpn_1x_coco.py"
FCOS = "mmdet::fcos/fcos_r18_fpn_gn-head-center-normbbox-centeronreg-giou_8xb8-amp-lsj-200e_coco.py"
RTMDET = "mmyolo::rtmdet/rtmdet_tiny_syncbn_fast_8xb32-300e_coco.py"
FAST = dict(epochs=1, batch_size=2, insize=128)


@pytest.fixture(scope="module")
def retina_ckpt(tmp_path_factory, make_checkpoint):
    return make_checkpoint(RETINA, tmp_path_factory.mktemp("ckpt") / "retina_r18.pth")


class Evil:
    def __reduce__(self):
        return (print, ("unpickled arbitrary code",))


def test_compat_makes_the_mm_stack_importable_and_serves_the_ops():
    from visioncompress.detection.mm import mm_compat
    mm_compat()
    ext = sys.modules["mmcv._ext"]
    mm_compat()
    assert sys.modules["mmcv._ext"] is ext  # idempotent
    import mmdet.models  # noqa: F401
    import mmrazor.models  # noqa: F401
    import mmyolo.models  # noqa: F401
    from mmcv.ops import DeformConv2d, RoIAlign, batched_nms, sigmoid_focal_loss
    from mmdet.models.losses.focal_loss import py_sigmoid_focal_loss

    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30.]])
    dets, keep = batched_nms(boxes, torch.tensor([0.9, 0.8, 0.7]), torch.zeros(3), dict(type="nms", iou_threshold=0.5))
    assert keep.tolist() == [0, 2]
    assert RoIAlign((7, 7), 1 / 8).use_torchvision

    x = torch.randn(16, 4, requires_grad=True)
    target = torch.randint(0, 5, (16,))  # 4 = background
    ours = sigmoid_focal_loss(x, target, 2.0, 0.25, None, "none")
    ref = py_sigmoid_focal_loss(x, torch.nn.functional.one_hot(target, 5)[:, :4], None, 2.0, 0.25, "none")
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(torch.autograd.grad(ours.sum(), x)[0], torch.autograd.grad(ref.sum(), x)[0])
    with pytest.raises(NotImplementedError, match="deform_conv"):
        DeformConv2d(4, 4, 3)(torch.zeros(1, 4, 8, 8), torch.zeros(1, 18, 6, 6))


def test_checkpoint_allowance_is_scoped_and_torch_load_stays_safe(retina_ckpt, tmp_path):
    from visioncompress.detection.mm import mm_compat
    ckpt = retina_ckpt
    evil = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, evil)
    import numpy as np_
    from mmengine.logging import HistoryBuffer
    sneaky = tmp_path / "sneaky.pt"
    # getattr on something other than HistoryBuffer's statistics methods
    torch.save({"f": _Reduce(getattr, (np_.ndarray, "tofile"))}, sneaky)
    before = set(torch.serialization.get_safe_globals())

    with mm_compat():
        assert torch.load(ckpt)["message_hub"]["log_scalars"]["train/loss"].current() == 1.5
        assert isinstance(torch.load(ckpt)["message_hub"]["log_scalars"]["train/loss"], HistoryBuffer)
        with pytest.raises(pickle.UnpicklingError):
            torch.load(evil)
        with pytest.raises(pickle.UnpicklingError):
            torch.load(sneaky)
    mm_compat()
    assert set(torch.serialization.get_safe_globals()) == before
    for path in (ckpt, evil, sneaky):  # outside the mm scope: torch's defaults, untouched
        with pytest.raises(pickle.UnpicklingError):
            torch.load(path)


class _Reduce:
    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def test_bad_parameters_fail_before_any_work(tmp_path, coco_root, retina_ckpt):
    from visioncompress.detection.mm import distill_mm, prune_group_fisher_mm
    out = tmp_path / "out"
    with pytest.raises(ConfigError) as err:
        distill_mm(RETINA, RETINA, retina_ckpt, "kd", coco_root, out, **FAST)
    assert err.value.parameter == "METHOD" and "pkd_yolo" in str(err.value)
    with pytest.raises(ConfigError, match="MMYOLO") as err:
        distill_mm(RETINA, RETINA, retina_ckpt, "pkd_yolo", coco_root, out, **FAST)
    assert err.value.parameter == "METHOD"
    with pytest.raises(ConfigError, match="MMDetection") as err:
        distill_mm(RTMDET, RTMDET, retina_ckpt, "cwd", coco_root, out, **FAST)
    assert err.value.parameter == "METHOD"
    with pytest.raises(ConfigError) as err:
        distill_mm(str(tmp_path / "missing.py"), RETINA, retina_ckpt, "pkd", coco_root, out, **FAST)
    assert err.value.parameter == "student_config"
    for ratio in (0, 1, 1.5, -0.2, "half"):
        with pytest.raises(ConfigError) as err:
            prune_group_fisher_mm(RETINA, retina_ckpt, coco_root, out, target_flop_ratio=ratio, **FAST)
        assert err.value.parameter == "TARGET_FLOP_RATIO"
    with pytest.raises(ConfigError) as err:
        prune_group_fisher_mm(RETINA, retina_ckpt, coco_root, out, norm_type="l1", **FAST)
    assert err.value.parameter == "NORM_TYPE"
    with pytest.raises(ConfigError) as err:
        prune_group_fisher_mm(RETINA, retina_ckpt, coco_root, out, interval=0, **FAST)
    assert err.value.parameter == "INTERVAL"
    with pytest.raises(ConfigError) as err:
        distill_mm(RETINA, RETINA, retina_ckpt, "pkd", coco_root, out, epochs=1, batch_size=2, insize=100)
    assert err.value.parameter == "insize"
    with pytest.raises(ConfigError) as err:
        prune_group_fisher_mm("mmdet::nope/nothing.py", retina_ckpt, coco_root, out, **FAST)
    assert err.value.parameter == "config"
    assert not out.exists()


def test_unusable_teacher_checkpoints_are_named(tmp_path, coco_root):
    from visioncompress.detection.mm import distill_mm
    from visioncompress.errors import ArtifactError
    wrong = tmp_path / "wrong.pth"
    torch.save({"state_dict": {"backbone.conv1.weight": torch.zeros(3)}}, wrong)
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": Evil()}, evil)
    with pytest.raises(ArtifactError, match="does not fit the config"):
        distill_mm(RETINA, RETINA, wrong, "pkd", coco_root, tmp_path / "a", **FAST)
    with pytest.raises(ArtifactError, match="weights-only"):
        distill_mm(RETINA, RETINA, evil, "pkd", coco_root, tmp_path / "b", **FAST)
    with pytest.raises(ArtifactError, match="does not exist"):
        distill_mm(RETINA, RETINA, tmp_path / "none.pth", "pkd", coco_root, tmp_path / "c", **FAST)


def test_a_checkpoint_naming_our_wrapper_is_never_unpickled(tmp_path):
    """A file that names MMDetector used to be fully unpickled; its payload must not run."""
    import os
    import pickle

    from visioncompress.detection.mm.model import MMDetector, load_weights
    from visioncompress.errors import ArtifactError

    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return os.mknod, (str(marker),)

    evil = tmp_path / "teacher.pt"
    torch.save({"wrapper": MMDetector, "x": Payload()}, evil)  # names our wrapper, carries a payload
    with pytest.raises(ArtifactError, match="state.dict"):
        load_weights(torch.nn.Linear(2, 2), evil)
    assert not marker.exists()


def test_pkd_retinanet_student_saves_loads_and_predicts(tmp_path, coco_root, retina_ckpt):
    from visioncompress.detection.mm import distill_mm, evaluate_mm
    result = distill_mm(RETINA, RETINA, retina_ckpt, "pkd", coco_root, tmp_path, max_iters=2, **FAST)
    assert result["iterations"] == 2 and set(result["metrics"]) == {"val", "test"}
    assert (tmp_path / "metrics.json").is_file()
    # A fresh interpreter: unpickling alone must bring the mm compat fixes in.
    code = ("import sys, numpy as np, torch\n"
            "m = torch.load(sys.argv[1], weights_only=False)\n"
            "out = m.predict([np.zeros((100, 140, 3), np.uint8)], score_thr=0.0)[0]\n"
            "print(type(m).__name__, m.classes, out['boxes'].shape[1])\n")
    done = subprocess.run([sys.executable, "-c", code, result["model_path"]], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "MMDetector ('tshirt', 'trouser', 'bag') 4" in done.stdout
    scores = evaluate_mm(result["model_path"], coco_root, "test")
    assert set(scores) == {"mAP", "mAP50"} and 0.0 <= scores["mAP"] <= scores["mAP50"] <= 1.0
    # The weights-only state dict beside it is what a later run takes as a teacher checkpoint.
    from visioncompress.detection.mm.model import state_path

    state = torch.load(state_path(result["model_path"]), weights_only=True)
    assert state["state_dict"] and all(torch.is_tensor(v) for v in state["state_dict"].values())


def test_cwd_fcos_student_predicts(tmp_path, coco_root, make_checkpoint):
    from visioncompress.detection.mm import distill_mm
    from visioncompress.detection.mm.model import load_model
    ckpt = make_checkpoint(FCOS, tmp_path / "fcos.pth")
    result = distill_mm(FCOS, FCOS, ckpt, "cwd", coco_root, tmp_path / "out", max_iters=2, **FAST)
    model = load_model(result["model_path"])
    cls_scores = model(torch.rand(1, 3, 128, 128) * 255)[0]
    assert [tuple(c.shape) for c in cls_scores[:2]] == [(1, 3, 16, 16), (1, 3, 8, 8)]
    out = model.predict([np.full((128, 128, 3), 30, np.uint8)], score_thr=0.0)[0]
    assert out["boxes"].shape[1] == 4 and len(out["boxes"]) == len(out["labels"])


def test_pkd_yolo_on_rtmdet_neck_with_connectors(tmp_path, coco_root, make_checkpoint):
    from visioncompress.detection.mm import distill_mm
    from visioncompress.detection.mm.model import load_model
    teacher_cfg = tmp_path / "rtmdet_wider.py"  # a user's own config: 128-channel neck vs the student's 96
    teacher_cfg.write_text(f"_base_ = '{RTMDET}'\nw = 0.5\n"
                           "model = dict(backbone=dict(widen_factor=w), neck=dict(widen_factor=w),\n"
                           "             bbox_head=dict(head_module=dict(widen_factor=w)))\n")
    ckpt = make_checkpoint(str(teacher_cfg), tmp_path / "teacher.pth")
    result = distill_mm(RTMDET, teacher_cfg, ckpt, "pkd_yolo", coco_root, tmp_path / "out", max_iters=2, **FAST)
    assert result["iterations"] == 2
    model = load_model(result["model_path"])
    assert model.family == "mmyolo"
    out = model.predict([np.zeros((90, 128, 3), np.uint8)], score_thr=0.0)[0]
    assert out["boxes"].shape[1] == 4


@pytest.mark.parametrize("norm_type", ["act", "flops"])
def test_group_fisher_prunes_to_the_target(tmp_path, coco_root, retina_ckpt, norm_type):
    from visioncompress.detection.mm import prune_group_fisher_mm
    from visioncompress.detection.mm.model import load_model
    result = prune_group_fisher_mm(RETINA, retina_ckpt, coco_root, tmp_path, interval=1, norm_type=norm_type,
                                   lr_ratio=0.1, target_flop_ratio=0.999, max_iters=6, **FAST)
    assert result["target_reached"] and result["pruning_iterations"] < 6, result
    assert result["flop_ratio"] <= 0.999
    assert result["flops_after"] < result["flops_before"] and result["params_after"] < result["params_before"]
    model = load_model(result["model_path"])
    assert sum(p.numel() for p in model.model.parameters()) == result["params_after"]
    assert model(torch.rand(1, 3, 128, 128) * 255)[0][0].shape == (1, 27, 16, 16)


def test_evaluate_scores_ground_truth_as_perfect(coco_root):
    """A stand-in detector that answers with the ground truth (original pixels) must score mAP 1."""
    from mmengine.structures import InstanceData
    from visioncompress.detection.mm import MMDetector, evaluate_mm
    from visioncompress.errors import ArtifactError

    class Oracle(torch.nn.Module):
        def test_step(self, batch):
            out = []
            for sample in batch["data_samples"]:
                gt = sample.gt_instances  # loaded after Resize in the test pipeline: original pixels
                sample.pred_instances = InstanceData(bboxes=gt.bboxes.tensor, labels=gt.labels,
                                                     scores=torch.ones(len(gt.labels)))
                out.append(sample)
            return out

    oracle = MMDetector(Oracle(), ("tshirt", "trouser", "bag"), 96, "mmdet", {})
    assert evaluate_mm(oracle, coco_root, "val") == {"mAP": pytest.approx(1.0), "mAP50": pytest.approx(1.0)}
    with pytest.raises(ArtifactError, match="instances_nope"):
        evaluate_mm(oracle, coco_root, "nope")
