// sluice web UI: a small single-page app over the REST API (no build step).
// Routes (location.hash): #/runs, #/runs/<id>, #/pipelines, #/pipelines/<name>,
// #/lineage?target=<digest|RUN/STEP/NAME>.
'use strict';

const PHASES = ['Pending', 'Running', 'Succeeded', 'Failed', 'Error', 'Cancelled'];
const TERMINAL_RUN = new Set(['Succeeded', 'Failed', 'Error', 'Cancelled']);
const TERMINAL_STEP = new Set(['Succeeded', 'Failed', 'Error', 'Skipped', 'Omitted', 'Cancelled', 'Cached']);
let pollTimer = null;

function token() { return localStorage.getItem('sluice.token') || ''; }

// Credentials of every API call: the saved token if there is one, else the
// OIDC session cookie (sent by the browser), with the header the server
// asks of cookie-signed writes.
function authHeaders() {
  const h = { 'X-Sluice-CSRF': '1' };
  if (token()) h.Authorization = 'Bearer ' + token();
  return h;
}

// Who the caller is (GET /api/v1/whoami): {name, role, pipelines}, or null.
let me = null;
const ROLE_RANK = { viewer: 0, runner: 1, admin: 2 };
// Whether the caller's role allows `role`'s actions; write buttons are
// only shown when it does (the server refuses the rest with 403 anyway).
function may(role) { return !!me && ROLE_RANK[me.role] >= ROLE_RANK[role]; }

async function loadWhoami() {
  const res = await fetch('/api/v1/whoami', { headers: authHeaders() });
  me = res.ok ? await res.json() : null;
  const who = document.getElementById('who');
  who.textContent = me ? `${me.name} (${me.role})` : '';
  who.dataset.role = me ? me.role : '';
  document.getElementById('login').hidden = !!me;
  document.getElementById('logout').hidden = !me || !!token();
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {}, authHeaders());
  const res = await fetch(path, Object.assign({}, options, { headers }));
  if (res.status === 401) {
    showBanner('Not authorized: log in, or enter a valid API token at the top right.');
    throw new Error('401');
  }
  const type = res.headers.get('Content-Type') || '';
  const body = type.startsWith('application/json') ? await res.json() : await res.text();
  if (!res.ok) {
    const msg = body && body.error ? body.error.message : String(body);
    showBanner(msg);
    throw new Error(msg);
  }
  hideBanner();
  return body;
}

function showBanner(text) { const b = document.getElementById('banner'); b.textContent = text; b.hidden = false; }
function hideBanner() { document.getElementById('banner').hidden = true; }

function esc(s) {
  return String(s === undefined || s === null ? '' : s)
    .replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}
function phaseBadge(p) { return `<span class="phase ${esc(p)}">${esc(p)}</span>`; }
function fmtTime(t) { return t ? new Date(t).toLocaleString() : ''; }
function fmtDur(s) {
  if (s === null || s === undefined) return '';
  if (s < 1) return (s * 1000).toFixed(0) + 'ms';
  if (s < 120) return s.toFixed(1) + 's';
  return Math.floor(s / 60) + 'm' + Math.round(s % 60) + 's';
}
function runDuration(r) {
  if (!r.started_at) return '';
  const end = r.finished_at ? new Date(r.finished_at) : new Date();
  return fmtDur((end - new Date(r.started_at)) / 1000);
}
function parseHash() {
  const h = location.hash.replace(/^#/, '') || '/runs';
  const [path, query] = h.split('?');
  return { parts: path.split('/').filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(query || '') };
}
function setPoll(fn, ms) { clearTimeout(pollTimer); pollTimer = setTimeout(fn, ms); }

// ---- Runs list -------------------------------------------------------------
async function viewRuns(query) {
  const main = document.getElementById('main');
  const pipeline = query.get('pipeline') || '';
  const phase = query.get('phase') || '';
  let pipelines = [];
  try { pipelines = (await api('/api/v1/pipelines')).pipelines.filter(p => p.name); } catch (e) { main.textContent = ''; return; }
  const qs = new URLSearchParams({ limit: '100' });
  if (pipeline) qs.set('pipeline', pipeline);
  if (phase) qs.set('phase', phase);
  const data = await api('/api/v1/runs?' + qs);
  main.innerHTML = `
    <h1>Runs</h1>
    <div class="filters">
      <label>Pipeline <select id="f-pipeline"><option value="">all</option>
        ${pipelines.map(p => `<option ${p.name === pipeline ? 'selected' : ''}>${esc(p.name)}</option>`).join('')}</select></label>
      <label>Phase <select id="f-phase"><option value="">all</option>
        ${PHASES.map(p => `<option ${p === phase ? 'selected' : ''}>${p}</option>`).join('')}</select></label>
    </div>
    <table id="runs"><thead><tr><th>Run</th><th>Pipeline</th><th>Phase</th><th>Created</th><th>Duration</th><th>Message</th></tr></thead>
    <tbody>${data.runs.map(r => `<tr data-run="${esc(r.id)}">
      <td><a href="#/runs/${encodeURIComponent(r.id)}">${esc(r.id)}</a></td><td>${esc(r.pipeline)}</td>
      <td>${phaseBadge(r.phase)}</td><td>${fmtTime(r.created_at)}</td><td>${runDuration(r)}</td><td>${esc(r.message)}</td></tr>`).join('')}
    </tbody></table>
    ${data.runs.length ? '' : '<p class="meta">No runs match.</p>'}`;
  const refilter = () => {
    const q = new URLSearchParams();
    const p = document.getElementById('f-pipeline').value, ph = document.getElementById('f-phase').value;
    if (p) q.set('pipeline', p);
    if (ph) q.set('phase', ph);
    location.hash = '#/runs' + (q.toString() ? '?' + q : '');
  };
  document.getElementById('f-pipeline').onchange = refilter;
  document.getElementById('f-phase').onchange = refilter;
  setPoll(() => route(), 5000);
}

// ---- Run page: live DAG ----------------------------------------------------
const NODE_W = 170, NODE_H = 44, GAP_X = 70, GAP_Y = 18;

function layoutGraph(graph) {
  const layers = new Map();
  for (const n of graph.nodes) {
    if (!layers.has(n.layer)) layers.set(n.layer, []);
    layers.get(n.layer).push(n);
  }
  const pos = new Map();
  const order = [...layers.keys()].sort((a, b) => a - b);
  let height = 0;
  order.forEach((layer, col) => {
    layers.get(layer).forEach((n, row) => {
      pos.set(n.id, { x: 20 + col * (NODE_W + GAP_X), y: 20 + row * (NODE_H + GAP_Y) });
      height = Math.max(height, 20 + (row + 1) * (NODE_H + GAP_Y));
    });
  });
  return { pos, width: 40 + order.length * (NODE_W + GAP_X) - GAP_X, height: height + 20 };
}

function renderDag(graph, selected) {
  const { pos, width, height } = layoutGraph(graph);
  const edges = graph.edges.map(([from, to]) => {
    const a = pos.get(from), b = pos.get(to);
    if (!a || !b) return '';
    const x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2, x2 = b.x, y2 = b.y + NODE_H / 2, mx = (x1 + x2) / 2;
    return `<path class="edge" data-from="${esc(from)}" data-to="${esc(to)}" d="M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}"/>`;
  }).join('');
  const nodes = graph.nodes.map(n => {
    const p = pos.get(n.id);
    const label = n.id.length > 22 ? n.id.slice(0, 21) + '…' : n.id;
    return `<g class="node phase-${esc(n.phase)}${n.id === selected ? ' selected' : ''}" data-instance="${esc(n.id)}" data-phase="${esc(n.phase)}" transform="translate(${p.x},${p.y})">
      <title>${esc(n.id)}: ${esc(n.phase)}${n.message ? ' — ' + esc(n.message) : ''}</title>
      <rect width="${NODE_W}" height="${NODE_H}" style="fill: var(--${esc(n.phase)}, #999)"></rect>
      <text x="10" y="18">${esc(label)}</text>
      <text x="10" y="34" class="node-phase">${esc(n.phase)}${n.attempts > 1 ? ' ×' + n.attempts : ''} ${fmtDur(n.duration_seconds)}</text>
    </g>`;
  }).join('');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">
    <defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
      <path d="M 0 0 L 10 5 L 0 10 z" fill="#888"/></marker></defs>${edges}${nodes}</svg>`;
}

let runState = { id: null, selected: null, logOffset: 0, logFor: null };

async function loadLog(runId, instance, append) {
  const pre = document.getElementById('log');
  if (!pre) return;
  if (!append || runState.logFor !== instance) { runState.logOffset = 0; pre.textContent = ''; runState.logFor = instance; }
  const res = await fetch(`/api/v1/runs/${encodeURIComponent(runId)}/steps/${encodeURIComponent(instance)}/logs?offset=${runState.logOffset}`,
                          { headers: authHeaders() });
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    pre.textContent = body.error ? body.error.message : 'no log';
    return;
  }
  const text = await res.text();
  runState.logOffset = Number(res.headers.get('X-Log-Size') || runState.logOffset + text.length);
  pre.textContent += text;
  pre.scrollTop = pre.scrollHeight;
}

async function viewRun(id) {
  const main = document.getElementById('main');
  if (runState.id !== id) runState = { id, selected: null, logOffset: 0, logFor: null };
  const graph = await api(`/api/v1/runs/${encodeURIComponent(id)}/graph`);
  const run = graph.run;
  if (!document.getElementById('dag') || main.dataset.run !== id) {
    main.dataset.run = id;
    main.innerHTML = `
      <h1>Run <code id="run-id">${esc(run.id)}</code> <span id="run-phase"></span></h1>
      <div class="card meta" id="run-meta"></div>
      <div class="filters">${may('runner') ? '<button id="cancel">Cancel</button><button id="resume">Resume</button>' : ''}
        <a href="#/pipelines/${encodeURIComponent(run.pipeline)}">Pipeline ${esc(run.pipeline)} — metrics across runs</a></div>
      <div id="dag"></div>
      <h2>Step <span id="log-step">—</span> <span id="log-phase"></span></h2>
      <pre class="log" id="log" data-testid="log">Click a step in the graph to see its log.</pre>
      <h2>Artifacts</h2><div id="artifacts"></div>`;
    if (may('runner')) {
      document.getElementById('cancel').onclick = () => api(`/api/v1/runs/${encodeURIComponent(id)}/cancel`, { method: 'POST' }).then(() => route());
      document.getElementById('resume').onclick = () => api(`/api/v1/runs/${encodeURIComponent(id)}/resume`, { method: 'POST' })
        .then(r => { location.hash = '#/runs/' + encodeURIComponent(r.run_id); });
    }
    document.getElementById('dag').addEventListener('click', ev => {
      const g = ev.target.closest('g.node');
      if (!g) return;
      runState.selected = g.dataset.instance;
      document.querySelectorAll('#dag g.node').forEach(n => n.classList.toggle('selected', n === g));
      document.getElementById('log-step').textContent = runState.selected;
      document.getElementById('log-phase').innerHTML = phaseBadge(g.dataset.phase);
      loadLog(id, runState.selected, false);
    });
    api(`/api/v1/runs/${encodeURIComponent(id)}/artifacts`).then(a => {
      const outs = a.artifacts.filter(x => x.direction === 'output');
      document.getElementById('artifacts').innerHTML = outs.length ? `<table><thead><tr><th>Step</th><th>Name</th><th>Type</th><th>Digest</th><th>Size</th><th></th></tr></thead><tbody>
        ${outs.map(x => `<tr><td>${esc(x.instance)}</td><td>${esc(x.name)}</td><td>${esc(x.type)}</td><td><code>${esc(x.digest.slice(0, 19))}</code></td><td>${x.size}</td>
        <td><a href="#/lineage?target=${encodeURIComponent(x.digest)}">lineage</a></td></tr>`).join('')}</tbody></table>` : '<p class="meta">No artifacts.</p>';
    }).catch(() => {});
  }
  document.getElementById('run-phase').innerHTML = phaseBadge(run.phase);
  document.getElementById('run-meta').innerHTML = `pipeline <b>${esc(run.pipeline)}</b> · created ${fmtTime(run.created_at)} · duration ${runDuration(run)}
    · params <code>${esc(JSON.stringify(run.params))}</code>${run.message ? ' · ' + esc(run.message) : ''}${run.resumed_from ? ' · resumes ' + esc(run.resumed_from) : ''}`;
  document.getElementById('dag').innerHTML = renderDag(graph, runState.selected);
  if (runState.selected) {
    const node = graph.nodes.find(n => n.id === runState.selected);
    if (node) document.getElementById('log-phase').innerHTML = phaseBadge(node.phase);
    if (!TERMINAL_RUN.has(run.phase) || (node && !TERMINAL_STEP.has(node.phase))) loadLog(id, runState.selected, true);
  }
  if (!TERMINAL_RUN.has(run.phase)) setPoll(() => route(), 1000);
}

// ---- Pipelines ---------------------------------------------------------------
async function viewPipelines() {
  const main = document.getElementById('main');
  const data = await api('/api/v1/pipelines');
  main.innerHTML = `<h1>Pipelines</h1><p><button id="reload">Reload now</button></p>
    <table><thead><tr><th>Name</th><th>File</th><th>Lint</th><th>Steps</th><th>Schedule</th></tr></thead><tbody>
    ${data.pipelines.map(p => `<tr><td>${p.name ? `<a href="#/pipelines/${encodeURIComponent(p.name)}">${esc(p.name)}</a>` : '—'}</td>
      <td><code>${esc(p.file)}</code></td>
      <td>${p.ok ? '<span class="ok">ok</span>' : `<span class="bad">errors${p.has_good_version ? ' (serving last good version)' : ''}</span>
        <div class="diag">${p.diagnostics.map(d => esc(d.text)).join('\n')}</div>`}</td>
      <td>${p.steps || ''}</td><td>${p.scheduled ? 'yes' : ''}</td></tr>`).join('')}</tbody></table>`;
  document.getElementById('reload').onclick = () => api('/api/v1/reload', { method: 'POST' }).then(() => route());
}

async function viewPipeline(name) {
  const main = document.getElementById('main');
  const p = await api('/api/v1/pipelines/' + encodeURIComponent(name));
  const cmp = await api(`/api/v1/pipelines/${encodeURIComponent(name)}/metrics?limit=20`);
  const runs = cmp.runs.slice().reverse();  // oldest first
  const charts = cmp.metrics.map(m => {
    const vals = runs.map(r => r.metrics[m]).filter(v => typeof v === 'number');
    if (!vals.length) return '';
    const max = Math.max(...vals.map(Math.abs), 1e-9), w = 26, h = 80;
    const bars = runs.map((r, i) => {
      const v = r.metrics[m];
      if (typeof v !== 'number') return '';
      const bh = Math.max(1, Math.abs(v) / max * h);
      return `<rect class="bar" x="${i * w + 4}" y="${h - bh + 4}" width="${w - 6}" height="${bh}"><title>${esc(r.run)}: ${v}</title></rect>`;
    }).join('');
    return `<div class="card"><b>${esc(m)}</b> <span class="meta">latest ${vals[vals.length - 1]}</span><br>
      <svg class="metric-chart" width="${runs.length * w + 8}" height="${h + 8}">${bars}</svg></div>`;
  }).join('');
  main.innerHTML = `<h1>Pipeline ${esc(p.name)}</h1><p class="meta">${esc(p.description)} · <code>${esc(p.file)}</code></p>
    ${p.schedule ? `<div class="card">Schedule <code>${esc(p.schedule.cron.join(' | '))}</code> (${esc(p.schedule.timezone)}),
      ${esc(p.schedule.concurrencyPolicy)}, catchup ${esc(p.schedule.catchup)} · next: ${p.schedule.next.map(fmtTime).join(', ')}</div>` : ''}
    ${may('runner') ? `<div class="card"><b>Trigger a run</b>
      ${p.params.map(x => `<label>${esc(x.name)} <input data-param="${esc(x.name)}" placeholder="${esc(JSON.stringify(x.default))}"></label>`).join(' ')}
      <button id="trigger">Run</button></div>` : ''}
    <h2>Metrics across runs</h2>
    <table id="metrics"><thead><tr><th>Run</th><th>Phase</th>${cmp.metrics.map(m => `<th>${esc(m)}</th>`).join('')}</tr></thead><tbody>
      ${cmp.runs.map(r => `<tr><td><a href="#/runs/${encodeURIComponent(r.run)}">${esc(r.run)}</a></td><td>${phaseBadge(r.phase)}</td>
        ${cmp.metrics.map(m => `<td>${r.metrics[m] === undefined ? '' : esc(r.metrics[m])}</td>`).join('')}</tr>`).join('')}</tbody></table>
    ${charts}`;
  if (may('runner')) document.getElementById('trigger').onclick = () => {
    const params = {};
    document.querySelectorAll('input[data-param]').forEach(i => { if (i.value !== '') params[i.dataset.param] = i.value; });
    api(`/api/v1/pipelines/${encodeURIComponent(name)}/runs`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ params }) })
      .then(r => { location.hash = '#/runs/' + encodeURIComponent(r.run_id); });
  };
}

// ---- Lineage -------------------------------------------------------------------
async function viewLineage(query) {
  const main = document.getElementById('main');
  const target = query.get('target') || '';
  const downstream = query.get('downstream') === 'true';
  const g = await api(`/api/v1/lineage?target=${encodeURIComponent(target)}&downstream=${downstream}`);
  // Layers: walk from the root along events (artifact <-> execution).
  const nodes = new Map();
  for (const a of g.artifacts) nodes.set('a:' + a.digest, { id: 'a:' + a.digest, kind: 'artifact', label: a.type + ' ' + a.digest.slice(7, 19), data: a });
  for (const e of g.executions) nodes.set('e:' + e.id, { id: 'e:' + e.id, kind: 'execution', label: e.step + ' (' + e.run + ')', data: e });
  const edges = g.events.map(ev => ev.type === 'OUTPUT' ? ['e:' + ev.execution, 'a:' + ev.artifact, ev.name] : ['a:' + ev.artifact, 'e:' + ev.execution, ev.name]);
  const depth = new Map();
  const rootId = g.root.artifact ? 'a:' + g.root.artifact : (g.root.execution ? 'e:' + g.root.execution : null);
  const queue = rootId ? [rootId] : [...nodes.keys()];
  queue.forEach(id => depth.set(id, 0));
  while (queue.length) {
    const id = queue.shift();
    for (const [a, b] of edges) {
      const next = downstream ? (a === id ? b : null) : (b === id ? a : null);
      if (next && !depth.has(next)) { depth.set(next, depth.get(id) + 1); queue.push(next); }
    }
  }
  const graph = { nodes: [], edges: edges.map(([a, b]) => [a, b]) };
  for (const n of nodes.values()) {
    const d = depth.has(n.id) ? depth.get(n.id) : 0;
    graph.nodes.push({ id: n.id, layer: downstream ? d : -d, phase: n.kind === 'artifact' ? 'Cached' : (n.data.outcome === 'Succeeded' ? 'Succeeded' : 'Failed'),
                       attempts: 0, duration_seconds: null, message: n.label });
  }
  const svg = renderDag(graph, rootId).replace(/<text x="10" y="18">[^<]*<\/text>/g, m => m);
  main.innerHTML = `<h1>Lineage of <code>${esc(g.root.label || target)}</code></h1>
    <p><a href="#/lineage?target=${encodeURIComponent(target)}&downstream=${!downstream}">show ${downstream ? 'upstream' : 'downstream'}</a>
    ${g.truncated ? ' · truncated' : ''}</p>
    <div id="lineage" class="card">${svg}</div>
    <h2>Nodes</h2><table><thead><tr><th>Kind</th><th>What</th></tr></thead><tbody>
    ${[...nodes.values()].map(n => `<tr><td>${n.kind}</td><td>${esc(n.label)} ${n.kind === 'artifact' ? `<code>${esc(n.data.digest)}</code>` : `<a href="#/runs/${encodeURIComponent(n.data.run)}">run</a>`}</td></tr>`).join('')}
    </tbody></table>`;
}

// ---- Router ----------------------------------------------------------------------
async function route() {
  clearTimeout(pollTimer);
  const { parts, query } = parseHash();
  try {
    await loadWhoami();
    if (parts[0] === 'runs' && parts[1]) await viewRun(parts[1]);
    else if (parts[0] === 'pipelines' && parts[1]) await viewPipeline(parts[1]);
    else if (parts[0] === 'pipelines') await viewPipelines();
    else if (parts[0] === 'lineage') await viewLineage(query);
    else await viewRuns(query);
  } catch (e) {
    if (String(e.message) !== '401') console.error(e);
  }
}

document.getElementById('token-form').addEventListener('submit', ev => {
  ev.preventDefault();
  localStorage.setItem('sluice.token', document.getElementById('token').value);
  document.getElementById('token').value = '';
  route();
});
document.getElementById('logout').addEventListener('click', () => {
  fetch('/auth/logout', { method: 'POST', headers: authHeaders() }).then(() => route());
});
window.addEventListener('hashchange', () => { document.getElementById('main').dataset.run = ''; route(); });
route();
