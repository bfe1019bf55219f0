"""``telemetry doctor`` without real servers: output format, JSON, exit codes, the DSN scan
of a git work tree, and the version-range logic against fake package metadata."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from telemetry.cli import main
from telemetry.doctor.checks import CheckResult, Status
from telemetry.doctor.repo import find_dsns, scan_repo_for_dsns
from telemetry.doctor.run import _display_url, format_json, format_text, run_checks
from telemetry.doctor.versions import Distribution, check_versions
from telemetry.settings import load_settings
from tests.support.failing_sockets import refused_port
from tests.support.otlp_receiver import OTLPReceiver

REAL_KEY = "3f9a1c0b7e2d4a6f8b1c2d3e4f5a6b7c"


def git_repo(
    path: Path, files: dict[str, bytes], untracked: dict[str, bytes] | None = None
) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    for name, content in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(content)
    subprocess.run(["git", "-C", str(path), "add", "--", *files], check=True)
    for name, content in (untracked or {}).items():
        (path / name).write_bytes(content)
    return path


# -- output ------------------------------------------------------------------------------------

RESULTS = [
    CheckResult("settings", Status.PASS, "environment=staging"),
    CheckResult("otlp.jaeger", Status.FAIL, "connection refused", "start Jaeger"),
    CheckResult("otlp.sentry", Status.WARN, "HTTP 404", "use envelope"),
    CheckResult("runtime", Status.SKIP, "not initialised", "call run_checks()"),
]


def test_text_output_is_one_line_per_check_with_the_fix_on_problems() -> None:
    lines = format_text(RESULTS).splitlines()

    assert lines[0].split() == ["PASS", "settings", "environment=staging"]
    assert lines[1].startswith("FAIL  otlp.jaeger  connection refused")
    assert lines[1].endswith("-> fix: start Jaeger")
    assert lines[2].endswith("-> fix: use envelope")
    assert "fix" not in lines[0]
    assert lines[-1] == "telemetry doctor: 1 PASS, 1 WARN, 1 FAIL, 1 SKIP"
    assert len(lines) == len(RESULTS) + 1


def test_json_output_lists_checks_and_ok_is_false_on_any_fail() -> None:
    document = json.loads(format_json(RESULTS))

    assert document["ok"] is False
    assert document["checks"][1] == {
        "name": "otlp.jaeger",
        "status": "FAIL",
        "detail": "connection refused",
        "fix": "start Jaeger",
    }
    assert json.loads(format_json(RESULTS[2:]))["ok"] is True


# -- exit codes ----------------------------------------------------------------------------


def test_development_defaults_exit_0(clean_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = git_repo(clean_env.parent / "repo", {"app.py": b"print('hello')\n"})

    code = main(["doctor", "--json", "--repo", str(repo)])

    document = json.loads(capsys.readouterr().out)
    statuses = {check["name"]: check["status"] for check in document["checks"]}
    assert code == 0
    assert document["ok"] is True
    assert statuses["settings"] == "PASS"
    assert statuses["dsn-in-repo"] == "PASS"
    assert statuses["otlp.jaeger"] == "SKIP"


def test_invalid_environment_exits_1_naming_the_variable(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "prod")

    code = main(["doctor", "--repo", str(git_repo(clean_env.parent / "r", {"a": b"a"}))])

    out = capsys.readouterr().out
    fail = next(line for line in out.splitlines() if line.startswith("FAIL"))
    assert code == 1
    assert "settings" in fail
    assert "ENVIRONMENT='prod'" in fail
    assert "-> fix:" in fail


def test_env_file_is_read(clean_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env_file = clean_env / "doctor.env"
    env_file.write_text("TELEMETRY_TRACES_SAMPLE_RATE=7\n")

    code = main(["doctor", "--env-file", str(env_file), "--repo", str(clean_env)])

    out = capsys.readouterr().out
    assert code == 1
    assert "TELEMETRY_TRACES_SAMPLE_RATE=" in out


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["nonsense"],
        ["doctor", "--no-such-flag"],
        ["doctor", "--env-file", "/nonexistent/doctor.env"],
        ["doctor", "--repo", "/nonexistent/repo"],
        ["doctor", "--timeout", "0"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().out == ""


def test_dsn_key_is_never_printed(clean_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with refused_port() as port:
        settings = load_settings(
            environment="production", sentry_dsn=f"http://{REAL_KEY}@{port.address}/42"
        )
        results = run_checks(settings, timeout=1)

    output = format_text(results) + format_json(results)
    assert REAL_KEY not in output
    dsn_line = next(r for r in results if r.name == "sentry.dsn")
    assert dsn_line.status is Status.PASS
    assert "***@" in dsn_line.detail
    sentry_otlp = next(r for r in results if r.name == "otlp.sentry")
    assert sentry_otlp.status is Status.FAIL
    assert "connection refused" in sentry_otlp.detail


def test_missing_dsn_outside_development_warns(clean_env: Path) -> None:
    results = run_checks(load_settings(environment="production"), timeout=1)

    dsn = next(r for r in results if r.name == "sentry.dsn")
    assert dsn.status is Status.WARN
    assert dsn.fix is not None and "SENTRY_DSN" in dsn.fix


def test_otlp_path_that_is_not_a_traces_endpoint_explains_both_variables(clean_env: Path) -> None:
    with OTLPReceiver() as receiver:
        # The base URL given where the full traces URL is expected: the server answers 404.
        settings = load_settings(otlp_traces_endpoint=receiver.url)
        results = run_checks(settings, timeout=1)

    jaeger = next(r for r in results if r.name == "otlp.jaeger")
    assert jaeger.status is Status.FAIL
    assert "HTTP 404" in jaeger.detail
    assert jaeger.fix is not None
    assert "OTEL_EXPORTER_OTLP_ENDPOINT takes the base URL" in jaeger.fix


def test_grpc_endpoint_is_probed_with_a_connection(clean_env: Path) -> None:
    with refused_port() as port:
        settings = load_settings(otlp_endpoint=port.url, otlp_protocol="grpc")
        results = run_checks(settings, timeout=1)

    jaeger = next(r for r in results if r.name == "otlp.jaeger")
    assert jaeger.status is Status.FAIL
    assert f"{port.url} (gRPC): connection refused" == jaeger.detail


def test_credentials_in_an_endpoint_are_not_displayed() -> None:
    assert _display_url("https://user:s3cret@collector:4318/v1/traces") == (
        "https://collector:4318/v1/traces"
    )
    assert _display_url("http://jaeger:4318/v1/traces") == "http://jaeger:4318/v1/traces"


# -- committed DSNs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "found"),
    [
        (f'SENTRY_DSN = "https://{REAL_KEY}@o12345.ingest.sentry.io/4505"', True),
        (f"dsn: https://{REAL_KEY}:secret@sentry.corp.internal:9000/sentry/17", True),
        (f"https://{REAL_KEY[:16]}@sentry.example.net.eu/1", True),
        ("https://examplePublicKey@o0.ingest.sentry.io/0", False),
        ("https://<key>@sentry.io/123", False),
        ("https://${SENTRY_KEY}@sentry.io/123", False),
        ("http://public@localhost:8000/1", False),
        (f"http://{REAL_KEY}@127.0.0.1:9000/1", False),
        (f"http://{REAL_KEY}@localhost/1", False),
        (f"https://{REAL_KEY}@sentry.example.com/1", False),
        ("https://0000000000000000@sentry.io/1", False),
        ("https://abcdef0123@sentry.io/1", False),  # too short to be a key
        (f"https://{REAL_KEY}@sentry.io/projects/", False),  # no project id
    ],
)
def test_find_dsns(text: str, found: bool) -> None:
    assert find_dsns(f"first line\n{text}\n") == ([2] if found else [])


def test_repo_scan_names_file_and_line_never_the_key(tmp_path: Path) -> None:
    dsn = f"https://{REAL_KEY}@o1.ingest.sentry.io/7".encode()
    repo = git_repo(
        tmp_path / "repo",
        {
            "app/config.py": b"import os\n\nDSN = '" + dsn + b"'\n",
            "docs/setup.md": b"SENTRY_DSN=https://examplePublicKey@o0.ingest.sentry.io/0\n",
            "tests/local.env": f"SENTRY_DSN=http://{REAL_KEY}@127.0.0.1:9/1\n".encode(),
            "assets/logo.bin": b"\x00\x01" + dsn,
            "data/huge.txt": b"x" * (1024 * 1024) + b"\n" + dsn,
        },
        untracked={"local.py": dsn},
    )

    result = scan_repo_for_dsns(repo)

    assert result.status is Status.FAIL
    assert "app/config.py:3" in result.detail
    for ignored in ("setup.md", "local.env", "logo.bin", "huge.txt", "local.py"):
        assert ignored not in result.detail
    assert REAL_KEY not in result.detail + (result.fix or "")
    assert result.fix is not None and "rotate" in result.fix


def test_repo_scan_passes_on_a_clean_repo_and_fails_outside_git(tmp_path: Path) -> None:
    clean = git_repo(tmp_path / "clean", {"README.md": b"SENTRY_DSN=https://<key>@host/1\n"})
    not_a_repo = tmp_path / "plain"
    not_a_repo.mkdir()

    assert scan_repo_for_dsns(clean).status is Status.PASS
    outside = scan_repo_for_dsns(not_a_repo)
    assert outside.status is Status.FAIL
    assert "git" in outside.detail


# -- versions ------------------------------------------------------------------------------


def core(sdk: str = "1.45.1", api: str = "1.45.1", semconv: str = "0.66b1") -> list[Distribution]:
    return [
        Distribution("sentry-sdk", "2.75.0"),
        Distribution("opentelemetry-api", api),
        Distribution(
            "opentelemetry-sdk",
            sdk,
            (f"opentelemetry-api=={sdk}", f"opentelemetry-semantic-conventions=={semconv}"),
        ),
        Distribution("opentelemetry-semantic-conventions", semconv),
    ]


def sqlalchemy_instrumentation(version: str = "0.66b1") -> Distribution:
    return Distribution(
        "opentelemetry-instrumentation-sqlalchemy",
        version,
        (
            f"opentelemetry-instrumentation=={version}",
            "packaging>=21.0",
            "sqlalchemy<2.1.0,>=1.0.0; extra == 'instruments'",
        ),
    )


def httpx_instrumentation() -> Distribution:
    return Distribution(
        "opentelemetry-instrumentation-httpx",
        "0.66b1",
        ("httpx2>=2.0.0; extra == 'instruments-any'", "httpx>=0.18.0; extra == 'instruments-any'"),
    )


def by_name(dists: list[Distribution]) -> dict[str, Distribution]:
    return {dist.name: dist for dist in dists}


def test_library_outside_the_declared_range_fails() -> None:
    dists = by_name([*core(), sqlalchemy_instrumentation(), Distribution("sqlalchemy", "2.1.0")])

    results = check_versions(dists)

    failure = next(r for r in results if r.name == "instrumentation.sqlalchemy")
    assert failure.status is Status.FAIL
    assert "sqlalchemy 2.1.0" in failure.detail
    assert "silently instruments nothing" in failure.detail
    assert failure.fix is not None and "sqlalchemy<2.1.0,>=1.0.0" in failure.fix
    assert not any(r.name == "instrumentations" for r in results)


def test_library_inside_the_range_or_absent_passes() -> None:
    inside = check_versions(
        by_name([*core(), sqlalchemy_instrumentation(), Distribution("sqlalchemy", "2.0.58")])
    )
    absent = check_versions(by_name([*core(), sqlalchemy_instrumentation()]))

    assert [r.status for r in inside] == [Status.PASS, Status.PASS]
    assert "sqlalchemy 2.0.58" in inside[1].detail
    assert [r.status for r in absent] == [Status.PASS, Status.PASS]
    assert "sqlalchemy 0.66b1" in inside[0].detail


@pytest.mark.parametrize(
    ("installed", "status"),
    [
        ([Distribution("httpx", "0.28.1")], Status.PASS),
        ([Distribution("httpx", "0.17.0")], Status.FAIL),
        ([Distribution("httpx", "0.17.0"), Distribution("httpx2", "2.1.0")], Status.PASS),
        ([], Status.PASS),
    ],
)
def test_instruments_any_needs_one_installed_library_in_range(
    installed: list[Distribution], status: Status
) -> None:
    results = check_versions(by_name([*core(), httpx_instrumentation(), *installed]))

    problems = [r for r in results if r.status is not Status.PASS]
    if status is Status.FAIL:
        assert [(r.name, r.status) for r in problems] == [("instrumentation.httpx", Status.FAIL)]
        assert "httpx 0.17.0" in problems[0].detail
    else:
        assert problems == []


def test_contrib_release_of_another_sdk_line_warns() -> None:
    results = check_versions(
        by_name(
            [*core(), sqlalchemy_instrumentation("0.65b0"), Distribution("sqlalchemy", "2.0.1")]
        )
    )

    versions = results[0]
    assert versions.status is Status.WARN
    assert "opentelemetry-instrumentation-sqlalchemy 0.65b0" in versions.detail
    assert "0.66bX" in versions.detail


def test_api_sdk_mismatch_warns_and_a_patch_level_contrib_difference_does_not() -> None:
    mismatch = check_versions(by_name(core(api="1.44.0")))
    patch_level = check_versions(
        by_name(
            [*core(), sqlalchemy_instrumentation("0.66b0"), Distribution("sqlalchemy", "2.0.1")]
        )
    )

    assert mismatch[0].status is Status.WARN
    assert "opentelemetry-api 1.44.0 beside opentelemetry-sdk 1.45.1" in mismatch[0].detail
    assert patch_level[0].status is Status.PASS


def test_versions_outside_the_supported_ranges_warn() -> None:
    ours = Distribution(
        "otel-sentry-bridge",
        "0.1.0",
        ("sentry-sdk>=2.40,<3", "opentelemetry-sdk>=1.30,<2"),
    )
    dists = by_name([*core(), ours])
    dists["sentry-sdk"] = Distribution("sentry-sdk", "3.0.0")

    versions = check_versions(dists)[0]

    assert versions.status is Status.WARN
    assert "sentry-sdk 3.0.0 (supported: <3,>=2.40)" in versions.detail
