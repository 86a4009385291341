#!/usr/bin/env bash
# Curl smoke test: starts the agent with MOCK_GPU=1 supervising the demo workload, checks every route
# the way an E2E test would, then sends SIGTERM and checks the exit code. Exits non-zero on any failure.
#
#   scripts/smoke.sh            (builds first if dist/ is missing)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f dist/src/cli.js ] || npm run build >/dev/null

port=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
base="http://127.0.0.1:$port"
log=$(mktemp)
body=$(mktemp)
artifacts=$(mktemp -d)
MOCK_GPU=1 MOCK_GPU_COUNT=2 PORT="$port" HOST=127.0.0.1 DEMO_SPEED=5 \
  ARTIFACTS_DIR="$artifacts" node dist/src/cli.js -- node scripts/demo-workload.mjs >"$log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null && sleep 2; kill -9 $pid 2>/dev/null || true; rm -rf "$log" "$body" "$artifacts"' EXIT

for _ in $(seq 1 100); do curl -fs "$base/health" >/dev/null 2>&1 && break; sleep 0.1; done

failures=0
# check METHOD PATH STATUS [node-expression on the parsed body `b`]
check() {
  local code
  code=$(curl -s -o "$body" -w '%{http_code}' -X "$1" "$base$2")
  if [ "$code" != "$3" ]; then
    echo "FAIL $1 $2: status $code, expected $3: $(head -c 300 "$body")"
    failures=$((failures + 1))
    return
  fi
  if [ -n "${4:-}" ] && ! node -e "const b=JSON.parse(require('fs').readFileSync('$body','utf8')); if(!($4)) process.exit(1)"; then
    echo "FAIL $1 $2: body does not satisfy $4: $(head -c 300 "$body")"
    failures=$((failures + 1))
    return
  fi
  echo "ok   $1 $2 -> $code"
}

# Wait until the demo job is running.
for _ in $(seq 1 100); do
  curl -fs "$base/debug/status" | grep -q '"status":"processing"' && break
  sleep 0.1
done

check GET /health 200 "b.status==='ok'"
check GET /ready 200 "b.status==='ok' && b.checks.gpu.status==='ok'"
check GET /debug/status 200 "b.status==='processing' && b.gpus.length===2 && b.current_job.job_id.startsWith('demo-')"
check GET /debug/gpu 200 "b.backend==='mock' && b.devices.length===2"
check GET /debug/workflow 200 "b.nodes_total===7 && b.nodes.length===7"
check GET '/debug/logs?lines=5&level=info' 200 "b.records.length<=5 && b.records.every(r=>r.level!=='debug')"
check GET /debug/queue 200 "b.enabled===false"
check GET /debug/memory 200 "b.process.rss_bytes>0 && b.gpus.length===2"
check GET /debug/artifacts 200 "Array.isArray(b.artifacts)"
check GET /debug/config 200 "b.gpu_backend==='mock'"
check GET '/debug/logs?lines=abc' 400 "b.error.code==='INVALID_QUERY'"
check GET '/debug/logs?level=loud' 400 "b.error.code==='INVALID_QUERY'"
check GET /debug/workflow?job_id=nope 404 "b.error.code==='JOB_NOT_FOUND'"
check GET /no-such-route 404 "b.error.code==='NOT_FOUND'"
check DELETE /debug/status 405 "b.error.code==='METHOD_NOT_ALLOWED'"

code=$(curl -s -o "$body" -w '%{http_code}' "$base/metrics")
if [ "$code" = 200 ] && grep -q '^gpu_utilization_ratio{' "$body" && grep -q '^agent_gpu_backend_up{backend="mock"} 1' "$body"; then
  echo "ok   GET /metrics -> 200"
else
  echo "FAIL GET /metrics: $code"; failures=$((failures + 1))
fi
if command -v promtool >/dev/null 2>&1; then
  if promtool check metrics <"$body"; then echo "ok   promtool check metrics"; else failures=$((failures + 1)); fi
fi

kill -TERM "$pid"
check GET /ready 503 "b.status==='draining'"
set +e
wait "$pid"
exit_code=$?
set -e
if [ "$exit_code" = 0 ]; then echo "ok   SIGTERM -> exit 0"; else echo "FAIL SIGTERM: exit $exit_code"; failures=$((failures + 1)); fi

if [ "$failures" -gt 0 ]; then
  echo "$failures check(s) failed; agent log:"
  tail -n 30 "$log"
  exit 1
fi
echo "smoke: all checks passed"
