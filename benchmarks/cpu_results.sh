#!/usr/bin/env bash
# The CPU runs behind docs/results.md, most important first. Each `ram eval` call adds methods
# to the same output folder (finished examples are skipped on rerun) and rewrites its summary.
# Run on an otherwise idle machine: latency is measured.
set -euo pipefail
cd "$(dirname "$0")/.."
RAM=${RAM:-.venv/bin/ram}
NQ=../shared/data/nq-open/nq-open-oracle.dev.jsonl.gz
LIMIT=${LIMIT:-200}
OUT=${OUT:-runs}
EVAL=(eval --data "$NQ" --docs 20 --split dev --limit "$LIMIT" --model default --max-new-tokens 16
      --batch-size 8 --no-progress --out "$OUT/eval-nq20-dev")

# 1. NQ, 20 documents (~2.5k tokens), 200 dev questions never trained on
"$RAM" "${EVAL[@]}" --method ram --ratio 4 8
"$RAM" "${EVAL[@]}" --method full
"$RAM" "${EVAL[@]}" --method ram-untrained --ratio 4 8

# 2. CPU latency of the default model: full prompt vs RAM, stage by stage
"$RAM" bench --shape default --lengths 1024 2048 4096 --ratios 8 32 --engine hf --new-tokens 16 \
  --repeats 2 --warmup 1 --out "$OUT/bench-cpu"

# 3. text-selection baselines at RAM's context length, and closed-book
"$RAM" "${EVAL[@]}" --method bm25 --ratio 4 8
"$RAM" "${EVAL[@]}" --method closed-book
