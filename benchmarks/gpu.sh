#!/usr/bin/env bash
# RAM latency sweep on one GPU (H100/H200) with random Qwen3-4B weights in bf16.
#
#   bash benchmarks/gpu.sh            # results under $OUT (default ./bench-gpu)
#
# Installs nothing. Runs `python -m ram.bench.command` from this checkout (PYTHONPATH=src) with
# the first interpreter that has a CUDA torch: $RAM_PY, .venv/bin/python, then python3.
# Sized to finish in about 6 minutes (RAM_BENCH_BUDGET_S, default 360). Steps, in the order
# RAM_BENCH_STEPS names them (default "check hf fast prefix hf-long"): check, are the decode
# attentions right on this GPU (benchmarks/check_decode_attention.py, seconds); hf engine over
# 4k-32k; the fast engine (StaticCache + torch.compile/CUDA graphs) over 4k-32k and 64k;
# fast-prefix at 32k and 64k; hf at 64k if time is left. "split" (fast-split), "triton"
# (fast-triton, a split-KV Triton kernel) and "flex" (fast-flex, rejected: 2.6x slower than fast
# on an H200), each at 32k/64k (RAM_BENCH_FLEX_LENGTHS), run only when named; split, prefix and
# triton stop after RAM_BENCH_STEP_CAP_S seconds (default 210). A loan that only needs the two
# strongest decode candidates, at a short, a long and a very long cache (so summary.txt's
# decode fit has three lengths per engine):
#   RAM_BENCH_STEPS="check prefix triton" RAM_BENCH_FLEX_LENGTHS="4096 32768 65536" \
#   RAM_BENCH_STEP_CAP_S=220 RAM_BENCH_BUDGET_S=540 bash benchmarks/gpu.sh
# (see docs/results.md, "Not measured yet"). Each step has its own timeout and a failed step does
# not stop the others. Every step rewrites its JSON after each row, so a cut step keeps what it measured.
#
# What comes back in $OUT (few files, for the device tool's 8-file limit):
#   qwen3-4b-cuda-hf.json, qwen3-4b-cuda-fast-cenc.json       main sweep (tables: stdout, tarball)
#   qwen3-4b-cuda-fast-{prefix,split,triton}-cenc.json        the decode candidates at 32k/64k
#   summary.txt                                               GPU, versions, step log, failures
#   bench-gpu.tar.gz                                          everything (tables, PNGs, 64k runs, logs)
set -euo pipefail

OUT="${OUT:-./bench-gpu}"
BUDGET="${RAM_BENCH_BUDGET_S:-360}"
SHAPE="${RAM_BENCH_SHAPE:-qwen3-4b}"
LENGTHS="${RAM_BENCH_LENGTHS:-4096 8192 16384 32768}"
LONG="${RAM_BENCH_LONG-65536}"           # set empty to skip the long-context runs
RATIOS="${RAM_BENCH_RATIOS:-8 32}"
STEPS="${RAM_BENCH_STEPS:-check hf fast prefix hf-long}"   # which steps, in this order
CAP="${RAM_BENCH_STEP_CAP_S:-210}"       # seconds at most for each decode candidate (split, prefix, triton)
DEVICE="${RAM_BENCH_DEVICE:-cuda}"       # cpu: a smoke run of this script (with a small shape)
COMMON=(--shape "$SHAPE" --device "$DEVICE" --dtype "${RAM_BENCH_DTYPE:-bfloat16}" --ratios $RATIOS
        --new-tokens "${RAM_BENCH_NEW_TOKENS:-32}" --encoder-layers "${RAM_BENCH_ENCODER_LAYERS:-8}" --no-plot
        ${RAM_BENCH_EXTRA:-})
START=$SECONDS
mkdir -p "$OUT"
WORK="$(mktemp -d /tmp/ram-bench-gpu.XXXXXX)"
SUMMARY="$WORK/summary.txt"
FAILED=0
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

log() { echo "[$(( SECONDS - START ))s] $*" | tee -a "$SUMMARY"; }
left() { echo $(( BUDGET - (SECONDS - START) )); }

pick_python() {
  local cand
  for cand in "${RAM_PY:-}" .venv/bin/python python3 python; do
    [ -n "$cand" ] || continue
    command -v "$cand" >/dev/null 2>&1 || continue
    if timeout 90 "$cand" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() or sys.argv[1] == "cpu" else 1)' \
        "$DEVICE" >/dev/null 2>&1; then
      echo "$cand"; return 0
    fi
  done
  return 1
}

# step NAME SECONDS ARGS...: one bench process under its own timeout; failures are logged, not fatal
step() {
  local name="$1" limit="$2"; shift 2
  if [ "$limit" -lt 45 ]; then log "skip $name: ${limit}s left"; return 0; fi
  log "start $name (timeout ${limit}s)"
  local rc=0
  timeout -k 15 "$limit" "$PY" -m ram.bench.command "$@" >"$WORK/$name.log" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    FAILED=$(( FAILED + 1 ))
    log "FAILED $name rc=$rc$([ "$rc" -eq 124 ] && echo ' (timeout)'); last lines:"
    tail -n 15 "$WORK/$name.log" | sed 's/^/    /' | tee -a "$SUMMARY"
  else
    log "done $name"
  fi
}

# check: do the decode attentions compute the right thing here? (benchmarks/check_decode_attention.py;
# its lines go into summary.txt; a mismatch marks the step failed)
check() {
  log "start check (timeout 120s)"
  local rc=0
  timeout -k 15 120 "$PY" benchmarks/check_decode_attention.py --device "$DEVICE" \
    ${RAM_BENCH_CHECK_EXTRA:-} >"$WORK/check.log" 2>&1 || rc=$?
  grep -E "^(check_decode_attention|attention|time|ids) " "$WORK/check.log" | sed 's/^/    /' | tee -a "$SUMMARY"
  if [ "$rc" -ne 0 ]; then
    FAILED=$(( FAILED + 1 )); log "FAILED check rc=$rc; last lines:"
    tail -n 15 "$WORK/check.log" | sed 's/^/    /' | tee -a "$SUMMARY"
  else
    log "done check"
  fi
}

pack() {
  # Reports for partial JSON too (a step cut by its timeout), then the few files that come back.
  "$PY" - "$WORK" <<'PY' >>"$SUMMARY" 2>&1 || true
import json, sys
from pathlib import Path
from ram.bench.latency import write_report
for path in sorted(Path(sys.argv[1]).rglob("*.json")):
    data = json.loads(path.read_text())
    if data.get("rows"):
        write_report(path.parent, path.stem, data["rows"], data.get("machine", {}), data.get("settings", {}))
        print(f"report {path.relative_to(sys.argv[1])}: {len(data['rows'])} rows, complete={data['settings'].get('complete')}")
PY
  # decode cost split into a fixed and a per-cache-length part, per engine (benchmarks/decode_fit.py)
  "$PY" benchmarks/decode_fit.py "$WORK"/*/*.json >>"$SUMMARY" 2>&1 || true
  cp "$WORK"/main/*.json "$WORK"/split/*.json "$WORK"/prefix/*.json "$WORK"/triton/*.json "$OUT"/ 2>/dev/null || true
  tar -czf "$OUT/bench-gpu.tar.gz" -C "$WORK" . 2>/dev/null || true
  cp "$SUMMARY" "$OUT/summary.txt"
}

{
  echo "# RAM GPU latency sweep, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  timeout 30 nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.memory,power.limit \
    --format=csv 2>&1 || echo "nvidia-smi failed"
} >"$SUMMARY"

if ! PY="$(pick_python)"; then
  log "no Python with a CUDA build of torch found (tried \$RAM_PY, .venv/bin/python, python3)"
  cp "$SUMMARY" "$OUT/summary.txt"; exit 1
fi
"$PY" - >>"$SUMMARY" 2>&1 <<'PY' || { log "cannot import ram from src/"; cp "$SUMMARY" "$OUT/summary.txt"; exit 1; }
import sys, torch, transformers, ram.bench.command
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
print(f"python {sys.version.split()[0]} ({sys.executable}); torch {torch.__version__} cuda {torch.version.cuda}; "
      f"transformers {transformers.__version__}; gpu {gpu}")
PY

run_step() {
  case "$1" in
    # correctness of the decode attentions on this device (seconds), before timing them
    check) check ;;
    # hf engine (transformers generate): the reference, most likely to work.
    hf) step hf-main $(( $(left) < 170 ? $(left) : 170 )) "${COMMON[@]}" --engine hf --lengths $LENGTHS \
          --repeats 3 --warmup 1 --out "$WORK/main" ;;
    # fast engine, RAM's encoder compiled too (RAM_BENCH_FAST_EXTRA="" for the eager encoder):
    # compiles twice (first and second cache length), CUDA graphs per length. The long length
    # runs last in the same process (no second compile); its rows land in the same JSON.
    fast) step fast-main $(( $(left) - 40 )) "${COMMON[@]}" --engine fast ${RAM_BENCH_FAST_EXTRA---compile-encoder} \
          --lengths $LENGTHS $LONG --repeats 3 --warmup 1 --out "$WORK/main" ;;
    # fast-flex (FlexAttention split-KV decoding) at 32k and the long length: is decode over a
    # long cache closer to the bandwidth bound than with SDPA's masked kernel?
    flex) step flex $(( $(left) - 60 )) "${COMMON[@]}" --engine fast-flex ${RAM_BENCH_FAST_EXTRA---compile-encoder} \
          --lengths ${RAM_BENCH_FLEX_LENGTHS:-32768 $LONG} --repeats 3 --warmup 1 --out "$WORK/flex" ;;
    # fast-split (split-KV one-token steps as plain matmuls, SPLIT_CHUNK cache slots per piece) at
    # 32k and the long length: the same question as flex, without FlexAttention's kernel.
    split) step split $(( $(left) - 60 < CAP ? $(left) - 60 : CAP )) "${COMMON[@]}" --engine fast-split ${RAM_BENCH_FAST_EXTRA---compile-encoder} \
          --lengths ${RAM_BENCH_FLEX_LENGTHS:-32768 $LONG} --repeats 3 --warmup 1 --out "$WORK/split" ;;
    # fast-prefix (the prompt's cache read by SDPA's flash kernel without a mask, which splits a
    # long cache over thread blocks; the decode tail merged by log-sum-exp) at 32k and the long
    # length; at most $CAP s (fast-flex took 216 s for the same rows) so later steps keep time.
    prefix) step prefix $(( $(left) - 60 < CAP ? $(left) - 60 : CAP )) "${COMMON[@]}" --engine fast-prefix \
          ${RAM_BENCH_FAST_EXTRA---compile-encoder} --lengths ${RAM_BENCH_FLEX_LENGTHS:-32768 $LONG} --repeats 3 \
          --warmup 1 --out "$WORK/prefix" ;;
    # fast-triton (ram.bench.decode_kernel: split-KV Triton kernel, any bool mask) at 32k and the
    # long length, at most $CAP s.
    triton) step triton $(( $(left) - 60 < CAP ? $(left) - 60 : CAP )) "${COMMON[@]}" --engine fast-triton \
          ${RAM_BENCH_FAST_EXTRA---compile-encoder} --lengths ${RAM_BENCH_FLEX_LENGTHS:-32768 $LONG} --repeats 3 \
          --warmup 1 --out "$WORK/triton" ;;
    # hf at the long length, only if time is left.
    hf-long) if [ -n "$LONG" ]; then
          step hf-long $(( $(left) - 25 )) "${COMMON[@]}" --engine hf --lengths $LONG --repeats 1 --warmup 1 \
            --out "$WORK/long"
        fi ;;
    *) log "unknown step $1 (known: check hf fast flex split prefix triton hf-long)"; FAILED=$(( FAILED + 1 )) ;;
  esac
}
for name in $STEPS; do run_step "$name"; done

pack
for table in "$WORK"/main/*.md "$WORK"/flex/*.md "$WORK"/split/*.md "$WORK"/prefix/*.md "$WORK"/triton/*.md "$WORK"/long/*.md; do if [ -f "$table" ]; then cat "$table"; fi; done
log "finished: $FAILED failed step(s); results in $OUT"
[ "$FAILED" -eq 0 ]
