"""`make bench`'s command line: which rows it offers, the timm ViT sizes, and the hand-over of the OpenMMLab
detector rows to the OpenMMLab environment's Python (the measurements themselves are `make bench`, not a test)."""

from __future__ import annotations

import pytest

from bench import timm_vit
from bench import run as bench_run


def test_bench_run_offers_the_timm_vit_and_mm_detector_rows():
    assert {"all", "timm-vit", "mm-detection"} <= set(bench_run.ONLY)
    with pytest.raises(SystemExit):
        bench_run.main(["--only", "no-such-rows"])


def test_timm_vit_sizes_default_to_224_px_at_batch_1_and_32():
    real = timm_vit.sizes_for(timm_vit.parse_args([]))
    assert real.insize == 224 and real.measure.batch_sizes == [1, 32]
    assert real.train >= real.steps * timm_vit.BATCH  # one epoch of `steps` batches after the validation share
    tiny = timm_vit.sizes_for(timm_vit.parse_args(["--tiny", "--insize", "48", "--test-images", "10",
                                                   "--finetune-steps", "3"]))
    assert (tiny.insize, tiny.test, tiny.measure.max_test_samples, tiny.steps) == (48, 10, 10, 3)


def test_mm_detection_rows_run_in_the_mm_python_or_are_skipped_saying_so(tmp_path, capsys):
    command = bench_run.mm_detection_command("/opt/mm/bin/python", tmp_path, tmp_path / "results.json")
    assert command[:3] == ["/opt/mm/bin/python", "-m", "bench.mm_detection"]
    assert command[command.index("--output") + 1] == str(tmp_path / "results_mm_detection.json")
    assert command[command.index("--artifacts") + 1] == str(tmp_path / "mm-detection")

    missing = str(tmp_path / "no-venv" / "python")
    bench_run.run_mm_detection(missing, tmp_path, tmp_path / "results.json", required=False)
    assert "mm-detection rows skipped" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no OpenMMLab environment"):
        bench_run.main(["--only", "mm-detection", "--mm-python", missing, "--artifacts", str(tmp_path)])
    assert not (tmp_path / "results_mm_detection.json").exists()

