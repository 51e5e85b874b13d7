"""Turn a user's MMDetection/MMYOLO config into the small, weights-free configs this adapter runs.

A config is a packaged config's name (``retinanet_r50_fpn_1x_coco``, as MODEL gives it), a path to a
``.py`` config file, or a package config named ``mmdet::path/in/configs.py`` / ``mmyolo::...``. Only the model section is kept; data, schedule and runtime come from here.
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


def _configs_dir(package: str) -> Path | None:
    """The configs an OpenMMLab package ships (``<package>/.mim/configs``), found without importing it."""
    import importlib.util
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.origin:
        return None
    path = Path(spec.origin).parent / ".mim" / "configs"
    return path if path.is_dir() else None


def find_config(name: str, platform: str) -> Path | None:
    """The packaged config file of a config NAME (``yolox_tiny_fast_8xb8-300e_coco``, ``.py`` optional):
    PLATFORM's package first, then the other family's; ``None`` when neither ships it."""
    stem = name[:-3] if name.endswith(".py") else name
    order = (platform, *[f for f in FAMILIES if f != platform]) if platform in FAMILIES else FAMILIES
    for package in order:
        root = _configs_dir(package)
        found = sorted(root.glob(f"*/{stem}.py")) + sorted(root.glob(f"*/*/{stem}.py")) if root else []
        if found:
            return found[0]
    return None


def config_names(platform: str) -> list[str]:
    """Every config name PLATFORM's package ships (empty when the package is not installed)."""
    root = _configs_dir(platform)
    return sorted(p.stem for p in root.rglob("*.py") if not p.name.startswith("_")
                  and "_base_" not in p.parts) if root else []


def weights_url(config_path: Path) -> str | None:
    """The COCO checkpoint URL the package's metafile lists for a packaged config (PRETRAINED)."""
    import yaml
    metafile = config_path.parent / "metafile.yml"
    if not metafile.is_file():
        return None
    doc = yaml.safe_load(metafile.read_text()) or {}
    for model in doc.get("Models", []) if isinstance(doc, dict) else []:
        if model.get("Name") == config_path.stem and model.get("Weights"):
            return str(model["Weights"])
    return None


def resolve_config_path(config: str | os.PathLike, parameter: str, platform: str = "") -> Path:
    """A config file from a path, ``mmdet::<path>`` / ``mmyolo::<path>``, or a packaged config's name."""
    text = str(config)
    if text and "::" not in text and "/" not in text and not Path(text).is_file():
        found = find_config(text, platform)
        if found is not None:
            return found
        import difflib
        close = difflib.get_close_matches(text, config_names(platform or "mmdet"), n=3)
        raise ConfigError(parameter, text, f"an MMDetection/MMYOLO config name the installed {platform or 'mmdet'} "
                                           "package ships (e.g. retinanet_r50_fpn_1x_coco, "
                                           "yolox_tiny_fast_8xb8-300e_coco)"
                          + (f"; close: {', '.join(close)}" if close else "")
                          + ", a .py config path, or mmdet::<path> / mmyolo::<path>")
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


def load_model_config(config, parameter: str, num_classes: int, platform: str = "") -> MMConfig:
    path = resolve_config_path(config, parameter, platform)
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
    pre = model.get("data_preprocessor")
    if isinstance(pre, dict) and pre.get("mean") is None:
        # without mean/std MMYOLO's training preprocessor hands uint8 images to the first conv (YOLOX configs):
        # an identity normalisation makes them float and leaves the 0..255 scale the model expects
        pre["mean"], pre["std"] = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
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


def default_workers() -> int:
    cpus = len(os.sched_getaffinity(0))
    return 0 if cpus <= 2 else min(4, cpus // 2)


def train_dataloader(info: CocoInfo, family: str, insize: int, batch_size: int, *, workers: int | None = None,
                     pin_memory: bool = False) -> dict:
    if family == "mmyolo":
        from mmyolo.datasets.utils import yolov5_collate as collate
    else:
        from mmengine.dataset import pseudo_collate as collate
    n = default_workers() if workers is None else int(workers)
    return dict(batch_size=batch_size, num_workers=n, persistent_workers=n > 0, pin_memory=pin_memory,
                sampler=dict(type="DefaultSampler", shuffle=True),
                collate_fn=dict(type=collate),
                dataset=dataset_cfg(info, "train", insize, train=True))
