#!/usr/bin/env bash
# Train the two shipped ResNets on the GPU machine of the device tool, in one call.
#
# Run there from the repository root, with .pack/ (python -m training.pack) and .whl/ (Keras
# and the two packages it needs that the machine lacks) carried along; see README, "Training
# on a GPU". Each model trains alone on the GPU, one after the other (ARCHS order), the time
# left until TRAIN_UNTIL seconds after this script starts shared evenly among the models
# still to train; a model still running HARD_STOP seconds after the start is stopped.
# ResNet-101 is distilled from the ResNet-50 trained just before it (TEACHER, default
# $RUNS/jax-resnet50 where that run finished: the shipped .keras files are too big to
# travel with the pack). Each model's own flags: ARGS_resnet50, ARGS_resnet101 (EMA by
# default; TRAIN_ARGS go to every model). PARALLEL=1 trains them all at once instead (the
# way the shipped models were made). Then each run's int8 weights go to $OUT in pieces
# under 16 MiB, with a tarball of the logs, histories and run.json files. Elsewhere (a test,
# a CPU) set OUT, and PACK, RUNS, ARCHS, TRAIN_ARGS, WHEELS and PYTHON as needed; with no
# wheels folder nothing is installed.
set -uo pipefail
start=$(date +%s)
py=${PYTHON:-python3}
wheels=${WHEELS:-.whl}
if [ -d "$wheels" ]; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$wheels"/*.whl || exit 1
  export PYTHONPATH="/tmp/site:$PWD"
fi
archs=${ARCHS:-resnet50 resnet101}
parallel=${PARALLEL:-0}
n_archs=$(echo $archs | wc -w)
# One model alone may take most of the GPU's memory; several at once share it.
if [ "$parallel" = 1 ]; then fraction=$(awk "BEGIN { printf \"%.2f\", 0.9 / $n_archs }"); else fraction=0.85; fi
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_MEM_FRACTION=${MEM_FRACTION:-$fraction} TF_CPP_MIN_LOG_LEVEL=2
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$py" -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)" || exit 1
runs=${RUNS:-runs}
until=$((start + ${TRAIN_UNTIL:-480}))
hard=$((start + ${HARD_STOP:-570}))
peak=${PEAK_TFLOPS:-989}  # H100/H200 SXM dense bfloat16; printed as MFU in each log
mkdir -p "$runs"
train_one() {  # arch, Unix time its training must end by
  local arch=$1 by=$2 own_var="ARGS_$1" own teacher
  own=${!own_var-"--ema 0.999"}
  teacher=${TEACHER:-$runs/jax-resnet50}
  if [ "$arch" = resnet101 ] && [ -f "$teacher/weights.npz" ] && [ -f "$teacher/run.json" ]; then
    own="$own --teacher $teacher --distill ${DISTILL:-0.5}"
  fi
  echo "$arch: training until $(date -d @"$by" +%T) with ${TRAIN_ARGS:-} $own"
  timeout $((hard - $(date +%s))) "$py" -m training.train_jax --pack "${PACK:-.pack/cvd.npz}" --arch "$arch" \
    --out "$runs/jax-$arch" --minutes 60 --until "$by" --peak-tflops "$peak" ${TRAIN_ARGS:-} $own \
    >"$runs/$arch.log" 2>&1
  echo "$arch: exit $? at $(($(date +%s) - start))s; $(grep -E '^(throughput|declared)' "$runs/$arch.log" | tr '\n' ' ')"
}
if [ "$parallel" = 1 ]; then
  for arch in $archs; do train_one "$arch" "$until" & done
  wait
else
  left=$n_archs
  for arch in $archs; do
    now=$(date +%s)
    # The rest of the time shared evenly; a model's compile and final validation (about a
    # minute on the H200) come out of its share.
    train_one "$arch" $((now + (until - now) / left))
    left=$((left - 1))
  done
fi
# Pieces go to $OUT smallest run first while the call's 64 MiB allow; any left over wait in
# $runs/leftover/ for a second call on the still-warm machine (cp runs/leftover/* $OUT/).
(cd "$runs" && tar czf "$OUT/runs.tgz" ./*.log jax-*/history.csv jax-*/run.json 2>/dev/null)
rm -rf "$runs/pieces" "$runs/leftover" "$runs/pieces.txt"
mkdir -p "$runs/pieces" "$runs/leftover"
for run in $(ls -Sr "$runs"/jax-*/weights.npz 2>/dev/null | xargs -r -n1 dirname); do
  name=$(basename "$run")
  split -b 15m -d "$run/weights.npz" "$runs/pieces/${name#jax-}.weights.npz.part"
  ls "$runs/pieces/${name#jax-}".weights.npz.part* >>"$runs/pieces.txt"
done
room=$((64 * 1048576 - 65536 - $(stat -c %s "$OUT/runs.tgz")))
for piece in $(cat "$runs/pieces.txt" 2>/dev/null); do
  size=$(stat -c %s "$piece")
  if [ "$size" -le "$room" ]; then mv "$piece" "$OUT/"; room=$((room - size))
  else mv "$piece" "$runs/leftover/"; echo "LEFT OVER (fetch with a second call): $piece"; fi
done
ls -la "$OUT"
tail -n 25 "$runs"/*.log
echo "script: $(($(date +%s) - start))s"
