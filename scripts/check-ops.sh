#!/usr/bin/env bash
# The ops pack, checked by the real tools: promtool (rules and their unit tests), amtool
# (Alertmanager config and every route), kubectl kustomize (every overlay renders),
# kubernetes-validate (strict, Kubernetes 1.30), the image's build context, and yamllint.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "-- PrometheusRule: rule keys, promtool check rules, promtool test rules"
yq -y '.spec' alerts/prometheusrule.yaml >"$work/rules.yaml"
# The CRD accepts unknown keys and the operator drops them: a misplaced `severity:` would
# vanish silently.
bad=$(yq -r '.spec.groups[].rules[] | keys[] | select(. as $k | ["record","alert","expr","for","keep_firing_for","labels","annotations"] | index($k) | not)' alerts/prometheusrule.yaml)
if [ -n "$bad" ]; then
  echo "unknown rule keys: $bad" >&2
  exit 1
fi
missing=$(yq -r '.spec.groups[].rules[] | select(.alert) | select((.labels.severity and .labels.category and .annotations.summary and .annotations.description and .annotations.runbook_url and .for) | not) | .alert' alerts/prometheusrule.yaml)
if [ -n "$missing" ]; then
  echo "alerts without severity, category, summary, description, runbook_url or for: $missing" >&2
  exit 1
fi
for url in $(yq -r '.spec.groups[].rules[] | select(.alert) | .annotations.runbook_url' alerts/prometheusrule.yaml); do
  test -f "alerts/runbooks/${url##*/}" || { echo "no runbook alerts/runbooks/${url##*/}" >&2; exit 1; }
done
promtool check rules "$work/rules.yaml"
cp alerts/tests/*.test.yaml "$work/"
(cd "$work" && promtool test rules ./*.test.yaml)

echo "-- Alertmanager: amtool check-config, amtool config routes test"
amtool check-config alerts/alertmanager.yml
route() {
  local want=$1
  shift
  if ! amtool config routes test --config.file=alerts/alertmanager.yml --verify.receivers="$want" "$@" >/dev/null 2>&1; then
    echo "route $* should reach $want, reaches: $(amtool config routes test --config.file=alerts/alertmanager.yml "$@" 2>/dev/null)" >&2
    exit 1
  fi
  echo "   $* -> $want"
}
route security-pager,security category=security severity=critical alertname=MeshtrailEgressBlockedBurst gateway=sidecar
route security category=security severity=warning alertname=MeshtrailEgressBlocked gateway=sidecar
route security category=security severity=info alertname=MeshtrailPassthroughEgress
route platform-pager,platform category=pipeline severity=critical alertname=MeshtrailDown
route platform category=pipeline severity=warning alertname=MeshtrailDeadLetters
route platform alertname=SomethingElse

echo "-- dashboards: the JSON is what dashboards/generate.py writes"
mkdir -p "$work/dashboards"
python3 dashboards/generate.py "$work/dashboards"
for f in dashboards/*.json; do
  cmp -s "$f" "$work/dashboards/$(basename "$f")" || { echo "$f differs from dashboards/generate.py's output: run it" >&2; exit 1; }
done

echo "-- kustomize: every overlay renders"
for dir in deploy/base deploy/overlays/* dashboards; do
  kubectl kustomize "$dir" >"$work/$(basename "$dir").yaml"
  echo "   $dir: $(grep -c '^kind:' "$work/$(basename "$dir").yaml") objects"
done

echo "-- kubernetes-validate --strict, Kubernetes 1.30"
venv=target/ops-venv
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q kubernetes-validate
fi
# Custom resources (ServiceMonitor, PrometheusRule) have no bundled schema: the CRD checks
# above and promtool cover the PrometheusRule.
for f in "$work"/base.yaml "$work"/elasticsearch-tls.yaml "$work"/opensearch.yaml; do
  "$venv/bin/kubernetes-validate" -k 1.30.0 --strict --quiet --no-warn "$f"
done

echo "-- Dockerfile: its build stage's COPY set builds the agent; the binary needs only what distroless/cc has"
# No Docker engine here: the build context is assembled from the build stage's COPY lines
# and compiled, so a file the build reads but the image leaves out fails here.
ctx=$work/image-context
mkdir -p "$ctx"
for src in $(awk '/^FROM/ {n++} n == 1 && /^COPY/ && !/--from/ {for (i = 2; i < NF; i++) print $i}' Dockerfile); do
  cp -r "$src" "$ctx/"
done
(cd "$ctx" && CARGO_TARGET_DIR="$OLDPWD/target/image-check" cargo check --locked --offline -q -p meshtrail)
if [ -x target/release/meshtrail ]; then
  extra=$(ldd target/release/meshtrail | awk '{print $1}' | grep -vxE 'linux-vdso\.so\.1|libgcc_s\.so\.1|libc\.so\.6|libm\.so\.6|/lib64/ld-linux-x86-64\.so\.2' || true)
  [ -z "$extra" ] || { echo "the binary needs libraries distroless/cc lacks: $extra" >&2; exit 1; }
fi

echo "-- yamllint"
yamllint -c .yamllint alerts deploy dashboards
echo "-- ops pack ok"
