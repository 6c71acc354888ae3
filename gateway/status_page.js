'use strict';
// The page holds no data of its own: it asks status/live every REFRESH_MS and
// updates the DOM in place. Every value is set with textContent, never parsed as HTML,
// so route names, URLs and error texts cannot inject markup. The admin token, when
// the gateway has one, is asked for once, kept in sessionStorage (this tab only) and
// sent as an Authorization header: never in a URL.
const REFRESH_MS = 2000;
const TOKEN_KEY = 'gateway-admin-token';
const DASH = '–';
let timer = null;
let lastOk = null;

const $ = (selector, root = document) => root.querySelector(selector);

function setText(node, text, cls) {
  if (node.textContent !== text) node.textContent = text;
  const want = cls || '';
  if ((node.dataset.cls || '') !== want) {
    if (node.dataset.cls) node.classList.remove(...node.dataset.cls.split(' '));
    if (want) node.classList.add(...want.split(' '));
    node.dataset.cls = want;
  }
}

function count(n) { return n === null || n === undefined ? DASH : Number(n).toLocaleString('en-US'); }
function rate(r) {
  if (r === null || r === undefined) return DASH;
  return r >= 100 ? Math.round(r).toLocaleString('en-US') : r >= 10 ? r.toFixed(1) : r.toFixed(2);
}
function pct(r) { return r === null || r === undefined ? DASH : (r * 100).toFixed(1) + ' %'; }
function ms(v) {
  if (v === null || v === undefined) return DASH;
  return (v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : Math.round(v).toString()) + ' ms';
}
function age(s) {
  if (s === null || s === undefined) return DASH;
  if (s < 60) return Math.round(s) + ' s ago';
  if (s < 3600) return Math.round(s / 60) + ' min ago';
  if (s < 86400) return (s / 3600).toFixed(1) + ' h ago';
  return (s / 86400).toFixed(1) + ' d ago';
}
function duration(s) {
  if (s === null || s === undefined) return DASH;
  if (s < 60) return Math.round(s) + ' s';
  if (s < 3600) return Math.round(s / 60) + ' min';
  if (s < 86400) return (s / 3600).toFixed(1) + ' h';
  return (s / 86400).toFixed(1) + ' d';
}
function utc(epoch) { return new Date(epoch * 1000).toISOString().replace('T', ' ').slice(0, 19) + ' UTC'; }
function ratioClass(r, warn, bad) { return r === null || r === undefined ? '' : r >= bad ? 'bad' : r >= warn ? 'warn' : ''; }
function countClass(n) { return n > 0 ? 'warn' : ''; }

// A keyed table body: rows are created once per key, updated in place, reordered
// to follow the data and removed when their key is gone.
function syncRows(tbody, items, columns) {
  const existing = new Map();
  for (const row of tbody.children) existing.set(row.dataset.key, row);
  let previous = null;
  for (const item of items) {
    let row = existing.get(item.key);
    const kind = item.group ? 'group' : 'row';
    if (row && row.dataset.kind !== kind) { row.remove(); row = undefined; }
    if (!row) {
      row = document.createElement('tr');
      row.dataset.key = item.key;
      row.dataset.kind = kind;
      if (item.group) {
        const td = document.createElement('td');
        td.colSpan = columns.length;
        const name = document.createElement('span');
        name.dataset.col = 'name';
        const sub = document.createElement('span');
        sub.className = 'sub';
        sub.dataset.col = 'summary';
        td.append(name, sub);
        row.append(td);
        row.className = 'group';
      } else {
        for (const [col, cls] of columns) {
          const td = document.createElement('td');
          td.dataset.col = col;
          if (cls) td.className = cls;
          row.append(td);
        }
      }
    }
    existing.delete(item.key);
    for (const [col, value] of Object.entries(item.cells)) {
      const td = row.querySelector('[data-col="' + col + '"]');
      if (Array.isArray(value)) setText(td, value[0], value[1]); else setText(td, value);
    }
    if (item.rowClass !== undefined && row.className !== item.rowClass) row.className = item.rowClass;
    const wanted = previous ? previous.nextSibling : tbody.firstChild;
    if (row !== wanted) tbody.insertBefore(row, wanted);
    previous = row;
  }
  for (const row of existing.values()) row.remove();
}

const ROUTE_COLUMNS = [
  ['route', ''], ['match', ''], ['upstream', ''], ['rate', 'num'], ['requests', 'num'], ['ratio_4xx', 'num'],
  ['ratio_5xx', 'num'], ['p50', 'num'], ['p99', 'num'], ['throttled', 'num'], ['denied', 'num'],
  ['auth_failures', 'num'], ['cache_hits', 'num'], ['total', 'num'],
];
const TARGET_COLUMNS = [
  ['target', ''], ['state', ''], ['last_check', ''], ['in_flight', 'num'], ['connections', 'num'],
  ['rate', 'num'], ['errors', 'num'], ['ejections', 'num'], ['last_ejection', 'wrap'],
];
const WORKER_COLUMNS = [
  ['slot', 'num'], ['pid', 'num'], ['state', ''], ['restarts', 'num'], ['uptime', 'num'], ['last_exit', ''],
];

function matchText(route) {
  if (route.unmatched) return '(no route matched)';
  const methods = route.methods ? route.methods.join(' ') + ' ' : '';
  return methods + route.path + (route.host ? ' @' + route.host : '');
}

function renderRoutes(routes) {
  syncRows($('#routes tbody'), routes.map((r) => ({
    key: 'r:' + r.name,
    rowClass: r.unmatched ? 'unmatched' : '',
    cells: {
      route: r.name,
      match: matchText(r),
      upstream: r.upstream || DASH,
      rate: rate(r.rate),
      requests: count(r.requests),
      ratio_4xx: [pct(r.ratio_4xx), ratioClass(r.ratio_4xx, 0.2, 0.5)],
      ratio_5xx: [pct(r.ratio_5xx), ratioClass(r.ratio_5xx, 0.01, 0.05)],
      p50: ms(r.p50_ms),
      p99: [ms(r.p99_ms), r.p99_ms !== null && r.p99_ms >= 1000 ? 'warn' : ''],
      throttled: [count(r.throttled), countClass(r.throttled)],
      denied: [count(r.denied), countClass(r.denied)],
      auth_failures: [count(r.auth_failures), countClass(r.auth_failures)],
      cache_hits: pct(r.cache_hit_ratio),
      total: count(r.requests_total),
    },
  })), ROUTE_COLUMNS);
}

function checkText(check) {
  if (!check) return [DASH + ' no active check', 'muted'];
  const took = check.ok ? ' in ' + ms(check.took_ms) : '';
  return [(check.ok ? 'OK ' : 'failed: ') + check.result + took + ', ' + age(check.age_s), check.ok ? '' : 'bad'];
}

function renderTargets(upstreams) {
  const items = [];
  for (const u of upstreams) {
    items.push({
      key: 'u:' + u.name, group: true,
      cells: { name: u.name, summary: u.strategy + ' · ' + u.available + ' of ' + u.targets.length + ' available' },
    });
    for (const t of u.targets) {
      const state = t.state === 'ejected' ? ['ejected, back in ' + duration(t.ejected_for), 'warn']
        : t.state === 'up' ? ['up', 'ok'] : ['down', 'bad'];
      const ej = t.last_ejection;
      items.push({
        key: 't:' + u.name + '|' + t.url,
        cells: {
          target: t.url,
          state: state,
          last_check: checkText(t.last_check),
          in_flight: count(t.in_flight),
          connections: count(t.connections) + ' (' + count(t.idle_connections) + ' idle)',
          rate: rate(t.rate),
          errors: [count(t.errors) + (t.error_ratio ? ' (' + pct(t.error_ratio) + ')' : ''), countClass(t.errors)],
          ejections: [count(t.ejections), countClass(t.ejections)],
          last_ejection: ej ? ej.reason + ', ' + age(ej.age_s) : DASH,
        },
      });
    }
  }
  syncRows($('#targets tbody'), items, TARGET_COLUMNS);
}

function renderStore(store) {
  const root = $('#store');
  const field = (name) => $('[data-field="' + name + '"]', root);
  setText(field('kind'), store.kind || DASH);
  setText(field('reachable'), store.reachable ? 'yes' : 'no', store.reachable ? 'ok' : 'bad');
  setText(field('recent_errors'), count(store.recent_errors) + ' in the window', countClass(store.recent_errors));
  const err = store.last_error;
  setText(field('last_error'), err ? err.operation + ': ' + err.error + ', ' + age(err.age_s) : 'none', err ? 'warn' : 'muted');
  const details = [];
  if (store.url) details.push(store.url + (store.cluster ? ' (cluster)' : ''));
  if (store.on_error) details.push('on_error: ' + store.on_error);
  const buckets = (n, what) => count(n) + ' ' + what + (n === 1 ? '' : 's');
  if (store.buckets !== undefined) details.push(buckets(store.buckets, 'bucket'));
  if (store.local_buckets !== undefined) details.push(buckets(store.local_buckets, 'local bucket'));
  setText(field('details'), details.join(' · ') || DASH);
}

function renderConfig(config) {
  const root = $('#config');
  const field = (name) => $('[data-field="' + name + '"]', root);
  setText(field('file'), config.file);
  setText(field('loaded_at'), utc(config.loaded_at) + ' (' + age(config.loaded_age_s) + ')');
  setText(field('reloads'), count(config.reloads.success) + ' succeeded, ' + count(config.reloads.failure) + ' refused',
    config.reloads.failure > 0 ? 'warn' : '');
  const cell = field('last_reload');
  const last = config.last_reload;
  let summary = $('span', cell);
  if (!summary) { summary = document.createElement('span'); cell.replaceChildren(summary); }
  if (!last) {
    setText(summary, 'none since start', 'muted');
  } else {
    setText(summary, (last.result === 'success' ? 'succeeded' : 'refused') + ', ' + utc(last.at) + ' (' + age(last.age_s) + ')',
      last.result === 'success' ? 'ok' : 'bad');
  }
  let pre = $('pre', cell);
  if (last && last.error) {
    if (!pre) { pre = document.createElement('pre'); cell.append(pre); }
    setText(pre, last.error);
  } else if (pre) {
    pre.remove();
  }
}

function renderWorkers(workers) {
  $('#workers-section').hidden = !workers;
  if (!workers) return;
  syncRows($('#workers tbody'), workers.map((w) => ({
    key: 'w:' + w.slot,
    cells: {
      slot: String(w.slot), pid: w.pid === null ? DASH : String(w.pid),
      state: [w.state, w.state === 'ready' ? 'ok' : 'bad'],
      restarts: [count(w.restarts), countClass(w.restarts)],
      uptime: duration(w.uptime_s), last_exit: w.last_exit || DASH,
    },
  })), WORKER_COLUMNS);
}

function render(data) {
  const ready = $('#ready');
  setText(ready, data.ready ? 'ready' : 'not ready', data.ready ? 'ok' : 'bad');
  const reasons = $('#reasons');
  reasons.hidden = data.ready;
  reasons.replaceChildren(...data.reasons.map((text) => {
    const li = document.createElement('li');
    li.textContent = text;
    return li;
  }));
  setText($('#window'), 'figures over the last ' + Math.round(data.window_s) + ' s');
  for (const node of document.querySelectorAll('[data-window]')) setText(node, 'last ' + Math.round(data.window_s) + ' s');
  const workers = data.workers ? data.workers.length + ' workers · ' : '';
  setText($('#process'), workers + 'pid ' + data.pid + ' · v' + data.version);
  const t = data.totals;
  const tile = (name) => $('[data-tile="' + name + '"]');
  setText(tile('rate'), rate(t.rate));
  setText(tile('requests'), count(t.requests));
  setText(tile('ratio_4xx'), pct(t.ratio_4xx), ratioClass(t.ratio_4xx, 0.2, 0.5));
  setText(tile('ratio_5xx'), pct(t.ratio_5xx), ratioClass(t.ratio_5xx, 0.01, 0.05));
  setText(tile('p50_ms'), ms(t.p50_ms));
  setText(tile('p99_ms'), ms(t.p99_ms));
  setText(tile('throttled'), count(t.throttled), countClass(t.throttled));
  setText(tile('denied'), count(t.denied), countClass(t.denied));
  setText(tile('auth_failures'), count(t.auth_failures), countClass(t.auth_failures));
  renderRoutes(data.routes);
  renderTargets(data.upstreams);
  renderStore(data.store);
  renderConfig(data.config);
  renderWorkers(data.workers);
}

function showProblem(text) {
  const problem = $('#problem');
  problem.hidden = !text;
  setText(problem, text || '');
}

function tick() {
  if (lastOk !== null) setText($('#updated'), 'updated ' + age((Date.now() - lastOk) / 1000));
}

function askForToken(message) {
  clearTimeout(timer);
  $('#dashboard').hidden = true;
  $('#forget').hidden = true;
  $('#login').hidden = false;
  setText($('#login-error'), message);
  $('#token').focus();
}

function schedule() {
  clearTimeout(timer);
  timer = setTimeout(refresh, REFRESH_MS);
}

async function refresh() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = token ? { Authorization: 'Bearer ' + token } : {};
  let response;
  try {
    response = await fetch('status/live', { headers, cache: 'no-store', credentials: 'omit' });
  } catch (error) {
    showProblem('The gateway does not answer (' + error.message + '); showing what it said last.');
    schedule();
    return;
  }
  if (response.status === 401) {
    askForToken(token ? 'That token was refused.' : '');
    return;
  }
  let data = null;
  try { data = await response.json(); } catch (error) { data = null; }
  if (!response.ok || !data || !data.routes) {
    const said = data && (data.detail || (data.reasons && data.reasons.join('; ')));
    showProblem('status/live answered ' + response.status + (said ? ': ' + said : ''));
    schedule();
    return;
  }
  showProblem('');
  $('#login').hidden = true;
  $('#dashboard').hidden = false;
  $('#forget').hidden = !token;
  render(data);
  lastOk = Date.now();
  tick();
  schedule();
}

$('#login').addEventListener('submit', (event) => {
  event.preventDefault();
  const input = $('#token');
  sessionStorage.setItem(TOKEN_KEY, input.value.trim());
  input.value = '';
  setText($('#login-error'), '');
  refresh();
});
$('#forget').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  askForToken('');
});
setInterval(tick, 1000);
refresh();
