#!/usr/bin/env python3
"""Writes the Grafana dashboards of this folder from the panel lists below, so that every
panel has a unit, a description, the datasource variable and `$__rate_interval`, and every
security panel a link to the matching events in Kibana. `scripts/check-ops.sh` fails when the
JSON files differ from what this writes; edit here, then run it."""
import json
import os
import sys
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
SEL = 'cluster=~"$cluster", gateway=~"$gateway", namespace=~"$namespace"'
AGENT = 'cluster=~"$cluster", job="meshtrail"'


def kibana(kql):
    """A data link to Kibana Discover with a KQL query on the meshtrail data view."""
    q = urllib.parse.quote(kql, safe="")
    return [{
        "title": "Events in Kibana",
        "targetBlank": True,
        "url": "${kibana_url}/app/discover#/?_g=(time:(from:now-1h,to:now))"
               "&_a=(query:(language:kuery,query:'" + q + "'))",
    }]


def panel(title, description, exprs, unit, kind="timeseries", legend=None, kql=None, w=12, h=8):
    if isinstance(exprs, str):
        exprs = [exprs]
    targets = []
    for i, e in enumerate(exprs):
        t = {"refId": chr(65 + i), "expr": e, "datasource": {"type": "prometheus", "uid": "${datasource}"}}
        if kind == "table":
            t["instant"] = True
            t["format"] = "table"
        else:
            t["range"] = True
        if legend:
            t["legendFormat"] = legend[i] if isinstance(legend, list) else legend
        targets.append(t)
    p = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit, "links": kibana(kql) if kql else []}, "overrides": []},
        "options": {},
        "gridPos": {"w": w, "h": h},
    }
    if kind == "timeseries":
        p["options"] = {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max"]}}
    return p


def variable_query(name, label, metric):
    return {
        "name": name, "label": label, "type": "query",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": {"query": f"label_values({metric}, {name})", "refId": name},
        "definition": f"label_values({metric}, {name})",
        "includeAll": True, "multi": True, "allValue": ".*",
        "current": {"text": "All", "value": "$__all"}, "refresh": 2, "sort": 1,
    }


def dashboard(uid, title, description, panels, variables):
    x = y = 0
    row_h = 0
    for i, p in enumerate(panels):
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if x + w > 24:
            x, y = 0, y + row_h
            row_h = 0
        p["gridPos"] = {"x": x, "y": y, "w": w, "h": h}
        p["id"] = i + 1
        x += w
        row_h = max(row_h, h)
    templating = [
        {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
         "current": {"text": "default", "value": "${DS_PROMETHEUS}"}, "hide": 0},
        {"name": "kibana_url", "label": "Kibana URL", "type": "textbox", "query": "https://kibana.example.com",
         "current": {"text": "https://kibana.example.com", "value": "https://kibana.example.com"}, "hide": 2},
    ] + variables
    return {
        "__inputs": [{"name": "DS_PROMETHEUS", "label": "Prometheus", "description": "Where the meshtrail agents are scraped",
                      "type": "datasource", "pluginId": "prometheus", "pluginName": "Prometheus"}],
        "__requires": [{"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.0.0"},
                       {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"}],
        "uid": uid, "title": title, "description": description,
        "tags": ["meshtrail", "istio", "security"], "timezone": "browser", "editable": True,
        "schemaVersion": 39, "version": 1, "refresh": "30s", "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": templating}, "annotations": {"list": []}, "links": [],
        "panels": panels,
    }


MESH_VARS = [variable_query("cluster", "Cluster", "meshtrail_build_info"),
             variable_query("gateway", "Gateway", "meshtrail_requests_total"),
             variable_query("namespace", "Namespace", "meshtrail_requests_total")]
AGENT_VARS = [variable_query("cluster", "Cluster", "meshtrail_build_info"),
              {**variable_query("instance", "Agent", "meshtrail_build_info")}]

RI = "$__rate_interval"
security = dashboard(
    "meshtrail-security", "Mesh security",
    "mTLS, authorization, authentication, rate limiting and egress, from the Envoy access logs of the gateways and sidecars (meshtrail).",
    [
        panel("mTLS success ratio", "Share of requests with a known TLS outcome whose mTLS handshake succeeded.",
              f'sum(rate(meshtrail_mtls_requests_total{{{SEL}, result="success"}}[{RI}])) / sum(rate(meshtrail_mtls_requests_total{{{SEL}, result!="unknown"}}[{RI}]))',
              "percentunit", kind="stat", w=6, kql="meshtrail.security.mtls:failure"),
        panel("mTLS failures by reason", "Failed handshakes per second by reason: expired or untrusted certificates, handshake failures, plaintext refused on STRICT ports.",
              f'sum by (reason) (rate(meshtrail_mtls_failures_total{{{SEL}}}[{RI}]))', "reqps", legend="{{reason}}",
              w=9, kql="meshtrail.security.outcome:mtls_failure"),
        panel("Plaintext requests", "Requests without TLS per second, by workload: PERMISSIVE ports accepting plaintext.",
              f'sum by (namespace, workload) (rate(meshtrail_mtls_requests_total{{{SEL}, result="plaintext"}}[{RI}]))', "reqps",
              legend="{{namespace}}/{{workload}}", w=9, kql="meshtrail.security.mtls:plaintext"),
        panel("Authorization denials by kind and policy", "RBAC (AuthorizationPolicy) and ext_authz denials per second, by the policy that matched.",
              f'sum by (kind, policy) (rate(meshtrail_authz_denied_requests_total{{{SEL}, kind!="jwt"}}[{RI}]))', "reqps",
              legend="{{kind}} {{policy}}", kql="meshtrail.security.outcome:authz_denied"),
        panel("JWT failures", "Requests refused by RequestAuthentication per second (missing, expired or invalid tokens).",
              f'sum by (namespace, workload) (rate(meshtrail_authz_denied_requests_total{{{SEL}, kind="jwt"}}[{RI}]))', "reqps",
              legend="{{namespace}}/{{workload}}", kql="meshtrail.security.denial.kind:jwt"),
        panel("Rate limiting by kind", "Requests refused by local or global rate limits, and rate-limit service errors, per second.",
              f'sum by (kind) (rate(meshtrail_rate_limited_requests_total{{{SEL}}}[{RI}]))', "reqps", legend="{{kind}}",
              kql="meshtrail.security.outcome:rate_limited"),
        panel("Egress by result", "Requests leaving the mesh per second: allowed (ServiceEntry or egress gateway), blocked (REGISTRY_ONLY, blocked routes), passthrough (ALLOW_ANY).",
              f'sum by (result) (rate(meshtrail_egress_requests_total{{{SEL}}}[{RI}]))', "reqps", legend="{{result}}",
              kql="meshtrail.security.egress:*"),
        panel("Blocked egress by workload and destination", "Blocked egress requests over the dashboard's range, the ten largest.",
              f'topk(10, sum by (namespace, workload, destination) (increase(meshtrail_egress_requests_total{{{SEL}, result="blocked"}}[$__range])))',
              "short", kind="table", kql="meshtrail.security.egress:blocked"),
        panel("Passthrough egress by workload", "Requests that left the mesh without a ServiceEntry over the dashboard's range.",
              f'topk(10, sum by (namespace, workload) (increase(meshtrail_egress_requests_total{{{SEL}, result="passthrough"}}[$__range])))',
              "short", kind="table", kql="meshtrail.security.egress:passthrough"),
        panel("Security outcomes", "Every access log's security outcome per second (the first that applies: mtls_failure, authn_denied, authz_denied, rate_limited, egress_blocked, upstream_failure, ok).",
              f'sum by (outcome) (rate(meshtrail_requests_total{{{SEL}}}[{RI}]))', "reqps", legend="{{outcome}}", w=24,
              kql="not meshtrail.security.outcome:ok"),
    ],
    MESH_VARS,
)

gateways = dashboard(
    "meshtrail-gateways", "Gateways",
    "Traffic, latency and status codes of the ingress and egress gateways and the sidecars, from their access logs (meshtrail).",
    [
        panel("Requests by gateway", "Requests per second by gateway and direction.",
              f'sum by (gateway, direction) (rate(meshtrail_requests_total{{{SEL}}}[{RI}]))', "reqps", legend="{{gateway}} {{direction}}"),
        panel("Status codes", "Requests per second by status class (none: no response, e.g. a reset).",
              f'sum by (code_class) (rate(meshtrail_requests_total{{{SEL}}}[{RI}]))', "reqps", legend="{{code_class}}"),
        panel("Latency percentiles", "Request duration (Envoy's %DURATION%) at the 50th, 90th and 99th percentile.",
              [f'histogram_quantile({q}, sum by (le) (rate(meshtrail_request_duration_seconds_bucket{{{SEL}}}[{RI}])))' for q in ("0.5", "0.9", "0.99")],
              "s", legend=["p50", "p90", "p99"]),
        panel("Latency p99 by workload", "99th percentile request duration by workload.",
              f'histogram_quantile(0.99, sum by (le, namespace, workload) (rate(meshtrail_request_duration_seconds_bucket{{{SEL}}}[{RI}])))',
              "s", legend="{{namespace}}/{{workload}}"),
        panel("Top workloads by requests", "The ten busiest workloads over the dashboard's range.",
              f'topk(10, sum by (gateway, namespace, workload) (increase(meshtrail_requests_total{{{SEL}}}[$__range])))', "short", kind="table", w=24),
    ],
    MESH_VARS,
)

ASEL = 'cluster=~"$cluster", instance=~"$instance"'
agent = dashboard(
    "meshtrail-agent", "meshtrail agent",
    "The meshtrail agents: throughput, lag, delivery, errors, Kubernetes metadata, memory and CPU.",
    [
        panel("Lines read", "Complete lines read from container logs per second.",
              f'sum by (instance) (rate(meshtrail_lines_read_total{{{ASEL}}}[{RI}]))', "short", legend="{{instance}}"),
        panel("Events acknowledged", "Events the sink acknowledged per second (Elasticsearch answered for them).",
              f'sum by (instance) (rate(meshtrail_events_acknowledged_total{{{ASEL}}}[{RI}]))', "short", legend="{{instance}}"),
        panel("Lag", "Bytes written to tracked files and not read yet: total, and the worst file.",
              [f'sum by (instance) (meshtrail_lag_bytes{{{ASEL}}})', f'max by (instance) (meshtrail_lag_bytes_max_file{{{ASEL}}})'],
              "bytes", legend=["{{instance}} total", "{{instance}} worst file"]),
        panel("Parse failures and unparsed lines", "Lines that looked like access logs but matched no format (format drift), and other container lines, per second.",
              [f'sum by (instance) (rate(meshtrail_parse_failures_total{{{ASEL}}}[{RI}]))', f'sum by (instance) (rate(meshtrail_container_events_total{{{ASEL}}}[{RI}]))'],
              "short", legend=["{{instance}} parse failures", "{{instance}} container lines"]),
        panel("Dead letters and lost bytes", "Documents Elasticsearch refused for good, and bytes rotated away before they were read, over the range.",
              [f'sum by (instance) (increase(meshtrail_dead_letters_total{{{ASEL}}}[$__range]))', f'sum by (instance) (increase(meshtrail_rotation_lost_bytes_total{{{ASEL}}}[$__range]))'],
              "short", kind="table"),
        panel("Bulk request duration p99", "99th percentile duration of Elasticsearch _bulk requests.",
              f'histogram_quantile(0.99, sum by (le, instance) (rate(meshtrail_bulk_request_duration_seconds_bucket{{{ASEL}}}[{RI}])))', "s", legend="{{instance}}"),
        panel("Retries", "Bulk requests followed by a retry, and sink writes retried, per second.",
              [f'sum by (instance) (rate(meshtrail_bulk_retries_total{{{ASEL}}}[{RI}]))', f'sum by (instance) (rate(meshtrail_sink_retries_total{{{ASEL}}}[{RI}]))'],
              "short", legend=["{{instance}} bulk", "{{instance}} sink"]),
        panel("In-flight bytes", "Bytes read and not yet acknowledged; reading pauses at pipeline.max_in_flight_bytes.",
              f'sum by (instance) (meshtrail_in_flight_bytes{{{ASEL}}})', "bytes", legend="{{instance}}"),
        panel("Kubernetes API requests", "Requests of the agents to the API server (or kubelet), by resource, verb and status.",
              f'sum by (resource, verb, code) (rate(meshtrail_kubernetes_api_requests_total{{{ASEL}}}[{RI}]))', "reqps", legend="{{resource}} {{verb}} {{code}}"),
        panel("Events without Kubernetes metadata", "Events shipped with path metadata only, per second.",
              f'sum by (instance) (rate(meshtrail_kubernetes_unenriched_events_total{{{ASEL}}}[{RI}]))', "short", legend="{{instance}}"),
        panel("Memory", "Resident memory of each agent.",
              f'process_resident_memory_bytes{{{ASEL}}}', "bytes", legend="{{instance}}"),
        panel("CPU", "CPU used by each agent, in cores.",
              f'rate(process_cpu_seconds_total{{{ASEL}}}[{RI}])', "short", legend="{{instance}}"),
    ],
    AGENT_VARS,
)

OUT = sys.argv[1] if len(sys.argv) > 1 else HERE
for name, d in [("mesh-security", security), ("gateways", gateways), ("meshtrail-agent", agent)]:
    with open(os.path.join(OUT, f"{name}.json"), "w") as f:
        json.dump(d, f, indent=2)
        f.write("\n")
