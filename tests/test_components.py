"""Components are generated from the stage declarations: thin, documented, one clear line on bad input."""

import importlib
import inspect
from pathlib import Path

import pytest
from kfp.dsl import Dataset

from visioncompress.stages import STAGES

COMPONENTS = Path(__file__).resolve().parents[1] / "components"
NAMES = sorted(p.name for p in COMPONENTS.iterdir() if (p / "component.py").is_file())


def _component(name):
    return getattr(importlib.import_module(f"visioncompress.components.{name}.component"), name)


def test_every_stage_has_a_component_folder():
    assert set(NAMES) == set(STAGES)
    for name in NAMES:
        assert {"component.py", "README.md", "metadata.yaml", "__init__.py"} <= {
            p.name for p in (COMPONENTS / name).iterdir()}


@pytest.mark.parametrize("name", NAMES)
def test_component_inputs_come_from_the_catalog_with_descriptions(name):
    component = _component(name)
    stage = STAGES[name]
    inputs = component.component_spec.inputs
    for param in stage.parameters():
        assert inputs[param.name].description == param.help
        assert inputs[param.name].default == param.default
    readme = (COMPONENTS / name / "README.md").read_text()
    for parameter in inspect.signature(component.python_func).parameters:
        assert f"`{parameter}`" in readme, f"{name}/README.md does not document {parameter}"


@pytest.mark.parametrize("name", NAMES)
def test_component_is_one_library_call(name):
    source = inspect.getsource(_component(name).python_func)
    body = source.split('"""')[-1].strip().splitlines()
    assert [line.strip() for line in body if line.strip()] == [
        "from visioncompress.stages import run_stage", f"run_stage({name!r}, locals())"]


def test_bad_parameter_is_one_clear_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _component("data_prep").python_func(dataset=Dataset(uri=str(tmp_path / "out")), insize=4)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip() == "visioncompress: data_prep: insize=4 is not allowed; expected an integer >= 8"
    assert not (tmp_path / "out").exists()
