"""Turn a user's MMDetection/MMYOLO config into the small, weights-free configs this adapter runs.

A config is a path to a ``.py`` config file or a package config named ``mmdet::path/in/configs.py``
/ ``mmyolo::...``. Only the model section is kept; data, schedule and runtime come from here.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from pathlib import Path

from visioncompress.errors import ArtifactError, ConfigError
from visioncompress.log import get_logger

from .compat import mm_compat

log = get_logger(__name__)
FAMILIES = ("mmdet", "mmyolo")


@dataclass
class MMConfig:
    path: str
    family: str          # "mmdet" or "mmyolo"
    model: dict          # model config with _scope_, num_classes and no download
    lr: float = 0.01     # the config's optimizer lr


def resolve_config_path(config: str | os.PathLike, parameter: str) -> Path:
    text = str(config)
    if "::" in text:
        package, _, rel = text.partition("::")
        if package in FAMILIES:
            import importlib.util
            spec = importlib.util.find_spec(package)
            if spec is not None and spec.origin:
                path = Path(spec.origin).parent / ".mim" / "configs" / rel
                if path.is_file():
                    return path
    elif Path(text).is_file():
        return Path(text)
    raise ConfigError(parameter, text, "an existing MMDetection/MMYOLO config file (a .py path, "
                                       "or mmdet::<path> / mmyolo::<path> for a packaged config)")


def _family(cfg, path: Path) -> str:
    scope = cfg.get("default_scope") or cfg.model.get("_scope_")
    if scope in FAMILIES:
        return scope
    if "mmyolo" in path.parts:
        return "mmyolo"
    return "mmdet"


def _walk(node, fn):
    if isinstance(node, dict):
        fn(node)
        for value in node.values():
            _walk(value, fn)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _walk(value, fn)


def _strip_downloads(node: dict) -> None:
    init = node.get("init_cfg")
    if isinstance(init, dict) and init.get("type") == "Pretrained":
        ckpt = str(init.get("checkpoint", ""))
        if not Path(ckpt).is_file():
            log.info("mm: dropping pretrained init %s (no downloads; weights come from checkpoints)", ckpt)
            node["init_cfg"] = None
    if isinstance(node.get("pretrained"), str) and not Path(node["pretrained"]).is_file():
        node["pretrained"] = None


def load_model_config(config, parameter: str, num_classes: int) -> MMConfig:
    path = resolve_config_path(config, parameter)
    mm_compat()
    from mmengine.config import Config
    try:
        cfg = Config.fromfile(str(path))
    except Exception as exc:
        raise ConfigError(parameter, str(config), f"a config mmengine can read ({exc})") from exc
    if "model" not in cfg:
        raise ConfigError(parameter, str(config), "a config with a `model` section")
    family = _family(cfg, path)
    model = copy.deepcopy(cfg.model.to_dict())
    if "data_preprocessor" not in model and "data_preprocessor" in cfg:
        model["data_preprocessor"] = copy.deepcopy(cfg.data_preprocessor.to_dict())
    model["_scope_"] = family
    _walk(model, _strip_downloads)

    def set_classes(node):
        if "num_classes" in node:
            node["num_classes"] = num_classes
    _walk(model, set_classes)
    model.get("data_preprocessor", {}).pop("batch_augments", None)
    lr = cfg.get("optim_wrapper", {}).get("optimizer", {}).get("lr", 0.01)
    return MMConfig(str(path), family, model, float(lr))


@dataclass
class CocoInfo:
    root: Path
    classes: tuple[str, ...]
    splits: dict[str, Path]   # split -> annotation file


def coco_info(data_root) -> CocoInfo:
    root = Path(data_root)
    splits = {s: root / "annotations" / f"instances_{s}.json" for s in ("train", "val", "test")}
    splits = {s: p for s, p in splits.items() if p.is_file()}
    if "train" not in splits:
        raise ArtifactError(f"{root}: no annotations/instances_train.json (expected a COCO folder with "
                            "images/ and annotations/instances_<split>.json)")
    cats = sorted(json.loads(splits["train"].read_text()).get("categories", []), key=lambda c: c["id"])
    if not cats:
        raise ArtifactError(f"{splits['train']}: no categories")
    return CocoInfo(root, tuple(c["name"] for c in cats), splits)


def dataset_cfg(info: CocoInfo, split: str, insize: int, train: bool) -> dict:
    if split not in info.splits:
        raise ArtifactError(f"{info.root}: no annotations/instances_{split}.json")
    scale = (insize, insize)
    if train:
        pipeline = [dict(type="LoadImageFromFile"),
                    dict(type="mmdet.LoadAnnotations", with_bbox=True),
                    dict(type="mmdet.Resize", scale=scale, keep_ratio=True),
                    dict(type="mmdet.RandomFlip", prob=0.5),
                    dict(type="mmdet.Pad", size=scale, pad_val=dict(img=(114, 114, 114))),
                    dict(type="mmdet.PackDetInputs")]
    else:
        pipeline = [dict(type="LoadImageFromFile"),
                    dict(type="mmdet.Resize", scale=scale, keep_ratio=True),
                    dict(type="mmdet.Pad", size=scale, pad_val=dict(img=(114, 114, 114))),
                    dict(type="mmdet.LoadAnnotations", with_bbox=True),
                    dict(type="mmdet.PackDetInputs",
                         meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor"))]
    return dict(type="mmdet.CocoDataset", data_root=str(info.root),
                ann_file=str(info.splits[split].relative_to(info.root)),
                data_prefix=dict(img="images/"), metainfo=dict(classes=info.classes),
                filter_cfg=dict(filter_empty_gt=train, min_size=1) if train else None,
                test_mode=not train, pipeline=pipeline)


def workers() -> int:
    cpus = len(os.sched_getaffinity(0))
    return 0 if cpus <= 2 else min(4, cpus // 2)


def train_dataloader(info: CocoInfo, family: str, insize: int, batch_size: int) -> dict:
    if family == "mmyolo":
        from mmyolo.datasets.utils import yolov5_collate as collate
    else:
        from mmengine.dataset import pseudo_collate as collate
    n = workers()
    return dict(batch_size=batch_size, num_workers=n, persistent_workers=n > 0,
                sampler=dict(type="DefaultSampler", shuffle=True),
                collate_fn=dict(type=collate),
                dataset=dataset_cfg(info, "train", insize, train=True))
