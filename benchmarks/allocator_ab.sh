#!/usr/bin/env bash
# Peak memory and training time of a 24-step RTE fine-tune with glibc's default allocator settings and with the
# settings that return freed memory, alternated twice; one line per run in benchmarks/results/allocator_ab.txt.
#   bash benchmarks/allocator_ab.sh        (needs GLUE_DIR; about 10 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
results=benchmarks/results/allocator_ab.txt
work=$(mktemp -d)
echo "# bash benchmarks/allocator_ab.sh ($(date -u +%F))" > "$results.tmp"
for round in 1 2; do
  for variant in plain tuned; do
    settings=""
    [ "$variant" = tuned ] && settings="MALLOC_ARENA_MAX=2 MALLOC_TRIM_THRESHOLD_=0 MALLOC_MMAP_THRESHOLD_=65536"
    env $settings /usr/bin/time -v nas-tune finetune --dataset rte --max-steps 24 --save-steps 12 \
      --max-validation-samples 64 --output "$work/$variant-$round" > "$work/$variant-$round.log" 2>&1
    seconds=$(python -c "import json,sys; print(round(json.load(open(sys.argv[1]))['train_seconds'], 1))" "$work/$variant-$round/supernet.json")
    peak=$(grep 'Maximum resident' "$work/$variant-$round.log" | awk '{print $NF}')
    echo "round $round $variant train_seconds=$seconds peak_rss_kb=$peak load=$(cut -d' ' -f1 /proc/loadavg)" >> "$results.tmp"
  done
done
mv "$results.tmp" "$results"
rm -rf "$work"
