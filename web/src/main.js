// Live H3 heat map: deck.gl hexagons over no base map, fed by the sink's API, refreshed by SSE.
import { Deck, MapView, WebMercatorViewport } from '@deck.gl/core';
import { GeoJsonLayer } from '@deck.gl/layers';
import { H3HexagonLayer } from '@deck.gl/geo-layers';
import { cellToLatLng } from 'h3-js';

const $ = (id) => document.getElementById(id);

// viridis, 9 stops (matplotlib), colour-blind safe and monotone in lightness.
const VIRIDIS = [
  [68, 1, 84], [72, 40, 120], [62, 73, 137], [49, 104, 142], [38, 130, 142],
  [31, 158, 137], [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37],
];
// Gi* bins -3..3, ColorBrewer RdBu (cold = blue, not significant = near white, hot = red).
const BINS = {
  '-3': [33, 102, 172], '-2': [103, 169, 207], '-1': [209, 229, 240], '0': [247, 247, 247],
  '1': [253, 219, 199], '2': [239, 138, 98], '3': [178, 24, 43],
};
const BIN_LABELS = { '-3': 'cold 99%', '-2': 'cold 95%', '-1': 'cold 90%', '0': 'n.s.',
  '1': 'hot 90%', '2': 'hot 95%', '3': 'hot 99%' };

// Harm-enforcement gap, ColorBrewer PuOr (11 classes, colour-blind safe), reversed so that
// positive (under-enforced relative to harm) is orange and negative (over-enforced) is purple.
const PUOR = [
  [45, 0, 75], [84, 39, 136], [128, 115, 172], [178, 171, 210], [216, 218, 235], [247, 247, 247],
  [254, 224, 182], [253, 184, 99], [224, 130, 20], [179, 88, 6], [127, 59, 8],
];
const MONTH_NOTE = 'police.uk crime is known only to the month: a week counts day-precision '
  + 'crime only, so choose period = month for harm and gap.';

// What each layer mode reads and shows. value(): the number a cell is coloured by.
const MODES = {
  counts: { value: (r) => r.count, url: (c) =>
    `/v1/cells?from=${c.start}&to=${c.start}&period=${c.period}&res=${c.res}&kind=${c.kind}` },
  gistar: { value: (r) => r.count, url: (c) =>
    `/v1/gistar?period=${c.period}&start=${c.start}&kind=${c.kind}&res=${c.res}` },
  harm: { value: (r) => r.harm_days, url: (c) =>
    `/v1/harm?period=${c.period}&start=${c.start}&res=${c.res}` },
  gap: { value: (r) => r.gap, url: (c) =>
    `/v1/gap?period=${c.period}&start=${c.start}&res=${c.res}` },
};
const modeOf = (c) => MODES[c.mode] ?? MODES.counts;

function puor(t) { // t in -1..1, 0 = neutral
  const x = (Math.min(1, Math.max(-1, t)) + 1) / 2 * (PUOR.length - 1);
  const i = Math.min(PUOR.length - 2, Math.floor(x));
  const f = x - i;
  return PUOR[i].map((c, k) => Math.round(c + f * (PUOR[i + 1][k] - c)));
}

function tooltip(r) {
  if (r.harm_days !== undefined && r.gap !== undefined) {
    return `${r.cell}\ngap ${r.gap > 0 ? '+' : ''}${r.gap} (harm rank ${r.harm_rank}, `
      + `enforcement rank ${r.enforcement_rank})\nharm ${r.harm_days} days · enforcement ${r.enforcement}`;
  }
  if (r.harm_days !== undefined) {
    return `${r.cell}\nharm ${r.harm_days} custody days (${r.crimes} crimes, rank ${r.harm_rank})`
      + `\n${MONTH_NOTE}`;
  }
  return `${r.cell}\ncount ${r.count}${r.bin !== undefined ? `\nGi* bin ${r.bin}, z ${r.z.toFixed(2)}` : ''}`;
}

const classWords = (cls) => cls.replace(/_/g, ' ');

function viridis(t) {
  const x = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - i;
  return VIRIDIS[i].map((c, k) => Math.round(c + f * (VIRIDIS[i + 1][k] - c)));
}

const state = {
  rows: [], max: 1, seq: 0, updates: 0, selected: null, fitted: '', boundaries: null,
  view: { longitude: -1.5, latitude: 53, zoom: 5.5, pitch: 0, bearing: 0 },
};

const deck = new Deck({
  parent: $('map'),
  views: new MapView({ repeat: false }),
  initialViewState: state.view,
  controller: true,
  layers: [],
  getTooltip: ({ object }) => (object && object.cell ? tooltip(object) : null),
  onViewStateChange: ({ viewState }) => { state.view = viewState; return viewState; },
});

function controls() {
  return {
    kind: $('kind').value, res: Number($('res').value), period: $('period').value,
    start: periodStart($('start').value, $('period').value), mode: $('mode').value,
  };
}

// The start of the week (Monday) or month that contains an ISO date.
function periodStart(iso, period) {
  if (!iso) return '';
  const d = new Date(`${iso}T00:00:00Z`);
  if (period === 'month') d.setUTCDate(1);
  else d.setUTCDate(d.getUTCDate() - ((d.getUTCDay() + 6) % 7));
  return d.toISOString().slice(0, 10);
}

// Signing in: EventSource cannot send an Authorization header, so a token and a justification
// are exchanged once for an HttpOnly, SameSite=Strict session cookie that every request then
// carries. The page never keeps the token.
async function whoami() {
  const resp = await fetch('/v1/session', { cache: 'no-store' });
  return resp.ok ? resp.json() : { authenticated: false };
}

function signIn() {
  const form = $('login');
  form.hidden = false;
  $('login-token').focus();
  return new Promise((resolve) => {
    form.onsubmit = async (ev) => {
      ev.preventDefault();
      $('login-error').textContent = '';
      const resp = await fetch('/v1/session', {
        method: 'POST', cache: 'no-store', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ token: $('login-token').value.trim(),
          justification: $('login-justification').value.trim() }),
      });
      let body = {};
      try { body = await resp.json(); } catch { /* not JSON */ }
      if (!resp.ok) {
        $('login-error').textContent = typeof body.detail === 'string'
          ? body.detail : `sign-in refused (${resp.status})`;
        return;
      }
      $('login-token').value = '';
      form.hidden = true;
      resolve(body);
    };
  });
}

function showSignedIn(who) {
  $('whoami-name').textContent = who.name;
  $('whoami-why').textContent = who.justification;
  $('app').hidden = false;
  $('signout').onclick = async () => {
    await fetch('/v1/session', { method: 'DELETE', cache: 'no-store' });
    window.location.reload();
  };
}

async function getJSON(url) {
  const resp = await fetch(url, { cache: 'no-store' });
  if (resp.status === 401) window.location.reload(); // the session ended: sign in again
  if (!resp.ok) {
    let detail = resp.statusText;
    try { detail = (await resp.json()).detail ?? detail; } catch { /* not JSON */ }
    throw new Error(`${url}: ${resp.status} ${typeof detail === 'string' ? detail : JSON.stringify(detail)}`);
  }
  return resp.json();
}

function showError(err) { $('error').textContent = err ? String(err.message ?? err) : ''; }

async function loadPeriods(keepStart) {
  const c = controls();
  const data = await getJSON(`/v1/periods?period=${c.period}&res=${c.res}`);
  if (!$('kind').options.length) {
    for (const k of data.kinds) $('kind').add(new Option(k, k, k === 'arrest', k === 'arrest'));
  }
  if (!keepStart || !$('start').value) $('start').value = data.starts[0] ?? '';
  return data.starts;
}

async function loadLayer() {
  const c = controls();
  const seq = ++state.seq;
  if (!c.start) { state.rows = []; render(c); return; }
  try {
    const mode = modeOf(c);
    const rows = await getJSON(mode.url(c));
    if (seq !== state.seq) return; // a newer request has started
    state.rows = c.mode === 'counts' ? rows.filter((r) => r.period_start === c.start) : rows;
    state.max = Math.max(1, ...state.rows.map((r) => Math.abs(mode.value(r))));
    showError(null);
  } catch (err) {
    if (seq !== state.seq) return;
    state.rows = [];
    showError(err);
  }
  render(c);
  if (state.selected) await selectCell(state.selected, false);
  document.body.dataset.loaded = String(seq);
}

function fit(rows, key) {
  if (!rows.length || state.fitted === key) return;
  state.fitted = key;
  let [w, s, e, n] = [180, 90, -180, -90];
  for (const r of rows) {
    const [lat, lng] = cellToLatLng(r.cell);
    w = Math.min(w, lng); e = Math.max(e, lng); s = Math.min(s, lat); n = Math.max(n, lat);
  }
  const { clientWidth: width, clientHeight: height } = $('map');
  const pad = 0.02;
  const vp = new WebMercatorViewport({ width, height }).fitBounds(
    [[w - pad, s - pad], [e + pad, n + pad]], { padding: 40, maxZoom: 13 });
  state.view = { longitude: vp.longitude, latitude: vp.latitude, zoom: vp.zoom, pitch: 0, bearing: 0 };
  deck.setProps({ initialViewState: { ...state.view } });
}

function fillColor(c) {
  const { value } = modeOf(c);
  if (c.mode === 'gistar') return (d) => BINS[String(d.bin)];
  if (c.mode === 'gap') return (d) => puor(value(d) / state.max);
  return (d) => viridis(Math.sqrt(value(d) / state.max));
}

// A sentence in the sidebar when the layer has no cells (an empty layer is not an error).
function emptyMessage(c) {
  if (state.rows.length || !c.start) return '';
  const when = `the ${c.period} of ${c.start} at resolution ${c.res}`;
  if (c.mode === 'harm') {
    return `No recorded crime for ${when}.${c.period === 'week' ? ` ${MONTH_NOTE}` : ''}`;
  }
  if (c.mode === 'gap') {
    return `No recorded crime or enforcement for ${when}.${c.period === 'week' ? ` ${MONTH_NOTE}` : ''}`;
  }
  return `No ${c.kind} cells for ${when}.`;
}

function render(c) {
  const colour = fillColor(c);
  const layers = [];
  if (state.boundaries) {
    layers.push(new GeoJsonLayer({
      id: 'districts', data: state.boundaries, filled: false, stroked: true,
      getLineColor: [60, 60, 60, 200], lineWidthMinPixels: 1,
    }));
  }
  layers.push(new H3HexagonLayer({
    id: 'hexagons', data: state.rows, pickable: true, extruded: false, stroked: true,
    getHexagon: (d) => d.cell,
    getFillColor: (d) => [...colour(d), 210],
    getLineColor: (d) => (d.cell === state.selected ? [0, 0, 0, 255] : [255, 255, 255, 120]),
    getLineWidth: (d) => (d.cell === state.selected ? 3 : 1),
    lineWidthUnits: 'pixels',
    updateTriggers: { getFillColor: [c.mode, state.max], getLineColor: state.selected, getLineWidth: state.selected },
    onClick: ({ object }) => object && selectCell(object.cell),
  }));
  // Boundaries go under the hexagons only when they are filled; outlines read better on top.
  deck.setProps({ layers: layers.reverse() });
  fit(state.rows, `${c.period}/${c.start}/${c.res}/${c.kind}`);
  $('hexcount').textContent = String(state.rows.length);
  $('hexcount').dataset.count = String(state.rows.length);
  $('periodlabel').textContent = c.start ? `${c.period} of ${c.start}` : 'no data';
  $('message').textContent = emptyMessage(c);
  legend(c);
  top10(c);
}

function legend(c) {
  const el = $('legend');
  if (c.mode === 'gap') {
    const stops = [-1, -0.5, 0, 0.5, 1].map((t) => `rgb(${puor(t)}) ${(t + 1) * 50}%`).join(',');
    el.innerHTML = `<div>Harm–enforcement gap (enforcement rank − harm rank; PuOr)</div>
      <div class="bar" style="background:linear-gradient(to right,${stops})"></div>
      <div class="ticks">${state.rows.length
    ? `<span>−${state.max}</span><span>0</span><span>+${state.max}</span>` : '<span>no cells</span>'}</div>
      <div class="ticks"><span>over-enforced</span><span>under-enforced</span></div>
      <div class="note">Positive = under-enforced relative to harm: the cell ranks higher for harm
      (recorded crime in custody days) than for enforcement (arrests, seizures, warrants).
      ${MONTH_NOTE}</div>`;
    return;
  }
  if (c.mode === 'gistar') {
    el.innerHTML = '<div>Gi* confidence bin</div><div class="bins">' +
      Object.keys(BINS).sort((a, b) => a - b).map((b) =>
        `<span style="background:rgb(${BINS[b]})" title="${BIN_LABELS[b]}">${b}</span>`).join('') +
      '</div><div class="ticks"><span>cold spot</span><span>hot spot</span></div>';
    return;
  }
  const stops = [0, 0.25, 0.5, 0.75, 1].map((t) => `rgb(${viridis(t)}) ${t * 100}%`).join(',');
  // sqrt scale: the tick at t shows the count t^2 * max.
  const title = c.mode === 'harm'
    ? 'Harm (custody days, recorded crime weighted by sentencing starting points; sqrt scale, viridis)'
    : 'Events per cell (sqrt scale, viridis)';
  el.innerHTML = `<div>${title}</div>
    <div class="bar" style="background:linear-gradient(to right,${stops})"></div>
    <div class="ticks">${state.rows.length
    ? `<span>0</span><span>${Math.round(state.max / 4)}</span><span>${state.max}</span>` : '<span>no cells</span>'}</div>`
    + (c.mode === 'harm' ? `<div class="note">${MONTH_NOTE}</div>` : '');
}

function topLabel(r, c) {
  if (c.mode === 'harm') return `${r.cell} — ${r.harm_days} days (${r.crimes} crimes)`;
  if (c.mode === 'gap') return `${r.cell} — gap ${r.gap > 0 ? '+' : ''}${r.gap}`;
  return `${r.cell} — ${r.count}${c.mode === 'gistar' ? ` (bin ${r.bin})` : ''}`;
}

function top10(c) {
  const { value } = modeOf(c);
  const rows = [...state.rows].filter((r) => value(r) > 0)
    .sort((a, b) => value(b) - value(a) || (a.cell < b.cell ? -1 : 1)).slice(0, 10);
  $('top').innerHTML = '';
  for (const r of rows) {
    const li = document.createElement('li');
    li.textContent = topLabel(r, c);
    li.dataset.cell = r.cell;
    li.onclick = () => selectCell(r.cell);
    $('top').append(li);
  }
}

async function selectCell(cell, redraw = true) {
  state.selected = cell;
  const c = controls();
  if (!cell) {
    $('cell').hidden = true;
    delete $('cell').dataset.loaded;
    render(c);
    return;
  }
  $('cell').hidden = false;
  $('cell-id').textContent = cell;
  $('cell-kind').textContent = `${c.kind}, ${c.period} of ${c.start}`;
  const row = state.rows.find((r) => r.cell === cell);
  $('cell-layer').textContent = row && (c.mode === 'harm' || c.mode === 'gap')
    ? tooltip(row).split('\n').slice(1).filter((l) => l !== MONTH_NOTE).join(' · ') : '';
  if (redraw) render(c);
  try {
    const [all, events, trend] = await Promise.all([
      getJSON(`/v1/cells?from=${c.start}&to=${c.start}&period=${c.period}&res=${c.res}`),
      getJSON(`/v1/events?cell=${cell}&period=${c.period}&start=${c.start}&limit=20`),
      getJSON(`/v1/cells/${cell}/class?kind=${c.kind}&res=${c.res}`),
    ]);
    if (state.selected !== cell) return; // another cell was chosen meanwhile
    const mine = all.filter((r) => r.cell === cell && r.period_start === c.start);
    const own = mine.find((r) => r.kind === c.kind)?.count ?? 0;
    $('cell-count').textContent = String(own);
    $('cell-count').dataset.count = String(own);
    $('cell-trend').textContent = trend.class
      ? `Trend: ${classWords(trend.class)} (week of ${trend.week_start})`
      : 'Trend: not classified yet';
    $('cell-trend').dataset.class = trend.class ?? '';
    $('cell-kinds').innerHTML = mine.map((r) =>
      `<tr data-kind="${r.kind}"><td>${r.kind}</td><td>${r.count}</td></tr>`).join('');
    $('cell-events').innerHTML = '';
    for (const ev of events.slice(-20).reverse()) {
      const li = document.createElement('li');
      li.textContent = `${ev.occurred_at} ${ev.kind} ${ev.event_id}`;
      $('cell-events').append(li);
    }
    $('cell').dataset.loaded = cell;
  } catch (err) {
    showError(err);
  }
}

async function refresh() {
  if (!$('start').value) await loadPeriods(false);
  await loadLayer();
}

async function redraw() {
  state.updates += 1;
  $('updates').textContent = String(state.updates);
  await refresh();
}

function listen() {
  // ?stream_seconds=N shortens each stream (tests, or proxies that cut long responses).
  const seconds = Number(new URLSearchParams(window.location.search).get('stream_seconds'));
  const source = new EventSource(seconds > 0 && seconds <= 3600
    ? `/v1/stream?max_seconds=${seconds}` : '/v1/stream');
  // The stream ends every minute and the browser reconnects: a flush that lands in that gap
  // shows only in the next `hello`'s batch count, so compare it with the last one seen.
  const batchesOf = (msg) => JSON.parse(msg.data).batches;
  source.addEventListener('hello', async (msg) => {
    $('live').classList.add('on');
    const batches = batchesOf(msg);
    const first = state.batches === undefined;
    const missed = !first && batches !== state.batches;
    state.batches = batches;
    if (missed) await redraw();
    // The first stream may open after the first load: a flush in between is in no count seen.
    else if (first && state.seq > 0) await refresh();
  });
  source.addEventListener('update', async (msg) => {
    state.batches = batchesOf(msg);
    await redraw();
  });
  source.onerror = async () => {
    $('live').classList.remove('on'); // EventSource reconnects by itself, except after a 401
    if (source.readyState !== EventSource.CLOSED) return;
    if ((await whoami()).authenticated) setTimeout(listen, 1000);
    else window.location.reload();
  };
}

async function loadBoundaries() {
  try {
    const resp = await fetch('/v1/boundaries.geojson');
    const geo = resp.ok ? await resp.json() : null;
    if (geo?.features?.length) state.boundaries = geo;
  } catch { /* none configured */ }
}

async function main() {
  let who = await whoami();
  if (!who.authenticated) who = await signIn();
  showSignedIn(who);
  $('kind').onchange = () => loadLayer();
  $('mode').onchange = () => loadLayer();
  $('start').onchange = () => loadLayer();
  $('res').onchange = () => loadLayer();
  $('period').onchange = async () => { await loadPeriods(false); await loadLayer(); };
  listen(); // before the first load, so that its `hello` usually precedes it
  try {
    await Promise.all([loadPeriods(false), loadBoundaries()]);
  } catch (err) { showError(err); }
  await loadLayer();
}

// A hook for tests and for the console.
// screenPos: a cell's centre in pixels of #map; pick: the cell deck.gl drew at that pixel.
function screenPos(cell) {
  const [lat, lng] = cellToLatLng(cell);
  return deck.getViewports()[0].project([lng, lat]);
}
function pick(cell) {
  const [x, y] = screenPos(cell);
  return deck.pickObject({ x, y, radius: 0 })?.object?.cell ?? null;
}
window.__hotspots = { state, selectCell, reload: loadLayer, controls, screenPos, pick };
main();
