"""Every run parameter, declared once: name (as the spec spells it), type, default and description.

Stage configs take their fields from here (``param("NAME")``); pipeline signatures, component inputs,
compiled-YAML descriptions, CLI help, component READMEs and the job-file mapping all read this table.
Which stages read a parameter follows from the configs that use it (``visioncompress.stages``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Param:
    name: str
    type: type
    default: Any
    help: str
    internal: bool = False  # wiring between tasks, set by pipelines: never a pipeline (run) parameter
    item: type = int  # element type of a list parameter

    @property
    def type_name(self) -> str:
        """The annotation KFP reads (List[...] for lists)."""
        return f"List[{self.item.__name__}]" if self.type is list else self.type.__name__


def _table(*params: Param) -> dict[str, Param]:
    table: dict[str, Param] = {}
    for p in params:
        if p.name in table:
            raise ValueError(f"parameter {p.name} is declared twice")
        if not p.help:
            raise ValueError(f"parameter {p.name} has no description")
        table[p.name] = p
    return table


PARAMS: dict[str, Param] = _table(
    Param('BATCH_SIZE', int, 1,
          "batch size of training and calibration, the engine's batch for TensorRT, and the second latency batch of the benchmark (batch 1 is always measured)"),
    Param('LATENCY_BATCH_SIZES', list, [32],
          'more latency batch sizes'),
    Param('WARMUP', int, 5,
          'untimed runs before timing'),
    Param('ITERATIONS', int, 30,
          'timed runs per batch size (at most)'),
    Param('TIME_BUDGET_S', float, 10.0,
          'stop timing a batch size after this long'),
    Param('MAX_TEST_SAMPLES', int, 0,
          "cap on test images, at data preparation and in the benchmark's accuracy pass (0 = all)"),
    Param('THREADS', int, 0,
          "intra-op threads for every runtime and training stage (0 = the pod's CPU quota, else the visible cores)"),
    Param('DATASET_SOURCE', str, 'fashion-mnist',
          'classification: fashion-mnist (offline), folder (class-per-subfolder dir or archive), torchvision; detection: coco (COCO folder or archive), fashion-mnist-detection (offline: Fashion-MNIST items on photographs)'),
    Param('DATASET_NAME', str, '',
          'torchvision dataset class name, e.g. CIFAR10'),
    Param('DATASET_PATH', str, '',
          'local folder/archive, s3://bucket/key or minio://bucket/key, or download root for torchvision'),
    Param('insize', int, 32,
          'square input size A (A x A)'),
    Param('VAL_FRACTION', float, 0.1,
          'share of training data held out for validation'),
    Param('CALIBRATION_SAMPLES', int, 512,
          'calibration images drawn from training data'),
    Param('MAX_TRAIN_SAMPLES', int, 0,
          'cap on training images (0 = all)'),
    Param('SEED', int, 43,
          'random seed: data splits and sampling, weight initialisation and data order of every training stage'),
    Param('TEACHER_MODEL', str, 'vgg16',
          'name of the teacher on TEACHER_PLATFORM (an MMDetection/MMYOLO config name for an OpenMMLab student); '
          'also the architecture a state_dict in CUSTOM_TEACHER_PATH is loaded into'),
    Param('CUSTOM_TEACHER_PATH', str, '',
          "the teacher's weights in any format CUSTOM_MODEL_PATH takes (loaded into TEACHER_MODEL), or a model "
          "artifact dir; empty: TEACHER_MODEL built by name"),
    Param('METHOD', str, 'pkd',
          'detection distillation method: pkd, cwd (torchvision and MMDetection detectors), pkd_yolo (MMYOLO); not used for classification'),
    Param('EPOCHS', int, 20,
          'epochs of the distillation stage, or of GroupFisher pruning (pruning in the first half, recovery after)'),
    Param('LR', float, 0.01,
          'distillation learning rate'),
    Param('LAMBDA', float, 0.5,
          'weight of cross entropy; 1 - LAMBDA weighs the KL term'),
    Param('TEMPERATURE', float, 20,
          'softmax temperature of the KL term'),
    Param('WEIGHT_DECAY', float, 0.0005,
          'weight decay during distillation'),
    Param('MIN_STUDENT_SHARE', float, 0.25,
          "detection: the distilled student's best validation mAP must reach this share of the teacher's "
          "(checked when the teacher has at least 1 mAP), else the stage fails rather than write a collapsed "
          "student; 0 turns the check off"),
    Param('INTERVAL', int, 10,
          'training iterations between two pruning steps'),
    Param('NORM_TYPE', str, 'act',
          'act: Fisher importance per unit of activation memory; flops: per unit of FLOPs'),
    Param('LR_RATIO', float, 0.1,
          'learning-rate factor while pruning is under way'),
    Param('TARGET_FLOP_RATIO', float, 0.5,
          'share of the FLOPs to keep, in (0, 1)'),
    Param('MODEL', str, 'resnet18',
          "the model's name on PLATFORM (torchvision: resnet18, mobilenet_v2, ...; timm: deit_tiny_patch16_224, "
          "...), or a detector for the detection pipelines: torchvision's (fcos_resnet18_fpn, ...) or, with PLATFORM "
          "mmdet / mmyolo, the name of a config the package ships (retinanet_r50_fpn_1x_coco, "
          "yolox_tiny_fast_8xb8-300e_coco, rtmdet_tiny_8xb32-300e_coco, ...)"),
    Param('PLATFORM', str, 'torchvision',
          "where MODEL comes from: torchvision or timm (classification: any timm.list_models() name, e.g. "
          "deit_small_patch16_224, resnet50, convnext_tiny); detection: torchvision, or mmdet / mmyolo "
          "(OpenMMLab detectors, in every detection pipeline: detect_distill, detect_prune, detect_qat_openvino and "
          "the detection PTQ pipelines; trained by their "
          "own Runner with these training settings)"),
    Param('TEACHER_PLATFORM', str, '',
          "where TEACHER_MODEL comes from: torchvision or timm (student and teacher may differ), mmdet or mmyolo "
          "for an OpenMMLab student; empty = PLATFORM"),
    Param('PRETRAINED', bool, False,
          'load ImageNet weights when no custom model is given (mmdet / mmyolo: the COCO checkpoint the '
          "config's metafile lists; an error when the node cannot download it)"),
    Param('CUSTOM_MODEL_PATH', str, '',
          "the starting model's weights: a state dict (.pt/.pth), safetensors, TorchScript, a torch.export program "
          "(.pt2) or a model artifact dir (local, s3:// or minio://)"),
    Param('TRUST_PICKLED_MODEL', bool, False,
          "also accept a whole pickled module as CUSTOM_MODEL_PATH / CUSTOM_TEACHER_PATH: loading it runs code from "
          "that file, so only for files whose author you trust"),
    Param('quant_format', str, 'QuantFormat.QDQ',
          "QuantFormat.QDQ, QuantFormat.QOperator, or auto (the form that is fast on this node's CPU, see "
          "activation_type)"),
    Param('per_channel', bool, False,
          'per-channel weight scales'),
    Param('activation_type', str, 'QuantType.QInt8',
          "activation data type (QuantType.QInt8, QUInt8, QInt16, QUInt16, QFLOAT8E4M3FN), or auto: unsigned "
          "(U8S8) or signed (S8S8) 8-bit activations, whichever ONNX Runtime runs fast on this node's CPU (read "
          "from its features; timed on the node with TUNE); an explicit type is always honoured"),
    Param('TUNE', bool, False,
          "ONNX Runtime PTQ with activation_type or quant_format auto: time the candidate INT8 forms on this "
          "node (a few seconds each) and keep the fastest, instead of choosing from the CPU's features alone"),
    Param('weight_type', str, 'QuantType.QInt8',
          'weight data type'),
    Param('calibrate_method', str, 'MinMax',
          'MinMax, Entropy, Percentile, Distribution'),
    Param('TRANSFORMER', bool, True,
          "use NNCF's transformer model type (ViT-style models) for OpenVINO PTQ and QAT"),
    Param('SUBSET_SIZE', int, 300,
          'calibration images NNCF uses for the quantizer ranges (OpenVINO PTQ and QAT)'),
    Param('PRESET', str, 'performance',
          'performance (symmetric) or mixed (asymmetric activations)'),
    Param('FAST_BIAS_CORRECTION', bool, True,
          "NNCF PTQ's fast bias correction (its default); False runs the full BiasCorrection: slower to "
          "quantize, often more accurate for depthwise networks such as MobileNetV2"),
    Param('MAX_ACCURACY_DROP', float, 0.0,
          "OpenVINO PTQ: above 0, nncf.quantize_with_accuracy_control keeps layers in floating point until the metric (top-1 %, or detection mAP points) drops at most this much on the validation split; 0 = plain nncf.quantize"),
    Param('USE_DEFAULT_POST_PROCESSING', bool, True,
          "detection export: use the detector's own post-processing settings (torchvision's score threshold, NMS IoU, top-k, detections per image); False = the SCORE_THRESHOLD ... MIN_BBOX_SIZE parameters"),
    Param('SCORE_THRESHOLD', float, 0.05,
          "detection export: candidates scoring at most this are dropped before NMS (nyuntam's CONFIDENCE_THRESHOLD); used when USE_DEFAULT_POST_PROCESSING is False"),
    Param('IOU', float, 0.5,
          "detection export: NMS IoU threshold (per class); used when USE_DEFAULT_POST_PROCESSING is False"),
    Param('NMS_PRE', int, 1000,
          "detection export: top-scoring candidates kept per FPN level (per class for SSD) before NMS; used when USE_DEFAULT_POST_PROCESSING is False"),
    Param('MAX_BBOX_PER_IMG', int, 100,
          "detection export: detection slots per image in the outputs (the rest is padding); used when USE_DEFAULT_POST_PROCESSING is False"),
    Param('MAX_BBOX_PER_CLS', int, 0,
          "detection export: NMS keeps at most this many boxes per class and image (0 = no limit); used when USE_DEFAULT_POST_PROCESSING is False"),
    Param('MIN_BBOX_SIZE', float, 0.0,
          "detection export: boxes narrower or shorter than this many pixels are dropped before NMS (0 = keep all); used when USE_DEFAULT_POST_PROCESSING is False"),
    Param('QAT_EPOCHS', int, 1,
          'epochs of training with fake quantization (PyTorch and OpenVINO QAT)'),
    Param('QAT_LEARNING_RATE', float, 0.0001,
          'learning rate during quantization-aware training'),
    Param('PRUNER_NAME', str, 'GroupNormPruner',
          'MetaPruner, GroupNormPruner or BNSPruner (torch-pruning)'),
    Param('GROUP_IMPORTANCE', str, 'GroupNormImportance',
          'GroupNormImportance (L2 magnitude) or GroupTaylorImportance'),
    Param('TARGET_PRUNE_RATE', float, 0.5,
          'fraction (0.5) or percentage (50) of parameters (PRUNE_TARGET=params) or of multiply-accumulates '
          '(PRUNE_TARGET=macs) to remove'),
    Param('PRUNE_TARGET', str, 'params',
          "what TARGET_PRUNE_RATE counts: params (the model's parameters, nyuntam's meaning) or macs (its "
          "multiply-accumulates at the dataset's input size: what latency follows)"),
    Param('BOTTLENECK', bool, False,
          'transformers: keep the embedding width, prune only the MLP hidden layers and attention internals'),
    Param('PRUNE_NUM_HEADS', bool, True,
          "transformers: remove whole attention heads (False: shrink every head's dimension instead)"),
    Param('ITERATIVE_STEPS', int, 1,
          'prune in this many steps, re-ranking each time'),
    Param('ROUND_TO', int, 1,
          'keep each pruned layer\'s channel count a multiple of this (1: any count; 16 lets AMX/tensor-core INT8 '
          'kernels take every layer)'),
    Param('SPARSITY_EPOCHS', int, 0,
          "sparse-training epochs with the pruner's regulariser before pruning (GroupNormPruner, BNSPruner)"),
    Param('SPARSITY', float, 0.0,
          "torch-pruning's channel pruning ratio per layer (nyuntam's TorchPrune SPARSITY, e.g. 0.5); above 0 it is "
          "used as given and TARGET_PRUNE_RATE is not searched for; 0 = search the ratio that removes "
          "TARGET_PRUNE_RATE of the parameters"),
    Param('ITERATIVE', bool, False,
          "iterative pruning: ITERATIVE_STEPS pruning steps, each followed by FINETUNE_EPOCHS of fine-tuning (when "
          "TRAINING) and a validation; stops after the first step whose val top-1 is more than MAX_DROP below the "
          "unpruned model's"),
    Param('MAX_DROP', float, 0.2,
          "ITERATIVE pruning: the largest val top-1 drop against the unpruned model, as a fraction of 1 (0.2 = 20 "
          "points), before pruning stops early"),
    Param('DESTINATION', str, '',
          's3://bucket/prefix or minio://bucket/prefix; empty = do not publish'),
    Param('ACCURACY_BUDGET', float, 1.0,
          "top-1 points (mAP points for detection) the new model may lose against the current latest; a "
          "candidate further below never becomes latest. In ptq_ladder also the points of validation top-1 the "
          "INT8 model may lose against the run's FP32 model: the ladder (PTQ, PTQ with accuracy control, QAT "
          "distilled from FP32) stops at the first rung within it, and a model over it is published only with "
          "PUBLISH_OVER_BUDGET"),
    Param('LADDER_BACKEND', str, 'openvino',
          "ptq_ladder: the INT8 runtime the ladder quantizes for: openvino (NNCF), onnx (ONNX Runtime) or torch "
          "(FX, TorchScript)"),
    Param('PRUNE_RECOVERY', str, 'finetune',
          "how a pruned classifier recovers in the prune step's FINETUNE_EPOCHS: finetune (labels, CRITERION) or "
          "distill (knowledge distillation from the unpruned model, LAMBDA and TEMPERATURE)"),
    Param('RUN_DATE', str, '',
          'publication date (YYYY-MM-DD); empty = today (UTC); schedules pass [[ScheduledTime.2006-01-02]]'),
    Param('PRIMARY', str, '',
          "the published model whose top-1 (mAP) gates the latest pointer (default: the first)"),
    Param('PUBLISH_OVER_BUDGET', bool, False,
          "upload a candidate over ACCURACY_BUDGET anyway, under its own prefix with a manifest marked rejected "
          "(latest.json never moves to it); False: upload nothing"),
    Param('KEEP_LAST', int, 0,
          "keep this many newest publications and delete older ones (never the one latest.json points to); 0 "
          "keeps every publication"),
    Param('FP16_FALLBACK', bool, True,
          'let layers without Q/DQ run in FP16 instead of FP32 (TensorRT 10; TensorRT 11 keeps the ONNX types)'),
    Param('DYNAMIC_BATCH', bool, False,
          'build a batch profile min 1 / opt BATCH_SIZE / max MAX_BATCH_SIZE instead of a fixed BATCH_SIZE'),
    Param('MAX_BATCH_SIZE', int, 32,
          'largest batch of the dynamic profile'),
    Param('WORKSPACE_MB', int, 1024,
          'TensorRT builder workspace memory pool, MiB'),
    Param('CALIBRATION_BATCH_SIZE', int, 32,
          'images per calibration batch'),
    Param('CALIBRATION_METHOD', str, 'MinMax',
          'activation range calibration: MinMax, Entropy, Percentile'),
    Param('choice', str, 'static',
          'static (INT8 weights+activations), weight (INT8 weights, dynamic activations), fusion (fold Conv/BN/ReLU only, FP32)'),
    Param('QUANTIZED_ENGINE', str, 'auto',
          'torch quantized engine for PyTorch PTQ and QAT: auto (from the CPU: onednn with VNNI/AMX, x86 without, '
          'qnnpack on ARM), x86, fbgemm, onednn, qnnpack; the model records it and loaders set it'),
    Param('TRAINING', bool, True,
          'fine-tune before compression'),
    Param('VALIDATE', bool, True,
          'validate during fine-tuning'),
    Param('VALIDATION_INTERVAL', int, 1,
          'epochs between validations'),
    Param('CRITERION', str, 'CrossEntropyLoss',
          'a torch.nn loss class name'),
    Param('LEARNING_RATE', float, 0.001,
          'fine-tuning learning rate'),
    Param('FINETUNE_EPOCHS', int, 1,
          'fine-tuning epochs'),
    Param('OPTIMIZER', str, 'Adam',
          'a torch.optim class name'),
    # The training engine (every training stage of both tasks).
    Param('DEVICE', str, 'auto',
          "training device: auto (CUDA when present, else CPU), cpu, cuda or cuda:N (nyuntam's 'cuda:0' is "
          "honoured); a device that is not there fails before any work"),
    Param('AMP', bool, True,
          "mixed precision on CUDA (bf16 autocast where the GPU has it, else fp16 with loss scaling); always off "
          "on CPU"),
    Param('NUM_PROCESSES', int, 0,
          "training processes in this step (torch.distributed: NCCL on GPUs, Gloo on CPU); 0 = one per visible "
          "GPU, 1 on CPU; BATCH_SIZE stays the global batch, split across them"),
    Param('WORKERS', int, 2,
          "DataLoader worker processes per training process that decode, resize and augment images (0 = in the "
          "training process)"),
    Param('PIN_MEM', bool, True,
          "page-locked host memory for batches bound for a GPU (no effect on CPU)"),
    Param('LR_SCHEDULER', str, 'none',
          "learning-rate schedule of every training stage: none, step (x0.1 at 1/3 and 2/3 of the epochs) or "
          "cosine; LR_WARMUP_EPOCHS of linear warm-up first"),
    Param('LR_WARMUP_EPOCHS', int, 0,
          "epochs of linear learning-rate warm-up before LR_SCHEDULER takes over"),
    Param('CHECKPOINT_URI', str, '',
          "where each training stage writes its per-epoch checkpoint and resumes from after a retry or restart: "
          "s3://bucket/prefix, minio://bucket/prefix or a mounted path (each stage under <prefix>/<stage>); empty = "
          "beside the step's output artifact when the pipeline root is object storage, else a local folder "
          "(lost with the pod)"),
    Param('TRAIN_ON_GPU', bool, False,
          "place the training steps on the GPU pool (accelerator, node selector and toleration as the TensorRT "
          "steps) instead of the CPU pool"),
    Param('NUM_NODES', int, 1,
          "nodes of a multi-node training step; above 1 the step runs as a Kubeflow Trainer TrainJob (or "
          "PyTorchJob) of NUM_NODES x GPUS_PER_NODE processes"),
    Param('GPUS_PER_NODE', int, 1,
          "GPUs (processes) per node of a multi-node training job"),
    Param('TENSORRT_OPTIONAL', bool, False,
          "skip the TensorRT engine build and GPU benchmark with a notice (instead of failing) where TensorRT or "
          "CUDA is missing; local runs on machines without them set it"),
    # Run-time object storage (credentials never: they come from the Kubernetes secret).
    Param('S3_ENDPOINT', str, '',
          "object storage host[:port] or http(s)://host[:port] for s3:// and minio:// paths; empty: the endpoint "
          "set when the pipeline was compiled (VC_S3_ENDPOINT), else the in-cluster MinIO of a standard Kubeflow "
          "install (minio-service.kubeflow:9000, plain HTTP)"),
    Param('S3_SECURE', str, '',
          "TLS to the object storage: true or false; empty: the compile-time setting (VC_S3_SECURE), else "
          "false for the in-cluster MinIO and true for any other endpoint"),
    Param('S3_REGION', str, '',
          "bucket region; empty: the compile-time setting (VC_S3_REGION), else asked from the server"),
    # Pipeline-level switches.
    Param('STUDENT_MODEL', str, 'mobilenet_v2',
          "compare_all: the student that distillation trains from the fine-tuned model (the teacher)"),
    Param('USE_TENSORRT', bool, False,
          "compare_all: also run the TensorRT branch (needs a GPU node with TensorRT); off by default so the "
          "pipeline finishes on clusters without GPUs"),
    # Wiring set by pipelines, not by users.
    Param('VARIANT', str, '', "label of the benchmarked variant in the report (qat-int8, distilled, pruned)",
          internal=True),
    Param('FP32_RUNTIMES', list, [], "runtimes in which the FP32 model is also measured", internal=True,
          item=str),
    Param('TITLE', str, 'visioncompress comparison', "the report's title", internal=True),
    Param('RUN_ID', str, '', "the KFP run id; names the publication's prefix so two runs on one date never "
          "share it (empty: a hash of the published files)", internal=True),
    Param('NOTICE', str, '', "why a branch of the pipeline did not run (shown in the step's log)", internal=True),
)


def param(name: str) -> Any:
    """A dataclass field whose default, spec name and description come from ``PARAMS[name]``."""
    p = PARAMS[name]
    metadata = {"spec": name, "help": p.help}
    if isinstance(p.default, (list, dict)):
        return dataclasses.field(default_factory=lambda d=p.default: type(d)(d), metadata=metadata)
    return dataclasses.field(default=p.default, metadata=metadata)
