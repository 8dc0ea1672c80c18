#!/usr/bin/env bash
# nftkit GPU readiness run: one command, <= 8 minutes on one H200, figures into OUTDIR.
#
#   benchmarks/gpu/run.sh [--dry-run] OUTDIR [PART ...]
#
# PARTs (default: all, in this order): env sd3-train sd3-sample families pytest-cuda
# reward-pickscore reward-clipscore reward-hpsv2 reward-aesthetic reward-imagereward
# reward-geneval reward-ocr ("rewards" = every reward in one process; "families" = SD3.5-Large,
# FLUX.1-dev, Qwen-Image and SANA-1.6B in one process, "family-NAME" one of them, e.g.
# family-qwen-image). Each part is its own process under `timeout`;
# its figures are appended to OUTDIR/results.jsonl as they are measured, and after every part
# OUTDIR/results.json and OUTDIR/results.md are rebuilt, so a part that fails or runs out of
# time leaves the others' figures. All output also goes to OUTDIR/run.log.
# --dry-run (or NFTKIT_GPU_DRY_RUN=1): the same code on the CPU with tiny configs, no install.
# On the device: installs the wheels carried in <repo>/.whl (benchmarks/gpu/fetch-wheels.sh).
# NFTKIT_GPU_TOTAL_S overrides the overall time box (default 470 s; dry run 240 s).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dry="${NFTKIT_GPU_DRY_RUN:-0}"
if [ "${1:-}" = "--dry-run" ]; then dry=1; shift; fi
out="${1:?usage: benchmarks/gpu/run.sh [--dry-run] OUTDIR [PART ...]}"
shift
mkdir -p "$out"
out="$(cd "$out" && pwd)"
log="$out/run.log"
py="${PYTHON:-python3}"
t0=$(date +%s)

if [ "$dry" = 1 ]; then
  total="${NFTKIT_GPU_TOTAL_S:-240}"
  default_parts="env sd3-train sd3-sample families pytest-cuda rewards"
  flag=--dry-run
  export NFTKIT_GPU_DRY_RUN=1 OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
  pytest_paths="tests"
else
  total="${NFTKIT_GPU_TOTAL_S:-470}"
  default_parts="env sd3-train sd3-sample families pytest-cuda reward-pickscore reward-clipscore \
reward-hpsv2 reward-aesthetic reward-imagereward reward-geneval reward-ocr"
  flag=
  pytest_paths="tests"
  if [ -d "$root/.whl" ]; then
    echo "installing $(ls "$root"/.whl/*.whl | wc -l) carried wheels into /tmp/site" | tee -a "$log"
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site "$root"/.whl/*.whl >>"$log" 2>&1 || { echo "wheel install failed (see $log)"; exit 1; }
  else
    echo "no $root/.whl: run benchmarks/gpu/fetch-wheels.sh first (and carry .whl)" | tee -a "$log"
    mkdir -p /tmp/site
  fi
  "$py" "$here/install_meta.py" /tmp/site >>"$log" 2>&1
  export PYTHONPATH="/tmp/site:$root${PYTHONPATH:+:$PYTHONPATH}"
  export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
fi
export PYTHONUNBUFFERED=1
parts="${*:-$default_parts}"

# budget of each part in seconds (its process gets this as a timeout and a time box); the
# default GPU parts add up to 447 s of the 470 s box. "families" splits its 140 s by the
# families' budget_s in configs.json (32 + 36 + 48 + 24).
budget() {
  if [ "$dry" = 1 ]; then
    case "$1" in rewards) echo 150 ;; *) echo 90 ;; esac; return
  fi
  case "$1" in
    env) echo 15 ;; sd3-train) echo 65 ;; sd3-sample) echo 40 ;; families) echo 140 ;;
    family-*) echo 65 ;; pytest-cuda) echo 35 ;;
    reward-pickscore|reward-hpsv2|reward-geneval) echo 25 ;;
    reward-imagereward) echo 22 ;; reward-clipscore|reward-ocr) echo 20 ;;
    reward-aesthetic) echo 15 ;; rewards) echo 160 ;; *) echo 30 ;;
  esac
}

command_of() {
  case "$1" in
    env) echo "$here/env_part.py" ;;
    sd3-train) echo "$here/sd3_parts.py train" ;;
    sd3-sample) echo "$here/sd3_parts.py sample" ;;
    families) echo "$here/family_parts.py" ;;
    family-*) echo "$here/family_parts.py ${1#family-}" ;;
    pytest-cuda) echo "$here/pytest_part.py $pytest_paths" ;;
    rewards) echo "$here/reward_parts.py pickscore clipscore hpsv2 aesthetic imagereward geneval ocr" ;;
    reward-*) echo "$here/reward_parts.py ${1#reward-}" ;;
    *) return 1 ;;
  esac
}

status_line() {  # part status seconds
  "$py" -c 'import json,sys; print(json.dumps({"part": sys.argv[1], "key": "_status", "data": {"status": sys.argv[2], "seconds": float(sys.argv[3])}}))' \
    "$1" "$2" "$3" >>"$out/results.jsonl"
}

cd "$root"
"$py" -c 'import json,sys; print(json.dumps({"part": "run", "key": "settings", "data": {"dry_run": sys.argv[1] == "1", "parts": sys.argv[2].split(), "time_box_s": int(sys.argv[3])}}))' \
  "$dry" "$parts" "$total" >>"$out/results.jsonl"
echo "nftkit GPU run: dry_run=$dry parts: $parts (time box ${total} s)" | tee -a "$log"
for part in $parts; do
  if ! cmd="$(command_of "$part")"; then echo "unknown part $part" | tee -a "$log"; continue; fi
  left=$(( total - ($(date +%s) - t0) ))
  want=$(budget "$part")
  limit=$(( want < left ? want : left ))
  if [ "$limit" -lt 10 ]; then
    status_line "$part" "skipped: out of time" 0; echo "== $part skipped: out of time" | tee -a "$log"; continue
  fi
  echo "== $part (time box ${limit} s)" | tee -a "$log"
  start=$(date +%s)
  # shellcheck disable=SC2086
  timeout --signal=TERM --kill-after=5 "$limit" "$py" $cmd --out "$out" --budget $(( limit - 3 )) $flag \
    >>"$log" 2>&1
  rc=$?
  took=$(( $(date +%s) - start ))
  case $rc in 0) st=ok ;; 124|137) st="timeout after ${limit} s" ;; *) st="failed (exit $rc)" ;; esac
  [ "$part" = rewards ] && [ $rc -ne 0 ] && [ $rc -ne 124 ] && st="some rewards failed (exit $rc)"
  [ "$part" = families ] && [ $rc -ne 0 ] && [ $rc -ne 124 ] && st="some families failed (exit $rc)"
  status_line "$part" "$st" "$took"
  echo "   $part: $st in ${took} s" | tee -a "$log"
  "$py" "$here/report.py" "$out" >>"$log" 2>&1
done
"$py" "$here/report.py" "$out" >>"$log" 2>&1
echo "total $(( $(date +%s) - t0 )) s; figures in $out/results.json and $out/results.md" | tee -a "$log"
cat "$out/results.md"
