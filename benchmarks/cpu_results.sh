#!/usr/bin/env bash
# The CPU result runs behind docs/results.md, in order of importance; each is resumable
# (rerunning skips finished examples). Run on an otherwise idle machine: latency is measured.
set -euo pipefail
cd "$(dirname "$0")/.."
RAM=${RAM:-.venv/bin/ram}
NQ=../shared/data/nq-open/nq-open-oracle.dev.jsonl.gz
LIMIT=${LIMIT:-200}
OUT=${OUT:-runs}

# 1. NQ, 20 documents (~2.5k tokens), dev questions never trained on
$RAM eval --data $NQ --docs 20 --split dev --limit "$LIMIT" --model default --ratio 4 8 \
  --method ram ram-untrained full bm25 closed-book --max-new-tokens 24 --batch-size 8 --no-progress \
  --out "$OUT/eval-nq20-dev"

# 2. CPU latency of the default model: full prompt vs RAM
$RAM bench --shape default --lengths 1024 2048 4096 --ratios 4 8 16 32 --engine hf --new-tokens 16 \
  --repeats 3 --warmup 1 --out "$OUT/bench-cpu"
