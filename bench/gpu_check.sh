#!/usr/bin/env bash
# The one GPU check, under 8 minutes on one H100 by its estimate (docs/performance.md, "The GPU
# plan": what each part answers, and the time of each, estimated):
#
#   bash bench/gpu_check.sh "$OUT"               # on the GPU machine, carrying .whl (gpu_wheels.sh)
#   bash bench/gpu_check.sh --cpu-tiny OUTDIR    # anywhere: the same parts on the tiny models, CPU
#
# Parts, in order of importance, each a process of its own under `timeout`, so one that fails or
# hangs costs its own time only, and what it finished is in its JSON already:
#
#   hunyuan_v1  bench/gpu_hunyuan.py: HunyuanVideo-I2V at 928x544x129 (the API's 16:9 540p), paths
#               stock, exact (1) and exact-compiled (2), one step each on the same weights, their
#               errors against each other, then the attention backends' rates;
#   hunyuan15   bench/gpu_hunyuan15.py: HunyuanVideo 1.5, 848x480 and 1280x720, 121 frames, the
#               exact path then stock (3); stock 720p is expected to run out of memory.
#
# Each writes OUT/<part>.json as it measures (rewritten whole, atomically) and its output to
# OUT/<part>.log; OUT/check.json says which parts ran, their exit status, time and limit, and is
# rewritten after each. The wheels in .whl, if any, are installed first (GPU mode), as the plan
# says. FRAMECAST_CHECK_BUDGET (seconds, default 480: the device call's limit is 540) bounds the
# whole; PYTHON names the interpreter (default python3).
set -u

mode=gpu
if [ "${1:-}" = "--cpu-tiny" ]; then
    mode=cpu-tiny
    shift
fi
if [ $# -ne 1 ]; then
    echo "usage: bash bench/gpu_check.sh [--cpu-tiny] OUTDIR" >&2
    exit 2
fi
mkdir -p "$1" && out=$(cd "$1" && pwd) || exit 2
cd "$(dirname "$0")/.." || exit 2 # the repository root
py=${PYTHON:-python3}
budget=${FRAMECAST_CHECK_BUDGET:-480}
SECONDS=0
parts=""

say() { printf '[check %5d s] %s\n' "$SECONDS" "$*"; }

write_check() { # complete: true or false
    printf '{"mode": "%s", "budget_s": %s, "elapsed_s": %s, "complete": %s, "parts": [%s]}\n' \
        "$mode" "$budget" "$SECONDS" "$1" "$parts" >"$out/.check.json.tmp" &&
        mv -f "$out/.check.json.tmp" "$out/check.json"
}

# run_part NAME CAP RESERVE COMMAND...: COMMAND under a limit of CAP seconds, or less where the
# budget left, less RESERVE seconds kept for the parts after it, is smaller.
run_part() {
    local name=$1 cap=$2 reserve=$3 limit rc start timed_out=false
    shift 3
    limit=$((budget - SECONDS - reserve))
    [ "$limit" -gt "$cap" ] && limit=$cap
    if [ "$limit" -lt 20 ]; then
        say "$name: skipped, ${limit} s left of the budget"
        parts="${parts:+$parts, }{\"part\": \"$name\", \"skipped\": true}"
        write_check false
        return
    fi
    say "$name: limit $limit s: $*"
    start=$SECONDS
    timeout --kill-after=15 "$limit" "$@" 2>&1 | tee "$out/$name.log"
    rc=${PIPESTATUS[0]}
    case $rc in 124 | 137) timed_out=true ;; esac
    say "$name: exit status $rc after $((SECONDS - start)) s (timed out: $timed_out)"
    parts="${parts:+$parts, }{\"part\": \"$name\", \"rc\": $rc, \"seconds\": $((SECONDS - start)),"
    parts="$parts \"limit_s\": $limit, \"timed_out\": $timed_out, \"json\": \"$name.json\"}"
    write_check false
}

write_check false
if [ "$mode" = gpu ]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    if ls .whl/*.whl >/dev/null 2>&1; then
        say "installing the wheels in .whl"
        "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site .whl/*.whl || say "wheel install failed (status $?); going on"
        export PYTHONPATH=/tmp/site:src
    else
        export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
    fi
    v1_size=(--width 928 --height 544 --frames 129)
    tiny=()
else
    export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
    # aot_eager: the compiled path's graphs without inductor's C++ code generation (minutes of
    # a loaded CPU); the engine compiled by inductor is tests/unit/test_hunyuan_cache.py's.
    v1_size=(--model tiny --device cpu --width 64 --height 48 --frames 5)
    v1_size+=(--compile-backend aot_eager)
    tiny=(--model tiny --device cpu)
fi

# Parts 1 and 2 share one process: one build of the 21B parameters, the same weights, and
# exact-compiled's error against stock and exact. 150 s are kept for the 1.5 part.
run_part hunyuan_v1 300 150 "$py" -u bench/gpu_hunyuan.py "${v1_size[@]}" \
    --paths stock,exact,exact-compiled --steps 1 --decode none --out "$out/hunyuan_v1.json"
# Part 3: the exact figures first; stock 720p, last, may run out of memory or out of time.
run_part hunyuan15 600 0 "$py" -u bench/gpu_hunyuan15.py "${tiny[@]}" \
    --out "$out/hunyuan15.json"

write_check true
say "done; the figures to read first:"
"$py" - "$out" <<'EOF' || true
import json, sys
from pathlib import Path

for name in ("hunyuan_v1", "hunyuan15"):
    path = Path(sys.argv[1]) / f"{name}.json"
    if not path.exists():
        print(f"{name}: no JSON")
        continue
    data = json.loads(path.read_text())
    print(f"{name} (complete: {data.get('complete')}):")
    print(json.dumps(data.get("summary"), indent=1))
    if "sdpa_kernel" in data:
        print("sdpa_kernel:", json.dumps(data["sdpa_kernel"]))
EOF
