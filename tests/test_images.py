"""Container images: linted by hadolint, base image as a build argument, non-root user."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted(REPO.glob("images/*/Dockerfile"))


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).is_file():
        pytest.fail("hadolint is missing: it is in requirements-dev.txt (make setup installs it)")
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint_clean(dockerfile):
    result = subprocess.run([_hadolint(), "--config", str(REPO / ".hadolint.yaml"), str(dockerfile)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_base_image_is_a_build_argument_and_user_is_not_root(dockerfile):
    lines = [l.strip() for l in dockerfile.read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert lines[0].startswith("ARG BASE_IMAGE=") and lines[1] == "FROM ${BASE_IMAGE}"
    users = [l.split()[1] for l in lines if l.startswith("USER ")]
    assert users and users[-1] not in {"root", "0"}
    assert "requirements.txt" in dockerfile.read_text()  # the one pinned dependency set


def test_every_image_exists():
    assert {p.parent.name for p in DOCKERFILES} >= {"cpu", "gpu"}
