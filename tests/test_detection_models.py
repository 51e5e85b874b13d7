"""Detectors: one interface over the families; the core + decoder reproduce torchvision's own forward."""

from __future__ import annotations

import pytest
import torch

from visioncompress.detection.feature_kd import FeatureDistiller, cwd_loss, pkd_loss
from visioncompress.detection.heads import DetectorCore, family, losses, predict
from visioncompress.detection.metrics import coco_map
from visioncompress.detection.zoo import build_detector
from visioncompress.errors import ConfigError

MEAN, STD = [0.5, 0.45, 0.4], [0.25, 0.25, 0.25]
TARGETS = [{"boxes": torch.tensor([[8.0, 10.0, 40.0, 50.0]]), "labels": torch.tensor([3])},
           {"boxes": torch.tensor([[20.0, 4.0, 60.0, 30.0], [2.0, 2.0, 20.0, 20.0]]), "labels": torch.tensor([1, 7])}]


@pytest.mark.parametrize("name,insize,kind", [("fcos_resnet18_fpn", 64, "fcos"), ("retinanet_resnet18_fpn", 64, "retinanet"),
                                              ("ssdlite320_mobilenet_v3_large", 320, "ssd")])
def test_core_and_decoder_match_torchvision_forward(name, insize, kind):
    torch.manual_seed(0)
    model = build_detector(name, 10, insize, MEAN, STD).eval()
    model.score_thresh = 0.01  # an untrained model scores low: keep enough boxes to compare
    assert family(model) == kind
    images = torch.rand(2, 3, insize, insize)
    with torch.no_grad():
        reference = model(list(images))
    ours = predict(model, images)
    for ref, mine in zip(reference, ours):
        assert len(ref["boxes"]) > 0
        torch.testing.assert_close(mine["boxes"], ref["boxes"], atol=1e-3, rtol=1e-4)
        torch.testing.assert_close(mine["scores"], ref["scores"], atol=1e-5, rtol=1e-4)
        assert torch.equal(mine["labels"], ref["labels"])


@pytest.mark.parametrize("name,insize", [("fcos_resnet18_fpn", 64), ("retinanet_resnet18_fpn", 64),
                                         ("fasterrcnn_mobilenet_v3_large_320_fpn", 64)])
def test_losses_match_torchvision_training_forward(name, insize):
    torch.manual_seed(0)
    model = build_detector(name, 10, insize, MEAN, STD).train()
    images = torch.rand(2, 3, insize, insize)
    torch.manual_seed(1)
    ours, features = losses(model, images, TARGETS, with_features=True)
    torch.manual_seed(1)
    reference = model(list(images), TARGETS)
    assert ours.keys() == reference.keys()
    for key in ours:
        torch.testing.assert_close(ours[key], reference[key], atol=1e-4, rtol=1e-3)
    assert len(features) >= 3 and all(f.shape[0] == 2 for f in features)


def test_two_stage_detectors_have_no_core():
    model = build_detector("fasterrcnn_mobilenet_v3_large_320_fpn", 3, 64, MEAN, STD)
    with pytest.raises(ConfigError, match="one-stage"):
        DetectorCore(model)


def test_unknown_detector_is_refused_with_the_names():
    with pytest.raises(ConfigError, match="fcos_resnet18_fpn"):
        build_detector("yolov99", 3, 64, MEAN, STD)


def test_feature_losses_measure_disagreement():
    torch.manual_seed(0)
    teacher = torch.randn(2, 8, 6, 6)
    assert pkd_loss(teacher, teacher).item() == pytest.approx(0.0, abs=1e-6)
    assert pkd_loss(3.0 * teacher + 2.0, teacher).item() == pytest.approx(0.0, abs=1e-5)  # scale-free
    assert pkd_loss(torch.randn(2, 8, 6, 6), teacher).item() > 0.5
    assert cwd_loss(teacher, teacher).item() == pytest.approx(0.0, abs=1e-6)
    assert cwd_loss(torch.randn(2, 8, 6, 6), teacher).item() > 0.1
    distiller = FeatureDistiller("pkd", [4, 8], [8, 8], ramp_steps=10)  # level 0 needs a 1x1 connector
    student = [torch.randn(2, 4, 6, 6, requires_grad=True), teacher.clone().requires_grad_()]
    first = distiller(student, [teacher, teacher])
    for _ in range(9):
        last = distiller(student, [teacher, teacher])
    assert first.requires_grad and first.item() > 0
    assert last.item() == pytest.approx(10 * first.item(), rel=1e-5)  # the weight ramps up over 10 steps


def test_coco_map_is_pycocotools_on_our_layout():
    truth = {"images": [{"id": 1, "width": 64, "height": 64}, {"id": 2, "width": 64, "height": 64}],
             "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
             "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 20, 20], "area": 400,
                              "iscrowd": 0},
                             {"id": 2, "image_id": 2, "category_id": 2, "bbox": [30, 10, 20, 30], "area": 600,
                              "iscrowd": 0}]}
    perfect = [{"boxes": [[4, 4, 24, 24]], "scores": [0.9], "labels": [1]},
               {"boxes": [[30, 10, 50, 40]], "scores": [0.8], "labels": [2]}]
    assert coco_map(truth, perfect) == {"mAP": 100.0, "mAP50": 100.0}
    wrong_class = [{"boxes": [[4, 4, 24, 24]], "scores": [0.9], "labels": [2]}, perfect[1]]
    # class a: nothing found (AP 0); class b: a false positive outranks the hit (AP 0.5)
    assert coco_map(truth, wrong_class)["mAP"] == pytest.approx(25.0, abs=0.1)
    assert coco_map(truth, [{"boxes": [], "scores": [], "labels": []}] * 2) == {"mAP": 0.0, "mAP50": 0.0}


def test_pkd_leaves_out_levels_too_small_to_standardise():
    torch.manual_seed(0)
    distiller = FeatureDistiller("pkd", [8, 8, 8], [8, 8, 8], ramp_steps=0)
    # 8 x 4 x 4 = 128 positions: used; 8 x 2 x 2 = 32 and 8 x 1 x 1 = 8: not enough for per-channel statistics.
    student = [torch.randn(8, 8, s, s, requires_grad=True) for s in (4, 2, 1)]
    teacher = [torch.randn(8, 8, s, s) for s in (4, 2, 1)]
    loss = distiller(student, teacher)
    loss.backward()
    assert distiller.used_levels == [0]
    assert student[0].grad.abs().sum() > 0 and student[1].grad is None and student[2].grad is None
    cwd = FeatureDistiller("cwd", [8, 8, 8], [8, 8, 8], ramp_steps=0)
    cwd(student, teacher)
    assert cwd.used_levels == [0, 1]  # a 1x1 map is a one-point distribution: nothing to match


def test_pkd_ramp_position_is_part_of_the_state_dict():
    distiller = FeatureDistiller("pkd", [4, 8], [8, 8], ramp_steps=10)
    distiller.steps = 7
    state = distiller.state_dict()
    assert "connectors.0.weight" in state and state["_extra_state"] == {"steps": 7}
    fresh = FeatureDistiller("pkd", [4, 8], [8, 8], ramp_steps=10)
    fresh.load_state_dict(state)
    assert fresh.steps == 7 and torch.equal(fresh.connectors[0].weight, distiller.connectors[0].weight)


@pytest.mark.parametrize("ratio", [0.7, 0.4])
def test_group_fisher_deadline_reaches_the_target_whatever_the_importance(ratio):
    """Without any Fisher score (the worst case for the schedule), an ordinary step prunes nothing and the
    deadline step still reaches the target: the schedule does not depend on training trajectories."""
    from visioncompress.detection.group_fisher import MIN_CHANNELS, GroupFisherPruner

    torch.manual_seed(0)
    model = build_detector("fcos_resnet18_fpn", 10, 64, MEAN, STD)
    pruner = GroupFisherPruner(model, 64, "flops")
    before = pruner.flops()
    assert pruner.step(before * (1 - ratio)) == 0.0  # no gradient has been seen: nothing to rank
    removed = pruner.step(before * (1 - ratio), deadline=True)
    after = pruner.flops()
    assert after == pytest.approx(before - removed) and after <= ratio * before
    assert all(len(g[0].idxs) >= MIN_CHANNELS for g in pruner.groups)
    replayed = build_detector("fcos_resnet18_fpn", 10, 64, MEAN, STD)
    twin = GroupFisherPruner(replayed, 64, "flops")
    twin.replay(pruner.record)  # a resumed run rebuilds the same structure from the record
    assert {k: v.shape for k, v in replayed.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
