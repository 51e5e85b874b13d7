"""Feature distillation of mm detectors with MMRazor: the teacher runs backbone + neck only.

METHOD pkd: PKD (Pearson correlation) on every neck level of an MMDetection student/teacher.
METHOD cwd: channel-wise divergence on the same levels.
METHOD pkd_yolo: PKD on an MMYOLO neck's output convolutions (RTMDet's CSPNeXtPAFPN and alike).
Levels whose channel counts differ get a 1x1 conv connector on the student side.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from visioncompress.errors import ArtifactError, ConfigError
from visioncompress.log import get_logger

from .configs import coco_info, load_model_config
from .evaluate import evaluate_splits
from .model import MMDetector, load_weights, save_model
from .runner import TrainSettings, build_model, check_insize, check_positive, make_runner, total_iters, train, \
    write_json

log = get_logger(__name__)
METHODS = ("pkd", "cwd", "pkd_yolo")
LOSSES = {"pkd": dict(type="PKDLoss", loss_weight=6), "cwd": dict(type="ChannelWiseDivergence", tau=1, loss_weight=10),
          "pkd_yolo": dict(type="PKDLoss", loss_weight=6)}


def _check_family(method: str, cfg, parameter: str) -> None:
    want = "mmyolo" if method == "pkd_yolo" else "mmdet"
    if cfg.family != want:
        fits = "pkd_yolo" if cfg.family == "mmyolo" else "pkd or cwd"
        raise ConfigError("METHOD", method, f"{fits} for the {cfg.family} config {parameter}={cfg.path} "
                                            f"({method} needs {'an MMYOLO' if want == 'mmyolo' else 'an MMDetection'}"
                                            " config for student and teacher)")


def _level_sources(model, method: str) -> list[str] | None:
    out_layers = getattr(model.neck, "out_layers", None)
    if method == "pkd_yolo" and out_layers is not None and all(hasattr(m, "conv") for m in out_layers):
        return [f"neck.out_layers.{i}.conv" for i in range(len(out_layers))]
    return None


@torch.no_grad()
def _level_shapes(model, insize: int, sources) -> list[tuple]:
    model.eval()
    if sources is None:
        feats = model.extract_feat(torch.zeros(1, 3, insize, insize))
    else:
        feats, handles = [], []
        modules = dict(model.named_modules())
        for name in sources:
            handles.append(modules[name].register_forward_hook(lambda m, i, o: feats.append(o)))
        model.extract_feat(torch.zeros(1, 3, insize, insize))
        for h in handles:
            h.remove()
    model.train()
    return [tuple(f.shape[1:]) for f in feats]


def _distiller(method: str, student, teacher, insize: int) -> dict:
    s_src, t_src = _level_sources(student, method), _level_sources(teacher, method)
    s_shapes, t_shapes = _level_shapes(student, insize, s_src), _level_shapes(teacher, insize, t_src)
    if len(s_shapes) != len(t_shapes) or any(s[1:] != t[1:] for s, t in zip(s_shapes, t_shapes)):
        raise ConfigError("student_config", "neck outputs " + str(s_shapes),
                          f"the teacher's neck levels and strides {t_shapes}")
    recorders = {}, {}
    connectors, losses, mappings = {}, {}, {}
    for i, (s, t) in enumerate(zip(s_shapes, t_shapes)):
        maps = []
        for side, src in enumerate((s_src, t_src)):
            if src is None:
                recorders[side]["neck"] = dict(type="ModuleOutputs", source="neck")
                maps.append(dict(from_student=side == 0, recorder="neck", data_idx=i))
            else:
                recorders[side][f"level{i}"] = dict(type="ModuleOutputs", source=src[i])
                maps.append(dict(from_student=side == 0, recorder=f"level{i}"))
        if s[0] != t[0]:
            connectors[f"student{i}"] = dict(type="ConvModuleConnector", in_channel=s[0], out_channel=t[0],
                                             bias=False, act_cfg=None,
                                             norm_cfg=dict(type="BN", affine=False, track_running_stats=False))
            maps[0]["connector"] = f"student{i}"
        losses[f"loss_{method}_{i}"] = dict(LOSSES[method])
        mappings[f"loss_{method}_{i}"] = dict(preds_S=maps[0], preds_T=maps[1])
    return dict(type="ConfigurableDistiller", student_recorders=recorders[0], teacher_recorders=recorders[1],
                connectors=connectors, distill_losses=losses, loss_forward_mappings=mappings)


def distill_mm(student_config, teacher_config, teacher_checkpoint, method, data_root, work_dir,
               epochs: int = 20, lr: float = 0.01, batch_size: int = 8, insize: int = 320,
               max_iters: int | None = None, settings: TrainSettings | None = None, platform: str = "",
               teacher_platform: str = "", student_checkpoint=None) -> dict:
    """Train the student config on data_root under the teacher; writes model.pt and metrics.json.

    ``settings``: the user's optimizer, schedule, workers, AMP, device and seed for the Runner (its ``lr`` wins
    over ``lr``); ``platform`` / ``teacher_platform``: which package a bare config name is looked up in first;
    ``student_checkpoint``: the student's starting weights (random when None)."""
    method = str(method).lower()
    if method not in METHODS:
        raise ConfigError("METHOD", method, METHODS)
    epochs, batch_size = check_positive("EPOCHS", epochs), check_positive("batch_size", batch_size)
    insize = check_insize(insize)
    settings = settings or TrainSettings(lr=lr)
    check_positive("LR", settings.lr, float, minimum=1e-12)
    if max_iters is not None:
        max_iters = check_positive("max_iters", max_iters)
    info = coco_info(data_root)
    student_cfg = load_model_config(student_config, "student_config", len(info.classes), platform)
    teacher_cfg = load_model_config(teacher_config, "teacher_config", len(info.classes),
                                    teacher_platform or platform)
    _check_family(method, student_cfg, "student_config")
    _check_family(method, teacher_cfg, "teacher_config")
    if not teacher_checkpoint or not Path(teacher_checkpoint).is_file():
        raise ArtifactError(f"teacher checkpoint {teacher_checkpoint} does not exist")

    work_dir = Path(work_dir)
    student, teacher = build_model(student_cfg.model), build_model(teacher_cfg.model)
    load_weights(teacher, teacher_checkpoint)
    if student_checkpoint is not None:
        load_weights(student, student_checkpoint)
    algorithm = build_model(dict(_scope_="mmrazor", type="FpnTeacherDistill", architecture=student,
                                 teacher=teacher, distiller=_distiller(method, student, teacher, insize)))
    iters, per_epoch = total_iters(info, batch_size, epochs, max_iters)
    log.info("mm distill %s: %s <- %s, %d iterations", method, student_cfg.path, teacher_cfg.path, iters)
    runner = make_runner(algorithm, info, student_cfg.family, work_dir / "mm", settings=settings, batch_size=batch_size,
                         insize=insize, iters=iters, per_epoch=per_epoch)
    start = time.perf_counter()
    sec_per_iter = train(runner)
    train_seconds = time.perf_counter() - start

    clean = build_model(student_cfg.model)
    clean.load_state_dict(algorithm.student.state_dict())
    wrapper = MMDetector(clean, info.classes, insize, student_cfg.family, student_cfg.model)
    path = save_model(wrapper, work_dir / "model.pt")
    result = dict(model_path=str(path), method=method, student_config=student_cfg.path, lr=settings.lr,
                  teacher_config=teacher_cfg.path, iterations=runner.iter, seconds_per_iter=sec_per_iter,
                  train_seconds=train_seconds, metrics=evaluate_splits(wrapper, data_root))
    write_json(work_dir / "metrics.json", result)
    return result
