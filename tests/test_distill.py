"""Knowledge distillation: the loss, a real short run, and bad inputs refused before any training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision

from visioncompress.artifacts import read_model_metadata
from visioncompress.config import DataConfig, ModelConfig, TrainConfig, from_spec
from visioncompress.config.distill import DistillConfig
from visioncompress.data import load_dataset, prepare_dataset
from visioncompress.distill import distill, kd_loss
from visioncompress.distill.classification import load_teacher
from visioncompress.models import load_torch_module
from visioncompress.errors import ArtifactError, ConfigError
from visioncompress.train import evaluate_top1


def tiny_vit(num_classes: int = 10, seed: int = 0, patch_size: int = 4, num_layers: int = 2):
    torch.manual_seed(seed)
    return torchvision.models.VisionTransformer(image_size=32, patch_size=patch_size, num_layers=num_layers,
                                                num_heads=4, hidden_dim=64, mlp_dim=128, num_classes=num_classes)


@pytest.fixture(scope="module")
def small_dataset_dir(tmp_path_factory):
    """Fashion-MNIST at 32x32 again, but 720 train / 80 val images: enough for a few short epochs."""
    path = tmp_path_factory.mktemp("distill-data") / "dataset"
    prepare_dataset(DataConfig(insize=32, max_train_samples=800, max_test_samples=100, calibration_samples=64), path)
    return path


@pytest.fixture(scope="module")
def student_path(tmp_path_factory):
    """A small student as a user would upload it: a whole pickled module (with TRUST_PICKLED_MODEL=True)."""
    path = tmp_path_factory.mktemp("distill-student") / "student.pt"
    torch.save(tiny_vit(), path)
    return path


def test_kd_loss_matches_its_definition():
    torch.manual_seed(0)
    student, teacher = torch.randn(8, 10, requires_grad=True), torch.randn(8, 10)
    labels = torch.randint(0, 10, (8,))
    # Same logits and no label term: nothing to learn.
    assert kd_loss(teacher, teacher, labels, lambda_=0.0, temperature=20).item() == pytest.approx(0.0, abs=1e-6)
    # LAMBDA=1 is plain cross entropy.
    assert kd_loss(student, teacher, labels, lambda_=1.0, temperature=4).item() == pytest.approx(
        F.cross_entropy(student, labels).item(), rel=1e-6)
    # LAMBDA=0 is T^2 * KL(teacher || student) at temperature T, averaged over the batch.
    t = 4.0
    p_t, log_p_s = F.softmax(teacher / t, 1), F.log_softmax(student / t, 1)
    expected = (t * t) * (p_t * (p_t.log() - log_p_s)).sum(1).mean()
    loss = kd_loss(student, teacher, labels, lambda_=0.0, temperature=t)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5) and loss.item() > 0
    loss.backward()
    assert student.grad.abs().sum() > 0
    mixed = kd_loss(student, teacher, labels, lambda_=0.3, temperature=t)
    assert mixed.item() == pytest.approx(0.3 * F.cross_entropy(student, labels).item() + 0.7 * expected.item(),
                                         rel=1e-5)


def test_distill_from_a_teacher_artifact(fp32_model_dir, small_dataset_dir, student_path, tmp_path):
    out, checkpoints = tmp_path / "student", tmp_path / "checkpoints"
    config = DistillConfig(epochs=2, lr=0.002, temperature=4)
    metadata = distill(small_dataset_dir, out, ModelConfig(custom_model_path=str(student_path),
                                                                   trust_pickled_model=True),
                       TrainConfig(batch_size=64), config, teacher_dir=fp32_model_dir, checkpoint_dir=checkpoints)
    m = metadata.metrics
    assert m["teacher_history"] == []  # an artifact teacher is used as it is, even with TRAINING
    assert m["teacher_val_top1"] > 50
    assert [row["epoch"] for row in m["history"]] == [1, 2]
    assert m["val_top1"] == max(row["val_top1"] for row in m["history"])
    assert m["val_top1"] > 20  # ten classes: well above chance after two short epochs
    assert m["student_params"] < m["teacher_params"] / 100
    assert (checkpoints / "distill-last.pt").is_file()

    written = read_model_metadata(out)
    assert (written.stage, written.format, written.precision) == ("distill", "torch-module", "fp32")
    assert written.params["LAMBDA"] == 0.5 and written.params["METHOD"] == "pkd"
    assert written.parent["teacher"] == str(fp32_model_dir)
    model = load_torch_module(out)
    assert isinstance(model, torchvision.models.VisionTransformer)
    assert evaluate_top1(model, load_dataset(small_dataset_dir), "val") == pytest.approx(m["val_top1"], abs=1e-3)


def test_custom_teacher_is_finetuned_first(small_dataset_dir, tmp_path):
    # One-layer models on 8x8 patches keep the two epochs (teacher, then student) short.
    teacher_path, student_path = tmp_path / "teacher.pt", tmp_path / "student.pt"
    torch.save(tiny_vit(seed=1, patch_size=8, num_layers=1), teacher_path)
    torch.save(tiny_vit(seed=2, patch_size=8, num_layers=1), student_path)
    config = DistillConfig(custom_teacher_path=str(teacher_path), epochs=1, lr=0.002)
    metadata = distill(small_dataset_dir, tmp_path / "student", ModelConfig(custom_model_path=str(student_path),
                                                                   trust_pickled_model=True),
                       TrainConfig(batch_size=64, finetune_epochs=1), config)
    assert len(metadata.metrics["teacher_history"]) == 1
    assert metadata.metrics["teacher_val_top1"] == metadata.metrics["teacher_history"][0]["val_top1"]
    assert metadata.parent["teacher"] == str(teacher_path)


def test_teacher_state_dict_loads_into_teacher_model(small_dataset_dir, tmp_path):
    saved = torchvision.models.resnet18(num_classes=10)
    torch.save(saved.state_dict(), tmp_path / "teacher.pth")
    config = DistillConfig(teacher_model="resnet18", custom_teacher_path=str(tmp_path / "teacher.pth"))
    teacher, source = load_teacher(config, load_dataset(small_dataset_dir))
    assert source == str(tmp_path / "teacher.pth")
    torch.testing.assert_close(teacher.state_dict(), saved.state_dict())


def _write_five_class_vit(path):
    torch.save(tiny_vit(num_classes=5), path)


def _write_garbage(path):
    path.write_bytes(b"not a checkpoint at all")


def _write_resnet18_state_dict(path):
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), path)


@pytest.mark.parametrize("write_teacher, teacher_model, error, parameter", [
    (None, "vgg16", ConfigError, "CUSTOM_TEACHER_PATH"),  # the file does not exist
    (_write_garbage, "vgg16", ArtifactError, "CUSTOM_TEACHER_PATH"),
    (_write_resnet18_state_dict, "resnet34", ArtifactError, "TEACHER_MODEL"),  # weights of another architecture
    (_write_five_class_vit, "vgg16", ConfigError, "CUSTOM_TEACHER_PATH"),  # 5 classes, the dataset has 10
])
def test_bad_teacher_fails_before_training(small_dataset_dir, student_path, tmp_path, write_teacher, teacher_model,
                                           error, parameter):
    teacher_path = tmp_path / "teacher.pt"
    if write_teacher is not None:
        write_teacher(teacher_path)
    config = DistillConfig(teacher_model=teacher_model, custom_teacher_path=str(teacher_path), epochs=1)
    with pytest.raises(error) as info:
        distill(small_dataset_dir, tmp_path / "out", ModelConfig(custom_model_path=str(student_path),
                                                                   trust_pickled_model=True),
                TrainConfig(batch_size=64), config, checkpoint_dir=tmp_path / "checkpoints")
    assert parameter in str(info.value) and "CUSTOM_MODEL_PATH" not in str(info.value)
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "out").exists()


def test_student_with_other_classes_fails_before_training(small_dataset_dir, tmp_path):
    _write_five_class_vit(tmp_path / "student.pt")
    teacher_path = tmp_path / "teacher.pt"
    torch.save(tiny_vit(), teacher_path)
    with pytest.raises(ConfigError) as info:
        distill(small_dataset_dir, tmp_path / "out", ModelConfig(custom_model_path=str(tmp_path / "student.pt"),
                                                                   trust_pickled_model=True),
                TrainConfig(batch_size=64), DistillConfig(custom_teacher_path=str(teacher_path)),
                checkpoint_dir=tmp_path / "checkpoints")
    assert info.value.parameter == "CUSTOM_MODEL_PATH" and "10 outputs" in str(info.value)
    assert not (tmp_path / "checkpoints").exists()


def test_teacher_artifact_must_be_a_model(small_dataset_dir, student_path, tmp_path):
    with pytest.raises(ArtifactError, match="model"):
        distill(small_dataset_dir, tmp_path / "out", ModelConfig(custom_model_path=str(student_path),
                                                                   trust_pickled_model=True),
                TrainConfig(batch_size=64), DistillConfig(), teacher_dir=small_dataset_dir)


@pytest.mark.parametrize("params, parameter", [
    ({"TEACHER_MODEL": "resnet9000"}, "TEACHER_MODEL"),
    ({"METHOD": "kd"}, "METHOD"),
    ({"LAMBDA": 1.5}, "LAMBDA"),
    ({"TEMPERATURE": 0}, "TEMPERATURE"),
    ({"EPOCHS": 0}, "EPOCHS"),
    ({"LR": 0}, "LR"),
    ({"WEIGHT_DECAY": -1}, "WEIGHT_DECAY"),
])
def test_bad_parameters_name_themselves(params, parameter):
    with pytest.raises(ConfigError) as info:
        from_spec(DistillConfig, params)
    assert info.value.parameter == parameter and str(info.value).startswith(parameter + "=")


def test_spec_defaults():
    config = DistillConfig()
    assert (config.teacher_model, config.custom_teacher_path, config.method, config.epochs, config.lr,
            config.lambda_, config.temperature, config.seed, config.weight_decay) == (
        "vgg16", "", "pkd", 20, 0.01, 0.5, 20, 43, 0.0005)
    assert from_spec(DistillConfig, {"METHOD": "cwd", "CUSTOM_TEACHER_PATH": None}).method == "cwd"
