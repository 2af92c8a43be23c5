// What a live chart holds between answers of the chart route (components/live_rows.py): the figure it draws, as
// plain arrays, and the cursor it sends back. Rows after the cursor are appended trace by trace; a chart that
// draws one step has its traces replaced. Each trace stays bounded as the run's history does on the server: the
// newest RECENT points as they came, older ones thinned by the min and max of each bucket (a one-step spike stays).
// Read by components/plot.py in front of live.js, which uses these functions.

// Plotly redraws every point of every trace on each update, so what a trace holds is what each draw costs.
const RECENT = 1000;  // points of a trace kept as they came
const OLDER = 500;  // the points before those are thinned to about this many ...
const HELD = RECENT + 2 * OLDER;  // ... each time a trace grows past this many
const MAX_SHAPES = 40;  // event lines and labels kept: a whole figure has at most 19 a run
const POINTS = ['x', 'y', 'hovertext', 'text', 'customdata'];  // one value per point (a heatmap's y: per row)
const TYPED = {i1: Int8Array, u1: Uint8Array, i2: Int16Array, u2: Uint16Array, i4: Int32Array, u4: Uint32Array,
               f4: Float32Array, f8: Float64Array};

// Plotly writes numpy arrays as {dtype, bdata (base64), shape}: plain arrays here, so rows can be appended.
function decode(v) {
  if (Array.isArray(v)) return v.length && typeof v[0] === 'number' ? v : v.map(decode);
  if (!v || typeof v !== 'object') return v;
  if (typeof v.bdata === 'string' && TYPED[v.dtype]) {
    const bytes = Uint8Array.from(atob(v.bdata), (c) => c.charCodeAt(0));
    const flat = Array.from(new TYPED[v.dtype](bytes.buffer));
    const shape = String(v.shape || flat.length).split(',').map(Number);
    if (shape.length < 2) return flat;
    return Array.from({length: shape[0]}, (_, i) => flat.slice(i * shape[1], (i + 1) * shape[1]));
  }
  const out = {};
  for (const k of Object.keys(v)) out[k] = decode(v[k]);
  return out;
}

// live_figures.trace_uid: FNV-1a of the trace's name, axes and type (UTF-8), and its count among alike traces.
// Plotly puts a uid in CSS selectors (a heatmap's image), so it is letters, digits and '-' only.
function traceUid(base, n) {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(base)) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return 'u' + h.toString(16).padStart(8, '0') + '-' + n;
}

// Plotly's JSON drops each trace's uid: it is given back here by live_figures.figure's rule (name, axes, type and
// the count of earlier traces alike), so rows find the trace they extend.
function hold(figure, cursor) {
  const fig = decode(figure);
  const seen = new Map();
  for (const t of fig.data || []) {
    const base = ['name', 'xaxis', 'yaxis', 'type'].map((k) => (t[k] === undefined ? 'None' : String(t[k])))
      .join('|');
    seen.set(base, (seen.get(base) ?? -1) + 1);
    t.uid = traceUid(base, seen.get(base));
  }
  return {data: fig.data || [], layout: fig.layout || {}, cursor};
}

// The query that sends the cursor back; none when the chart has no cursor (it then gets the whole figure).
const cursorQuery = (held) => (held && held.cursor
  ? '&after=' + held.cursor.after.join(',') + '&view=' + encodeURIComponent(held.cursor.view) : '');

const gap = (v) => v === null || v === undefined || Number.isNaN(v);
const fmax = (a, b) => (gap(a) ? b : gap(b) ? a : Math.max(a, b));

// chart_parts.thin_indices: indices of the min and max of each bucket of y[0:size) (n / 2 buckets), and the
// last; a bucket of gaps keeps its first point, so the gap stays.
function thin(y, size, n) {
  const k = Math.ceil(size / Math.max(1, Math.floor(n / 2)));
  const out = [];
  for (let b = 0; b < size; b += k) {
    let lo = -1, hi = -1;
    for (let i = b; i < Math.min(b + k, size); i++) {
      if (typeof y[i] !== 'number' || !Number.isFinite(y[i])) continue;
      if (lo < 0 || y[i] < y[lo]) lo = i;
      if (hi < 0 || y[i] > y[hi]) hi = i;
    }
    if (lo < 0) out.push(b);
    else out.push(...(lo === hi ? [lo] : [Math.min(lo, hi), Math.max(lo, hi)]));
  }
  if (out[out.length - 1] !== size - 1) out.push(size - 1);
  return out;
}

function bound(t) {
  const n = t.x.length;
  if (n <= HELD) return;
  const old = n - RECENT;
  if (t.type === 'heatmap') {  // neighbouring columns merge, keeping the larger value (the server's rule)
    const pairs = [];
    const k = Math.max(2, Math.ceil(old / OLDER));
    for (let i = 0; i < old; i += k) pairs.push([i, Math.min(i + k, old) - 1]);
    const most = (row, a, b) => row.slice(a, b + 1).reduce(fmax, null);
    t.z = t.z.map((row) => pairs.map(([a, b]) => most(row, a, b)).concat(row.slice(old)));
    t.x = pairs.map(([, b]) => t.x[b]).concat(t.x.slice(old));
    return;
  }
  const keep = thin(t.y, old, OLDER);
  for (const k of POINTS) {
    if (Array.isArray(t[k]) && t[k].length === n) t[k] = keep.map((i) => t[k][i]).concat(t[k].slice(old));
  }
}

const padded = (a, n) => ((a || []).length >= n ? (a || []) : (a || []).concat(Array(n - (a || []).length).fill(null)));

// Append an answer's rows to the held figure. False when a trace is new to it (the first ✕ marker, say): the
// chart then asks for the whole figure.
function extend(held, answer) {
  const byUid = new Map(held.data.map((t) => [t.uid, t]));
  if (answer.traces.some((r) => !byUid.has(r.uid))) return false;
  held.data = held.data.map((t) => ({...t}));  // new trace objects: Plotly.react redraws the ones that changed
  const now = new Map(held.data.map((t) => [t.uid, t]));
  for (const r of answer.traces) {
    const t = now.get(r.uid);
    if (r.x === undefined) continue;  // a legend entry the chart holds already
    const n = (t.x || []).length;
    for (const k of POINTS) if (r[k] !== undefined) t[k] = padded(t[k], n).concat(r[k]);
    if (r.z) {
      t.z = t.z.map((row, i) => row.concat(r.z[i] || []));
      t.zmin = Math.min(t.zmin, r.zmin);
      t.zmax = Math.max(t.zmax, r.zmax);
    }
    bound(t);
  }
  for (const k of ['shapes', 'annotations']) {
    if (answer[k] && answer[k].length) {
      held.layout = {...held.layout, [k]: (held.layout[k] || []).concat(answer[k]).slice(-MAX_SHAPES)};
    }
  }
  held.cursor = answer.cursor;
  return true;
}

// A chart of one step: the newest step's traces and layout over the held figure's (whose template stays).
function replace(held, answer) {
  held.data = answer.replace.data;
  held.layout = {...held.layout, ...answer.replace.layout};
  held.cursor = answer.cursor;
}
