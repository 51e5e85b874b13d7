"""Resume restores the whole training state: a run interrupted after epoch 1 (a real KeyboardInterrupt, raised
right after the epoch's checkpoint is on disk, as Ctrl-C or a kill would leave it) and started again ends with
exactly the weights of an uninterrupted run: model, optimizer, extra modules (distillation connectors), loss ramps,
the pruned structure, RNG states and data order all come back.

Every stage runs on a small cut of the shared datasets (a few batches per epoch), in deterministic mode on CPU.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from visioncompress.config import (
    DistillConfig, GroupFisherConfig, ModelConfig, OpenVinoQATConfig, TorchQATConfig, TrainConfig,
)
from visioncompress.config.prune import PruneConfig
from visioncompress.detection.prune import prune_detector
from visioncompress.distill import distill
from visioncompress.prune import prune
from visioncompress.quantize.qat_openvino import qat_openvino
from visioncompress.quantize.qat_torch import qat_torch
from visioncompress.train import finetune
from visioncompress.train.checkpoint import after_save, stop_after

CLASSIFICATION_TRAIN_IMAGES = 128  # two batches of 64 per epoch
DETECTION_TRAIN_IMAGES = 24  # three batches of 8 per epoch
LOOP = TrainConfig(batch_size=64, finetune_epochs=2, learning_rate=0.002)
DETECTION_LOOP = TrainConfig(batch_size=8, finetune_epochs=2, learning_rate=0.001)


@pytest.fixture(autouse=True)
def deterministic():
    # warn_only: torch's quantized convert step (quantized_resize_cpu_) has no deterministic variant; it runs
    # after training and does not touch the checkpointed state.
    torch.use_deterministic_algorithms(True, warn_only=True)
    yield
    torch.use_deterministic_algorithms(False)


@pytest.fixture(scope="module")
def small_classification(dataset_dir, cut_split, tmp_path_factory) -> Path:
    return cut_split(dataset_dir, tmp_path_factory.mktemp("resume-data") / "dataset",
                     {"train": CLASSIFICATION_TRAIN_IMAGES, "val": 64, "test": 64})


def _same_state(a, b, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{where}: keys differ"
        for key in a:
            _same_state(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            _same_state(x, y, f"{where}[{i}]")
    elif where.endswith("seconds"):
        return
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def check_resume(tmp_path: Path, run, loop: str, epochs: int = 2) -> dict:
    """Run uninterrupted; run again, interrupted after epoch 1 of ``loop``; resume; compare the final states."""
    whole = tmp_path / "whole"
    run(whole / "out", whole / "checkpoints")
    part = tmp_path / "part"
    with after_save(stop_after(1, loop)), pytest.raises(KeyboardInterrupt):
        run(part / "out", part / "checkpoints")
    assert not (part / "out").exists(), "an interrupted stage leaves no output"
    saved = []
    with after_save(lambda name, epoch, _path: saved.append((name, epoch))):
        run(part / "out", part / "checkpoints")
    assert [e for name, e in saved if name == loop] == list(range(2, epochs + 1)), "the rerun resumed after epoch 1"
    expected = torch.load(whole / "checkpoints" / f"{loop}-last.pt", weights_only=True)
    resumed = torch.load(part / "checkpoints" / f"{loop}-last.pt", weights_only=True)
    for key in ("model", "optimizer", "extras", "best_state", "epoch"):
        _same_state(expected[key], resumed[key], key)
    _same_state([{k: v for k, v in row.items() if k != "seconds"} for row in expected["history"]],
                [{k: v for k, v in row.items() if k != "seconds"} for row in resumed["history"]], "history")
    return resumed


@pytest.mark.slow  # several trainings run twice: `make test-slow`
def test_classification_stages_resume_to_the_same_weights(small_classification, fp32_model_dir, tmp_path):
    """Fine-tune, torch QAT, OpenVINO QAT, logit KD and the fine-tune after pruning (each 2 short epochs)."""
    stages = {
        "finetune": lambda out, ck: finetune(small_classification, out, ModelConfig(model="resnet18"), LOOP,
                                             checkpoint_dir=ck),
        "qat_torch": lambda out, ck: qat_torch(fp32_model_dir, small_classification, out,
                                               TorchQATConfig(qat_epochs=2, batch_size=64), LOOP, checkpoint_dir=ck),
        "qat_openvino": lambda out, ck: qat_openvino(
            fp32_model_dir, small_classification, out,
            OpenVinoQATConfig(qat_epochs=2, batch_size=64, subset_size=64, transformer=False), LOOP,
            checkpoint_dir=ck),
        "distill": lambda out, ck: distill(small_classification, out, ModelConfig(model="resnet18"), LOOP,
                                           DistillConfig(teacher_model="resnet18", epochs=2, lr=0.002),
                                           teacher_dir=fp32_model_dir, checkpoint_dir=ck),
        "prune-finetune": lambda out, ck: prune(fp32_model_dir, small_classification, out,
                                                PruneConfig(target_prune_rate=0.3), LOOP, checkpoint_dir=ck),
    }
    for loop, run in stages.items():
        check_resume(tmp_path / loop, run, loop)


@pytest.fixture(scope="module")
def small_detection(detection_dataset_dir, cut_split, tmp_path_factory) -> Path:
    return cut_split(detection_dataset_dir, tmp_path_factory.mktemp("resume-det") / "dataset",
                     {"train": DETECTION_TRAIN_IMAGES, "val": 8, "test": 8})


@pytest.mark.slow  # several trainings run twice: `make test-slow`
def test_detection_training_and_feature_distillation_resume_to_the_same_weights(small_detection, detection_model_dir,
                                                                                 tmp_path):
    check_resume(tmp_path / "finetune", lambda out, ck: finetune(
        small_detection, out, ModelConfig(model="fcos_resnet18_fpn"), DETECTION_LOOP, checkpoint_dir=ck), "finetune")
    # PKD from an (untrained) fcos_resnet50_fpn teacher: its FPN is 256 wide, the student's 128, so every level has a
    # trained 1x1 connector; the loss ramp (RAMP_STEPS) is longer than the run, so its position matters.
    resumed = check_resume(tmp_path / "distill", lambda out, ck: distill(
        small_detection, out, ModelConfig(model="fcos_resnet18_fpn"), TrainConfig(batch_size=8, training=False),
        DistillConfig(teacher_model="fcos_resnet50_fpn", method="pkd", epochs=2, lr=0.001), checkpoint_dir=ck),
        "distill")
    distiller = resumed["extras"]["distiller"]
    assert any(key.startswith("connectors.") and key.endswith(".weight") for key in distiller)
    assert distiller["_extra_state"]["steps"] == 2 * DETECTION_TRAIN_IMAGES // 8, "the loss ramp's position is kept"


@pytest.mark.slow  # several trainings run twice: `make test-slow`
def test_group_fisher_resumes_to_the_same_structure_and_weights(small_detection, detection_model_dir, tmp_path):
    # 3 epochs of 3 iterations, a pruning step every iteration up to iteration 4: epoch 1 prunes three times,
    # the resumed run prunes once more from the restored Fisher scores on the replayed structure.
    config = GroupFisherConfig(interval=1, norm_type="flops", target_flop_ratio=0.7, epochs=3)
    resumed = check_resume(tmp_path, lambda out, ck: prune_detector(
        detection_model_dir, small_detection, out, config, DETECTION_LOOP, checkpoint_dir=ck), "prune", epochs=3)
    pruning = resumed["extras"]["pruning"]
    assert pruning["steps_done"] == 4 and pruning["finished_at"] == 4 and len(pruning["record"]) >= 4


def test_checkpoints_hold_no_code_and_are_replaced_atomically(tmp_path):
    from visioncompress.detection.feature_kd import FeatureDistiller
    from visioncompress.train.checkpoint import TrainingCheckpoint

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters())
    distiller = FeatureDistiller("pkd", [4], [8])
    distiller.steps = 5
    checkpoint = TrainingCheckpoint(tmp_path, "x", model, {"distiller": distiller})
    checkpoint.save(1, optimizer, {"history": [{"epoch": 1}]})
    state = torch.load(tmp_path / "x-last.pt", weights_only=True)  # tensors, numbers and strings only
    assert state["epoch"] == 1 and state["extras"]["distiller"]["_extra_state"] == {"steps": 5}
    assert set(state["rng"]) == {"torch", "numpy", "python"}

    class Unpicklable:
        def state_dict(self):
            return {"fn": lambda: 0}

    broken = TrainingCheckpoint(tmp_path, "x", model, {"distiller": distiller, "bad": Unpicklable()})
    with pytest.raises(Exception):
        broken.save(2, optimizer, {"history": []})
    assert torch.load(tmp_path / "x-last.pt", weights_only=True)["epoch"] == 1, "the previous checkpoint stays"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x-last.pt"], "no scratch file is left behind"
