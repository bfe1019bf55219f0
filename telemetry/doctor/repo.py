"""The repository check of ``telemetry doctor``: Sentry DSNs with a real-looking key
committed to the git work tree. Findings name the file and line, never the key.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from telemetry.doctor.checks import CheckResult, Status

__all__ = ["find_dsns", "scan_repo_for_dsns"]

_MAX_SCANNED_BYTES = 1024 * 1024
_DSN_RE = re.compile(
    r"(?P<scheme>https?)://(?P<key>[^\s:@/'\"`<>]+)(?::[^\s@/'\"`]*)?@"
    r"(?P<host>[^\s/'\"`@]+)/(?:[^\s/'\"`]+/)*(?P<project>\d+)\b"
)
_HEX_KEY = re.compile(r"[0-9a-fA-F]{16,}")
_TEST_HOSTS = re.compile(
    r"^(localhost|127\.\d+\.\d+\.\d+|\[::1\]|0\.0\.0\.0|(.*\.)?example\.(com|org|net)"
    r"|.*\.(example|test|invalid|localhost))$",
    re.IGNORECASE,
)


def find_dsns(text: str) -> list[int]:
    """Line numbers holding what looks like a real Sentry DSN.

    Real keys are 32 hex characters, so anything else in the key position is a placeholder
    (``examplePublicKey``, ``<key>``, ``${SENTRY_KEY}``, ``public``); a hex key is still
    ignored on loopback and reserved example/test hosts, where it cannot reach a real
    project, and when it is one repeated character (``0000...``).
    """
    lines: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        for match in _DSN_RE.finditer(line):
            key = match.group("key")
            host = re.sub(r":\d*$", "", match.group("host"))
            if (
                _HEX_KEY.fullmatch(key)
                and len(set(key.lower())) > 1
                and not _TEST_HOSTS.match(host)
            ):
                lines.append(number)
                break
    return lines


def _tracked_files(repo: Path) -> list[str]:
    answer = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "-z"],
        capture_output=True,
        timeout=30,
        check=True,
    )
    return [name for name in answer.stdout.decode(errors="replace").split("\0") if name]


def scan_repo_for_dsns(repo: Path) -> CheckResult:
    name = "dsn-in-repo"
    try:
        files = _tracked_files(repo)
    except FileNotFoundError:
        return CheckResult(name, Status.SKIP, "git is not installed", "install git")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        stderr = getattr(error, "stderr", b"") or b""
        return CheckResult(
            name,
            Status.FAIL,
            f"cannot list the tracked files of {repo}: {stderr.decode(errors='replace').strip()}",
            "pass --repo with the path of a git work tree",
        )
    findings: list[str] = []
    for relative in files:
        path = repo / relative
        try:
            if not path.is_file() or path.stat().st_size > _MAX_SCANNED_BYTES:
                continue
            data = path.read_bytes()
        except OSError:
            continue
        if b"\0" in data[:8192] or b"@" not in data:
            continue
        findings.extend(f"{relative}:{line}" for line in find_dsns(data.decode(errors="replace")))
    if not findings:
        return CheckResult(
            name,
            Status.PASS,
            f"no Sentry DSN with a real-looking key in {len(files)} tracked files",
        )
    shown = ", ".join(findings[:10]) + (
        f" and {len(findings) - 10} more" if len(findings) > 10 else ""
    )
    return CheckResult(
        name,
        Status.FAIL,
        f"Sentry DSN with a key committed at {shown} (keys not shown)",
        "move it to SENTRY_DSN in the environment or a secret store, then rotate the key "
        "(Sentry: Project Settings > Client Keys); it stays in the git history",
    )
