#!/usr/bin/env bash
# The GPU check of fastk-jax, in one script: the CUDA build of JAX, `fastk-jax bench --json`,
# the adaptive paper's Fig. 3 study at 10,000 seeds (5 policies to t = 8000: 50,000 runs) and
# a block-size sweep of the Fig. 3 bench workload. Everything lands in one folder:
#
#   bash studies/gpu-check.sh [OUT]          # default OUT: results/gpu-check
#   bash "$(python -c 'import fastk_jax, pathlib; print(pathlib.Path(fastk_jax.__file__).parent)')/studies/gpu-check.sh" OUT
#                                            # the same from a plain pip install (it ships in the package)
#
#   env.txt                      the GPU, driver, JAX and its devices
#   bench.json                   fastk-jax bench --json (every workload, the default block)
#   blocks.jsonl                 one bench --json line per block (Fig. 3 only, 10,000 seeds/policy)
#   fig3-summary.json, fig3.png  the Fig. 3 study's summary and figure; fig3-time.txt its wall time
#   log.txt                      everything printed
#
# SEEDS (10000), BLOCKS ("4096 16384 65536") and QUICK=1 (the study's --quick; a smoke test
# of this script on a CPU) change the sizes. Each step has a time limit in seconds (STUDY_S,
# BENCH_S, BLOCK_S; default STEP_S, 600) and a failed step does not stop the ones after it.
set -u
STUDIES=$(cd "$(dirname "$0")" && pwd)  # this script's folder: a checkout's studies/ or the installed package's
OUT=$(mkdir -p "${1:-results/gpu-check}" 2>/dev/null && cd "${1:-results/gpu-check}" && pwd)  # from where it is called
[ -n "$OUT" ] || { echo "gpu-check: cannot make the folder ${1:-results/gpu-check}" >&2; exit 2; }
cd "$OUT"
SEEDS=${SEEDS:-10000}
BLOCKS=${BLOCKS:-"4096 16384 65536"}
STEP_S=${STEP_S:-600}
STUDY_S=${STUDY_S:-$STEP_S} BENCH_S=${BENCH_S:-$STEP_S} BLOCK_S=${BLOCK_S:-$STEP_S}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
log() { echo "== $(date -u +%H:%M:%S) $*" | tee -a "$OUT/log.txt" >&2; }

# the CUDA build of JAX on a machine with an NVIDIA GPU, unless the installed JAX sees it already
if nvidia-smi -L >/dev/null 2>&1 && ! python3 -c "import jax, sys; sys.exit(not jax.devices('gpu'))" >/dev/null 2>&1; then
    log "no GPU in the installed JAX: installing jax[cuda13]"
    python3 -m pip install -q -U "jax[cuda13]" 2>&1 | tee -a "$OUT/log.txt" || log "install failed"
fi
# an installed fastk-jax, else this source checkout
root=$(dirname "$STUDIES")  # the folder that holds fastk_jax/ (studies/ is fastk_jax/studies/ or a link to it)
[ "$(basename "$root")" = fastk_jax ] && root=$(dirname "$root")
python3 -c "import fastk_jax" >/dev/null 2>&1 || export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
FASTK=(python3 -m fastk_jax)
{
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1
    python3 -c "import jax, jaxlib; print('jax', jax.__version__, 'jaxlib', jaxlib.__version__); print(jax.devices())"
    "${FASTK[@]}" --version
    nproc; uptime
} >"$OUT/env.txt" 2>&1
tee -a "$OUT/log.txt" <"$OUT/env.txt" >&2

step() { # step NAME SECONDS COMMAND...: run with a time limit, its errors to log.txt
    local name=$1 limit=$2
    shift 2
    log "$name: $*"
    local start=$(date +%s.%N)
    timeout "$limit" "$@" 2>>"$OUT/log.txt"
    local rc=$?
    log "$name: exit $rc after $(elapsed "$start") s"
    return $rc
}

quick=()
[ "${QUICK:-0}" = 1 ] && quick=(--quick)

# 1. the Fig. 3 study at SEEDS seeds: its wall time, start to figure, compilation included
study_out=$(mktemp -d)/adaptive-fig3
start=$(date +%s.%N)
if step fig3-study "$STUDY_S" "${FASTK[@]}" run "$STUDIES/adaptive-fig3.toml" --seeds "$SEEDS" --out "$study_out" "${quick[@]}" \
    > >(tee -a "$OUT/log.txt"); then
    echo "$(elapsed "$start") s for $((5 * SEEDS)) runs (study: $study_out)" >"$OUT/fig3-time.txt"
    cp "$study_out/summary.json" "$OUT/fig3-summary.json"
    cp "$study_out"/*.png "$OUT/fig3.png" 2>/dev/null
fi

# 2. bench --json, every workload, the default block
step bench "$BENCH_S" "${FASTK[@]}" bench --json "${quick[@]}" >"$OUT/bench.json"

# 3. the block-size sweep: Fig. 3 only, SEEDS seeds per policy
for block in $BLOCKS; do
    step "bench-block-$block" "$BLOCK_S" "${FASTK[@]}" bench --json --workloads fig3 --seeds "$SEEDS" --block "$block" \
        >>"$OUT/blocks.jsonl"
done
log "done"
