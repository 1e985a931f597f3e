#!/usr/bin/env bash
# The CPU runs behind docs/results.md, most important first. Each `ram eval` call adds methods
# to its output folder (finished examples are skipped on rerun) and rewrites the summary.
# Latency columns are only comparable within one run condition: see docs/results.md.
set -euo pipefail
cd "$(dirname "$0")/.."
RAM=${RAM:-.venv/bin/ram}
OUT=${OUT:-runs}
NQ=(--data ../shared/data/nq-open/nq-open-oracle.dev.jsonl.gz --docs 20 --split dev --limit "${LIMIT:-300}"
    --max-new-tokens 16 --batch-size 8 --no-progress)
HOTPOT=(--data ../shared/data/hotpotqa/hotpot_dev_distractor_first100.json --format hotpot
        --max-new-tokens 16 --batch-size 8 --no-progress --model default --out "$OUT/eval-hotpot")
LEVAL=(--data ../shared/data/leval/natural_question.jsonl --format leval --limit 20 --max-new-tokens 24
       --batch-size 4 --no-progress --model default --out "$OUT/eval-leval-nq")

# 1. NQ, 20 documents (~2.6k tokens), 300 dev questions never trained on: the shipped adapter.
#    (docs/results.md also keeps the earlier 200-question rows from runs/eval-nq20-dev-v2.)
RAMNQ=("${NQ[@]}" --model default --out "$OUT/eval-nq300")
"$RAM" eval "${RAMNQ[@]}" --method ram --ratio 4 8
"$RAM" eval "${RAMNQ[@]}" --method ram --ratio 16 32
"$RAM" eval "${RAMNQ[@]}" --method ram --ratio 2
"$RAM" eval "${RAMNQ[@]}" --method ram-close-only --ratio 4 8
"$RAM" eval "${RAMNQ[@]}" --method ram-all-skim
"$RAM" eval "${RAMNQ[@]}" --method ram-close-only --ratio 16 32
"$RAM" eval "${RAMNQ[@]}" --method ram-close-only ram-untrained --ratio 2
# the skim cap (max_skim_share 0.25) where it binds; its own folder, as it ran beside the others
"$RAM" eval "${NQ[@]}" --model default --method ram-skim-cap --ratio 16 32 --out "$OUT/eval-nq300-cap"
# the same questions with the `default-fast` adapter (4-layer encoder); its rows in docs/results.md
# were made with --model runs/enc4-decoder/final, the run folder packaged byte for byte as default-fast
"$RAM" eval "${NQ[@]}" --model default-fast --method ram --ratio 8 4 16 32 2 --out "$OUT/eval-nq300-fast"

# 2. baselines on the same questions (none of them uses the adapter; text baselines are held to
#    the shipped RAM's context length per question and ratio)
BASE=("${NQ[@]}" --model default --out "$OUT/eval-nq20-dev")
"$RAM" eval "${BASE[@]}" --method closed-book gold-only
"$RAM" eval "${BASE[@]}" --method bm25 embedding --ratio 8 4
"$RAM" eval "${BASE[@]}" --method full
"$RAM" eval "${BASE[@]}" --method bm25 --ratio 16 32 2
"$RAM" eval "${BASE[@]}" --method random --ratio 4 8
"$RAM" eval "${BASE[@]}" --method ram-untrained --ratio 4 8
"$RAM" eval "${BASE[@]}" --method embedding random ram-untrained --ratio 16 32
"$RAM" eval "${BASE[@]}" --method embedding random --ratio 2

# 3. HotpotQA distractor, first 100 dev questions
"$RAM" eval "${HOTPOT[@]}" --method ram bm25 --ratio 4 8 2 16 32
"$RAM" eval "${HOTPOT[@]}" --method closed-book gold-only full
HOTPOT_CAP=("${HOTPOT[@]}")
HOTPOT_CAP[-1]="$OUT/eval-hotpot-cap"
"$RAM" eval "${HOTPOT_CAP[@]}" --method ram-skim-cap --ratio 16 32
HOTPOT_BASE=("${HOTPOT[@]}")
HOTPOT_BASE[-1]="$OUT/eval-hotpot-base"
"$RAM" eval "${HOTPOT_BASE[@]}" --method ram-all-skim
"$RAM" eval "${HOTPOT_BASE[@]}" --method random embedding ram-untrained ram-close-only --ratio 4 8 16 32
"$RAM" eval "${HOTPOT_BASE[@]}" --method random embedding ram-untrained ram-close-only --ratio 2
HOTPOT_FAST=("${HOTPOT[@]}")
HOTPOT_FAST[-1]="$OUT/eval-hotpot-fast"
"$RAM" eval "${HOTPOT_FAST[@]}" --model default-fast --method ram --ratio 4 8 16 32 2

# 4. L-Eval natural_question: 35k-45k-token documents, beyond SmolLM2's 8k window
"$RAM" eval "${LEVAL[@]}" --method ram --ratio 8 16 32
"$RAM" eval "${LEVAL[@]}" --method full --limit 4     # 8k-token prefills: slow on CPU
# the same questions with default-fast (RAM rows only; its own folder)
"$RAM" eval --data ../shared/data/leval/natural_question.jsonl --format leval --limit 20 --max-new-tokens 24 \
  --batch-size 4 --no-progress --model default-fast --method ram --ratio 32 16 8 --out "$OUT/eval-leval-fast"

# 5. CPU latency of the default model: full prompt vs RAM, stage by stage (run on an idle machine)
#    (both engines; the fast step compiles during the warm-up)
"$RAM" bench --shape default --lengths 1024 2048 4096 8000 --ratios 8 32 --engine hf fast --new-tokens 16 \
  --repeats 2 --warmup 1 --cached --out "$OUT/bench-cpu"
# what a shallower encoder would buy at 4k (latency only: the shipped encoder cut to 4 layers is
# untrained at that depth), against 8 layers in the same session
for E in 4 8; do
  "$RAM" bench --shape default --lengths 4096 --ratios 8 32 --engine hf --new-tokens 16 --repeats 2 \
    --warmup 1 --encoder-layers "$E" --out "$OUT/bench-cpu-enc$E"
done
"$RAM" bench --shape default --lengths 4096 --ratios 8 32 --engine hf fast --new-tokens 16 --repeats 3 \
  --warmup 1 --encoder-layers 4 --out "$OUT/bench-cpu-enc4b"
# the trained 4-layer adapter `default-fast` against `default`, back to back (docs/results.md ran 3 rounds)
B=(--lengths 4096 --ratios 8 32 --new-tokens 16 --repeats 3 --warmup 1 --threads 2 --no-plot)
"$RAM" bench --model default-fast "${B[@]}" --engine hf fast --out "$OUT/bench-s7-fast"
"$RAM" bench --shape default "${B[@]}" --engine hf fast --out "$OUT/bench-s7-default"
# round d (after width-bucketed encoding), the same two commands; and the encoder A/B behind it
"$RAM" bench --model default-fast "${B[@]}" --engine hf fast --out "$OUT/bench-s8-fast"
"$RAM" bench --shape default "${B[@]}" --engine hf fast --out "$OUT/bench-s8-default"
for M in default default-fast; do PYTHONPATH=src .venv/bin/python benchmarks/ab_encode_buckets.py "$M"; done
# bfloat16 against float32 on this CPU (AVX512-BF16), two rounds in opposite orders; and the answers in bf16
B2=(--lengths 4096 --ratios 8 32 --new-tokens 16 --repeats 3 --warmup 1 --threads 2 --no-plot --engine hf fast)
"$RAM" bench --shape default "${B2[@]}" --dtype bfloat16 --out "$OUT/bench-s9-bf16"
"$RAM" bench --shape default "${B2[@]}" --out "$OUT/bench-s9-fp32"
"$RAM" bench --shape default "${B2[@]}" --out "$OUT/bench-s9-fp32b"
"$RAM" bench --shape default "${B2[@]}" --dtype bfloat16 --out "$OUT/bench-s9-bf16b"
"$RAM" eval "${NQ[@]}" --model default --dtype bfloat16 --method ram --ratio 8 4 --out "$OUT/eval-nq300-bf16"
# the decode steps side by side on CPU, all eager (fast-prefix and fast-split are GPU candidates)
"$RAM" bench --shape default --lengths 4096 --ratios 8 --engine fast fast-prefix fast-split --no-compile \
  --new-tokens 16 --repeats 2 --warmup 1 --threads 2 --no-plot --out "$OUT/bench-s8-steps"
# the split-KV decode step against the plain fast step on CPU (both eager)
"$RAM" bench --shape default --lengths 4096 --ratios 8 --engine fast fast-split --no-compile --new-tokens 16 \
  --repeats 2 --warmup 1 --threads 2 --no-plot --out "$OUT/bench-s7-split"

# 6. Length study: 10 and 40 documents, and the gold document at a fixed position (first, middle,
#    last) among 20, on the first 100 dev questions. RAM runs first in each folder, so the text
#    baselines read its context lengths from ram_lengths.json instead of recomputing them.
LEN=(--data ../shared/data/nq-open/nq-open-oracle.dev.jsonl.gz --split dev --limit 100 --max-new-tokens 16
     --batch-size 8 --no-progress --model default)
for K in 10 40; do
  "$RAM" eval "${LEN[@]}" --docs "$K" --method ram bm25 --ratio 4 8 --out "$OUT/eval-nq$K-dev"
  "$RAM" eval "${LEN[@]}" --docs "$K" --method full --out "$OUT/eval-nq$K-dev"
done
# the other ratios
"$RAM" eval "${LEN[@]}" --docs 10 --method ram bm25 --ratio 16 32 2 --out "$OUT/eval-nq10-dev"
"$RAM" eval "${LEN[@]}" --docs 40 --method ram bm25 --ratio 16 32 2 --out "$OUT/eval-nq40-dev"
for P in 9 0 19 4 14 2 7 12 17; do
  "$RAM" eval "${LEN[@]}" --docs 20 --gold-position "$P" --method ram bm25 --ratio 8 --out "$OUT/eval-nq20-pos$P"
  "$RAM" eval "${LEN[@]}" --docs 20 --gold-position "$P" --method full --out "$OUT/eval-nq20-pos$P"
done
# default-fast in the length study (RAM rows only)
FASTLEN=("${LEN[@]}" --model default-fast)
for P in 0 9 19; do
  "$RAM" eval "${FASTLEN[@]}" --docs 20 --gold-position "$P" --method ram --ratio 8 --out "$OUT/eval-fast-pos$P"
done
for K in 10 40; do
  "$RAM" eval "${FASTLEN[@]}" --docs "$K" --method ram --ratio 8 4 --out "$OUT/eval-fast-nq$K"
done
# the two length-study tables and plots of docs/results.md
PY=${PY:-.venv/bin/python}
PYTHONPATH=src "$PY" benchmarks/length_study.py --setting "10=$OUT/eval-nq10-dev" \
  --setting "20=$OUT/eval-nq300,$OUT/eval-nq20-dev" --setting "40=$OUT/eval-nq40-dev" \
  --keep ram:4 ram:8 bm25:4 bm25:8 full --xlabel "documents" --plot docs/nq-length-study-docs.png
PYTHONPATH=src "$PY" benchmarks/length_study.py --setting "10=$OUT/eval-nq10-dev" \
  --setting "20=$OUT/eval-nq300,$OUT/eval-nq20-dev" --setting "40=$OUT/eval-nq40-dev" \
  --keep ram:2 ram:4 ram:8 ram:16 ram:32 bm25:2 bm25:4 bm25:8 bm25:16 bm25:32 full --xlabel "documents"
PYTHONPATH=src "$PY" benchmarks/length_study.py --setting "10=$OUT/eval-nq10-dev" \
  --setting "20=$OUT/eval-nq300,$OUT/eval-nq20-dev" --setting "40=$OUT/eval-nq40-dev" \
  --keep ram:2 ram:4 ram:8 ram:16 ram:32 full --xlabel "documents" --plot docs/nq-length-study-ratios.png
PYTHONPATH=src "$PY" benchmarks/length_study.py --setting "0=$OUT/eval-nq20-pos0" --setting "2=$OUT/eval-nq20-pos2" \
  --setting "4=$OUT/eval-nq20-pos4" --setting "7=$OUT/eval-nq20-pos7" --setting "9=$OUT/eval-nq20-pos9" \
  --setting "12=$OUT/eval-nq20-pos12" --setting "14=$OUT/eval-nq20-pos14" --setting "17=$OUT/eval-nq20-pos17" \
  --setting "19=$OUT/eval-nq20-pos19" --setting "random=$OUT/eval-nq300,$OUT/eval-nq20-dev" \
  --keep ram:8 bm25:8 full --xlabel "gold position" --plot docs/nq-length-study-position.png
