#!/usr/bin/env bash
# One tiny real verl GRPO step on the H200 with compat (issue 12, item 7). Run from the repository root.
#
# The wheels (docs/validation/2026-12-01-h200-verl/wheels.txt, fetched by fetch_wheels.sh into the ignored
# .stretch-wheels/) are ~97 MiB: over the device's 64 MiB per call, because the ray wheel verl needs (verl/protocol.py
# imports ray; ray 2.41.0 is verl's floor and the smallest, 67.4 MB) is alone over it. So the ray wheel is split in
# two byte ranges and the device gets them in TWO CONSECUTIVE CALLS while it stays warm (ignored paths are kept
# between calls only while the machine is held):
#   call 1: carry [".stretch-wheels/a"]  command: bash docs/validation/2026-12-01-h200-verl/run.sh stage
#   call 2: carry [".stretch-wheels/b"]  command: bash docs/validation/2026-12-01-h200-verl/run.sh
# Call 2 joins the parts, checks every wheel's sha256 (SHA256SUMS made at download), installs the exact set with
# `pip install --no-index --no-deps --target` (the device's torch 2.11 stays; transformers 4.57.3 is carried because
# verl 0.5.0 imports AutoModelForVision2Seq, gone in transformers 5.x), makes a random tiny Qwen2, then runs
# grpo_step.py three times: compat, compat with COMPAT_DISABLE_PATCHES=transformers_attn, and no compat.
# Outputs: $OUT/*.json, $OUT/*.log, $OUT/summary.txt.
#
# Dry run off the device: PY=/path/to/python3.12 OUT=/tmp/x COMPAT_HARDWARE=tests/fixtures/hardware/h100-sxm.toml \
#   bash docs/validation/2026-12-01-h200-verl/run.sh --cpu
set -uo pipefail
here=docs/validation/2026-12-01-h200-verl
PY=${PY:-python3}
OUT=${OUT:-/tmp/verl-step-out}
W=.stretch-wheels
SITE=${SITE:-/tmp/stretch-verl-site}
mode=${1:-run}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/run.log") 2>&1
echo "== $(date -u +%FT%TZ) run.sh $mode on $(hostname)"

if [ ! -f "$W/a/SHA256SUMS" ]; then
  echo "run.sh: $W/a is missing: make the stage call first (carry [\"$W/a\"], command 'bash $here/run.sh stage')," \
       "then this one within the machine's idle window"; exit 3
fi
(cd "$W/a" && grep -v ' ./ray-' SHA256SUMS | sha256sum -c --quiet) || { echo "run.sh: a wheel in $W/a is damaged"; exit 3; }
if [ "$mode" = stage ]; then
  echo "staged: $(ls "$W/a" | wc -l) files, $(du -sh "$W/a" | cut -f1); now the run call with carry [\"$W/b\"]"
  exit 0
fi
[ -f "$W/b/ray.whl.part-b" ] || { echo "run.sh: $W/b/ray.whl.part-b is missing: carry [\"$W/b\"]"; exit 3; }
cpu=""; [ "$mode" = --cpu ] && cpu=--cpu

t0=$(date +%s)
tmpw=$(mktemp -d); ray=$(cat "$W/a/RAY_WHEEL")
cat "$W/a/ray.whl.part-a" "$W/b/ray.whl.part-b" > "$tmpw/$ray"
want=$(grep " ./$ray\$" "$W/a/SHA256SUMS" | cut -d' ' -f1); got=$(sha256sum "$tmpw/$ray" | cut -d' ' -f1)
[ "$want" = "$got" ] || { echo "run.sh: joined $ray has sha256 $got, want $want"; exit 3; }
echo "ray wheel joined, sha256 ok"
rm -rf "$SITE"
"$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$W"/a/*.whl "$tmpw/$ray" || exit 4
rm -rf "$tmpw"
echo "installed into $SITE in $(( $(date +%s) - t0 )) s"

export PYTHONPATH="$SITE:$PWD" TOKENIZERS_PARALLELISM=false RAY_DEDUP_LOGS=0 HYDRA_FULL_ERROR=1
"$PY" - <<'PYEOF'
import importlib.metadata as m, sys
print("python", sys.version.split()[0], {p: m.version(p) for p in ("verl", "ray", "torch", "transformers", "tensordict")})
PYEOF
"$PY" "$here/make_model.py" "$OUT/tiny-qwen2" || exit 5
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | tee "$OUT/gpu.txt"

# variant:strategy. FSDP1 ("fsdp", verl 0.5.0's default) needs a GPU (verl wraps with sync_module_states=True);
# FSDP2 ("fsdp2") runs on the CPU too, so the dry run uses it and the device runs both.
# Per-run limits keep the whole call under the device's 600 s even if one run hangs (150+100+100+150 + install).
if [ -n "$cpu" ]; then runs="compat:fsdp2 compat-no-attn-set:fsdp2 no-compat:fsdp2"
else runs="compat:fsdp no-compat:fsdp compat-no-attn-set:fsdp compat:fsdp2"; fi
rc=0
for run in $runs; do
  variant=${run%%:*}; strategy=${run##*:}; name=$variant-$strategy
  echo "== $name"
  if [ "$variant" = compat-no-attn-set ]; then dis=transformers_attn; else dis=""; fi
  if [ "$variant" = compat ]; then limit=150; else limit=100; fi
  COMPAT_DISABLE_PATCHES=$dis timeout $limit "$PY" "$here/grpo_step.py" $cpu --model "$OUT/tiny-qwen2" \
    --variant "$variant" --strategy "$strategy" --out "$OUT/$name.json" > "$OUT/$name.log" 2>&1
  r=$?; grep '^\[grpo_step' "$OUT/$name.log" | tail -n 4; [ $r = 0 ] || { echo "$name exited $r"; rc=1; }
done
rm -rf "$OUT/tiny-qwen2"/*.safetensors

"$PY" - "$OUT" <<'PYEOF' | tee "$OUT/summary.txt"
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
for p in sorted(out.glob("*-fsdp*.json")):
    v = p.stem
    r = json.loads(p.read_text())
    if r.get("ok"):
        m = r["metrics"]
        print(f"{v}: OK device={r['device']} attn={r['model']['attn_implementation']} "
              f"stored={r['model']['param_dtype_stored']} fsdp_param_dtype={r['model']['fsdp_param_dtype']} "
              f"sdpa_query_dtypes={r['sdpa_query_dtypes']} "
              f"sdpa_calls(gen/update)={r['sdpa_calls_generate']}/{r['sdpa_calls_update']} "
              f"pg_loss={m.get('actor/pg_loss'):.4g} grad_norm={m.get('actor/grad_norm'):.4g} lr={m.get('actor/lr')} "
              f"reward_mean={r['reward']['mean']:.3f} logprob_change={r['logprob_change_abs_mean']:.3e} "
              f"timing={r['timing_s']} wall={r['wall_s']}s")
    else:
        print(f"{v}: FAILED at init_model, flash_attn_error={r.get('flash_attn_error')}: {r.get('error', '')[:300]}")
PYEOF
echo "== done in $(( $(date +%s) - t0 )) s, rc=$rc"
exit $rc
