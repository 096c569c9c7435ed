#!/usr/bin/env bash
# Every check CI runs, in one command: formatting, lints, the release build, the public
# corpus through the release binary, then every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
# Real tools the tests run, from Debian: promtool and the Prometheus server (metrics test,
# alert unit tests), amtool (routing), kubectl (kustomize), yq, jq, yamllint.
need=()
for tool in promtool:prometheus prometheus:prometheus amtool:prometheus-alertmanager \
  kubectl:kubectl yq:yq jq:jq yamllint:yamllint; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing from Debian: ${need[*]}"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(printf '%s\n' "${need[@]}" | sort -u) >/dev/null
  else
    echo "missing tools: run 'sudo apt-get install -y ${need[*]}'" >&2
    exit 1
  fi
fi
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo build --release"
cargo build --release --locked -p meshtrail
corpus=../shared/corpus
if [ -f "$corpus/check_parse.py" ]; then
  echo "== public corpus through target/release/meshtrail"
  python3 "$corpus/check_parse.py" target/release/meshtrail "$corpus/lines.jsonl"
else
  echo "== public corpus: ../shared/corpus is not beside this checkout; parsers/tests/corpus.rs still runs its copy"
fi
echo "== alerts, routing and manifests with the real tools"
bash scripts/check-ops.sh
# The end-to-end tests run the binary built above, rather than building it again under
# cargo test's environment (which would rebuild it from scratch).
export MESHTRAIL_BIN=$PWD/target/release/meshtrail
echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
passed=$(grep -Eo '[0-9]+ passed' "$log" | awk '{s += $1} END {print s + 0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s += $1} END {print s + 0}')
echo "== all checks passed in $(( $(date +%s) - start )) s"
echo "total: $passed passed, $failed failed"
