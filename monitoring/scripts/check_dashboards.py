#!/usr/bin/env python3
"""Checks the Grafana dashboards of monitoring/grafana/dashboards (standard library only).

    python3 monitoring/scripts/check_dashboards.py
        Structure (uids, schemaVersion, unique panel ids, every panel and target on the
        ecom-prometheus datasource, the `job` variable) and PromQL syntax of every target,
        with `promtool check rules` on a temporary file (offline).

    python3 monitoring/scripts/check_dashboards.py --prometheus http://127.0.0.1:9090
        Also evaluates every target at that Prometheus (after a shopper journey) and fails when
        a query errors or returns no series.

Grafana variables are substituted as Grafana would for "All": $__rate_interval and
$__interval -> 1m, $__range -> 5m, $job / ${job} -> .*
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
MONITORING = os.path.dirname(HERE)
DASHBOARDS = os.path.join(MONITORING, "grafana", "dashboards")
DATASOURCES = os.path.join(MONITORING, "grafana", "provisioning", "datasources", "prometheus.yml")

DS = {"type": "prometheus", "uid": "ecom-prometheus"}
EXPECTED = {
    "overview.json": "ecom-overview",
    "shop.json": "ecom-shop",
    "caches-limits.json": "ecom-caches",
    "runtime.json": "ecom-runtime",
}
SUBSTITUTIONS = [
    ("$__rate_interval", "1m"),
    ("$__interval", "1m"),
    ("$__range", "5m"),
    ("${job}", ".*"),
    ("$job", ".*"),
]


def substitute(expr):
    for var, value in SUBSTITUTIONS:
        expr = expr.replace(var, value)
    return expr


def panels_of(dashboard):
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # collapsed rows


def check_structure(name, d, errors):
    def err(msg):
        errors.append(f"{name}: {msg}")

    if d.get("uid") != EXPECTED[name]:
        err(f"uid is {d.get('uid')!r}, expected {EXPECTED[name]!r}")
    if not 36 <= d.get("schemaVersion", 0) <= 41:
        err(f"schemaVersion {d.get('schemaVersion')} out of range")
    ids = [p.get("id") for p in panels_of(d)]
    if len(ids) != len(set(ids)) or None in ids:
        err(f"panel ids not unique: {ids}")
    for var in d.get("templating", {}).get("list", []):
        if var.get("name") == "job":
            for key, want in (("multi", True), ("includeAll", True), ("allValue", ".*")):
                if var.get(key) != want:
                    err(f"variable job: {key} is {var.get(key)!r}, expected {want!r}")
            if "label_values(up, job)" not in json.dumps(var.get("query")):
                err("variable job: query is not label_values(up, job)")
    exprs = []
    for p in panels_of(d):
        title = p.get("title", f"panel {p.get('id')}")
        if p.get("type") not in ("timeseries", "stat", "row"):
            err(f"{title}: panel type {p.get('type')!r}")
        if p.get("datasource") != DS:
            err(f"{title}: datasource {p.get('datasource')!r}")
        if p.get("type") == "row":
            continue
        if not p.get("targets"):
            err(f"{title}: no targets")
        for t in p.get("targets", []):
            if t.get("datasource") != DS:
                err(f"{title} {t.get('refId')}: datasource {t.get('datasource')!r}")
            expr = t.get("expr", "")
            if not expr.strip():
                err(f"{title} {t.get('refId')}: empty expr")
                continue
            # Rate windows follow the dashboard, never a fixed duration.
            if re.search(r"\b(rate|irate|increase)\([^()]*\[\d+[smhd]\]", expr):
                err(f"{title} {t.get('refId')}: fixed range in {expr}")
            exprs.append((f"{name} / {title} / {t.get('refId')}", expr))
    return exprs


def check_syntax(exprs, errors):
    """promtool parses every query as a recording rule."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "dashboards.rules.yml")
        with open(path, "w") as f:
            f.write("groups:\n  - name: dashboards\n    rules:\n")
            for i, (_, expr) in enumerate(exprs):
                f.write(f"      - record: dashboard:query_{i}\n")
                f.write(f"        expr: {json.dumps(substitute(expr))}\n")
        res = subprocess.run(["promtool", "check", "rules", path], capture_output=True, text=True)
        if res.returncode != 0:
            errors.append("promtool rejected a dashboard query:\n" + res.stdout + res.stderr)


def check_live(url, exprs, errors):
    for where, expr in exprs:
        q = substitute(expr)
        data = urllib.parse.urlencode({"query": q}).encode()
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/api/v1/query", data=data, timeout=30) as r:
                body = json.load(r)
        except Exception as e:  # HTTP 400 for a bad query, or Prometheus unreachable
            errors.append(f"{where}: {q}: {e}")
            continue
        if body.get("status") != "success":
            errors.append(f"{where}: {q}: {body.get('error')}")
        elif not body["data"]["result"]:
            errors.append(f"{where}: {q}: no series")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prometheus", help="base URL of a Prometheus to evaluate every query at")
    args = ap.parse_args()

    errors = []
    with open(DATASOURCES) as f:
        if "uid: ecom-prometheus" not in f.read():
            errors.append(f"{DATASOURCES}: no datasource with uid ecom-prometheus")
    found = sorted(f for f in os.listdir(DASHBOARDS) if f.endswith(".json"))
    if found != sorted(EXPECTED):
        errors.append(f"dashboards found {found}, expected {sorted(EXPECTED)}")
    exprs = []
    for name in found:
        if name not in EXPECTED:
            continue
        with open(os.path.join(DASHBOARDS, name)) as f:
            try:
                d = json.load(f)
            except json.JSONDecodeError as e:
                errors.append(f"{name}: {e}")
                continue
        exprs += check_structure(name, d, errors)
    check_syntax(exprs, errors)
    if args.prometheus:
        check_live(args.prometheus, exprs, errors)

    for e in errors:
        print("FAIL", e)
    print(f"{len(found)} dashboards, {len(exprs)} queries: {'FAILED' if errors else 'ok'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
