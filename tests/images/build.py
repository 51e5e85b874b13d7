"""Build the repository's images on a machine without Docker Hub and with no direct PyPI access in builds.

    python tests/images/build.py cpu                 # prints the tag it built
    python tests/images/build.py detection           # builds cpu first: detection starts from it

Steps (each one reused when nothing changed):
1. the base image: tests/images/make_base.sh (debootstrap + docker import, in place of python:3.11-slim);
2. a wheelhouse for the pinned set, resolved on this host by its own pip (its index, proxy CA bundle and
   local wheel folders apply) into .cache/images/wheelhouse, hard-linking wheels already on disk;
3. `docker build --network host` of the real images/<name>/Dockerfile, with the wheelhouse served on
   127.0.0.1 (build argument WHEELHOUSE: pip in the build installs from it only) and a small build
   context (the files the Dockerfiles copy, without .venv or caches).

Environment: VC_BASE_IMAGE (default visioncompress-base:bookworm), VC_WHEELHOUSE_PORT (default 8765),
VC_IMAGE_TAG (default test).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "images"
BASE_IMAGE = os.environ.get("VC_BASE_IMAGE", "visioncompress-base:bookworm")
PORT = int(os.environ.get("VC_WHEELHOUSE_PORT", "8765"))
TAG = os.environ.get("VC_IMAGE_TAG", "test")
# Each image's pinned requirement files (detection adds its extras on top of the CPU image).
REQUIREMENTS = {"cpu": ["requirements.txt"], "detection": ["requirements.txt", "requirements-mm.txt"]}
# Build backends for `pip install .` and for any sdist in the set (pip in the build has no index).
BUILD_TOOLS = ["setuptools>=68", "wheel"]


def log(message: str) -> None:
    print(f"[images] {message}", file=sys.stderr, flush=True)


def image_tag(name: str, tag: str = TAG) -> str:
    return f"visioncompress-{name}:{tag}"


def ensure_base(base: str = BASE_IMAGE) -> str:
    subprocess.run([str(REPO / "tests" / "images" / "make_base.sh"), base], check=True)
    return base


def _requirement_files(name: str) -> list[Path]:
    files = [REPO / f for f in REQUIREMENTS[name]]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"missing requirement files: {missing}")
    return files


def _fetch(url: str, dest: Path, sha256: str | None) -> None:
    context = ssl.create_default_context(cafile=os.environ.get("PIP_CERT") or None)
    tmp = dest.with_suffix(dest.suffix + ".part")
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, context=context, timeout=300) as response, open(tmp, "wb") as out:
        while chunk := response.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    if sha256 and digest.hexdigest() != sha256:
        tmp.unlink()
        raise RuntimeError(f"{url}: sha256 mismatch")
    tmp.rename(dest)


def prepare_wheelhouse(files: list[Path], dest: Path = CACHE / "wheelhouse") -> Path:
    """Every distribution the requirement files resolve to on this host, as files in ``dest``."""
    key = hashlib.sha256(json.dumps([f.read_text() for f in files] + BUILD_TOOLS).encode()).hexdigest()
    stamp = dest / f".resolved-{key[:16]}"
    if stamp.is_file():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    report = dest / ".report.json"
    args = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
            "--report", str(report), *BUILD_TOOLS]
    for f in files:
        args += ["-r", str(f)]
    log(f"resolving {', '.join(f.name for f in files)} with this host's pip")
    subprocess.run(args, check=True)
    fetched = linked = 0
    for item in json.loads(report.read_text())["install"]:
        info = item["download_info"]
        url = info["url"].split("#", 1)[0]
        target = dest / urllib.parse.unquote(url.rsplit("/", 1)[-1])
        if target.is_file():
            continue
        if url.startswith("file://"):
            source = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path))
            try:
                os.link(source, target)
            except OSError:
                shutil.copy2(source, target)
            linked += 1
        else:
            _fetch(url, target, info.get("archive_info", {}).get("hashes", {}).get("sha256"))
            fetched += 1
    report.unlink()
    stamp.touch()
    log(f"wheelhouse {dest}: {linked} linked from local files, {fetched} downloaded")
    return dest


@contextmanager
def serve(directory: Path, port: int = PORT):
    """Serve ``directory`` on 127.0.0.1:port (its index page is a pip --find-links page)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # pip fetches hundreds of files
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port),
                                             functools.partial(Quiet, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.shutdown()
        server.server_close()


def make_context(dest: Path) -> Path:
    """The files the Dockerfiles COPY (a repository-root context would also send .venv and caches)."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for path in [*REPO.glob("requirements*.txt"), REPO / "pyproject.toml", REPO / "README.md"]:
        shutil.copy2(path, dest / path.name)
    for folder in ("shared", "components", "pipelines"):
        shutil.copytree(REPO / folder, dest / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build"))
    return dest


def build(name: str, tag: str = TAG, base: str | None = None) -> str:
    """Build images/<name>/Dockerfile; returns the image's name:tag."""
    if name == "detection" and base is None:
        base = build("cpu", tag)
    base = base or ensure_base()
    image = image_tag(name, tag)
    wheelhouse = prepare_wheelhouse(_requirement_files(name))
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="context-") as tmp, serve(wheelhouse) as url:
        context = make_context(Path(tmp) / "context")
        command = ["docker", "build", "--network", "host", "-f", str(REPO / "images" / name / "Dockerfile"),
                   "-t", image, "--build-arg", f"BASE_IMAGE={base}", "--build-arg", f"WHEELHOUSE={url}",
                   "--build-arg", "TORCH_INDEX_URL=", str(context)]
        log(" ".join(command))
        started = time.perf_counter()
        # The classic builder: BuildKit needs the buildx plugin, which distributions' docker often lacks.
        subprocess.run(command, check=True, env={**os.environ, "DOCKER_BUILDKIT": "0"})
        log(f"built {image} in {time.perf_counter() - started:.0f} s")
    return image


def image_size(image: str) -> int:
    out = subprocess.run(["docker", "image", "inspect", "--format", "{{.Size}}", image],
                         check=True, capture_output=True, text=True).stdout
    return int(out.strip())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", choices=sorted(REQUIREMENTS))
    parser.add_argument("--tag", default=TAG)
    parser.add_argument("--base", help="base image (default: the debootstrap one; detection: the CPU image)")
    args = parser.parse_args(argv)
    image = build(args.image, args.tag, args.base)
    log(f"{image}: {image_size(image) / 1e9:.2f} GB")
    print(image)
    return 0


if __name__ == "__main__":
    sys.exit(main())
