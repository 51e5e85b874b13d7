"""Structured pruning: measured parameter and MAC reductions, loadable outputs, ViT head pruning, clear errors."""

from __future__ import annotations

import pytest
import torch
import torchvision

from visioncompress.artifacts import ModelMetadata, read_model_metadata
from visioncompress.config import DataConfig, TrainConfig, from_spec
from visioncompress.config.prune import PruneConfig
from visioncompress.data import load_dataset, prepare_dataset
from visioncompress.errors import ConfigError
from visioncompress.models import load_torch_module, save_torch_model
from visioncompress.prune import prune
from visioncompress.prune.attention import FusedSelfAttention, convert_attention
from visioncompress.train import evaluate_top1

NO_TRAINING = TrainConfig(training=False, batch_size=64)


def tiny_vit(num_classes: int = 10):
    torch.manual_seed(0)
    return torchvision.models.VisionTransformer(image_size=32, patch_size=4, num_layers=2, num_heads=4,
                                                hidden_dim=64, mlp_dim=128, num_classes=num_classes)


@pytest.fixture(scope="module")
def small_dataset_dir(tmp_path_factory):
    """Fashion-MNIST at 32x32 again, but 720 train / 80 val images: enough for the tiny ViT's epochs."""
    path = tmp_path_factory.mktemp("prune-data") / "dataset"
    prepare_dataset(DataConfig(insize=32, max_train_samples=800, max_test_samples=100, calibration_samples=64), path)
    return path


@pytest.fixture(scope="module")
def vit_dir(small_dataset_dir, tmp_path_factory):
    manifest = load_dataset(small_dataset_dir).manifest
    metadata = ModelMetadata(task=manifest.task, architecture="vit_tiny", classes=manifest.classes,
                             input_size=manifest.input_size, channels=manifest.channels, mean=manifest.mean,
                             std=manifest.std, format="torch-module", precision="fp32", stage="finetune")
    path = tmp_path_factory.mktemp("prune-vit") / "fp32"
    save_torch_model(tiny_vit(manifest.num_classes), metadata, path)
    return path


def test_prune_target_macs_removes_that_share_of_the_multiply_accumulates(fp32_model_dir, dataset_dir, tmp_path):
    """PRUNE_TARGET=macs: TARGET_PRUNE_RATE counts MACs at the dataset's input size (what latency follows); the
    ratio search measures MACs (each trial records its MAC reduction)."""
    metadata = prune(fp32_model_dir, dataset_dir, tmp_path / "pruned",
                     PruneConfig(target_prune_rate=0.5, target="macs"), NO_TRAINING)
    m = metadata.metrics
    assert abs(m["mac_reduction"] - 0.5) <= 0.02 and m["target_mac_reduction"] == 0.5
    assert all("mac_reduction" in trial for trial in m["search"])
    with pytest.raises(ConfigError, match="PRUNE_TARGET"):
        PruneConfig(target="flops")


def test_round_to_keeps_every_pruned_width_a_multiple(fp32_model_dir, dataset_dir, tmp_path):
    """ROUND_TO=8: every pruned layer keeps a multiple of 8 channels (the bench uses 16: AMX INT8 kernels work in
    blocks of 16 channels, and a pruned MobileNetV2 with widths like 22 or 99 ran its INT8 1x1 convolutions on
    AVX-512 ones instead), and the MAC target is still met."""
    before = {n: m.out_channels for n, m in load_output(fp32_model_dir).named_modules()
              if isinstance(m, torch.nn.Conv2d)}
    metadata = prune(fp32_model_dir, dataset_dir, tmp_path / "pruned",
                     PruneConfig(target_prune_rate=0.5, target="macs", round_to=8), NO_TRAINING)
    after = {n: m.out_channels for n, m in load_output(tmp_path / "pruned").named_modules()
             if isinstance(m, torch.nn.Conv2d)}
    changed = [n for n in after if after[n] != before[n]]
    assert changed, "the model should have been pruned"
    assert all(after[n] % 8 == 0 for n in changed), {n: after[n] for n in changed}
    assert abs(metadata.metrics["mac_reduction"] - 0.5) <= 0.05 and metadata.params["ROUND_TO"] == 8
    with pytest.raises(ConfigError, match="ROUND_TO"):
        PruneConfig(round_to=0)


def load_output(path):
    return load_torch_module(path).eval()


def test_resnet18_loses_half_its_parameters(fp32_model_dir, dataset_dir, tmp_path):
    out = tmp_path / "pruned"
    metadata = prune(fp32_model_dir, dataset_dir, out, PruneConfig(target_prune_rate=0.5), NO_TRAINING)
    m = metadata.metrics
    assert abs(m["param_reduction"] - 0.5) <= 0.02
    assert m["macs_after"] < 0.6 * m["macs_before"]

    model = load_output(out)
    assert sum(p.numel() for p in model.parameters()) == m["params_after"]
    assert model.layer1[0].conv1.out_channels < 64 and model.fc.out_features == 10
    with torch.inference_mode():
        assert model(torch.randn(3, 3, 32, 32)).shape == (3, 10)
    assert evaluate_top1(model, load_dataset(dataset_dir), "val") == pytest.approx(m["val_top1"], abs=1e-3)
    written = read_model_metadata(out)
    assert (written.stage, written.format, written.precision) == ("prune", "torch-module", "fp32")
    assert written.params["PRUNER_NAME"] == "GroupNormPruner" and written.params["TARGET_PRUNE_RATE"] == 0.5
    assert written.parent["stage"] == "finetune"


def test_vit_loses_whole_heads_and_is_finetuned(vit_dir, small_dataset_dir, tmp_path):
    out = tmp_path / "pruned"
    metadata = prune(vit_dir, small_dataset_dir, out, PruneConfig(target_prune_rate=40),
                     TrainConfig(batch_size=64, finetune_epochs=1))
    m = metadata.metrics
    assert m["attention_heads_before"] == [4, 4]
    assert all(after < 4 for after in m["attention_heads_after"])
    assert abs(m["param_reduction"] - 0.4) <= 0.02
    assert len(m["history"]) == 1 and m["val_top1"] is not None

    model = load_output(out)
    for block, heads in zip(model.encoder.layers, m["attention_heads_after"]):
        attn = block.self_attention
        assert isinstance(attn, FusedSelfAttention) and attn.num_heads == heads == block.num_heads
        assert attn.head_dim == 16  # whole heads go; the survivors keep their size
        assert attn.qkv.out_features == 3 * heads * 16 and attn.proj.in_features == heads * 16
    with torch.inference_mode():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_vit_bottleneck_keeps_the_embedding_width(vit_dir, small_dataset_dir, tmp_path):
    metadata = prune(vit_dir, small_dataset_dir, tmp_path / "pruned",
                     PruneConfig(target_prune_rate=0.3, bottleneck=True), NO_TRAINING)
    model = load_output(tmp_path / "pruned")
    assert model.hidden_dim == 64 and model.class_token.shape[-1] == 64
    for block in model.encoder.layers:
        assert block.ln_1.normalized_shape == (64,) and block.self_attention.proj.out_features == 64
        assert block.mlp[0].out_features < 128 and block.self_attention.num_heads < 4
    assert metadata.metrics["param_reduction"] > 0.15


def test_vit_without_head_pruning_shrinks_head_size(vit_dir, small_dataset_dir, tmp_path):
    metadata = prune(vit_dir, small_dataset_dir, tmp_path / "pruned",
                     PruneConfig(target_prune_rate=0.5, prune_num_heads=False), NO_TRAINING)
    model = load_output(tmp_path / "pruned")
    assert metadata.metrics["attention_heads_after"] == [4, 4]
    assert all(block.self_attention.head_dim < 16 for block in model.encoder.layers)
    assert abs(metadata.metrics["param_reduction"] - 0.5) <= 0.02


def test_taylor_importance_after_sparse_training_in_steps(vit_dir, small_dataset_dir, tmp_path):
    config = PruneConfig(group_importance="GroupTaylorImportance", sparsity_epochs=1, iterative_steps=2,
                         target_prune_rate=0.5)
    metadata = prune(vit_dir, small_dataset_dir, tmp_path / "pruned", config, NO_TRAINING)
    m = metadata.metrics
    assert len(m["sparsity_history"]) == 1
    assert abs(m["param_reduction"] - 0.5) <= 0.02
    with torch.inference_mode():
        assert load_output(tmp_path / "pruned")(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_rerun_resumes_from_the_pruned_checkpoint(vit_dir, small_dataset_dir, tmp_path):
    checkpoints = tmp_path / "checkpoints"
    config = PruneConfig(target_prune_rate=0.3)
    first = prune(vit_dir, small_dataset_dir, tmp_path / "a", config, NO_TRAINING, checkpoint_dir=checkpoints)
    saved = checkpoints / "prune-pruned" / "model.safetensors"
    written_at = saved.stat().st_mtime_ns
    second = prune(vit_dir, small_dataset_dir, tmp_path / "b", config, NO_TRAINING, checkpoint_dir=checkpoints)
    assert saved.stat().st_mtime_ns == written_at  # loaded, not pruned and saved again
    assert second.metrics["params_after"] == first.metrics["params_after"]
    # Other parameters must not pick up the stale pruned model.
    third = prune(vit_dir, small_dataset_dir, tmp_path / "c", PruneConfig(target_prune_rate=0.6), NO_TRAINING,
                  checkpoint_dir=checkpoints)
    assert abs(third.metrics["param_reduction"] - 0.6) <= 0.02


def test_fused_attention_computes_what_multihead_attention_does():
    vit = tiny_vit().eval()
    torch.nn.init.normal_(vit.heads.head.weight)  # torchvision zero-initialises the head
    x = torch.randn(3, 3, 32, 32)
    with torch.inference_mode():
        before = vit(x)
        assert convert_attention(vit) == 2
        after = vit(x)
    assert all(isinstance(b.self_attention, FusedSelfAttention) for b in vit.encoder.layers)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("params, parameter", [
    ({"PRUNER_NAME": "L1Pruner"}, "PRUNER_NAME"),
    ({"GROUP_IMPORTANCE": "RandomImportance"}, "GROUP_IMPORTANCE"),
    ({"TARGET_PRUNE_RATE": 0}, "TARGET_PRUNE_RATE"),
    ({"TARGET_PRUNE_RATE": 100}, "TARGET_PRUNE_RATE"),
    ({"TARGET_PRUNE_RATE": -0.5}, "TARGET_PRUNE_RATE"),
    ({"TARGET_PRUNE_RATE": "half"}, "TARGET_PRUNE_RATE"),
    ({"ITERATIVE_STEPS": 0}, "ITERATIVE_STEPS"),
    ({"PRUNER_NAME": "MetaPruner", "SPARSITY_EPOCHS": 2}, "SPARSITY_EPOCHS"),
    ({"SPARSITY": 1.0}, "SPARSITY"),
    ({"SPARSITY": -0.1}, "SPARSITY"),
    ({"MAX_DROP": 5}, "MAX_DROP"),  # a fraction, as nyuntam's (0.2 = 20 points)
    ({"ITERATIVE": "sometimes"}, "ITERATIVE"),
])
def test_bad_parameters_name_themselves(params, parameter):
    with pytest.raises(ConfigError) as info:
        from_spec(PruneConfig, params)
    assert info.value.parameter == parameter
    assert str(info.value).startswith(parameter + "=")


def test_spec_spellings_are_accepted():
    config = from_spec(PruneConfig, {"PRUNER_NAME": "bnscalepruner", "GROUP_IMPORTANCE": "GroupMagnitudeImportance",
                                     "TARGET_PRUNE_RATE": 30})
    assert (config.pruner_name, config.group_importance, config.target_prune_rate) == (
        "BNSPruner", "GroupNormImportance", 0.3)


# nyuntam's TorchPrune keys: SPARSITY (the channel ratio itself), ITERATIVE with MAX_DROP (early stop).

def test_sparsity_is_the_channel_ratio_used_without_a_search(vit_dir, small_dataset_dir, tmp_path):
    from visioncompress.prune.classification import count_params, prune_once

    metadata = prune(vit_dir, small_dataset_dir, tmp_path / "pruned", PruneConfig(sparsity=0.25, target_prune_rate=0.8),
                     NO_TRAINING)
    m = metadata.metrics
    assert m["pruning_ratio"] == 0.25 and len(m["search"]) == 1
    # The same reduction as pruning the model directly at that ratio (and not TARGET_PRUNE_RATE's 0.8).
    direct = prune_once(convert_and_load(vit_dir), torch.randn(1, 3, 32, 32), None, PruneConfig(), 0.25)
    assert m["params_after"] == count_params(direct)
    assert m["param_reduction"] < 0.6


def convert_and_load(path):
    model = load_output(path)
    convert_attention(model)
    return model


@pytest.mark.slow  # 140 s on the loaded 2-core machine (8 prunings and evaluations of resnet18)
def test_iterative_pruning_stops_once_the_drop_exceeds_max_drop(fp32_model_dir, dataset_dir, tmp_path):
    """resnet18 (77 % top-1) pruned in 4 steps towards channel ratio 0.8 without fine-tuning: the accuracy falls
    step by step; MAX_DROP 0.05 (5 points) stops it after the first step that loses more, MAX_DROP 1 never."""
    config = PruneConfig(sparsity=0.8, iterative=True, iterative_steps=4, max_drop=0.05)
    metadata = prune(fp32_model_dir, dataset_dir, tmp_path / "stopped", config, NO_TRAINING)
    m = metadata.metrics
    steps, stopped = m["iterative_steps"], m["stopped_early_at_step"]
    before = m["val_top1_before"]
    print("val top-1 per step", before, [s["val_top1"] for s in steps])
    assert stopped is not None and stopped == len(steps) < 4
    assert before - steps[-1]["val_top1"] > 5.0  # the step that crossed MAX_DROP is the last one
    assert all(before - s["val_top1"] <= 5.0 for s in steps[:-1])
    assert m["param_reduction"] == steps[-1]["param_reduction"] < 0.9 * full_reduction(fp32_model_dir, dataset_dir)
    assert metadata.params["ITERATIVE"] is True and metadata.params["MAX_DROP"] == 0.05
    assert evaluate_top1(load_output(tmp_path / "stopped"), load_dataset(dataset_dir), "val") == pytest.approx(
        steps[-1]["val_top1"], abs=1e-3)

    everything = prune(fp32_model_dir, dataset_dir, tmp_path / "all", PruneConfig(
        sparsity=0.8, iterative=True, iterative_steps=4, max_drop=1.0), NO_TRAINING).metrics
    assert everything["stopped_early_at_step"] is None and len(everything["iterative_steps"]) == 4
    assert everything["param_reduction"] == pytest.approx(full_reduction(fp32_model_dir, dataset_dir), abs=1e-4)


def full_reduction(model_dir, dataset_dir):
    from visioncompress.prune.classification import count_params, prune_once

    model = load_output(model_dir)
    params0 = count_params(model)
    return 1 - count_params(prune_once(model, torch.randn(1, 3, 32, 32), None,
                                       PruneConfig(iterative_steps=4), 0.8)) / params0
