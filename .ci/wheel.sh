#!/usr/bin/env bash
# Build advlab's wheel, install it into a fresh venv with no source tree, and run a quickstart there.
#
#   bash .ci/wheel.sh [QUICKSTART.py | PAGE.md]     (default: .ci/quickstart_smoke.py)
#
# A Markdown page stands for its ```python blocks, run in order as one script (the README's
# quickstart: what a new user copies).
#
# Steps: `python -m build --wheel` from a copy of the tracked files; a new venv in a temporary
# folder; `pip install torch==2.13.0` (the CPU build the lock names), then the wheel, whose other
# dependencies pip takes from the registry within pyproject's ranges; from an empty folder, the
# quickstart, `advlab --help` and `advlab reproduce goodfellow-fig2 --quick`. Prints the seconds
# from the wheel's `pip install` to the end of the quickstart (its robust accuracy) and the venv's
# size (`du -sh`). Exits non-zero on any failure.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
script="$(realpath "${1:-$root/.ci/quickstart_smoke.py}")"
[ -f "$script" ] || { echo "wheel.sh: no quickstart script $script" >&2; exit 2; }
python="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
unset PYTHONPATH
# pip's and build's chatter goes to a log, shown only when the step fails
quiet() { "$@" >"$work/step.log" 2>&1 || { cat "$work/step.log" >&2; return 1; }; }

echo "== build the wheel (from a copy of the tracked files, so the source tree stays clean)"
mkdir "$work/src"
(cd "$root" && git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
    [ -e "$f" ] && printf '%s\0' "$f"; done | xargs -0 cp --parents -t "$work/src")
"$python" -m venv "$work/tools"
quiet "$work/tools/bin/pip" install build
quiet "$work/tools/bin/python" -m build --wheel --outdir "$work/dist" "$work/src"
wheel="$(ls "$work"/dist/advlab-*.whl)"
echo "built $(basename "$wheel") ($(du -h "$wheel" | cut -f1))"
"$python" -c 'import sys, zipfile; names = zipfile.ZipFile(sys.argv[1]).namelist()
sys.exit(0 if "advlab/data/embedded/digits5k.npz.bin" in names else "the wheel lacks the embedded data")' "$wheel"

echo "== fresh venv: torch==2.13.0, then the wheel"
"$python" -m venv "$work/venv"
quiet "$work/venv/bin/pip" install torch==2.13.0
start=$(date +%s%N)
quiet "$work/venv/bin/pip" install "$wheel"

echo "== quickstart from an empty folder: $script"
mkdir "$work/empty" && cd "$work/empty"
if [[ "$script" == *.md ]]; then  # the page's python blocks, in order, as one script
    awk '/^```python/{on=1; next} /^```/{on=0} on' "$script" > "$work/quickstart.py"
    [ -s "$work/quickstart.py" ] || { echo "wheel.sh: no python block in $script" >&2; exit 2; }
    script="$work/quickstart.py"
fi
"$work/venv/bin/python" -c 'import advlab, sys; sys.exit(0 if advlab.__file__.startswith(sys.prefix) else f"advlab imported from {advlab.__file__}, not the venv")'
"$work/venv/bin/python" "$script"
end=$(date +%s%N)
echo "wheel install to the quickstart's robust accuracy: $(( (end - start) / 1000000000 )) s"

"$work/venv/bin/advlab" --help >/dev/null
"$work/venv/bin/advlab" reproduce goodfellow-fig2 --quick --out "$work/fig2" --no-progress | tail -n 3
[ -s "$work/fig2/results.json" ] || { echo "reproduce wrote no results.json" >&2; exit 1; }
quiet "$work/venv/bin/pip" check
echo "installed: $("$work/venv/bin/pip" list --format=freeze 2>/dev/null | grep -iE '^(torch|numpy|scipy|matplotlib|tqdm|safetensors)==' | tr '\n' ' ')"
echo "venv size (du -sh): $(du -sh "$work/venv" | cut -f1)"
echo "wheel.sh: ok"
