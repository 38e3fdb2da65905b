#!/usr/bin/env python3
"""deploy/'s checks, run by scripts/check-deploy (which makes the venv and builds the binaries).

The Helm chart is the one source: the kustomize base and components are its rendering, committed
(`scripts/check-deploy --write` regenerates them; see generated_files()).

0. drift: the committed kustomize files are exactly what the chart renders now — the base with
   default values, each component the objects its values add — minus Secrets and Helm's own
   labels and annotations; nothing else sits beside them but kustomization.yaml and the
   Namespace (which Helm leaves to --create-namespace).
1. render: `kubectl kustomize` of the base and the overlay; the Helm chart offline through Helm
   v4's Go SDK (helm-python-sdk) with default values and with the values matching the overlay;
   `helm lint --strict` of the chart with both value sets.
2. schemas: every object of every rendering against Kubernetes KUBE_VERSION's schemas with
   kubernetes-validate, strict (unknown fields are errors). Custom resources (ServiceMonitor,
   PrometheusRule, cert-manager's Issuer/Certificate) have no schema there: they are listed as
   skipped, and covered by the cross-reference checks below instead.
3. agreement: each kustomize rendering (kubectl kustomize over the generated files: its
   namespace transformer, the overlay's composition) and its Helm counterpart hold the same
   objects with the same content, after removing what only Helm adds (see normalize()) and ignoring the Namespace
   (only kustomize makes it: Helm leaves that to --create-namespace) and Secrets (only Helm makes
   them: generated certificates and token; kustomize users create them, README.md says how).
4. references: every Secret a pod mounts exists in the Helm rendering (or a Certificate writes
   it); every port a Service, probe, NetworkPolicy or ServiceMonitor names is a container port.
5. flags: every --flag in a container's command/args is in its binary's --help, and every
   NETDIAG_* variable a container sets is one the binary reads ([env: …] in --help).
6. metrics: every netdiag_* metric the alerts and the dashboard use is exported: the collector's
   from a live scrape of a collector on loopback plus the table in collector/src/metrics.rs
   (families with no sample yet are not in a scrape), the agent's from a live scrape plus the
   families agent/src/metrics.rs registers.
7. self-test: each checker is fed a broken input and must fail (so a check that passes means
   something).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import helm_python as helm
import kubernetes_validate
import yaml

KUBE_VERSION = "1.32.0"
ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy/helm/netdiag"
RELEASE = "netdiag"
NAMESPACE = "netdiag"
# The Helm values that match deploy/kustomize/overlays/cert-manager-monitoring.
FULL_VALUES = {"tls": {"mode": "cert-manager"}, "monitoring": {"enabled": True}}
PAIRS = [
    ("deploy/kustomize/base", None, "defaults"),
    ("deploy/kustomize/overlays/cert-manager-monitoring", FULL_VALUES, "tls.mode=cert-manager,monitoring.enabled=true"),
]
DASHBOARD = "deploy/helm/netdiag/dashboards/netdiag.json"
# What the chart generates for kustomize: (directory, values, their description, which rendered
# templates: "all" for the base, "added" for a component — those empty with default values).
GENERATED = [
    ("deploy/kustomize/base", None, "default values", "all"),
    ("deploy/kustomize/components/prometheus-operator", {"monitoring": {"enabled": True}}, "monitoring.enabled=true", "added"),
    ("deploy/kustomize/components/cert-manager", {"tls": {"mode": "cert-manager"}}, "tls.mode=cert-manager", "added"),
]
# Hand-written files in those directories: kustomize's own, and the Namespace Helm does not make.
HAND_WRITTEN = {"kustomization.yaml", "namespace.yaml"}
GENERATED_HEADER = ("# Generated from deploy/helm/netdiag/templates/{name} ({desc}) by `scripts/check-deploy --write`.\n"
                    "# Do not edit: change the chart and regenerate (scripts/check-deploy fails on drift).\n")
# Labels and annotations only Helm adds (the chart's version, the release's bookkeeping).
HELM_ONLY_LABELS = {"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/version"}
HELM_ONLY_ANNOTATION_PREFIXES = ("meta.helm.sh/", "checksum/", "helm.sh/")
WORKLOADS = {"Deployment", "DaemonSet", "StatefulSet", "Job", "Pod"}

Obj = dict[str, Any]


class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []
        self.skipped: list[str] = []

    def ok(self, what: str) -> None:
        self.passed += 1
        print(f"  ok    {what}")

    def fail(self, what: str, details: list[str] | None = None) -> None:
        self.failed.append(what)
        print(f"  FAIL  {what}")
        for d in details or []:
            print(f"          {d}")

    def skip(self, what: str) -> None:
        self.skipped.append(what)
        print(f"  skip  {what}")

    def check(self, what: str, problems: list[str]) -> None:
        if problems:
            self.fail(what, problems)
        else:
            self.ok(what)


def section(title: str) -> None:
    print(f"\n== {title}")


def ident(o: Obj) -> str:
    md = o.get("metadata") or {}
    ns = md.get("namespace")
    return f"{o.get('kind')}/{(ns + '/') if ns else ''}{md.get('name')}"


def parse_docs(text: str, origin: str) -> list[Obj]:
    objs = [d for d in yaml.safe_load_all(text) if d]
    for d in objs:
        if not isinstance(d, dict) or "kind" not in d:
            raise ValueError(f"{origin}: a document that is not a Kubernetes object: {str(d)[:80]}")
    return objs


# ---------------------------------------------------------------------------------------------
# 1. render


def render_kustomize(path: str) -> list[Obj]:
    out = subprocess.run(["kubectl", "kustomize", str(ROOT / path)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {path} failed: {out.stderr.strip()}")
    return parse_docs(out.stdout, path)


def render_helm(values: dict | None) -> list[Obj]:
    with helm.Chart.load(str(CHART)) as chart:
        files = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objs: list[Obj] = []
    for name, text in sorted(files.items()):
        if name.endswith(".txt") or not text.strip():
            continue
        objs.extend(parse_docs(text, name))
    return objs


def render_helm_files(values: dict | None) -> dict[str, str]:
    """The chart rendered offline, per template file (base name) that renders any YAML."""
    with helm.Chart.load(str(CHART)) as chart:
        files = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return {name.rsplit("/", 1)[-1]: text for name, text in files.items()
            if name.endswith(".yaml") and text.strip()}


# ---------------------------------------------------------------------------------------------
# 0. the kustomize files, generated from the chart

HELM_ONLY_LINE = re.compile(r"^\s*(helm\.sh/chart|app\.kubernetes\.io/managed-by|app\.kubernetes\.io/version|checksum/[^:]*|meta\.helm\.sh/[^:]*):")


def strip_helm_only(text: str) -> str:
    """Helm's rendering without the lines of what only Helm adds (see normalize()); an
    `annotations:` left empty goes too. Comments stay: they explain the manifests."""
    lines = [line for line in text.splitlines() if not HELM_ONLY_LINE.match(line)]
    out = []
    for i, line in enumerate(lines):
        if line.strip() == "annotations:":
            indent = len(line) - len(line.lstrip())
            following = next((x for x in lines[i + 1:] if x.strip() and not x.lstrip().startswith("#")), "")
            if len(following) - len(following.lstrip()) <= indent:
                continue
        out.append(line.rstrip())
    return "\n".join(out).strip() + "\n"


def generated_files() -> tuple[dict[str, str], list[str]]:
    """Every kustomize file the chart generates (path → text) and what keeps one from being
    generated (a Secret among other objects, values that change what the base holds)."""
    default = render_helm_files(None)
    out: dict[str, str] = {}
    problems: list[str] = []
    for directory, values, desc, which in GENERATED:
        files = default if values is None else render_helm_files(values)
        for name, text in sorted(files.items()):
            docs = parse_docs(text, name)
            secrets = [d for d in docs if d["kind"] == "Secret"]
            if secrets:
                if len(secrets) != len(docs):
                    problems.append(f"{name} mixes Secrets with other objects: kustomize users make the Secrets, "
                                    "so keep them in a template of their own")
                continue
            if which == "added" and name in default:
                if [normalize(d) for d in parse_docs(default[name], name)] != [normalize(d) for d in docs]:
                    problems.append(f"{desc} changes {name}: a kustomize component can only add objects here")
                continue
            body = strip_helm_only(text)
            if parse_docs(body, name) != [normalize(d) for d in docs]:
                problems.append(f"{name}: removing Helm's own lines changed more than Helm's labels and annotations")
            out[f"{directory}/{name}"] = GENERATED_HEADER.format(name=name, desc=desc) + body
    return out, problems


def resources_listed(directory: str) -> list[str]:
    k = yaml.safe_load((ROOT / directory / "kustomization.yaml").read_text()) or {}
    return list(k.get("resources") or [])


def drift(expected: dict[str, str], committed: dict[str, str | None], listed: dict[str, list[str]]) -> list[str]:
    """What differs between the generated files and the committed ones (`committed`: every file
    in the generated directories, None for one that is absent), and whether each
    kustomization.yaml lists exactly its directory's generated files (and namespace.yaml)."""
    problems = []
    for path, text in sorted(expected.items()):
        have = committed.get(path)
        if have is None:
            problems.append(f"{path}: missing")
        elif have != text:
            problems.append(f"{path}: differs from the chart's rendering")
    for path in sorted(committed):
        if path not in expected and path.rsplit("/", 1)[-1] not in HAND_WRITTEN:
            problems.append(f"{path}: not generated from the chart: move what it holds into the chart")
    for directory, resources in sorted(listed.items()):
        want = sorted(p.rsplit("/", 1)[-1] for p in expected if p.rsplit("/", 1)[0] == directory)
        have = sorted(r for r in resources if r != "namespace.yaml")
        if have != want:
            problems.append(f"{directory}/kustomization.yaml lists {have}, the chart generates {want}")
    if problems:
        problems.append("regenerate with `scripts/check-deploy --write` (and commit it with the chart change)")
    return problems


def committed_files() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for directory, *_ in GENERATED:
        for f in sorted((ROOT / directory).rglob("*")):
            if f.is_file():
                out[str(f.relative_to(ROOT))] = f.read_text()
    return out


def write_generated() -> int:
    """`--write`: the generated files written, stale ones removed."""
    expected, problems = generated_files()
    if problems:
        print("check-deploy --write: cannot generate the kustomize files:", *problems, sep="\n  ")
        return 1
    for path in committed_files():
        if path not in expected and path.rsplit("/", 1)[-1] not in HAND_WRITTEN:
            (ROOT / path).unlink()
            print(f"removed {path}")
    for path, text in sorted(expected.items()):
        target = ROOT / path
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
            print(f"wrote {path}")
    for directory, *_ in GENERATED:
        for d in sorted((ROOT / directory).rglob("*"), reverse=True):
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
    return 0


def lint_helm(values: dict | None) -> list[str]:
    report = helm.lint(
        str(CHART), values, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}"
    )
    names = {0: "unknown", 1: "info", 2: "warning", 3: "error"}
    problems = [f"{names.get(m['severity'], m['severity'])}: {m['path']}: {m['error']}"
                for m in report.get("messages", []) if m.get("severity", 0) >= 2]
    problems += [str(e) for e in report.get("errors", [])]
    for m in report.get("messages", []):
        if m.get("severity", 0) < 2:
            print(f"          (lint {names.get(m['severity'])}: {m['path']}: {m['error']})")
    return problems


# ---------------------------------------------------------------------------------------------
# 2. schemas


def validate(objs: list[Obj]) -> tuple[list[str], set[str]]:
    problems: list[str] = []
    no_schema: set[str] = set()
    for o in objs:
        try:
            kubernetes_validate.validate(o, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            problems.append(f"{ident(o)}: {path}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError:
            no_schema.add(f"{o['kind']} ({o['apiVersion']})")
    return problems, no_schema


# ---------------------------------------------------------------------------------------------
# 3. agreement


def _strip_metadata(md: dict) -> None:
    labels = md.get("labels") or {}
    for k in HELM_ONLY_LABELS:
        labels.pop(k, None)
    annotations = md.get("annotations") or {}
    for k in list(annotations):
        if k.startswith(HELM_ONLY_ANNOTATION_PREFIXES):
            del annotations[k]
    for k in ("labels", "annotations"):
        if k in md and not md[k]:
            del md[k]


def normalize(o: Obj) -> Obj:
    """The object without what only Helm adds: the labels helm.sh/chart,
    app.kubernetes.io/managed-by and app.kubernetes.io/version, and annotations meta.helm.sh/*,
    helm.sh/* and checksum/*, on the object and on its pod template."""
    o = copy.deepcopy(o)
    _strip_metadata(o.setdefault("metadata", {}))
    template = (o.get("spec") or {}).get("template")
    if isinstance(template, dict) and isinstance(template.get("metadata"), dict):
        _strip_metadata(template["metadata"])
    return o


def diff(a: Any, b: Any, path: str = "") -> Iterator[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            p = f"{path}.{k}" if path else str(k)
            if k not in a:
                yield f"{p}: only in helm: {json.dumps(b[k])[:120]}"
            elif k not in b:
                yield f"{p}: only in kustomize: {json.dumps(a[k])[:120]}"
            else:
                yield from diff(a[k], b[k], p)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            yield from diff(x, y, f"{path}[{i}]")
    elif a != b:
        yield f"{path}: kustomize {json.dumps(a)[:120]} != helm {json.dumps(b)[:120]}"


def compare(kustomize: list[Obj], helm_objs: list[Obj]) -> list[str]:
    def keyed(objs: list[Obj], ignore: str) -> dict[str, Obj]:
        return {ident(o): normalize(o) for o in objs if o["kind"] != ignore}

    k = keyed(kustomize, "Namespace")
    h = keyed(helm_objs, "Secret")
    problems = [f"{i}: only in kustomize" for i in sorted(set(k) - set(h))]
    problems += [f"{i}: only in helm" for i in sorted(set(h) - set(k))]
    for i in sorted(set(k) & set(h)):
        problems += [f"{i}: {d}" for d in list(diff(k[i], h[i]))[:10]]
    return problems


# ---------------------------------------------------------------------------------------------
# 4. references


def pod_spec(o: Obj) -> dict | None:
    if o["kind"] == "Pod":
        return o.get("spec")
    if o["kind"] in WORKLOADS:
        return ((o.get("spec") or {}).get("template") or {}).get("spec")
    return None


def containers(o: Obj) -> list[dict]:
    spec = pod_spec(o) or {}
    return list(spec.get("initContainers") or []) + list(spec.get("containers") or [])


def references(objs: list[Obj], secrets_must_exist: bool) -> tuple[list[str], set[str]]:
    """Problems, and the Secrets the pods mount that the rendering does not make."""
    problems: list[str] = []
    secrets = {o["metadata"]["name"] for o in objs if o["kind"] == "Secret"}
    secrets |= {o["spec"]["secretName"] for o in objs if o["kind"] == "Certificate"}
    external: set[str] = set()
    pods: dict[str, tuple[dict, dict]] = {}  # workload -> (pod labels, container ports by name)
    for o in objs:
        spec = pod_spec(o)
        if spec is None:
            continue
        for v in spec.get("volumes") or []:
            name = (v.get("secret") or {}).get("secretName")
            if name and name not in secrets:
                external.add(name)
                if secrets_must_exist:
                    problems.append(f"{ident(o)}: mounts Secret {name}, which nothing renders")
        ports = {p["name"]: p for c in containers(o) for p in c.get("ports") or [] if "name" in p}
        labels = o["spec"]["template"]["metadata"].get("labels") or {}
        pods[ident(o)] = (labels, ports)
        for c in containers(o):
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                port = ((c.get(probe) or {}).get("httpGet") or {}).get("port")
                if isinstance(port, str) and port not in ports:
                    problems.append(f"{ident(o)}: {c['name']}.{probe} uses port {port!r}, not a container port")

    def selected(selector: dict) -> list[tuple[str, dict]]:
        return [(w, ports) for w, (labels, ports) in pods.items()
                if selector and all(labels.get(k) == v for k, v in selector.items())]

    services: dict[str, dict] = {}
    for o in objs:
        if o["kind"] == "Service":
            services[o["metadata"]["name"]] = o
            targets = selected(o["spec"].get("selector") or {})
            if not targets:
                problems.append(f"{ident(o)}: its selector matches no workload")
            for p in o["spec"].get("ports") or []:
                tp = p.get("targetPort")
                for w, ports in targets:
                    if isinstance(tp, str) and tp not in ports:
                        problems.append(f"{ident(o)}: targetPort {tp!r} is not a port of {w}")
        elif o["kind"] == "NetworkPolicy":
            targets = selected(o["spec"]["podSelector"].get("matchLabels") or {})
            if not targets:
                problems.append(f"{ident(o)}: its podSelector matches no workload")
            for rule in o["spec"].get("ingress") or []:
                for p in rule.get("ports") or []:
                    for w, ports in targets:
                        if isinstance(p.get("port"), str) and p["port"] not in ports:
                            problems.append(f"{ident(o)}: port {p['port']!r} is not a port of {w}")
        elif o["kind"] == "PodDisruptionBudget":
            if not selected(o["spec"]["selector"].get("matchLabels") or {}):
                problems.append(f"{ident(o)}: its selector matches no workload")
    for o in objs:
        if o["kind"] != "ServiceMonitor":
            continue
        sel = o["spec"]["selector"].get("matchLabels") or {}
        svcs = [s for s in services.values()
                if all((s["metadata"].get("labels") or {}).get(k) == v for k, v in sel.items())]
        if not svcs:
            problems.append(f"{ident(o)}: its selector matches no Service")
        for ep in o["spec"].get("endpoints") or []:
            for s in svcs:
                if ep.get("port") not in {p.get("name") for p in s["spec"].get("ports") or []}:
                    problems.append(f"{ident(o)}: endpoint port {ep.get('port')!r} is not a port of Service {s['metadata']['name']}")
    for o in objs:
        if o["kind"] != "PrometheusRule":
            continue
        for g in o["spec"]["groups"]:
            for r in g["rules"]:
                missing = [k for k in ("alert", "expr", "for") if k not in r]
                if "severity" not in (r.get("labels") or {}):
                    missing.append("labels.severity")
                if missing:
                    problems.append(f"{ident(o)}: rule {r.get('alert', '?')} lacks {', '.join(missing)}")
    return problems, external


# ---------------------------------------------------------------------------------------------
# 5. flags


class Binaries:
    """`--help` of the binaries manifests run, by file name."""

    def __init__(self, paths: dict[str, str]) -> None:
        self.paths = paths
        self.helps: dict[str, str] = {}

    def help(self, name: str) -> str | None:
        if name not in self.helps:
            path = self.paths.get(name)
            if path is None:
                return None
            out = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=30)
            if out.returncode != 0:
                raise RuntimeError(f"{path} --help failed: {out.stderr.strip()}")
            self.helps[name] = out.stdout
        return self.helps[name]


def help_flags(text: str) -> set[str]:
    return set(re.findall(r"(?m)^\s+(?:-[A-Za-z], )?(--[a-z0-9][a-z0-9-]*)", text))


def help_env(text: str) -> set[str]:
    return set(re.findall(r"\[env: ([A-Z0-9_]+)=", text))


def check_flags(objs: list[Obj], bins: Binaries) -> tuple[list[str], int]:
    problems: list[str] = []
    checked = 0
    for o in objs:
        for c in containers(o):
            command = c.get("command") or []
            if not command:
                problems.append(f"{ident(o)}: container {c['name']} sets no command: which binary's flags apply is unknown")
                continue
            binary = os.path.basename(command[0])
            text = bins.help(binary)
            if text is None:
                problems.append(f"{ident(o)}: container {c['name']} runs {command[0]}, a binary this check does not know")
                continue
            flags, env = help_flags(text), help_env(text)
            for token in list(command[1:]) + list(c.get("args") or []):
                if token.startswith("--"):
                    checked += 1
                    flag = token.split("=", 1)[0]
                    if flag not in flags:
                        problems.append(f"{ident(o)}: {binary} has no {flag} (not in `{binary} --help`)")
            for e in c.get("env") or []:
                if e["name"].startswith("NETDIAG_"):
                    checked += 1
                    if e["name"] not in env:
                        problems.append(f"{ident(o)}: {binary} reads no {e['name']} (not in `{binary} --help`)")
    return problems, checked


# ---------------------------------------------------------------------------------------------
# 6. metrics


def used_metrics(objs: list[Obj]) -> dict[str, set[str]]:
    """netdiag_* names in PrometheusRule expressions and the dashboard's queries, by where."""
    used: dict[str, set[str]] = {}

    def note(expr: str, where: str) -> None:
        for name in re.findall(r"\bnetdiag_[a-z0-9_]+\b", expr):
            used.setdefault(name, set()).add(where)

    for o in objs:
        if o["kind"] == "PrometheusRule":
            for g in o["spec"]["groups"]:
                for r in g["rules"]:
                    note(r["expr"], f"alert {r.get('alert')}")
        if o["kind"] == "ConfigMap" and "grafana_dashboard" in (o["metadata"].get("labels") or {}):
            for key, text in (o.get("data") or {}).items():
                for p in json.loads(text).get("panels", []):
                    for t in p.get("targets", []):
                        note(t.get("expr", ""), f"dashboard panel {p.get('title')!r}")
    return used


def with_suffixes(name: str, kind: str) -> set[str]:
    if kind == "histogram":
        return {name, f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    if kind == "counter" and not name.endswith("_total"):
        return {name, f"{name}_total"}
    return {name}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Every address in it is loopback: the agent's one probe (node-1 to node-2, ICMP) stays on lo.
INVENTORY = """version: 1
cluster:
  name: check
  domain: cluster.local
  pod_cidrs: [127.244.0.0/16]
  service_cidrs: [127.96.0.0/16]
  node_cidrs: [127.0.0.0/24]
  dns_ips: [127.96.0.10]
  proxy_mode: iptables
nodes:
  - name: node-1
    ips: [127.0.0.11]
    pod_cidrs: [127.244.1.0/24]
  - name: node-2
    ips: [127.0.0.12]
    pod_cidrs: [127.244.2.0/24]
pods: []
services: []
"""


class Scrape:
    """One GET /metrics: the Content-Type and the body."""

    def __init__(self, content_type: str, text: str) -> None:
        self.content_type = content_type
        self.text = text

    def families(self) -> dict[str, str]:
        """name -> type, from the # TYPE lines."""
        return dict(re.findall(r"(?m)^# TYPE (\S+) (\S+)$", self.text))


def get_metrics(port: int) -> Scrape:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
        return Scrape(r.headers.get("Content-Type", ""), r.read().decode())


def scrape_live(bins: Binaries) -> dict[str, Scrape]:
    """/metrics of a collector and an agent run on loopback (the agent on node-1 of a two-node
    inventory, so it probes node-2 and reports to the collector: both expositions then hold
    probe counters and RTT histograms, not only zeros). Both are stopped before returning."""
    with tempfile.TemporaryDirectory() as tmp:
        inv = Path(tmp) / "inventory.yaml"
        inv.write_text(INVENTORY)
        http, agents, agent_http = free_port(), free_port(), free_port()
        procs: list[tuple[str, subprocess.Popen]] = []
        try:
            for name, args in (
                ("netdiag-collector", [f"--inventory=file:{inv}", f"--http=127.0.0.1:{http}",
                                       f"--agents-listen=127.0.0.1:{agents}"]),
                ("netdiag-agent", ["--node=node-1", f"--collector=http://127.0.0.1:{agents}",
                                   f"--inventory=file:{inv}", f"--listen=127.0.0.1:{agent_http}",
                                   "--interval=1s", "--timeout=500ms"]),
            ):
                procs.append((name, subprocess.Popen(
                    [bins.paths[name], *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)))
            deadline = time.monotonic() + 30
            while True:
                try:
                    agent = get_metrics(agent_http)
                    collector = get_metrics(http)
                    # Wait for results to have gone both ways: the families a fresh start lacks.
                    if "netdiag_agent_probes_total{" in agent.text and "netdiag_probe_results_total{" in collector.text:
                        return {"netdiag-collector": collector, "netdiag-agent": agent}
                except OSError:
                    pass
                for name, proc in procs:
                    if proc.poll() is not None:
                        raise RuntimeError(f"{name} exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
                if time.monotonic() > deadline:
                    raise RuntimeError("no probe results in the agent's and the collector's /metrics after 30 s")
                time.sleep(0.3)
        finally:
            for _, proc in procs:
                proc.terminate()
            for _, proc in procs:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def declared_collector_metrics() -> dict[str, str]:
    """The table in collector/src/metrics.rs's module docs: name -> type."""
    text = (ROOT / "collector/src/metrics.rs").read_text()
    return {m[0]: m[1].split()[0] for m in re.findall(r"//! \| `(netdiag_[a-z0-9_]+)` \| ([a-z]+)", text)}


def declared_agent_metrics() -> set[str]:
    """Names agent/src/metrics.rs registers, under its registry prefix, with the suffixes a
    counter or histogram may carry (the source does not say which a family is at this point)."""
    text = (ROOT / "agent/src/metrics.rs").read_text()
    prefix = re.search(r'Registry::with_prefix\("([a-z_]+)"\)', text)
    names: set[str] = set()
    for n in re.findall(r'register(?:_with_unit)?\(\s*"([a-z0-9_]+)"', text):
        full = f"{prefix.group(1)}_{n}" if prefix else n
        names |= with_suffixes(full, "counter") | with_suffixes(full, "histogram")
    return names


def check_metrics(used: dict[str, set[str]], exported: set[str]) -> list[str]:
    return [f"{name} (used by {', '.join(sorted(where))}) is not exported by the collector or the agent"
            for name, where in sorted(used.items()) if name not in exported]


# ---------------------------------------------------------------------------------------------
# 7. promtool: the expositions, the alert rules and their unit tests, the dashboard's queries

ALERT_TESTS = ROOT / "deploy/tests/alerts.test.yaml"
# Grafana's built-in interval variables, as PromQL would see them after substitution.
GRAFANA_DURATIONS = ("__rate_interval", "__interval", "__range", "__auto")


def promtool(*args: str, stdin: str | None = None, cwd: str | None = None) -> list[str]:
    """Problems `promtool args…` reports: none when it exits 0."""
    binary = shutil.which("promtool")
    if binary is None:
        return ["promtool is not installed (`scripts/deps test` installs Debian's prometheus package)"]
    out = subprocess.run([binary, *args], input=stdin, capture_output=True, text=True, cwd=cwd, timeout=120)
    if out.returncode == 0:
        return []
    lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    return [f"`promtool {' '.join(args)}` exited {out.returncode}:"] + lines[:60]


def check_exposition(scrape: Scrape) -> list[str]:
    """The body is the format its Content-Type names, and `promtool check metrics` (Prometheus'
    text parser, then its linter) accepts it."""
    problems = []
    ct = scrape.content_type.replace(" ", "").lower()
    if not (ct.startswith("text/plain;") and "version=0.0.4" in ct):
        problems.append(f"Content-Type {scrape.content_type!r}: the checks (and these binaries) serve "
                        "the Prometheus text format, text/plain; version=0.0.4")
    if re.search(r"(?m)^# EOF$", scrape.text):
        problems.append(f"an OpenMetrics body (it ends with # EOF) served as {scrape.content_type!r}")
    return problems + promtool("check", "metrics", stdin=scrape.text)


def rule_groups(objs: list[Obj]) -> list[dict]:
    """The groups of every PrometheusRule in a rendering."""
    return [g for o in objs if o["kind"] == "PrometheusRule" for g in o["spec"]["groups"]]


def dump(path: Path, doc: Any) -> None:
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False, width=1000))


def check_rules(groups: list[dict]) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        dump(Path(tmp) / "rules.yaml", {"groups": groups})
        return promtool("check", "rules", "rules.yaml", cwd=tmp)


def test_rules(groups: list[dict], tests: dict) -> list[str]:
    """`promtool test rules` of `tests` (deploy/tests/alerts.test.yaml's content) against
    `groups`, written to the rules.yaml the tests name."""
    if tests.get("rule_files") != ["rules.yaml"]:
        return [f"{ALERT_TESTS.relative_to(ROOT)}: rule_files must be [rules.yaml] (this check writes it)"]
    with tempfile.TemporaryDirectory() as tmp:
        dump(Path(tmp) / "rules.yaml", {"groups": groups})
        dump(Path(tmp) / "alerts.test.yaml", tests)
        return promtool("test", "rules", "alerts.test.yaml", cwd=tmp)


def alert_coverage(groups: list[dict], tests: dict) -> list[str]:
    """Every alert has a test case where it fires (expected labels and annotations, the summary
    and description among them) and one where it must not; no test names an unknown alert."""
    alerts = {r["alert"] for g in groups for r in g["rules"] if "alert" in r}
    fires: set[str] = set()
    silent: set[str] = set()
    problems = []
    for t in tests.get("tests") or []:
        for case in t.get("alert_rule_test") or []:
            name = case.get("alertname")
            if name not in alerts:
                problems.append(f"test {t.get('name')!r}: no alert {name!r} in the rules")
            expected = case.get("exp_alerts") or []
            if not expected:
                silent.add(name)
            for e in expected:
                missing = {"summary", "description"} - set(e.get("exp_annotations") or {})
                if missing or not e.get("exp_labels"):
                    problems.append(f"test {t.get('name')!r}, {name}: expects no labels or lacks "
                                    f"annotations {', '.join(sorted(missing))}")
                fires.add(name)
    problems += [f"{a}: no test case where it fires" for a in sorted(alerts - fires)]
    problems += [f"{a}: no test case where it must not fire" for a in sorted(alerts - silent)]
    return problems


def dashboard_exprs(dashboard: dict) -> tuple[list[tuple[str, str]], list[str]]:
    """(where, PromQL) of every query of the dashboard with Grafana's variables replaced by
    values PromQL takes (intervals by 5m, template variables by a label value), and problems:
    a target without an expression, a variable left over."""
    variables = {v["name"]: "x" for v in (dashboard.get("templating") or {}).get("list", [])
                 if v.get("type") not in ("datasource", "interval")}
    variables |= {v["name"]: "5m" for v in (dashboard.get("templating") or {}).get("list", [])
                  if v.get("type") == "interval"}
    variables |= {name: "5m" for name in GRAFANA_DURATIONS} | {"__range_s": "300", "__range_ms": "300000"}

    def substitute(expr: str) -> str:
        return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]",
                      lambda m: variables.get(m.group(1) or m.group(2) or m.group(3), m.group(0)), expr)

    exprs: list[tuple[str, str]] = []
    problems: list[str] = []

    def walk(panels: list[dict]) -> None:
        for p in panels:
            walk(p.get("panels") or [])
            for t in p.get("targets") or []:
                where = f"panel {p.get('id')} {p.get('title')!r} target {t.get('refId')}"
                expr = substitute(t.get("expr") or "")
                if not expr.strip():
                    problems.append(f"{where}: no expr")
                elif "$" in expr or "[[" in expr:
                    problems.append(f"{where}: a variable this check does not know: {expr}")
                else:
                    exprs.append((where, expr))

    walk(dashboard.get("panels") or [])
    return exprs, problems


def check_dashboard(dashboard: dict) -> tuple[list[str], int]:
    """Every query, as a recording rule (one group per query, named after its panel, so
    promtool's message says which), through `promtool check rules`."""
    exprs, problems = dashboard_exprs(dashboard)
    groups = [{"name": where, "rules": [{"record": f"netdiag:dashboard:q{i}", "expr": expr}]}
              for i, (where, expr) in enumerate(exprs)]
    if groups:
        problems += check_rules(groups)
    return problems, len(exprs)


# ---------------------------------------------------------------------------------------------
# 8. self-test


def self_test(report: Report, bins: Binaries, sample: list[Obj], exported: set[str],
              groups: list[dict], tests: dict, dashboard: dict,
              generated: dict[str, str], listed: dict[str, list[str]]) -> None:
    bogus = {
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "bogus"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
            "metadata": {"labels": {"a": "b"}},
            "spec": {"containers": [{
                "name": "agent", "image": "x", "command": ["/usr/local/bin/netdiag-agent"],
                "args": ["--no-such-flag=1", "--node=n"], "env": [{"name": "NETDIAG_NO_SUCH", "value": "1"}],
            }]}}},
    }
    problems, _ = check_flags([bogus], bins)
    report.check("self-test: the flag check rejects --no-such-flag and NETDIAG_NO_SUCH",
                 [] if any("--no-such-flag" in p for p in problems) and any("NETDIAG_NO_SUCH" in p for p in problems)
                 else [f"it reported {problems}"])

    typo = copy.deepcopy(bogus)
    typo["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    clean, _ = validate([bogus])
    problems, _ = validate([typo])
    report.check("self-test: strict schema validation rejects an unknown field (and only that)",
                 [] if problems and not clean else [f"clean: {clean}, with imagePullPolicyy: {problems}"])

    workloads = [o for o in sample if o["kind"] in WORKLOADS]
    changed = copy.deepcopy(workloads)
    changed[0]["spec"]["template"]["spec"]["containers"][0].setdefault("args", []).append("--log=debug")
    report.check("self-test: the agreement check notices a changed argument",
                 [] if compare(workloads, changed) else ["an added argument went unnoticed"])

    report.check("self-test: the metric check rejects an unknown metric",
                 [] if check_metrics({"netdiag_no_such_metric": {"test"}}, exported) else ["it passed"])

    def rejects(what: str, problems: list[str], needle: str) -> None:
        """A self-test: `problems` holds one with `needle` (a failure for the expected reason,
        not any failure: a missing promtool must not pass for a rejection)."""
        report.check(f"self-test: {what}", [] if any(needle in p for p in problems)
                     else [f"expected a problem with {needle!r}, got {problems}"])

    if generated:
        committed = dict(generated)
        first = sorted(committed)[0]
        report.check("self-test: the drift check passes the chart's own rendering",
                     drift(generated, committed, listed))
        committed[first] = committed[first].replace("netdiag", "netdiag-edited", 1)
        rejects("the drift check notices a hand edit of a generated file", drift(generated, committed, listed),
                f"{first}: differs")
        committed = {**generated, "deploy/kustomize/base/dashboards/netdiag.json": "{}"}
        rejects("the drift check notices a file the chart does not generate (a second dashboard copy)",
                drift(generated, committed, listed), "dashboards/netdiag.json: not generated")
        unlisted = {d: [r for r in rs if r != "grafana-dashboard.yaml"] for d, rs in listed.items()}
        rejects("the drift check notices a generated file kustomization.yaml does not list",
                drift(generated, dict(generated), unlisted), "kustomization.yaml lists")
    else:
        report.fail("self-test: nothing generated to check drift on")

    text_ct = "text/plain; version=0.0.4; charset=utf-8"
    openmetrics_counter = "# HELP netdiag_things Things.\n# TYPE netdiag_things counter\nnetdiag_things_total 1\n"
    rejects("promtool check metrics rejects an OpenMetrics counter served as text (the agent's old bug)",
            check_exposition(Scrape(text_ct, openmetrics_counter)), "no help text")
    rejects("promtool check metrics rejects a malformed sample line",
            check_exposition(Scrape(text_ct, '# HELP netdiag_x X.\n# TYPE netdiag_x gauge\nnetdiag_x{a="b} 1\n')),
            "exited 1")
    rejects("the exposition check rejects an OpenMetrics body (# EOF) served as text/plain",
            check_exposition(Scrape(text_ct, "# EOF\n")), "# EOF")
    rejects("the exposition check rejects a Content-Type that is not the text format",
            check_exposition(Scrape("application/json", "")), "Content-Type")
    if not groups:
        report.fail("self-test: no alert rules to break")
        return
    broken = copy.deepcopy(groups)
    broken[0]["rules"][0]["expr"] += " +"
    rejects("promtool check rules rejects a broken alert expression", check_rules(broken), "exited 1")
    wrong = copy.deepcopy(tests)
    culprits = [e for t in wrong["tests"] for c in t.get("alert_rule_test") or [] for e in c.get("exp_alerts") or []
                if "culprit" in (e.get("exp_labels") or {})]
    if culprits:
        culprits[0]["exp_labels"]["culprit"] = "node-9"
        rejects("promtool test rules fails an alert test expecting the wrong culprit", test_rules(groups, wrong), "FAILED")
    else:
        report.fail("self-test: no alert test expects a culprit label")
    first = groups[0]["rules"][0]["alert"]
    untested = copy.deepcopy(tests)
    for t in untested["tests"]:
        t["alert_rule_test"] = [c for c in t.get("alert_rule_test") or [] if c.get("alertname") != first]
    rejects(f"the coverage check notices {first} without tests", alert_coverage(groups, untested), first)
    bad = copy.deepcopy(dashboard)
    bad["panels"][0]["targets"][0]["expr"] = "sum(rate(netdiag_ingest_results_total[$__rate_interval])"
    rejects("the dashboard check rejects a broken query", check_dashboard(bad)[0], "exited 1")
    bad["panels"][0]["targets"][0]["expr"] = 'netdiag_agent_connected{node=~"$no_such_variable"}'
    rejects("the dashboard check rejects an unknown variable", check_dashboard(bad)[0], "no_such_variable")


# ---------------------------------------------------------------------------------------------


def main() -> int:
    if sys.argv[1:] == ["--write"]:
        return write_generated()
    if sys.argv[1:]:
        print(f"usage: scripts/check-deploy [--write]  (unknown arguments {sys.argv[1:]})", file=sys.stderr)
        return 2
    report = Report()
    bins = Binaries({
        "netdiag-agent": os.environ.get("NETDIAG_AGENT_BIN", str(ROOT / "target/debug/netdiag-agent")),
        "netdiag-collector": os.environ.get("NETDIAG_COLLECTOR_BIN", str(ROOT / "target/debug/netdiag-collector")),
    })
    print(f"check-deploy: Kubernetes {KUBE_VERSION} schemas (kubernetes-validate {kubernetes_validate.__version__}), "
          f"Helm SDK {helm.helm_sdk_version()}, {subprocess.run(['kubectl', 'version', '--client'], capture_output=True, text=True).stdout.splitlines()[-1]}")

    section("render and lint")
    renderings: list[tuple[str, list[Obj], str, list[Obj], dict | None]] = []
    for kpath, values, vdesc in PAIRS:
        try:
            k = render_kustomize(kpath)
            report.ok(f"kubectl kustomize {kpath}: {len(k)} objects")
        except Exception as e:  # noqa: BLE001 - reported, then the next rendering
            report.fail(f"kubectl kustomize {kpath}", [str(e)])
            continue
        try:
            h = render_helm(values)
            report.ok(f"helm render deploy/helm/netdiag ({vdesc}): {len(h)} objects")
        except Exception as e:  # noqa: BLE001
            report.fail(f"helm render deploy/helm/netdiag ({vdesc})", [str(e)])
            continue
        report.check(f"helm lint --strict deploy/helm/netdiag ({vdesc})", lint_helm(values))
        renderings.append((kpath, k, f"helm ({vdesc})", h, values))

    section("the kustomize files are the chart's rendering (no drift)")
    try:
        expected, problems = generated_files()
        report.check("the chart generates the kustomize base and components", problems)
        listed = {d: resources_listed(d) for d, *_ in GENERATED}
        report.check(f"{len(expected)} generated kustomize files committed as rendered, nothing else beside them",
                     drift(expected, committed_files(), listed))
    except Exception as e:  # noqa: BLE001
        expected, listed = {}, {}
        report.fail("generate the kustomize files from the chart", [str(e)])

    section(f"schemas (strict, Kubernetes {KUBE_VERSION})")
    skipped: set[str] = set()
    for kname, k, hname, h, _ in renderings:
        for name, objs in ((kname, k), (hname, h)):
            problems, no_schema = validate(objs)
            skipped |= no_schema
            checked = len(objs) - sum(1 for o in objs if f"{o['kind']} ({o['apiVersion']})" in no_schema)
            report.check(f"{name}: {checked} objects valid", problems)
    if skipped:
        report.skip(f"no schema for {', '.join(sorted(skipped))}: kubernetes-validate ships only "
                    "built-in kinds; these are checked by the agreement and reference checks instead")

    section("kustomize and helm agree (ignoring Helm's own labels/annotations, the Namespace, Secrets)")
    for kname, k, hname, h, _ in renderings:
        report.check(f"{kname} = {hname}", compare(k, h))

    section("references")
    for kname, k, hname, h, _ in renderings:
        problems, external = references(h, secrets_must_exist=True)
        report.check(f"{hname}: mounted Secrets rendered, ports and selectors resolve", problems)
        problems, external = references(k, secrets_must_exist=False)
        report.check(f"{kname}: ports and selectors resolve (expects Secrets {', '.join(sorted(external)) or 'none'})", problems)

    section("flags in the binaries' --help")
    for kname, k, hname, h, _ in renderings:
        for name, objs in ((kname, k), (hname, h)):
            try:
                problems, checked = check_flags(objs, bins)
            except Exception as e:  # noqa: BLE001
                report.fail(f"{name}: flags", [str(e)])
                continue
            report.check(f"{name}: {checked} flags and NETDIAG_* variables", problems)

    section("metrics used by alerts and the dashboard")
    scrapes: dict[str, Scrape] = {}
    try:
        scrapes = scrape_live(bins)
        report.ok("scraped " + ", ".join(f"{len(sc.families())} metric families from {name}"
                                         for name, sc in scrapes.items()) + " (run on loopback)")
    except Exception as e:  # noqa: BLE001
        report.fail("scrape a collector's and an agent's /metrics", [str(e)])
    live = scrapes["netdiag-collector"].families() if scrapes else {}
    exported: set[str] = set()
    for name, kind in {**declared_collector_metrics(), **live}.items():
        exported |= with_suffixes(name, kind)
    exported |= declared_agent_metrics()
    for name, kind in (scrapes["netdiag-agent"].families() if scrapes else {}).items():
        exported |= with_suffixes(name, kind)
    used: dict[str, set[str]] = {}
    for _, k, _, h, _ in renderings:
        for objs in (k, h):
            for name, where in used_metrics(objs).items():
                used.setdefault(name, set()).update(where)
    report.check(f"{len(used)} metric names used are exported", check_metrics(used, exported))

    section("promtool: /metrics, alert rules and their unit tests, dashboard queries")
    for name, sc in scrapes.items():
        report.check(f"{name}'s /metrics ({sc.content_type}): promtool check metrics", check_exposition(sc))
    tests = yaml.safe_load(ALERT_TESTS.read_text())
    rulesets = [(name, rule_groups(objs)) for kname, k, hname, h, _ in renderings for name, objs in ((kname, k), (hname, h))]
    rulesets = [(name, groups) for name, groups in rulesets if groups]
    if not rulesets:
        report.fail("no rendering holds a PrometheusRule: nothing to check")
    for name, groups in rulesets:
        n = sum(len(g["rules"]) for g in groups)
        report.check(f"{name}: promtool check rules ({n} rules)", check_rules(groups))
        report.check(f"{name}: promtool test rules {ALERT_TESTS.relative_to(ROOT)}", test_rules(groups, tests))
        report.check(f"{name}: every alert has a firing and a silent test case", alert_coverage(groups, tests))
    dashboard = json.loads((ROOT / DASHBOARD).read_text())
    problems, n = check_dashboard(dashboard)
    report.check(f"the dashboard's {n} queries: promtool check rules (as recording rules)", problems)

    section("self-test: each check can fail")
    if renderings:
        self_test(report, bins, renderings[0][3], exported, rulesets[0][1] if rulesets else [], tests, dashboard,
                  expected, listed)

    print()
    if report.failed:
        print(f"check-deploy: FAILED: {len(report.failed)} of {report.passed + len(report.failed)} checks "
              f"({len(report.skipped)} skipped):")
        for f in report.failed:
            print(f"  - {f}")
        return 1
    print(f"check-deploy: all {report.passed} checks ok ({len(report.skipped)} skipped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
