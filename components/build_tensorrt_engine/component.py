from kfp import dsl
from kfp.dsl import Input, Model, Output

from components import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def build_tensorrt_engine(
    qdq_model: Input[Model],
    engine: Output[Model],
    BATCH_SIZE: int = 1,
    FP16_FALLBACK: bool = True,
    DYNAMIC_BATCH: bool = False,
    MAX_BATCH_SIZE: int = 32,
    WORKSPACE_MB: int = 1024,
    TENSORRT_OPTIONAL: bool = False,
):
    """GPU half of TensorRT PTQ: build and serialise an INT8 engine from the QDQ ONNX model."""
    from visioncompress.config.tensorrt import TensorRTConfig
    from visioncompress.kfp_io import describe_model, stage
    from visioncompress.quantize.tensorrt import build_engine, tensorrt_unavailable_reason, write_skip_notice

    with stage("build_tensorrt_engine"):
        config = TensorRTConfig(batch_size=BATCH_SIZE, fp16_fallback=FP16_FALLBACK, dynamic_batch=DYNAMIC_BATCH,
                                max_batch_size=MAX_BATCH_SIZE, workspace_mb=WORKSPACE_MB)
        reason = tensorrt_unavailable_reason() if TENSORRT_OPTIONAL else None
        if reason is not None:
            print(f"NOTICE: TensorRT engine build skipped (TENSORRT_OPTIONAL): {reason}", flush=True)
            write_skip_notice(engine.path, reason)
            engine.metadata["skipped"] = reason
        else:
            describe_model(engine, build_engine(qdq_model.path, engine.path, config))
