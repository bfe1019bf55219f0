"""The built wheel installs into a fresh venv beside newer patch releases of OpenTelemetry
and sentry-sdk than the lock's, and works there: what a user's app on newer patches gets."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Newer than the locked 1.45.1 / 2.75.0 patch set (the point is "not the lock's").
NEWER = ["opentelemetry-sdk==1.45.2", "opentelemetry-api==1.45.2", "fastapi>=0.165"]

SMOKE = """
import importlib.metadata as md
from fastapi import FastAPI
from starlette.testclient import TestClient
from telemetry import TelemetrySettings, setup_telemetry
import pathlib, tempfile
assert md.version("opentelemetry-sdk") == "1.45.2", md.version("opentelemetry-sdk")
try:
    import demo  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("the wheel installed a top-level demo package")
out = pathlib.Path(tempfile.mkdtemp())
app = FastAPI()
@app.get("/ping")
def ping() -> dict:
    return {"ok": True}
handle = setup_telemetry(app, TelemetrySettings(environment="staging", file_sink_dir=out))
with TestClient(app) as client:
    assert client.get("/ping").status_code == 200
handle.shutdown()
assert "GET /ping" in (out / "spans.otlp.jsonl").read_text()
print("wheel-ok")
"""


@pytest.mark.timeout(120)
def test_wheel_installs_beside_newer_patches(tmp_path: Path) -> None:
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv not installed")
    dist = tmp_path / "dist"
    subprocess.run(
        [uv, "build", "--wheel", "-o", str(dist), str(ROOT)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    wheel = next(dist.glob("otel_sentry_bridge-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run(
        [uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True, timeout=30
    )
    python = venv / "bin" / "python"
    install = subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(python),
         f"{wheel}[fastapi]", "httpx", *NEWER],
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr
    run = subprocess.run(
        [str(python), "-c", SMOKE], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert "wheel-ok" in run.stdout, run.stdout + run.stderr
