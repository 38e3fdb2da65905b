// netdiag's web UI: polls the collector's own /api/v1/matrix and /api/v1/diagnosis every 2 s and
// draws the connectivity matrix as a heatmap, the selected cell's numbers and the findings.
// Vanilla JavaScript, no build step, no other origin. Every text from the API is set with
// textContent (error texts come from agents), never parsed as HTML.
"use strict";

(() => {
  const REFRESH_MS = 2000;
  const TIMEOUT_MS = 5000;
  const KINDS = ["icmp", "tcp", "dns", "http", "mtu"];
  const KIND_LETTER = { icmp: "I", tcp: "T", dns: "D", http: "H", mtu: "M" };
  // "denied": failing where NetworkPolicy denies the path, as intended (the cell's
  // denied_by_policy); shown apart from "failed", never a finding's.
  const STATUSES = ["ok", "degraded", "failed", "denied", "unknown"];
  const STATUS_GLYPH = { ok: "", degraded: "!", failed: "\u2715", denied: "\u2298", unknown: "?" };
  const LEVELS = ["pod", "node"];
  const KIND_VALUES = ["all"].concat(KINDS);

  const view = { level: "pod", kind: "all", namespace: "", live: true };
  let selected = null; // {source, destination, kind}
  let selectedFinding = null; // a finding id
  let matrix = null; // the last /api/v1/matrix answer
  let diagnosis = null; // the last /api/v1/diagnosis answer
  let inflight = null; // the AbortController of the request in progress
  let timer = null;

  const $ = (id) => document.getElementById(id);
  const byName = (a, b) => a.localeCompare(b, "en", { numeric: true });

  // An element with attributes (`data-*` given as `data: {...}`) and text or element children.
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "data") Object.assign(e.dataset, v);
      else if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  // --- the view's state in the URL (?level=node&kind=tcp&ns=tidb) ---

  function readUrl() {
    const p = new URLSearchParams(location.search);
    if (LEVELS.includes(p.get("level"))) view.level = p.get("level");
    if (KIND_VALUES.includes(p.get("kind"))) view.kind = p.get("kind");
    if (p.get("ns")) view.namespace = p.get("ns");
  }

  function writeUrl() {
    const p = new URLSearchParams();
    if (view.level !== "pod") p.set("level", view.level);
    if (view.kind !== "all") p.set("kind", view.kind);
    if (view.namespace && view.level === "pod") p.set("ns", view.namespace);
    const q = p.toString();
    history.replaceState(null, "", q ? `?${q}` : location.pathname);
  }

  // --- labels ---

  // The Kubernetes namespace a matrix label lives in, or null: `<ns>/<pod>[:port]`,
  // `svc/<ns>/<name>:<port>`; node, DNS, NodePort and address labels have none.
  function namespaceOf(label) {
    const parts = label.split("/");
    if (parts.length < 2) return null;
    switch (parts[0]) {
      case "node":
      case "dns":
      case "nodeport":
      case "external":
        return null;
      case "svc":
        return parts.length >= 3 && parts[1] !== "*" ? parts[1] : null;
      default:
        return parts[0];
    }
  }

  function inNamespace(cell) {
    if (view.level !== "pod" || !view.namespace) return true;
    return namespaceOf(cell.source) === view.namespace || namespaceOf(cell.destination) === view.namespace;
  }

  const sameCell = (a, b) => a && b && a.source === b.source && a.destination === b.destination && a.kind === b.kind;

  // Whether `label` names `term` (a pod, node, service…), allowing a port, family or endpoint
  // suffix and the `node/` prefix of pod-level node labels.
  function names(label, term) {
    if (!term) return false;
    for (const t of [term, `node/${term}`, `svc/${term}`]) {
      if (label === t) return true;
      if ([":", "#", "@"].some((sep) => label.startsWith(t + sep))) return true;
    }
    return false;
  }

  // Cells a finding talks about: its culprit and the affected entries, `a→b` as a pair.
  function relatedTo(finding, cell) {
    const terms = [];
    if (finding.culprit) terms.push(finding.culprit.name);
    terms.push(...finding.affected);
    return terms.some((term) => {
      const pair = term.split(/\s*(?:\u2192|->)\s*/);
      if (pair.length === 2) return names(cell.source, pair[0]) && names(cell.destination, pair[1]);
      return names(cell.source, term) || names(cell.destination, term);
    });
  }

  // --- formatting ---

  const ms = (v) => (v === null || v === undefined ? "\u2014" : `${v.toFixed(3)} ms`);
  const pct = (r) => `${(r * 100).toFixed(r > 0 && r < 0.001 ? 3 : 1)} %`;

  function when(unixMs) {
    if (unixMs === null || unixMs === undefined) return "never";
    const ago = Math.max(0, Math.round((Date.now() - unixMs) / 1000));
    return `${new Date(unixMs).toLocaleTimeString()} (${ago} s ago)`;
  }

  function shownStatus(c) {
    return c.denied_by_policy ? "denied" : c.status;
  }

  function cellTitle(c) {
    const status = c.denied_by_policy ? `${c.status}, denied by NetworkPolicy as intended (${c.denied_by_policy})` : c.status;
    const parts = [`${c.source} \u2192 ${c.destination} (${c.kind}): ${status}`, `loss ${pct(c.loss_ratio)}`];
    if (c.rtt_p50_ms !== null) parts.push(`p50 ${ms(c.rtt_p50_ms)}`);
    if (c.last_error) parts.push(c.last_error);
    return parts.join(" \u00b7 ");
  }

  // --- drawing ---

  function renderMatrix() {
    const table = $("matrix");
    const finding = diagnosis && diagnosis.findings.find((f) => f.id === selectedFinding);
    const cells = matrix.cells.filter(inNamespace);
    const sources = [...new Set(cells.map((c) => c.source))].sort(byName);
    const destinations = [...new Set(cells.map((c) => c.destination))].sort(byName);
    const at = new Map();
    for (const c of cells) {
      const key = `${c.source}\u0000${c.destination}`;
      if (!at.has(key)) at.set(key, []);
      at.get(key).push(c);
    }
    const counts = Object.fromEntries(STATUSES.map((s) => [s, 0]));

    const head = el("tr", {}, el("th", { class: "corner", scope: "col", text: "source \u2193 \u00b7 destination \u2192" }));
    for (const d of destinations) {
      head.append(el("th", { class: "dest", scope: "col", title: d, data: { destination: d } }, el("span", { text: d })));
    }
    const body = el("tbody");
    for (const s of sources) {
      const row = el("tr", { data: { source: s } }, el("th", { class: "src", scope: "row", title: s, text: s }));
      for (const d of destinations) {
        const here = (at.get(`${s}\u0000${d}`) || []).sort((a, b) => KINDS.indexOf(a.kind) - KINDS.indexOf(b.kind));
        const td = el("td", { class: here.length ? "square" : "square none" });
        for (const c of here) {
          const shown = shownStatus(c);
          counts[shown] = (counts[shown] || 0) + 1;
          const isSelected = sameCell(c, selected);
          const slice = el(
            "button",
            {
              type: "button",
              class: `slice status-${shown}${view.kind === "all" ? "" : " glyph"}${isSelected ? " selected" : ""}${finding && relatedTo(finding, c) ? " related" : ""}`,
              title: cellTitle(c),
              "aria-label": cellTitle(c),
              "aria-pressed": isSelected ? "true" : "false",
              data: { testid: "cell", source: c.source, destination: c.destination, kind: c.kind, status: c.status, shown },
              text: view.kind === "all" ? KIND_LETTER[c.kind] || "?" : STATUS_GLYPH[shown],
            },
          );
          slice.addEventListener("click", () => select(c));
          td.append(slice);
        }
        row.append(td);
      }
      body.append(row);
    }
    table.replaceChildren(el("thead", {}, head), body);
    $("hint").textContent =
      view.kind === "all"
        ? "Rows are sources, columns destinations. Each square holds one slice per probe kind measured " +
          "(I icmp, T tcp, D dns, H http, M mtu). Click a slice for its numbers."
        : `Rows are sources, columns destinations; ${view.kind} probes only. Click a square for its numbers.`;
    table.dataset.loaded = "true";
    table.dataset.level = matrix.level;
    table.dataset.kind = matrix.kind;
    table.dataset.generated = String(matrix.generated_unix_ms);
    $("matrix-empty").hidden = cells.length > 0;
    for (const s of STATUSES) {
      const b = document.querySelector(`#legend [data-count="${s}"]`);
      if (b) b.textContent = String(counts[s]);
    }
  }

  function renderNamespaces() {
    const select = $("namespace");
    select.disabled = view.level !== "pod";
    const found = new Set();
    if (view.level === "pod") {
      for (const c of matrix.cells) {
        for (const label of [c.source, c.destination]) {
          const ns = namespaceOf(label);
          if (ns) found.add(ns);
        }
      }
    }
    if (view.namespace) found.add(view.namespace);
    const wanted = [...found].sort(byName);
    const have = [...select.options].slice(1).map((o) => o.value);
    if (wanted.join("\u0000") !== have.join("\u0000")) {
      select.replaceChildren(el("option", { value: "", text: "all" }), ...wanted.map((ns) => el("option", { value: ns, text: ns })));
    }
    select.value = view.level === "pod" ? view.namespace : "";
  }

  function renderDetail() {
    const panel = $("cell-detail");
    const list = panel.querySelector("dl");
    const placeholder = panel.querySelector('[data-field="placeholder"]');
    const cell = selected && matrix && matrix.cells.find((c) => sameCell(c, selected));
    panel.dataset.selected = cell ? "true" : "false";
    if (!selected) {
      list.hidden = true;
      placeholder.hidden = false;
      placeholder.textContent = "Click a cell of the matrix.";
      return;
    }
    if (!cell) {
      list.hidden = true;
      placeholder.hidden = false;
      placeholder.textContent = `${selected.source} \u2192 ${selected.destination} (${selected.kind}) is not in this view.`;
      return;
    }
    list.hidden = false;
    placeholder.hidden = true;
    panel.dataset.status = cell.status;
    const set = (field, text) => {
      const dd = panel.querySelector(`[data-field="${field}"]`);
      if (dd) dd.textContent = text;
      return dd;
    };
    set("source", cell.source);
    set("destination", cell.destination);
    set("kind", cell.kind);
    set("status", cell.denied_by_policy ? `${cell.status}: denied by NetworkPolicy, as intended` : cell.status).className =
      `badge status-${shownStatus(cell)}`;
    set("policy", cell.denied_by_policy || "allows it, or no policy applies");
    set("loss", pct(cell.loss_ratio));
    set("rtt_p50", ms(cell.rtt_p50_ms));
    set("rtt_p99", ms(cell.rtt_p99_ms));
    set("samples", String(cell.samples));
    set("last_error", cell.last_error || "none").classList.toggle("has-error", Boolean(cell.last_error));
    set("last_update", when(cell.last_update_unix_ms));
  }

  function runbookLink(runbook) {
    if (/^https?:\/\//.test(runbook)) return el("a", { href: runbook, rel: "noreferrer noopener", target: "_blank", text: runbook });
    return document.createTextNode(`section ${runbook}`);
  }

  function renderFindings() {
    const box = $("findings");
    const findings = diagnosis.findings;
    $("findings-count").textContent = String(findings.length);
    const denied = diagnosis.denied_by_policy_total || 0;
    const deniedNote = denied
      ? el("p", { class: "empty", data: { testid: "denied-by-policy" }, text: `${denied} failing paths are denied by NetworkPolicy, as intended (not findings).` })
      : null;
    if (!findings.length) {
      const text = denied
        ? "No findings: every probed path looks healthy or is denied by NetworkPolicy as intended."
        : "No findings: every probed path looks healthy.";
      box.replaceChildren(...[el("p", { class: "empty", data: { testid: "no-findings" }, text }), deniedNote].filter(Boolean));
      return;
    }
    box.replaceChildren(
      ...findings.map((f) => {
        const isSelected = f.id === selectedFinding;
        const article = el(
          "article",
          {
            class: `finding sev-${f.severity}${isSelected ? " selected" : ""}`,
            tabindex: "0",
            "aria-pressed": isSelected ? "true" : "false",
            title: "Click to highlight the cells this finding is about",
            data: { testid: "finding", id: f.id, severity: f.severity },
          },
          el("header", {}, el("span", { class: `severity sev-${f.severity}`, data: { field: "severity" }, text: f.severity }), el("h3", { data: { field: "verdict" }, text: f.verdict })),
          f.first_seen_unix_ms
            ? el("p", { class: "since", data: { field: "since" } }, el("span", { class: "label", text: "since " }), new Date(f.first_seen_unix_ms).toLocaleString())
            : null,
          f.culprit
            ? el("p", { class: "culprit", data: { field: "culprit", culpritType: f.culprit.type } }, el("span", { class: "label", text: "culprit " }), el("code", { text: f.culprit.type }), " ", el("strong", { text: f.culprit.name }))
            : null,
          f.affected.length
            ? el("div", { data: { field: "affected" } }, el("span", { class: "label", text: "affected" }), el("ul", {}, ...f.affected.map((a) => el("li", { text: a }))))
            : null,
          f.evidence.length
            ? el("div", { data: { field: "evidence" } }, el("span", { class: "label", text: "evidence" }), el("ul", { class: "evidence" }, ...f.evidence.map((e) => el("li", { text: e }))))
            : null,
          f.suggestion ? el("p", { class: "suggestion", data: { field: "suggestion" } }, el("span", { class: "label", text: "suggestion " }), f.suggestion) : null,
          f.runbook ? el("p", { class: "runbook", data: { field: "runbook" } }, el("span", { class: "label", text: "runbook " }), runbookLink(f.runbook)) : null,
          el("p", { class: "finding-id" }, el("code", { text: f.id })),
        );
        const toggle = (ev) => {
          if (ev.target.closest("a")) return;
          selectedFinding = selectedFinding === f.id ? null : f.id;
          render();
        };
        article.addEventListener("click", toggle);
        article.addEventListener("keydown", (ev) => {
          if (ev.key === "Enter" || ev.key === " ") {
            ev.preventDefault();
            toggle(ev);
          }
        });
        return article;
      }),
      ...(deniedNote ? [deniedNote] : []),
    );
  }

  function render() {
    if (matrix) {
      renderNamespaces();
      renderMatrix();
      renderDetail();
    }
    if (diagnosis) renderFindings();
    if (matrix) {
      const cells = matrix.cells.filter(inNamespace).length;
      $("refreshed").textContent = `updated ${new Date(matrix.generated_unix_ms).toLocaleTimeString()} \u00b7 ${cells} cells${view.live ? "" : " \u00b7 paused"}`;
      $("refreshed").dataset.generated = String(matrix.generated_unix_ms);
    }
  }

  function select(cell) {
    selected = sameCell(cell, selected) ? null : { source: cell.source, destination: cell.destination, kind: cell.kind };
    render();
  }

  function showError(text) {
    const box = $("error");
    box.hidden = !text;
    box.textContent = text || "";
    document.body.dataset.state = text ? "error" : "ok";
  }

  // --- fetching ---

  async function getJson(url, signal) {
    const response = await fetch(url, { signal, cache: "no-store", headers: { Accept: "application/json" } });
    const body = await response.json().catch(() => null);
    if (!response.ok) throw new Error(body && body.error ? body.error : `${response.status} ${response.statusText}`);
    if (!body) throw new Error(`${url} answered something that is not JSON`);
    return body;
  }

  function schedule() {
    clearTimeout(timer);
    timer = view.live ? setTimeout(refresh, REFRESH_MS) : null;
  }

  async function refresh() {
    clearTimeout(timer);
    if (inflight) inflight.abort();
    const ctl = new AbortController();
    inflight = ctl;
    const deadline = setTimeout(() => ctl.abort(), TIMEOUT_MS);
    const q = new URLSearchParams({ level: view.level, kind: view.kind });
    try {
      const [m, d] = await Promise.all([getJson(`/api/v1/matrix?${q}`, ctl.signal), getJson("/api/v1/diagnosis", ctl.signal)]);
      if (ctl !== inflight) return;
      matrix = m;
      diagnosis = d;
      showError(null);
      render();
    } catch (e) {
      if (ctl !== inflight) return;
      const why = e.name === "AbortError" ? `no answer within ${TIMEOUT_MS / 1000} s` : e.message;
      showError(`Cannot refresh from the collector: ${why}. Showing the last answer; retrying every ${REFRESH_MS / 1000} s.`);
    } finally {
      clearTimeout(deadline);
      if (ctl === inflight) {
        inflight = null;
        schedule();
      }
    }
  }

  // --- controls ---

  function bind() {
    for (const radio of document.querySelectorAll('#level input[name="level"]')) {
      radio.checked = radio.value === view.level;
      radio.addEventListener("change", () => {
        if (!radio.checked) return;
        view.level = radio.value;
        selected = null;
        matrix = null;
        writeUrl();
        refresh();
      });
    }
    const kind = $("kind");
    kind.value = view.kind;
    kind.addEventListener("change", () => {
      view.kind = kind.value;
      writeUrl();
      refresh();
    });
    const ns = $("namespace");
    ns.addEventListener("change", () => {
      view.namespace = ns.value;
      writeUrl();
      render();
    });
    const live = $("live");
    live.checked = view.live;
    live.addEventListener("change", () => {
      view.live = live.checked;
      if (view.live) refresh();
      else {
        clearTimeout(timer);
        render();
      }
    });
    $("controls").addEventListener("submit", (ev) => ev.preventDefault());
  }

  readUrl();
  bind();
  refresh();
})();
