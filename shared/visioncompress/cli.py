"""visioncompress: run, compile, upload and schedule the compression pipelines.

  visioncompress run ptq_torch --local -p FINETUNE_EPOCHS=2
  visioncompress run --config job.yaml --host https://kubeflow.example.com/pipeline
  visioncompress compile ptq_torch --output-dir build/
  visioncompress upload ptq_torch --host ...
  visioncompress schedule create ptq_torch --cron '0 3 * * 1' -p DESTINATION=s3://models/resnet18
  visioncompress schedule list | delete ID

KFP connection settings come from flags or the environment (KFP_HOST, KFP_NAMESPACE, KFP_TOKEN or
KFP_TOKEN_FILE, KFP_COOKIES, KFP_SSL_CA_CERT, KFP_KUBE_CONTEXT); nothing is hard-coded.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import json
import os
import re
import ssl
import sys
import tempfile
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from visioncompress.errors import ConfigError, VisionCompressError

PROG = "visioncompress"
DEFAULT_EXPERIMENT = "visioncompress"
SCHEDULED_DATE = "[[ScheduledTime.2006-01-02]]"  # KFP fills it in per scheduled run (Go date layout)
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


class KfpError(VisionCompressError):
    """The KFP endpoint could not be reached or refused a request."""


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in every option's help, except where there is none or the help already words it."""

    def _get_help_string(self, action):
        if action.default in (None, "", argparse.SUPPRESS) or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


# ---------------------------------------------------------------- parameters


def _pipeline_names() -> list[str]:
    from visioncompress.config.pipelines import PIPELINES

    return sorted(PIPELINES)


def _signature(name: str) -> dict:
    from visioncompress.config.pipelines import pipeline_spec

    return pipeline_spec(name).defaults_map()


def _format_default(value: Any) -> str:
    return repr(value)


def _parameters_epilog(pipeline: str | None) -> str:
    """Pipeline parameters and their defaults, for ``run``/``schedule create`` help."""
    try:
        names = [pipeline] if pipeline else _pipeline_names()
        signatures = {name: _signature(name) for name in names}
    except Exception as exc:  # help must still print if a pipeline is broken
        return f"(pipeline parameters unavailable: {exc})"
    lines = []
    if pipeline:
        from visioncompress.config.pipelines import pipeline_spec

        lines.append(f"parameters of {pipeline} (set with -p NAME=VALUE or a job file; default shown):")
        for param in pipeline_spec(pipeline).parameters():
            lines.append(f"  {param.name} = {_format_default(param.default)}")
            lines.append(f"      {param.help}")
        return "\n".join(lines)
    common = set.intersection(*(set(s) for s in signatures.values())) if signatures else set()
    first = next(iter(signatures.values()), {})
    lines.append("parameters every pipeline takes (set with -p NAME=VALUE or a job file; default shown):")
    lines += [f"  {k} = {_format_default(v)}" for k, v in first.items() if k in common]
    for name, sig in signatures.items():
        extra = [f"{k} = {_format_default(v)}" for k, v in sig.items() if k not in common]
        lines.append(f"{name}: " + (", ".join(extra) if extra else "(only the common parameters)"))
    lines.append(f"`{PROG} run PIPELINE --help` lists one pipeline's parameters.")
    return "\n".join(lines)


def _parse_value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return {"true": True, "false": False}.get(text.strip().lower(), text)


def _assignments(pairs: list[str] | None) -> dict:
    params = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError("--param", pair, "NAME=VALUE")
        params[key.strip()] = _parse_value(value.strip())
    return params


def _job_params(args) -> tuple[str, dict]:
    """Pipeline name and parameters from PIPELINE / --config / --param (flags win over the job file)."""
    from visioncompress.config.jobfile import load_job

    pipeline, params = args.pipeline, {}
    if args.config:
        job = load_job(args.config, pipeline, parameters_of=_signature, available=_pipeline_names())
        pipeline, params = job.pipeline, dict(job.params)
        if job.ignored:
            by_reason: dict[str, list[str]] = {}
            for key, why in job.ignored.items():
                by_reason.setdefault(why, []).append(key)
            notes = "; ".join(f"{', '.join(keys)} ({why})" for why, keys in by_reason.items())
            print(f"{PROG}: note: job keys with no effect here: {notes}", file=sys.stderr)
    if not pipeline:
        raise ConfigError("PIPELINE", None, f"a pipeline name ({', '.join(_pipeline_names())}) or --config JOB")
    if pipeline not in _pipeline_names():
        raise ConfigError("PIPELINE", pipeline, _pipeline_names())
    params.update(_assignments(args.param))
    return pipeline, params


def _validate(pipeline: str, params: dict, *, local: bool = True) -> None:
    from visioncompress.pipelines.registry import validate_pipeline_params

    validate_pipeline_params(pipeline, params, local=local)


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d-%H%M%S")


# ---------------------------------------------------------------- KFP connection


@dataclass
class Connection:
    host: str
    namespace: str | None  # the user's namespace (profile) for runs, experiments, recurring runs
    token: str | None
    cookies: str | None
    ssl_ca_cert: str | None
    kube_context: str | None
    proxy: str | None
    timeout: float
    kfp_namespace: str = "kubeflow"  # where the KFP API service runs (found through --kube-context)

    @property
    def where(self) -> str:
        return self.host or f"kube context {self.kube_context!r}"

    @property
    def ui(self) -> str:
        return (os.environ.get("KF_PIPELINES_UI_ENDPOINT") or self.host).rstrip("/")


def _add_connection(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("KFP connection (flags override the environment variables named)")
    group.add_argument("--host", default=os.environ.get("KFP_HOST", ""),
                       help="KFP API endpoint, e.g. https://kubeflow.example.com/pipeline [KFP_HOST]")
    group.add_argument("--namespace", default=os.environ.get("KFP_NAMESPACE") or None,
                       help="your user namespace (multi-user Kubeflow: your profile) where runs, experiments "
                            "and recurring runs are created; single-user KFP: leave unset [KFP_NAMESPACE]")
    group.add_argument("--kfp-namespace", default=os.environ.get("KFP_SERVICE_NAMESPACE", "kubeflow"),
                       help="with --kube-context: the namespace KFP's API service is installed in "
                            "[KFP_SERVICE_NAMESPACE]")
    group.add_argument("--token", default=None,
                       help="bearer token; not shown here [KFP_TOKEN, or a file named by KFP_TOKEN_FILE]")
    group.add_argument("--cookies", default=None, help="session cookie(s) from the Kubeflow login [KFP_COOKIES]")
    group.add_argument("--ssl-ca-cert", default=os.environ.get("KFP_SSL_CA_CERT") or None,
                       help="CA bundle for an https endpoint with a private CA [KFP_SSL_CA_CERT]")
    group.add_argument("--kube-context", default=os.environ.get("KFP_KUBE_CONTEXT") or None,
                       help="without --host: reach KFP through the Kubernetes API with this context of your "
                            "existing kube credentials [KFP_KUBE_CONTEXT]")
    group.add_argument("--proxy", default=None, help="HTTP proxy to reach the endpoint through")
    group.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the endpoint")


def _connection(args) -> Connection:
    token = args.token or os.environ.get("KFP_TOKEN") or None
    token_file = os.environ.get("KFP_TOKEN_FILE")
    if not token and token_file:
        try:
            token = Path(token_file).read_text().strip() or None
        except OSError as exc:
            raise ConfigError("KFP_TOKEN_FILE", token_file, f"a readable token file ({exc.strerror})") from None
    host = (args.host or "").strip().rstrip("/")
    if not host and not args.kube_context:
        raise ConfigError("--host", "", "the KFP endpoint (or set KFP_HOST), --kube-context to go through your "
                          "kube credentials, or --local for a local run")
    if host and not host.startswith(("http://", "https://")):
        raise ConfigError("--host", host, "a URL starting with http:// or https://")
    return Connection(host, args.namespace, token, args.cookies or os.environ.get("KFP_COOKIES") or None,
                      args.ssl_ca_cert, args.kube_context, args.proxy, args.timeout,
                      getattr(args, "kfp_namespace", None) or "kubeflow")


def _preflight(conn: Connection) -> None:
    """One quick healthz request, so an unreachable or refusing endpoint is one line, not retries."""
    if not conn.host:
        return
    url = f"{conn.host}/apis/v2beta1/healthz"
    headers = {"Accept": "application/json"}
    if conn.token:
        headers["Authorization"] = f"Bearer {conn.token}"
    if conn.cookies:
        headers["Cookie"] = conn.cookies
    # No proxy from the environment: traffic goes where --host says unless --proxy is given.
    handlers: list = [urllib.request.ProxyHandler({"http": conn.proxy, "https": conn.proxy} if conn.proxy else {})]
    if conn.host.startswith("https://"):
        handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=conn.ssl_ca_cert)))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(urllib.request.Request(url, headers=headers), timeout=conn.timeout) as response:
            body = response.read(65536)
            final_url = response.geturl()
    except urllib.error.HTTPError as exc:
        hint = " (check --token / KFP_TOKEN or --cookies)" if exc.code in (401, 403) else ""
        if exc.code == 404:
            hint = f" for {url} (is --host the KFP API endpoint?)"
        raise KfpError(f"KFP at {conn.host} refused the request: HTTP {exc.code} {exc.reason}{hint}") from None
    except urllib.error.URLError as exc:
        raise KfpError(f"cannot reach KFP at {conn.host}: {_reason(exc.reason)}") from None
    except (OSError, ssl.SSLError) as exc:
        raise KfpError(f"cannot reach KFP at {conn.host}: {_reason(exc)}") from None
    try:
        json.loads(body or b"{}")
    except ValueError:
        where = f" (redirected to {final_url})" if final_url != url else ""
        raise KfpError(f"KFP at {conn.host} did not answer with its API{where}: log in and pass --cookies, "
                       "or --token") from None


def _reason(reason: Any) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, TimeoutError) or "timed out" in str(reason):
        return "timed out"
    text = getattr(reason, "strerror", None) or str(reason)
    return str(text).splitlines()[0][:200]


@contextlib.contextmanager
def _kfp_errors(conn: Connection) -> Iterator[None]:
    """KFP client failures as one line naming the endpoint; the client's own prints are dropped."""
    import kfp_server_api
    import urllib3

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    except kfp_server_api.ApiException as exc:
        detail = ""
        with contextlib.suppress(Exception):
            body = json.loads(exc.body or "{}")
            detail = body.get("message") or body.get("error") or ""
        if exc.status in (None, 0):
            raise KfpError(f"cannot reach KFP at {conn.where}: {exc.reason}") from None
        raise KfpError(f"KFP at {conn.where} refused the request: HTTP {exc.status} {exc.reason}"
                       + (f": {str(detail).splitlines()[0][:300]}" if detail else "")) from None
    except (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError) as exc:
        raise KfpError(f"cannot reach KFP at {conn.where}: {_reason(getattr(exc, 'reason', None) or exc)}") \
            from None


def _client(conn: Connection):
    _preflight(conn)
    import logging

    import kfp

    root = logging.getLogger()
    level = root.level
    # The client logs every failed health check with a traceback; our own line says it once.
    root.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), _kfp_errors(conn):
            warnings.simplefilter("ignore", FutureWarning)
            return kfp.Client(host=conn.host or None, namespace=conn.kfp_namespace, existing_token=conn.token,
                              cookies=conn.cookies, ssl_ca_cert=conn.ssl_ca_cert, kube_context=conn.kube_context,
                              proxy=conn.proxy)
    finally:
        root.setLevel(level)


def _compile_to(pipeline: str, path: Path, *, recompute_after_data: bool = False) -> Path:
    from visioncompress.pipelines.compile import compile_pipeline

    return compile_pipeline(pipeline, path, recompute_after_data=recompute_after_data)


# ---------------------------------------------------------------- commands


def _print_dry_run(pipeline: str, params: dict) -> None:
    """The pipeline and every parameter it would run with (given ones marked), without running it."""
    from visioncompress.config.pipelines import pipeline_spec
    from visioncompress.pipelines.registry import coerce_params

    full = {**pipeline_spec(pipeline).defaults_map(), **coerce_params(pipeline, params)}
    width = max(len(name) for name in full)
    print(f"pipeline: {pipeline}")
    print("parameters (* = set by the job file or --param, the rest are the pipeline's defaults):")
    for name, value in full.items():
        print(f"  {'*' if name in params else ' '} {name:<{width}} = {json.dumps(value)}")


def cmd_run(args) -> int:
    pipeline, params = _job_params(args)
    if args.dry_run:
        _validate(pipeline, params, local=args.local)
        _print_dry_run(pipeline, params)
        return 0
    conn = None if args.local else _connection(args)
    _validate(pipeline, params, local=conn is None)
    if conn is None:
        return _run_local(pipeline, params, args.root, getattr(args, "debug", False))
    client = _client(conn)
    from visioncompress.pipelines.registry import coerce_params, get_pipeline

    run_name = f"{args.run_name or pipeline}-{_stamp()}"
    with _kfp_errors(conn):
        result = client.create_run_from_pipeline_func(
            get_pipeline(pipeline), arguments=coerce_params(pipeline, params), run_name=run_name, experiment_name=args.experiment,
            namespace=conn.namespace, enable_caching=args.cache)
    print(f"submitted {run_name}: {conn.ui}/#/runs/details/{result.run_id}")
    return 0


def _run_local(pipeline: str, params: dict, root: str, debug: bool = False) -> int:
    from visioncompress.pipelines.local import run_local

    report = run_local(pipeline, params, root, debug=debug)
    results = report.parent / "results"
    with contextlib.suppress(Exception):
        from visioncompress.benchmark import read_results
        from visioncompress.report import text_table

        print("\n" + text_table(read_results([results])))
    print(f"report:    {report}\nresults:   {results}\nartifacts: {report.parent.parent}")
    return 0


def cmd_compile(args) -> int:
    from visioncompress.pipelines.compile import compile_pipelines

    names = args.pipelines or None
    for name in names or []:
        if name not in _pipeline_names():
            raise ConfigError("PIPELINE", name, _pipeline_names())
    for path in compile_pipelines(names, Path(args.output_dir)):
        print(f"wrote {path}")
    return 0


def _package_name(path: Path) -> str:
    """pipelineInfo.name of a compiled pipeline file (what KFP names it)."""
    import yaml

    try:
        with path.open() as handle:
            spec = next(yaml.safe_load_all(handle))
        return spec["pipelineInfo"]["name"]
    except (OSError, yaml.YAMLError, StopIteration, KeyError, TypeError) as exc:
        raise ConfigError("--package", str(path), f"a compiled KFP pipeline YAML ({type(exc).__name__})") from None


def cmd_upload(args) -> int:
    if args.package:
        if args.pipeline:
            raise ConfigError("PIPELINE", args.pipeline, "left out when --package gives the compiled file")
        package_path = Path(args.package)
        if not package_path.is_file():
            raise ConfigError("--package", args.package, "an existing compiled pipeline YAML file")
        default_name, label = _package_name(package_path), package_path.stem
    else:
        if args.pipeline not in _pipeline_names():
            raise ConfigError("PIPELINE", args.pipeline, _pipeline_names())
        from visioncompress.pipelines.registry import get_pipeline

        default_name, label = get_pipeline(args.pipeline).name, args.pipeline
    conn = _connection(args)
    client = _client(conn)
    name = args.name or default_name
    version = None
    with tempfile.TemporaryDirectory() as tmp:
        package = package_path if args.package else _compile_to(args.pipeline, Path(tmp) / f"{label}.yaml")
        with _kfp_errors(conn):
            pipeline_id = client.get_pipeline_id(name)
            if pipeline_id is None:
                pipeline_id = client.upload_pipeline(str(package), pipeline_name=name,
                                                     description=args.description).pipeline_id
            else:
                version = args.version or f"{label}-{_stamp()}"
                created = client.upload_pipeline_version(str(package), pipeline_version_name=version,
                                                         pipeline_id=pipeline_id, description=args.description)
    if version is None:
        print(f"uploaded pipeline {name}: {conn.ui}/#/pipelines/details/{pipeline_id}")
    else:
        print(f"uploaded version {version} of {name}: "
              f"{conn.ui}/#/pipelines/details/{pipeline_id}/version/{created.pipeline_version_id}")
    return 0


# robfig/cron v1 (KFP's scheduler): 6 fields, seconds first; names for months and weekdays; '?' in the day fields.
_CRON_FIELDS = (("seconds", 0, 59, ()), ("minutes", 0, 59, ()), ("hours", 0, 23, ()), ("day of month", 1, 31, ()),
                ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
                ("day of week", 0, 6, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")))
_CRON_DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")
MAX_CONCURRENCY = 10  # the KFP API server refuses more


def _cron_value(text: str, low: int, high: int, names: tuple[str, ...]) -> int:
    if text.lower() in names:
        return names.index(text.lower()) + low
    if not text.isdigit():
        raise ValueError(f"{text!r} is not a number" + (f" or a name ({'/'.join(names)})" if names else ""))
    return int(text)


def _check_cron_field(field: str, name: str, low: int, high: int, names: tuple[str, ...]) -> None:
    for part in field.split(","):
        span, slash, step = part.partition("/")
        if slash and (not step.isdigit() or int(step) == 0):
            raise ValueError(f"step {step!r} in {part!r} must be a positive whole number")
        if span in ("*", "?"):
            if span == "?" and name not in ("day of month", "day of week"):
                raise ValueError("'?' is only allowed for day of month and day of week")
            continue
        first, dash, last = span.partition("-")
        start = _cron_value(first, low, high, names)
        end = _cron_value(last, low, high, names) if dash else (high if slash else start)
        if start < low or end > high:
            raise ValueError(f"{part!r} is outside {low}-{high}")
        if start > end:
            raise ValueError(f"{part!r} starts after it ends")


def kfp_cron(expression: str) -> str:
    """The schedule as KFP's scheduler (robfig/cron v1) parses it: 6 fields, seconds first.

    Accepts the usual 5-field form (a 0 seconds field is put in front), 6 fields, and the @daily-style
    descriptors and ``@every <duration>``; each field is checked for what the scheduler accepts (``*``,
    ``?`` in the day fields, numbers within range, ``a-b``, ``*/n`` or ``a-b/n``, lists, month and
    weekday names), so a bad schedule is refused here rather than by the API server.
    """
    text = " ".join(str(expression).split())
    allowed = ("5 fields 'min hour day month weekday' (e.g. '0 3 * * 1'), 6 with seconds first, "
               "@daily/@weekly/@monthly/@yearly/@hourly or '@every 6h'")
    if text.startswith("@"):
        if text.lower() in _CRON_DESCRIPTORS or (text.lower().startswith("@every ")
                                                 and _DURATION.match(text[7:].strip())):
            return text
        raise ConfigError("--cron", expression, allowed)
    fields = text.split(" ")
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise ConfigError("--cron", expression, allowed)
    for field, (name, low, high, names) in zip(fields, _CRON_FIELDS):
        try:
            _check_cron_field(field, name, low, high, names)
        except ValueError as exc:
            raise ConfigError("--cron", expression, f"a valid {name} field ({low}-{high}): {exc}") from None
    return " ".join(fields)


def check_max_concurrency(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CONCURRENCY:
        raise ConfigError("--max-concurrency", value, f"a whole number from 1 to {MAX_CONCURRENCY} "
                          "(the KFP API server's limit)")
    return value


def rfc3339(value: str | None, option: str) -> str | None:
    """An ISO date/time as the RFC 3339 UTC string KFP takes; a time without a zone is taken as UTC."""
    if value is None or not str(value).strip():
        return None
    try:
        moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(option, value, "an ISO date or time, e.g. 2026-12-01 or 2026-12-01T03:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def schedule_window(start: str | None, end: str | None) -> tuple[str | None, str | None]:
    start, end = rfc3339(start, "--start"), rfc3339(end, "--end")
    if start and end and start >= end:
        raise ConfigError("--end", end, f"a time after --start ({start})")
    return start, end


def recurring_run_kwargs(args, *, experiment_id: str, package: str, params: dict, pipeline: str) -> dict:
    """The keyword arguments ``kfp.Client.create_recurring_run`` gets for ``schedule create``."""
    start, end = schedule_window(args.start, args.end)
    return dict(experiment_id=experiment_id, job_name=args.name or f"{pipeline}-scheduled",
                cron_expression=kfp_cron(args.cron), max_concurrency=check_max_concurrency(args.max_concurrency),
                no_catchup=not args.catchup, params=params, pipeline_package_path=package,
                enable_caching=args.cache, start_time=start, end_time=end)


def cmd_schedule_create(args) -> int:
    pipeline, params = _job_params(args)
    if "RUN_DATE" in _signature(pipeline) and "RUN_DATE" not in params:
        params["RUN_DATE"] = SCHEDULED_DATE
    kfp_cron(args.cron)
    check_max_concurrency(args.max_concurrency)
    schedule_window(args.start, args.end)
    conn = _connection(args)
    _validate(pipeline, params, local=False)
    client = _client(conn)
    with tempfile.TemporaryDirectory() as tmp:
        # Without --cache a scheduled run recomputes every step after data preparation (a weekly run must
        # train, measure and publish anew); --cache / --no-cache force caching on / off for every step.
        package = _compile_to(pipeline, Path(tmp) / f"{pipeline}.yaml", recompute_after_data=args.cache is None)
        with _kfp_errors(conn):
            experiment = client.create_experiment(args.experiment, namespace=conn.namespace)
            kwargs = recurring_run_kwargs(args, experiment_id=experiment.experiment_id, package=str(package),
                                          params=params, pipeline=pipeline)
            recurring = client.create_recurring_run(**kwargs)
    caching = {None: "data preparation only", True: "on", False: "off"}[args.cache]
    print(f"scheduled {kwargs['job_name']} ({kwargs['cron_expression']}, max concurrency {args.max_concurrency}, "
          f"catch-up {'on' if args.catchup else 'off'}, cache {caching}): id {recurring.recurring_run_id}")
    return 0


def _experiment_id(client, conn: Connection, name: str | None) -> str | None:
    if not name:
        return None
    with _kfp_errors(conn):
        try:
            return client.get_experiment(experiment_name=name, namespace=conn.namespace).experiment_id
        except ValueError:
            raise ConfigError("--experiment", name, "an existing experiment") from None


def _recurring_runs(client, conn: Connection, experiment: str | None) -> list:
    experiment_id = _experiment_id(client, conn, experiment)
    runs, token = [], ""
    with _kfp_errors(conn):
        while True:
            page = client.list_recurring_runs(page_token=token, page_size=100, experiment_id=experiment_id,
                                              namespace=conn.namespace)
            runs += page.recurring_runs or []
            token = page.next_page_token or ""
            if not token:
                return runs


def cmd_schedule_list(args) -> int:
    conn = _connection(args)
    client = _client(conn)
    runs = _recurring_runs(client, conn, args.experiment)
    if not runs:
        print("no recurring runs")
        return 0
    rows = [("ID", "NAME", "CRON", "STATUS", "MAX_CONCURRENCY", "CATCH_UP")]
    for r in runs:
        cron = getattr(getattr(getattr(r, "trigger", None), "cron_schedule", None), "cron", None) or "-"
        rows.append((r.recurring_run_id, r.display_name, cron, str(r.status or "-"), str(r.max_concurrency),
                     "off" if r.no_catchup else "on"))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())
    return 0


def cmd_schedule_delete(args) -> int:
    conn = _connection(args)
    client = _client(conn)
    by_name = [x for x in args.recurring_runs if not _UUID.match(x)]
    known = _recurring_runs(client, conn, args.experiment) if by_name else []
    for item in args.recurring_runs:
        ids = [item] if _UUID.match(item) else [r.recurring_run_id for r in known if r.display_name == item]
        if len(ids) != 1:
            raise ConfigError("RECURRING_RUN", item, "a recurring run id, or a name that matches exactly one "
                              f"(found {len(ids)})")
        with _kfp_errors(conn):
            client.delete_recurring_run(ids[0])
        print(f"deleted recurring run {item}" + (f" ({ids[0]})" if ids[0] != item else ""))
    return 0


# ---------------------------------------------------------------- parser


def _peek_pipeline(argv: list[str], command: list[str]) -> str | None:
    """The PIPELINE argument of ``command`` if it is on the command line (for its --help)."""
    if argv[: len(command)] != command:
        return None
    try:
        names = _pipeline_names()
    except Exception:
        return None
    return next((a for a in argv[len(command):] if a in names), None)


def _add_job_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pipeline", nargs="?", metavar="PIPELINE", default=None,
                        help="pipeline name; optional with --config, whose ALGORITHM picks it")
    parser.add_argument("--config", metavar="JOB.yaml", default=None,
                        help="a nyuntam_vision job file (flat YAML, algorithm sections); mapped to a pipeline "
                             "and its parameters, unknown keys are errors")
    parser.add_argument("-p", "--param", action="append", metavar="NAME=VALUE", default=None,
                        help="a pipeline parameter (repeatable; wins over the job file)")
    parser.add_argument("--cache", action=argparse.BooleanOptionalAction, default=None,
                        help="force KFP caching on/off for every step (default: run - as compiled, "
                             "publishing never cached; schedule create - only data preparation cached, every "
                             "later step recomputed)")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    argv = list(sys.argv[1:] if argv is None else argv)
    wants_help = "-h" in argv or "--help" in argv
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=_Formatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser(
        "run", help="run a pipeline locally (kfp.local) or on a KFP endpoint", formatter_class=_Formatter,
        description="Run a pipeline: --local through kfp.local on this machine, otherwise submitted to KFP\n"
                    "(prints the run's URL). Parameters are checked before anything runs.",
        epilog=_parameters_epilog(_peek_pipeline(argv, ["run"])) if wants_help and argv[:1] == ["run"] else None)
    _add_job_args(run)
    run.add_argument("--local", action="store_true", help="run here through kfp.local instead of a KFP endpoint")
    run.add_argument("--debug", action="store_true",
                     help="on failure show the stack (with --local: every task's full output too)")
    run.add_argument("--dry-run", action="store_true",
                     help="print the pipeline and the full parameter set it would run with, then stop")
    run.add_argument("--root", default="runs/local", help="with --local: where artifacts are written")
    run.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="KFP experiment for the run")
    run.add_argument("--run-name", default=None, help="run name; the UTC date and time are appended "
                                                      "(default: the pipeline name)")
    _add_connection(run)
    run.set_defaults(func=cmd_run)

    comp = commands.add_parser("compile", help="write compiled pipeline YAML (what the KFP UI uploads)",
                               formatter_class=_Formatter,
                               description="Compile pipelines to <output-dir>/<name>.yaml.")
    comp.add_argument("pipelines", nargs="*", metavar="PIPELINE", help="pipelines to compile (default: all)")
    comp.add_argument("--output-dir", default=str(Path("pipelines") / "compiled"),
                      help="folder for the YAML files (relative to the current directory)")
    comp.set_defaults(func=cmd_compile)

    up = commands.add_parser("upload", help="upload a pipeline, or a new version of it, to KFP",
                             formatter_class=_Formatter,
                             description="Compile PIPELINE and upload it; if a pipeline of that name exists,\n"
                                         "upload a new version of it. --package uploads a compiled file as it is\n"
                                         "(the YAML a platform team reviewed) instead of compiling.")
    up.add_argument("pipeline", metavar="PIPELINE", nargs="?", default=None, help="pipeline to compile and upload")
    up.add_argument("--package", metavar="FILE.yaml", default=None,
                    help="upload this compiled pipeline file instead of compiling PIPELINE")
    up.add_argument("--name", default=None, help="name in KFP (default: the pipeline's own name, "
                                                 "e.g. visioncompress-ptq-torch)")
    up.add_argument("--version", default=None, help="version name (default: PIPELINE-<UTC date-time>)")
    up.add_argument("--description", default=None, help="description shown in KFP")
    _add_connection(up)
    up.set_defaults(func=cmd_upload)

    sched = commands.add_parser("schedule", help="recurring runs: create, list, delete", formatter_class=_Formatter,
                                description="Recurring runs on a KFP endpoint.")
    sched_commands = sched.add_subparsers(dest="schedule_command", metavar="ACTION", required=True)
    create = sched_commands.add_parser(
        "create", help="create a recurring run", formatter_class=_Formatter,
        description="Create a recurring run of PIPELINE. Pipelines with a RUN_DATE parameter get\n"
                    f"{SCHEDULED_DATE}, so each run publishes under its scheduled date.",
        epilog=_parameters_epilog(_peek_pipeline(argv, ["schedule", "create"]))
        if wants_help and argv[:2] == ["schedule", "create"] else None)
    _add_job_args(create)
    create.add_argument("--cron", required=True, help="schedule, e.g. '0 3 * * 1' (Mondays 03:00 UTC); "
                                                      "5 fields, or 6 with seconds first")
    create.add_argument("--name", default=None, help="recurring run name (default: PIPELINE-scheduled)")
    create.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="KFP experiment (created if missing)")
    create.add_argument("--max-concurrency", type=int, default=1, help=f"runs allowed at the same time "
                                                                       f"(1-{MAX_CONCURRENCY})")
    create.add_argument("--catchup", action="store_true", default=False,
                        help="start the runs missed while paused or behind (off: only the latest)")
    create.add_argument("--start", default=None, help="first time it may run (ISO date/time; UTC unless a zone "
                                                      "is given)")
    create.add_argument("--end", default=None, help="last time it may run (ISO date/time, after --start)")
    _add_connection(create)
    create.set_defaults(func=cmd_schedule_create)

    lst = sched_commands.add_parser("list", help="list recurring runs", formatter_class=_Formatter,
                                    description="List recurring runs (all, or one experiment's).")
    lst.add_argument("--experiment", default=None, help="only this experiment's recurring runs")
    _add_connection(lst)
    lst.set_defaults(func=cmd_schedule_list)

    delete = sched_commands.add_parser("delete", help="delete recurring runs", formatter_class=_Formatter,
                                       description="Delete recurring runs by id or by exact name.")
    delete.add_argument("recurring_runs", nargs="+", metavar="RECURRING_RUN", help="id or name")
    delete.add_argument("--experiment", default=None, help="look names up in this experiment only")
    _add_connection(delete)
    delete.set_defaults(func=cmd_schedule_delete)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Every failure is one line ``visioncompress: ...`` and exit code 2; ``--debug`` shows the stack."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    args = build_parser(argv).parse_args(argv)
    args.debug = debug
    try:
        return args.func(args)
    except VisionCompressError as exc:
        if debug:
            raise
        print(f"{PROG}: " + " ".join(str(exc).split()), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
