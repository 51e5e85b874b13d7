"""Publishing on real outputs: the `compare` pipeline run twice on one date against moto's S3 server.

The first run fine-tunes resnet18 (top-1 far above chance); the second keeps the random weights
(TRAINING=False, top-1 near 10%), so it is genuinely over ACCURACY_BUDGET. Both publish to the same
DESTINATION on the same RUN_DATE; the bucket is then checked object by object. A detection model
(ONNX PTQ of a trained FCOS, benchmarked and reported by the library) is published through the
component, which judges it by mAP.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from test_storage import s3_server, use_moto  # noqa: F401  (the moto server fixture)
from visioncompress.errors import ArtifactError
from visioncompress.storage import download, get_json, publications, publish, sha256_file

DAY = "2026-11-30"
BUDGET = 5.0
TINY = {"insize": 16, "MAX_TRAIN_SAMPLES": 600, "MAX_TEST_SAMPLES": 100, "CALIBRATION_SAMPLES": 32,
        "BATCH_SIZE": 32, "MODEL": "resnet18", "LEARNING_RATE": 0.002}


@pytest.fixture(scope="module")
def store(s3_server):  # noqa: F811
    """The moto server's environment for this module, and a fresh bucket."""
    from minio import Minio

    client = Minio(s3_server, access_key="testing", secret_key="testing", secure=False, region="us-east-1")
    name = f"vc-{uuid.uuid4().hex[:12]}"
    client.make_bucket(name)
    with pytest.MonkeyPatch.context() as mp:
        use_moto(mp, s3_server)
        yield {"client": client, "bucket": name}


def _run_outputs(report: Path) -> dict:
    """The artifacts one local pipeline run wrote: report, results, each PTQ model dir, publish's manifest."""
    run = report.parent.parent
    return {"report": report, "results": report.parent / "results",
            "models": {"torch_ptq": run / "quantize-torch" / "quantized_model",
                       "onnx_ptq": run / "quantize-onnx" / "quantized_model",
                       "openvino_ptq": run / "quantize-openvino" / "quantized_model"},
            "manifest": json.loads((run / "publish" / "manifest").read_text())}


@pytest.fixture(scope="module")
def two_runs(store, tmp_path_factory):
    """`compare` twice on one RUN_DATE, both publishing: trained, then untrained (over budget)."""
    from visioncompress.pipelines.local import run_local

    destination = f"s3://{store['bucket']}/fashion"
    common = {**TINY, "DESTINATION": destination, "RUN_DATE": DAY, "ACCURACY_BUDGET": BUDGET,
              "PUBLISH_OVER_BUDGET": True}
    first = run_local("compare", {**common, "FINETUNE_EPOCHS": 2}, tmp_path_factory.mktemp("first"))
    second = run_local("compare", {**common, "TRAINING": False}, tmp_path_factory.mktemp("second"))
    return {"destination": destination, "first": _run_outputs(first), "second": _run_outputs(second)}


def _keys(store, prefix: str) -> set[str]:
    return {o.object_name for o in store["client"].list_objects(store["bucket"], prefix=prefix, recursive=True)}


def _check_complete(store, manifest: dict, tmp_path: Path) -> None:
    """Every object under the publication's prefix is listed in its manifest with its SHA-256, and vice versa."""
    prefix_key = manifest["destination"].split("/", 3)[3]
    expected = {prefix_key + rel for rel in manifest["checksums"]} | {prefix_key + "manifest.json"}
    assert _keys(store, prefix_key) == expected
    local = download(manifest["destination"], tmp_path)
    for relative, entry in manifest["checksums"].items():
        assert sha256_file(local / relative) == entry["sha256"], relative
        assert (local / relative).stat().st_size == entry["size"], relative


def test_same_date_publications_are_separate_and_latest_stays_on_the_good_one(store, two_runs, tmp_path):
    destination, first, second = two_runs["destination"], two_runs["first"], two_runs["second"]
    one, two = first["manifest"], second["manifest"]
    # The real join of benchmark rows to model artifacts: the primary (torch_ptq) figure is its own row's top-1.
    rows = json.loads(first["results"].read_text())
    torch_top1 = max(r["top1"] for r in rows if r["stage"] == "quantize_torch")
    assert (one["metric_name"], one["metric"], one["primary"]) == ("top1", torch_top1, "torch_ptq")
    # Measured: 46.0 fine-tuned vs 4.0 untrained (100 test images, chance 10); the budget is 5 points.
    assert one["metric"] >= 25.0, f"the fine-tuned model should be far above chance (10%): {one['metric']}"
    assert two["metric"] < one["metric"] - BUDGET, (one["metric"], two["metric"])
    for name in ("onnx_ptq", "openvino_ptq"):
        assert one["metrics"][name]["metric"] == max(r["top1"] for r in rows
                                                     if r["stage"] == f"quantize_{name.split('_')[0]}")

    # Two publications under the same date, each under its own prefix; the rejected one is marked so.
    found = publications(destination)
    assert [p["date"] for p in found] == [DAY, DAY] and found[0]["prefix"] != found[1]["prefix"]
    assert {p["prefix"] for p in found} == {one["destination"], two["destination"]}
    assert (one["status"], one["published"], one["latest"]["moved"]) == ("latest", True, True)
    assert (two["status"], two["rejected"], two["latest"]["moved"]) == ("rejected", True, False)
    assert "points below" in two["latest"]["reason"]
    assert get_json(two["destination"] + "manifest.json") == two
    assert get_json(one["destination"] + "manifest.json") == one

    latest = get_json(f"{destination}/latest.json")
    assert (latest["prefix"], latest["metric_name"], latest["metric"]) == (one["destination"], "top1", one["metric"])
    stored = store["client"].get_object(store["bucket"], latest["manifest"].split("/", 3)[3])
    try:
        import hashlib

        assert hashlib.sha256(stored.read()).hexdigest() == latest["manifest_sha256"]
    finally:
        stored.close()
        stored.release_conn()

    # Both complete: every object matches its manifest checksum, and the models are the runs' own artifacts.
    for i, (run, manifest) in enumerate(((first, one), (second, two))):
        _check_complete(store, manifest, tmp_path / str(i))
        for name, model_dir in run["models"].items():
            for path in model_dir.rglob("*"):
                if path.is_file():
                    rel = f"models/{name}/{path.relative_to(model_dir).as_posix()}"
                    assert manifest["checksums"][rel]["sha256"] == sha256_file(path), rel


def test_over_budget_without_the_flag_uploads_nothing(store, two_runs):
    import logging

    destination, second = two_runs["destination"], two_runs["second"]
    before = _keys(store, "fashion/")
    said: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = said.append
    logging.getLogger("visioncompress.publish").addHandler(handler)
    try:
        manifest = publish(second["models"], second["report"], second["results"], destination,
                           accuracy_budget=BUDGET, run_date=DAY, run_id="manual-retry")
    finally:
        logging.getLogger("visioncompress.publish").removeHandler(handler)
    assert (manifest["published"], manifest["status"], manifest["destination"]) == (False, "not-published", None)
    assert _keys(store, "fashion/") == before
    notices = [r.getMessage() for r in said if r.getMessage().startswith("NOTICE: not published")]
    assert len(notices) == 1 and "points below" in notices[0] and two_runs["first"]["manifest"]["destination"] \
        in notices[0]


def test_publications_are_never_overwritten(store, two_runs):
    destination, first, second = two_runs["destination"], two_runs["first"], two_runs["second"]
    before = _keys(store, "fashion/")
    taken = second["manifest"]["id"]
    with pytest.raises(ArtifactError, match="never overwritten"):
        publish(first["models"], first["report"], first["results"], destination, accuracy_budget=BUDGET,
                run_date=DAY, run_id=taken)
    # The same publication again (a retried step): nothing is uploaded, the manifest is the stored one.
    again = publish(first["models"], first["report"], first["results"], destination, accuracy_budget=BUDGET,
                    run_date=DAY, run_id=first["manifest"]["id"])
    assert again == first["manifest"] and _keys(store, "fashion/") == before


def test_an_interrupted_publication_is_completed_but_foreign_objects_are_refused(store, two_runs, tmp_path):
    from visioncompress.storage import upload_file

    first = two_runs["first"]
    destination = f"s3://{store['bucket']}/interrupted"
    # A retried step finds part of its own publication (no manifest yet): it completes it.
    upload_file(first["report"], f"{destination}/{DAY}/run-1/report.md")
    manifest = publish(first["models"], first["report"], first["results"], destination, run_date=DAY, run_id="run-1")
    assert manifest["status"] == "latest" and manifest["destination"] == f"{destination}/{DAY}/run-1/"
    _check_complete(store, manifest, tmp_path / "completed")
    # Objects that are not this publication's files under its prefix: refused, nothing written.
    (tmp_path / "report.md").write_text("someone else's report\n")
    upload_file(tmp_path / "report.md", f"{destination}/{DAY}/run-2/report.md")
    before = _keys(store, "interrupted/")
    with pytest.raises(ArtifactError, match=r"run-2/ already holds 1 object\(s\) that are not part of this "
                                            r"publication \(e\.g\. report\.md\); publications are never overwritten"):
        publish(first["models"], first["report"], first["results"], destination, run_date=DAY, run_id="run-2")
    assert _keys(store, "interrupted/") == before


def test_keep_last_never_deletes_what_latest_points_to(store, two_runs):
    destination, first, second = two_runs["destination"], two_runs["first"], two_runs["second"]
    # A newer rejected candidate with KEEP_LAST=1: the newest stays, and so does the latest (older) one.
    third = publish(second["models"], second["report"], second["results"], destination, accuracy_budget=BUDGET,
                    run_date="2026-12-01", run_id="next-day", publish_over_budget=True, keep_last=1)
    assert third["status"] == "rejected"
    remaining = [p["prefix"] for p in publications(destination)]
    assert remaining == [first["manifest"]["destination"], third["destination"]]
    assert _keys(store, second["manifest"]["destination"].split("/", 3)[3]) == set()
    assert get_json(f"{destination}/latest.json")["prefix"] == first["manifest"]["destination"]


# ---------------------------------------------------------------- detection: judged by mAP


@pytest.fixture(scope="module")
def detection_outputs(detection_dataset_dir, detection_model_dir, tmp_path_factory):
    """Real detection stage outputs from library calls: ONNX PTQ of the trained FCOS, its benchmark, the report."""
    from visioncompress.benchmark import benchmark
    from visioncompress.config import BenchmarkConfig, OnnxPTQConfig
    from visioncompress.detection.onnx_ptq import quantize_detector_onnx
    from visioncompress.report import build_report

    root = tmp_path_factory.mktemp("detection-publish")
    quantized = root / "onnx_ptq"
    quantize_detector_onnx(detection_model_dir, detection_dataset_dir, quantized, OnnxPTQConfig())
    rows = benchmark(quantized, detection_dataset_dir,
                     BenchmarkConfig(batch_size=1, extra_batch_sizes=[], warmup=1, iterations=5))
    build_report(rows, root / "report.md", root / "results.json", title="detection")
    return {"model": quantized, "report": root / "report.md", "results": root / "results.json", "rows": rows}


def test_detection_models_publish_through_the_component_by_map(store, detection_outputs, tmp_path):
    from kfp.dsl import Artifact, Markdown, Model

    from visioncompress.components.publish.component import publish as component

    destination = f"s3://{store['bucket']}/detector"
    out = Artifact(uri=str(tmp_path / "manifest"))
    component.python_func(report=Markdown(uri=str(detection_outputs["report"])),
                          results=Artifact(uri=str(detection_outputs["results"])), manifest=out,
                          onnx_ptq=Model(uri=str(detection_outputs["model"])), DESTINATION=destination,
                          ACCURACY_BUDGET=1.0, RUN_DATE=DAY, RUN_ID="detect-run-1")
    manifest = json.loads(Path(out.path).read_text())
    expected = max(r["mAP"] for r in json.loads(detection_outputs["results"].read_text())
                   if r["stage"] == "quantize_onnx")
    assert (manifest["metric_name"], manifest["metric"]) == ("mAP", expected)
    assert out.metadata["metric_name"] == "mAP" and out.metadata["metric"] == expected
    assert out.metadata["published"] is True and out.metadata["status"] == "latest"
    assert manifest["destination"] == f"{destination}/{DAY}/detect-run-1/"
    _check_complete(store, manifest, tmp_path / "down")
    latest = get_json(f"{destination}/latest.json")
    assert (latest["metric_name"], latest["metric"], latest["prefix"]) == ("mAP", expected, manifest["destination"])


def test_a_model_without_benchmark_rows_is_refused_before_upload(store, detection_outputs, tmp_path):
    """The join of rows to models fails loudly: here the rows measure a different model than the one given."""
    results = tmp_path / "other-results.json"
    rows = [dict(r, stage="finetune") for r in json.loads(detection_outputs["results"].read_text())]
    results.write_text(json.dumps(rows))
    before = _keys(store, "")
    with pytest.raises(ArtifactError, match=r"no benchmark row measures published model 'onnx_ptq' \(format=onnx, "
                                            r"precision=int8, stage=quantize_onnx"):
        publish({"onnx_ptq": detection_outputs["model"]}, detection_outputs["report"], results,
                f"s3://{store['bucket']}/refused", run_date=DAY)
    assert _keys(store, "") == before


@pytest.mark.slow
def test_detection_pipeline_publishes(store, tmp_path):
    """The whole detect_ptq_onnx pipeline with DESTINATION set (the step that used to crash on `top1`)."""
    from visioncompress.pipelines.local import run_local

    destination = f"s3://{store['bucket']}/detect-pipeline"
    report = run_local("detect_ptq_onnx", {"insize": 64, "MAX_TRAIN_SAMPLES": 64, "MAX_TEST_SAMPLES": 16,
                                           "CALIBRATION_SAMPLES": 8, "BATCH_SIZE": 8, "FINETUNE_EPOCHS": 1,
                                           "DESTINATION": destination, "RUN_DATE": DAY}, tmp_path)
    manifest = json.loads((report.parent.parent / "publish" / "manifest").read_text())
    assert manifest["metric_name"] == "mAP" and manifest["status"] == "latest"
    _check_complete(store, manifest, tmp_path / "down")


def test_bad_inputs_are_refused_before_any_upload(store, two_runs, tmp_path, capsys):
    from kfp.dsl import Artifact, Markdown, Model

    from visioncompress.components.publish.component import publish as component
    from visioncompress.errors import ConfigError
    from visioncompress.storage import MissingBucketError

    first = two_runs["first"]
    destination = f"s3://{store['bucket']}/refusals"
    args = (first["models"], first["report"], first["results"], destination)
    for kwargs, parameter in (({"accuracy_budget": -1}, "ACCURACY_BUDGET"),
                              ({"run_date": "next tuesday"}, "RUN_DATE"), ({"keep_last": -2}, "KEEP_LAST"),
                              ({"publish_over_budget": "yes"}, "PUBLISH_OVER_BUDGET"),
                              ({"primary": "pruned"}, "PRIMARY")):
        with pytest.raises(ConfigError) as info:
            publish(*args, **kwargs)
        assert info.value.parameter == parameter
    with pytest.raises(ArtifactError, match="model.json"):
        publish({"torch_ptq": tmp_path}, *args[1:])
    with pytest.raises(MissingBucketError):
        publish(*args[:3], "s3://missing-bucket-x/p")
    assert _keys(store, "refusals/") == set()

    # Through the component: one line on stderr, exit code 2.
    with pytest.raises(SystemExit) as info:
        component.python_func(report=Markdown(uri=str(first["report"])), results=Artifact(uri=str(first["results"])),
                              manifest=Artifact(uri=str(tmp_path / "manifest")),
                              torch_ptq=Model(uri=str(first["models"]["torch_ptq"])), DESTINATION="s3://missing-bkt/x")
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("visioncompress: publish: cannot ") and "missing-bkt" in err and "\n" not in err
