#!/usr/bin/env bash
# Check clara-rt on a GPU machine without network: `make gpu-check` runs this.
#
# Installs the missing pure-Python dependencies from wheels carried in .gpu/whl (made by
# `make gpu-wheels` on a machine with network), installs this checkout in editable mode (which
# builds clara_rt._core), then runs `pytest -m gpu` and `clara-rt bench gpu --json` and writes
# both to $OUT (default .gpu/out):
#   gpu-tests.log       pytest's output          gpu-tests.rc   its exit status
#   bench-gpu.json      the bench's JSON record  bench-gpu.log  its table and progress
#   summary.txt         versions, exit statuses, the bench's targets (PASS/MISS)
# The bench record is also copied to benchmarks/results/<date>-<host>-gpu.json.
#
# Environment: PYTHON (default python3), GPU_WHEELS (default .gpu/whl), OUT, GPU_CHECK_QUICK=1
# for the small bench sizes, GPU_CHECK_TESTS=0 / GPU_CHECK_BENCH=0 to skip one part,
# GPU_CHECK_INSTALL=0 to use the clara-rt already installed for $PYTHON.
# Exit status: 0 when the tests and the bench ran and passed, 1 otherwise.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
WHL=${GPU_WHEELS:-$ROOT/.gpu/whl}
OUT=${OUT:-$ROOT/.gpu/out}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
cd "$ROOT" || exit 1

say() { echo "gpu-check: $*" | tee -a "$OUT/summary.txt" >&2; }
: > "$OUT/summary.txt"
say "checkout $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u +%FT%TZ)"
"$PY" - <<'PY' 2>&1 | tee -a "$OUT/summary.txt"
import platform
try:
    import cupy
    n = cupy.cuda.runtime.getDeviceCount()
    p = cupy.cuda.runtime.getDeviceProperties(0) if n else {}
    name = p.get("name", b"-")
    print(f"python {platform.python_version()}, CuPy {cupy.__version__}, {n} device(s):",
          name.decode() if isinstance(name, bytes) else name)
except Exception as exc:  # no CuPy or no driver: the gpu tests will skip and the bench exit 2
    print(f"python {platform.python_version()}, no usable CuPy: {type(exc).__name__}: {exc}")
PY

if compgen -G "$WHL/*.whl" >/dev/null; then
  SITE=$(mktemp -d)/site
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$WHL"/*.whl \
    || { say "cannot install the wheels in $WHL"; exit 1; }
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  say "carried wheels: $(cd "$WHL" && ls ./*.whl | xargs -n1 basename | tr '\n' ' ')"
else
  say "no wheels in $WHL (make gpu-wheels makes them); pydicom, nibabel, highdicom must be there"
fi
if [ "${GPU_CHECK_INSTALL:-1}" = 0 ]; then
  say "GPU_CHECK_INSTALL=0: using the clara-rt already importable by $PY"
elif ! "$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e . \
    >"$OUT/install.log" 2>&1; then
  say "pip install -e . failed (see install.log); building the extension in place instead"
  "$PY" setup.py build_ext --inplace -q >>"$OUT/install.log" 2>&1 \
    || { say "the C++ extension does not build: see $OUT/install.log"; exit 1; }
  # What the editable install would have done besides: operators/ importable as
  # clara_rt.operators (a link, removed on exit) and the entry points (folder formats) registered
  # (a dist-info on PYTHONPATH).
  if [ ! -e clara_rt/operators ]; then
    ln -s ../operators clara_rt/operators && trap 'rm -f "$ROOT/clara_rt/operators"' EXIT
  fi
  SHIM=$(mktemp -d)/shim
  "$PY" - "$SHIM" <<'PY' || { say "cannot register clara-rt's entry points"; exit 1; }
import pathlib, sys, tomllib
project = tomllib.loads(pathlib.Path("pyproject.toml").read_text())["project"]
info = pathlib.Path(sys.argv[1]) / f"clara_rt-{project['version']}.dist-info"
info.mkdir(parents=True)
(info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: clara-rt\n"
                               f"Version: {project['version']}\n")
groups = {"console_scripts": project.get("scripts", {}), **project.get("entry-points", {})}
(info / "entry_points.txt").write_text("".join(
    f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n"
    for group, eps in groups.items()))
PY
  export PYTHONPATH="$SHIM${PYTHONPATH:+:$PYTHONPATH}"
fi

status=0
if [ "${GPU_CHECK_TESTS:-1}" != 0 ]; then
  "$PY" -m pytest -m gpu -q -p no:cacheprovider --continue-on-collection-errors -rfE tests \
    >"$OUT/gpu-tests.log" 2>&1
  rc=$?
  echo "$rc" >"$OUT/gpu-tests.rc"
  last=$(tail -n 1 "$OUT/gpu-tests.log")
  say "pytest -m gpu: exit $rc: $last"
  # Modules needing an extra this machine lacks (fastapi, pynetdicom...) fail to collect; that
  # alone is no failure of the GPU path. A failed or erroring test is.
  if [ "$rc" != 0 ] && { grep -qE '[0-9]+ failed' <<<"$last" || ! grep -q passed <<<"$last"; }
  then status=1
  elif [ "$rc" != 0 ]; then say "(collection errors only: modules needing extras not here)"
  fi
  grep -q passed <<<"$last" || { say "no gpu test passed: does CuPy see a GPU here?"; status=1; }
fi
if [ "${GPU_CHECK_BENCH:-1}" != 0 ]; then
  quick=(); [ "${GPU_CHECK_QUICK:-0}" = 1 ] && quick=(--quick)
  "$PY" -m clara_rt.cli bench gpu --json "${quick[@]}" >"$OUT/bench-gpu.json" 2>"$OUT/bench-gpu.log"
  rc=$?
  say "clara-rt bench gpu: exit $rc"
  if [ "$rc" = 0 ]; then
    grep -E '^  (PASS|MISS) ' "$OUT/bench-gpu.log" | tee -a "$OUT/summary.txt" >&2
    mkdir -p benchmarks/results
    cp "$OUT/bench-gpu.json" "benchmarks/results/$(date -u +%F)-$(hostname -s)-gpu.json"
  else
    tail -n 5 "$OUT/bench-gpu.log" | tee -a "$OUT/summary.txt" >&2
    status=1
  fi
fi
say "done: exit $status; results in $OUT"
exit "$status"
