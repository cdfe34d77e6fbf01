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
  getTooltip: ({ object }) => object && object.cell
    ? `${object.cell}\ncount ${object.count}${object.bin !== undefined ? `\nGi* bin ${object.bin}, z ${object.z.toFixed(2)}` : ''}`
    : null,
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

async function getJSON(url) {
  const resp = await fetch(url, { cache: 'no-store' });
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
    const url = c.mode === 'gistar'
      ? `/v1/gistar?period=${c.period}&start=${c.start}&kind=${c.kind}&res=${c.res}`
      : `/v1/cells?from=${c.start}&to=${c.start}&period=${c.period}&res=${c.res}&kind=${c.kind}`;
    const rows = await getJSON(url);
    if (seq !== state.seq) return; // a newer request has started
    state.rows = c.mode === 'gistar' ? rows : rows.filter((r) => r.period_start === c.start);
    state.max = Math.max(1, ...state.rows.map((r) => r.count));
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

function render(c) {
  const gistar = c.mode === 'gistar';
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
    getFillColor: (d) => [...(gistar ? BINS[String(d.bin)] : viridis(Math.sqrt(d.count / state.max))), 210],
    getLineColor: (d) => (d.cell === state.selected ? [0, 0, 0, 255] : [255, 255, 255, 120]),
    getLineWidth: (d) => (d.cell === state.selected ? 3 : 1),
    lineWidthUnits: 'pixels',
    updateTriggers: { getFillColor: [gistar, state.max], getLineColor: state.selected, getLineWidth: state.selected },
    onClick: ({ object }) => object && selectCell(object.cell),
  }));
  // Boundaries go under the hexagons only when they are filled; outlines read better on top.
  deck.setProps({ layers: layers.reverse() });
  fit(state.rows, `${c.period}/${c.start}/${c.res}/${c.kind}`);
  $('hexcount').textContent = String(state.rows.length);
  $('hexcount').dataset.count = String(state.rows.length);
  $('periodlabel').textContent = c.start ? `${c.period} of ${c.start}` : 'no data';
  legend(gistar);
  top10(c);
}

function legend(gistar) {
  const el = $('legend');
  if (gistar) {
    el.innerHTML = '<div>Gi* confidence bin</div><div class="bins">' +
      Object.keys(BINS).sort((a, b) => a - b).map((b) =>
        `<span style="background:rgb(${BINS[b]})" title="${BIN_LABELS[b]}">${b}</span>`).join('') +
      '</div><div class="ticks"><span>cold spot</span><span>hot spot</span></div>';
    return;
  }
  const stops = [0, 0.25, 0.5, 0.75, 1].map((t) => `rgb(${viridis(t)}) ${t * 100}%`).join(',');
  // sqrt scale: the tick at t shows the count t^2 * max.
  el.innerHTML = `<div>Events per cell (sqrt scale, viridis)</div>
    <div class="bar" style="background:linear-gradient(to right,${stops})"></div>
    <div class="ticks"><span>0</span><span>${Math.round(state.max / 4)}</span><span>${state.max}</span></div>`;
}

function top10(c) {
  const rows = [...state.rows].filter((r) => r.count > 0)
    .sort((a, b) => b.count - a.count || (a.cell < b.cell ? -1 : 1)).slice(0, 10);
  $('top').innerHTML = '';
  for (const r of rows) {
    const li = document.createElement('li');
    li.textContent = `${r.cell} — ${r.count}${c.mode === 'gistar' ? ` (bin ${r.bin})` : ''}`;
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
  $('cell-count').textContent = String(row ? row.count : 0);
  $('cell-count').dataset.count = String(row ? row.count : 0);
  if (redraw) render(c);
  try {
    const [all, events] = await Promise.all([
      getJSON(`/v1/cells?from=${c.start}&to=${c.start}&period=${c.period}&res=${c.res}`),
      getJSON(`/v1/events?cell=${cell}&period=${c.period}&start=${c.start}&limit=20`),
    ]);
    const mine = all.filter((r) => r.cell === cell && r.period_start === c.start);
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

function listen() {
  const source = new EventSource('/v1/stream');
  source.addEventListener('hello', () => $('live').classList.add('on'));
  source.addEventListener('update', async () => {
    state.updates += 1;
    $('updates').textContent = String(state.updates);
    if (!$('start').value) await loadPeriods(false);
    await loadLayer();
  });
  source.onerror = () => $('live').classList.remove('on'); // EventSource reconnects by itself
}

async function loadBoundaries() {
  try {
    const resp = await fetch('/v1/boundaries.geojson');
    const geo = resp.ok ? await resp.json() : null;
    if (geo?.features?.length) state.boundaries = geo;
  } catch { /* none configured */ }
}

async function main() {
  $('kind').onchange = () => loadLayer();
  $('mode').onchange = () => loadLayer();
  $('start').onchange = () => loadLayer();
  $('res').onchange = () => loadLayer();
  $('period').onchange = async () => { await loadPeriods(false); await loadLayer(); };
  try {
    await Promise.all([loadPeriods(false), loadBoundaries()]);
  } catch (err) { showError(err); }
  await loadLayer();
  listen();
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
