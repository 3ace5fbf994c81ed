#!/usr/bin/env bash
# Train the two shipped ResNets on the GPU machine of the device tool, in one call.
#
# Run there from the repository root, with .pack/ (python -m training.pack) and .whl/ (Keras
# and the two packages it needs that the machine lacks) carried along; see README, "Training
# on a GPU". Both models train at once on the one GPU (their compiles overlap) until
# TRAIN_UNTIL seconds after this script starts; what still runs HARD_STOP seconds after the
# start is stopped. Then each run's int8 weights go to $OUT in pieces under 16 MiB, with a
# tarball of the logs, histories and run.json files. Elsewhere (a test, a CPU) set OUT, and
# PACK, RUNS, ARCHS, TRAIN_ARGS, WHEELS and PYTHON as needed; with no wheels folder nothing is
# installed.
set -uo pipefail
start=$(date +%s)
py=${PYTHON:-python3}
wheels=${WHEELS:-.whl}
if [ -d "$wheels" ]; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$wheels"/*.whl || exit 1
  export PYTHONPATH="/tmp/site:$PWD"
fi
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_MEM_FRACTION=0.45 TF_CPP_MIN_LOG_LEVEL=2
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$py" -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)" || exit 1
runs=${RUNS:-runs}
until=$((start + ${TRAIN_UNTIL:-480}))
hard=$((start + ${HARD_STOP:-570}))
mkdir -p "$runs"
for arch in ${ARCHS:-resnet50 resnet101}; do
  timeout $((hard - $(date +%s))) "$py" -m training.train_jax --pack "${PACK:-.pack/cvd.npz}" --arch "$arch" \
    --out "$runs/jax-$arch" --minutes 60 --until "$until" ${TRAIN_ARGS:-} >"$runs/$arch.log" 2>&1 &
done
wait
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
