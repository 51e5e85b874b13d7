"""KFP components: one folder per stage, each generated from the stage's declaration in the library.

``stage_component("finetune")`` writes the component function's source from ``visioncompress.stages``
(artifacts, then every parameter the stage reads with its catalog type, default and description) and
hands it to ``dsl.component``. The body is one call, ``run_stage("finetune", locals())``, so the
compiled YAML carries no logic of its own and every parameter is declared once, in the catalog.
"""

from __future__ import annotations

import linecache

from kfp import dsl

from visioncompress.settings import load_settings

_SETTINGS = load_settings()
CPU_IMAGE = _SETTINGS.image_cpu
GPU_IMAGE = _SETTINGS.image_gpu
DETECTION_IMAGE = _SETTINGS.image_detection


def component_source(name: str) -> str:
    """The Python source of stage ``name``'s component function."""
    from visioncompress.stages import STAGES

    stage = STAGES[name]
    args = [f"{n}: Input[{t}]" for n, t in stage.inputs]
    args += [f"{n}: Output[{t}]" for n, t in stage.outputs]
    args += [f"{n}: Input[{t}] = None" for n, t in stage.optional_inputs]
    params = stage.parameters()
    args += [f"{p.name}: {p.type_name} = {p.default!r}" for p in params]
    doc = [stage.doc, "", "Args:"]
    doc += [f"    {n}: input artifact" for n, _ in (*stage.inputs, *stage.optional_inputs)]
    doc += [f"    {n}: output artifact" for n, _ in stage.outputs]
    doc += [f"    {p.name}: {p.help}" for p in params]
    body = "\n".join(f"    {line}".rstrip() for line in doc)
    return (f"def {name}(\n" + "".join(f"    {a},\n" for a in args) + "):\n"
            f'    """{body.strip()}\n    """\n'
            "    from visioncompress.stages import run_stage\n\n"
            f"    run_stage({name!r}, locals())\n")


def stage_component(name: str, image: str | None = None):
    """The KFP component of stage ``name`` (CPU or GPU image from the settings; ``image="gpu"`` forces the GPU
    image: a training stage's GPU branch under ``TRAIN_ON_GPU``; ``image="detection"``: the detection image,
    where the detection pipelines run their CPU steps, OpenMMLab detectors included)."""
    from typing import List  # noqa: F401  (annotations of the generated source)

    from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Model, Output  # noqa: F401

    from visioncompress.stages import STAGES

    source = component_source(name)
    filename = f"<visioncompress component {name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    namespace = dict(locals())
    exec(compile(source, filename, "exec", dont_inherit=True), namespace)  # noqa: S102 - our own generated source
    image = {"gpu": GPU_IMAGE, "detection": DETECTION_IMAGE}.get(image or STAGES[name].image, CPU_IMAGE)
    return dsl.component(base_image=image, install_kfp_package=False)(namespace[name])
