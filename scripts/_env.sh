# Shared set-up for scripts/: the project's virtualenv, from the committed lock file.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet "uv==0.13.9"
fi
uv sync --frozen --all-extras --quiet
