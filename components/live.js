// The live page's elements, the status line (components/live_status.py), the in-place chart (components/plot.py)
// and the stability map while its sweep runs (components/page_map.py, an in-place chart under a progress bar), and
// the one fetch loop they all use to stay current between reruns. Python hands each element its data (the numbers
// or the figure, the URL to poll, the period); everything here runs in the page itself (no
// iframe): plotly.js puts its hover and mode-bar styles in the document head. Streamlit calls the default export
// at every rerun that sends the element, with the same parentElement while it stays mounted, and calls the
// function it returns once, when the element is removed.

// One loop per element, whatever the number of reruns that hand it new data: a timer set or a fetch in flight
// means the loop is running. `got` receives each answer, parsed with `read` ('json' or 'text'). `due()` says whether
// this tick fetches or only waits for the next (a chart fetches only while on screen); `query()` is added to the URL
// (a chart's cursor). A 404 (no such route or
// run) ends the loop, any other failure waits one period and tries again, and an answer for a URL the element no
// longer polls is dropped.
const MIN_GAP_MS = 50;

function poller({read, got, due = () => true, query = () => ''}) {
  const p = {url: null, every: 1000, timer: null, inflight: false, began: -Infinity};
  // The period counts from the start of the last fetch, not its end: an answer that took 100 ms is followed by
  // the next fetch 150 ms later at a 250 ms period (never sooner than MIN_GAP_MS).
  const next = () => {
    const wait = Math.max(MIN_GAP_MS, p.every - (performance.now() - p.began));
    if (p.url && !p.timer && !p.inflight) p.timer = setTimeout(tick, wait);
  };
  function tick() {
    p.timer = null;
    if (!p.url) return;
    if (!due()) { p.began = performance.now(); next(); return; }
    const url = p.url;
    p.inflight = true;
    p.began = performance.now();
    fetch(url + query(), {cache: 'no-store'}).then((r) => {
      if (r.status === 404) { if (p.url === url) p.url = null; return null; }
      return r.ok ? r[read]() : null;
    }).catch(() => null).then((answer) => {
      p.inflight = false;
      if (answer !== null && p.url === url) got(answer);
      next();
    });
  }
  p.poll = (url, everyMs) => {  // url null: stop polling until a rerun hands a new one
    p.every = everyMs || p.every;
    if (url !== p.url) { clearTimeout(p.timer); p.timer = null; p.url = url; }
    next();
  };
  return p;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;  // textContent only: nothing from the server is parsed as HTML
  return e;
}

// The status line's nodes are built once per set of runs and then only their text changes: rebuilding them four
// times a second would cost the page a style, layout and paint pass each time.
function build(root, runs) {
  root.className = 'gel-status' + (runs.length > 1 ? ' gel-multi' : '');
  root.__refs = [];
  root.replaceChildren(...runs.map((r) => {
    const box = el('div', 'gel-run');
    const head = el('div', 'gel-head');
    if (r.title) {
      const sq = el('span', '', '■ ');
      sq.style.color = r.color;
      head.append(sq, el('b', '', 'Run ' + r.title), ' · ');
    }
    const refs = {badge: el('span'), step: el('b'), rest: el('span'), values: []};
    head.append(refs.badge, ' · step ', refs.step, refs.rest);
    const metrics = el('div', 'gel-metrics');
    for (const [label] of r.metrics) {
      const value = el('div', 'gel-value');
      const m = el('div', 'gel-metric');
      m.append(el('div', 'gel-label', label), value);
      metrics.append(m);
      refs.values.push(value);
    }
    box.append(head, metrics);
    root.__refs.push(refs);
    return box;
  }));
}

const setText = (node, text) => { if (node.textContent !== text) node.textContent = text; };

function draw(root, status) {
  const shape = status.runs.map((r) => r.title + ' ' + r.color + ' ' + r.metrics.length).join(',');
  if (root.__shape !== shape) {
    build(root, status.runs);
    root.__shape = shape;
  }
  status.runs.forEach((r, i) => {
    const refs = root.__refs[i];
    setText(refs.badge, r.label || r.state);
    refs.badge.className = 'gel-badge gel-badge-' + r.badge;
    setText(refs.step, r.step_text);
    setText(refs.rest, ' / ' + r.steps_text + ' · ' + r.detail);
    r.metrics.forEach(([, value], j) => setText(refs.values[j], value));
  });
  root.dataset.step = status.runs.map((r) => r.step).join(',');
  root.dataset.runs = status.runs.map((r) => r.id).join(',');  // which runs the line shows now, in what state
  root.dataset.states = status.runs.map((r) => r.state).join(',');
}

// Keyed by run id: a tab's next run ends in the same state as its last one ("false:exploded"), and must still
// bring its own banner.
const states = (status) => status.alive + ':' + status.runs.map((r) => r.id + '=' + r.state).join(',');

// When the poll sees a run of the tab change state (explode, finish, stop), the line asks for one rerun of the
// page, which draws its banner, the buttons and the URL. If no rerun has drawn that state ASK_AGAIN_MS later
// (a trigger lost while the server was busy), it asks again. Not sooner: a rerun takes up to ~0.7 s on a busy
// two-core machine, and asking again while it runs would restart it, so the end would show later, not sooner.
const ASK_AGAIN_MS = 3000;

function ask(s, want) {
  s.asked = want;
  s.changed(true);
  clearTimeout(s.retry);
  s.retry = setTimeout(() => { if (!s.stopped && s.rendered !== want && s.asked === want) ask(s, want); },
                       ASK_AGAIN_MS);
}

function show(s, status) {
  if (status.t < s.shown) return;  // an older copy (a slow fetch, or a rerun's) never wins
  s.shown = status.t;
  s.latest = status;
  draw(s.root, status);
  const now = states(status);
  if (now !== s.rendered && now !== s.asked) ask(s, now);
}

function statusLine({data, parentElement, setTriggerValue}) {
  let s = parentElement.__gelStatus;
  if (!s) {
    s = parentElement.__gelStatus = {shown: -Infinity, root: el('div', 'gel-status')};
    // The line polls while its run is alive; an answer saying it has ended stops the loop until a rerun
    // hands it the next run.
    s.loop = poller({read: 'json', got: (status) => {
      show(s, status);
      if (!status.alive) s.loop.poll(null);
    }});
    parentElement.appendChild(s.root);
  }
  s.stopped = false;
  s.changed = (v) => setTriggerValue('changed', v);
  s.rendered = states(data.status);  // what the page's banners and buttons were drawn from
  show(s, data.status);
  s.loop.poll(data.status.alive ? data.url : null, data.every_ms);
  return () => { s.stopped = true; s.loop.poll(null); clearTimeout(s.retry); };
}

// One queue for every chart of the page: a figure waits until its chart is on screen, then charts are drawn one
// per task, at background priority. A burst of figures (the per-layer charts arrive together) never holds the
// page for longer than one chart's draw, so the status line's updates get through in between.
// Drawing takes at most DRAW_SHARE of the page's time: after a draw of d ms the next waits d × (1 / DRAW_SHARE - 1).
// Where a draw takes 5 ms that never binds (each chart on screen is drawn at its 0.25 s poll); where it takes 30 ms
// (a busy two-core machine, whose cores the browser shares with the trainer), charts are drawn less often, each
// with every row that arrived meanwhile, and the trainer keeps its core (docs/benchmarks.md, P2 and P7).
const DRAW_SHARE = 0.5;
const plots = window.__gelPlot || (window.__gelPlot = {loading: null, queue: new Map(), busy: false, seen: null});

function loadPlotly(src) {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (!plots.loading) {
    plots.loading = new Promise((resolve, reject) => {
      const script = document.createElement('script');
      script.src = src;
      script.onload = () => resolve(window.Plotly);
      script.onerror = () => { plots.loading = null; reject(new Error('could not load ' + src)); };
      document.head.appendChild(script);
    });
  }
  return plots.loading;
}

// Dark mode: Streamlit gives the element its theme as CSS variables; a light text colour means a dark page.
// Reading it forces a style pass over the whole page, so the answer is kept for a second: every chart drawn in
// that second uses it, and a theme switched in the settings reaches the next draw after it.
const THEME_TTL_MS = 1000;
function isDarkNow(div) {
  const now = performance.now();
  if (!plots.theme || now - plots.theme.at > THEME_TTL_MS) plots.theme = {at: now, dark: isDark(div)};
  return plots.theme.dark;
}

function isDark(div) {
  const style = getComputedStyle(div);
  const text = style.getPropertyValue('--st-text-color').trim() || style.color;
  const probe = document.createElement('span');
  probe.style.color = text;
  document.body.appendChild(probe);
  const rgb = (getComputedStyle(probe).color.match(/[\d.]+/g) || [0, 0, 0]).map(Number);
  probe.remove();
  return 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2] > 128;
}

// The figure's light ink and paper swapped for dark ones (components/theme.py DARK_SWAPS), values only; arrays of
// numbers (a chart's points, thousands of them) are passed as they are.
function recolor(value, swaps) {
  if (Array.isArray(value)) {
    return value.length && typeof value[0] === 'number' ? value : value.map((v) => recolor(v, swaps));
  }
  if (value && typeof value === 'object') {
    const out = {};
    for (const k of Object.keys(value)) out[k] = recolor(value[k], swaps);
    return out;
  }
  return typeof value === 'string' && swaps[value.toLowerCase()] !== undefined ? swaps[value.toLowerCase()] : value;
}

const later = (fn) => (window.scheduler && scheduler.postTask)
  ? scheduler.postTask(fn, {priority: 'background'}) : setTimeout(fn, 0);

// The cheap draw. A chart that only gained points, every one inside the axes as drawn, has just those traces'
// points redrawn (Plotly.animate without a redraw: no defaults, axes, ticks, legend or layout pass, about half of a
// Plotly.react); anything else (a new axis range, a line or label, another trace type) is drawn whole. A chart that
// follows the steps is drawn whole with room on the right (HEADROOM of its last step), so the next points land
// inside the axis: the axis moves once per third of the run so far, not at every poll.
const HEADROOM = 0.33;
const MOVABLE = new Set(['scatter', 'bar']);  // the trace types Plotly can redraw alone

// A trace's type, colours, name and the rest but its points: what the cheap draw leaves as it is.
const styleOf = (t) => JSON.stringify(Object.keys(t).filter((k) => k !== 'uid' && !POINTS.includes(k)).sort()
  .map((k) => [k, t[k]]));
const pointsOf = (t) => Object.fromEntries(POINTS.filter((k) => Array.isArray(t[k])).map((k) => [k, t[k]]));

function lastStep(held) {
  let top = -Infinity;
  for (const t of held.data) {
    const x = t.x || [];
    for (let i = x.length - 1; i >= 0; i--) if (typeof x[i] === 'number') { top = Math.max(top, x[i]); break; }
  }
  return top;
}

function withHeadroom(held) {
  const top = lastStep(held);
  if (!Number.isFinite(top) || top <= 0) return held.layout;
  const layout = {...held.layout};
  for (const k of Object.keys(layout)) {
    if (/^xaxis\d*$/.test(k) && (layout[k].type || 'linear') === 'linear') {
      const options = {...(layout[k].autorangeoptions || {}), include: [top * (1 + HEADROOM)]};
      layout[k] = {...layout[k], autorangeoptions: options};
    }
  }
  return layout;
}

// What a chart's traces were when last drawn, as it holds them (light colours, whatever the theme drawn).
const drawnOf = (held) => held.data.map((t) => ({uid: t.uid, style: styleOf(t), x: t.x, y: t.y}));

// Indices of the traces to redraw in place, or null when the chart must be drawn whole.
function inPlace(gd, held, now) {
  const full = gd._fullData, fl = gd._fullLayout, drawn = gd.__drawn;
  if (!full || !fl || !drawn || drawn.length !== now.length || full.length !== drawn.length) return null;
  if (titleOf(held.layout) !== titleOf(fl) && !gd.querySelector(TITLE)) return null;
  const moved = [];
  for (let i = 0; i < held.data.length; i++) {
    const t = held.data[i], was = drawn[i];
    if (was.uid !== now[i].uid || now[i].style !== was.style) return null;  // a bar turned red: drawn whole
    if (was.x === t.x && was.y === t.y) continue;
    if (!MOVABLE.has(t.type || 'scatter')) return null;
    if (!inside(t.x, fl[axisName(full[i].xaxis)], was.x) || !inside(t.y, fl[axisName(full[i].yaxis)], was.y)) {
      return null;
    }
    moved.push(i);
  }
  return moved.length ? moved : null;
}

const axisName = (id) => (id || 'x').replace(/^([xy])(\d*)$/, (_, a, n) => a + 'axis' + n);

// A one-step chart names its step in the title (gradient flow now, step N): the cheap draw writes the new title
// into the title's own text node, and into the layouts Plotly holds, so its next whole draw and an export agree.
const TITLE = '.g-gtitle .gtitle';
const titleOf = (layout) => ((layout || {}).title || {}).text || '';

function retitle(gd, text) {
  if (text === titleOf(gd._fullLayout)) return;
  gd.querySelector(TITLE).textContent = text;
  gd._fullLayout.title.text = text;
  gd.layout.title = {...(gd.layout.title || {}), text};
}

// A category axis (the layers of a one-step chart) keeps its place when its categories are the ones drawn.
function inside(values, ax, drawn) {
  if (ax && ax.type === 'category') {
    return Array.isArray(values) && Array.isArray(drawn) && values.length === drawn.length
      && values.every((v, i) => v === drawn[i]);
  }
  if (ax && ax.autorange === false) return true;  // a range set by hand (a zoom) or by the figure: it stays
  if (!ax || !Array.isArray(ax.range) || (ax.type !== 'linear' && ax.type !== 'log')) return false;
  const lo = Math.min(ax.range[0], ax.range[1]), hi = Math.max(ax.range[0], ax.range[1]);
  const log = ax.type === 'log';
  for (const v of values || []) {
    if (typeof v !== 'number' || !Number.isFinite(v) || (log && v <= 0)) continue;  // gaps: not drawn
    const u = log ? Math.log10(v) : v;
    if (u < lo || u > hi) return false;
  }
  return true;
}

// The lightest draw. A line (lines only, no fill or markers, straight segments) whose new points all follow the
// points drawn, inside the axes, has them added to the end of its SVG path, at the pixels plotly.js' own axes give
// (rounded as it rounds): a few microseconds a point, where plotly.js redraws every point of the trace. plotly.js'
// trace data is given the new points too, so what the page reports drawn is what is on screen; its hover data
// catches up at its next draw of the chart: at most SYNC_MS later, at once while the pointer is over the chart,
// and whenever anything else changed. Each whole draw passes a new datarevision: plotly.js then recomputes every
// trace (as it does anyway when any array is new), the points the lightest draws gave it included, which it would
// otherwise take as drawn, their arrays being the ones it holds.
const SYNC_MS = 2000;

// The plan for the lightest draw, [[trace index, its last line path or null, its last marker or null, its new
// points in pixels], ...], or null.
const MODES = new Set(['lines', 'markers', 'lines+markers']);
const oneStyle = (m) => !['color', 'size', 'symbol', 'opacity'].some((k) => Array.isArray((m || {})[k]));

function appendPlan(gd, held, moved) {
  const full = gd._fullData, fl = gd._fullLayout, drawn = gd.__drawn;
  if (gd.__pointer || performance.now() - (gd.__synced || 0) > SYNC_MS) return null;
  const plan = [];
  // Each drawn trace's SVG group, by trace index: one query of the chart's traces for every moved line.
  const groups = new Map([...gd.querySelectorAll('.scatterlayer .trace')]
    .filter((g) => g.__data__ && g.__data__[0] && g.__data__[0].trace)
    .map((g) => [g.__data__[0].trace.index, g]));
  for (const i of moved) {
    const f = full[i], t = held.data[i], was = drawn[i];
    const lines = (f.mode || '').includes('lines'), markers = (f.mode || '').includes('markers');
    if (f.type !== 'scatter' || !MODES.has(f.mode) || (f.fill || 'none') !== 'none' || f.visible !== true
        || (lines && (f.line || {}).shape !== 'linear') || (markers && !oneStyle(f.marker))) return null;
    const k = (was.x || []).length;
    if (!k || !Array.isArray(t.x) || !Array.isArray(t.y) || t.x.length <= k || t.y.length !== t.x.length
        || t.x[0] !== was.x[0] || t.y[0] !== was.y[0] || t.x[k - 1] !== was.x[k - 1] || t.y[k - 1] !== was.y[k - 1]) {
      return null;  // not the drawn points and more: thinned, or replaced
    }
    const xa = fl[axisName(f.xaxis)], ya = fl[axisName(f.yaxis)];
    const at = (j) => {
      const x = t.x[j], y = t.y[j];
      if (typeof x !== 'number' || typeof y !== 'number' || !Number.isFinite(x) || !Number.isFinite(y)
          || (xa.type === 'log' && x <= 0) || (ya.type === 'log' && y <= 0)) return null;  // a gap: a new path
      return [Math.round(xa.c2p(x) * 100) / 100, Math.round(ya.c2p(y) * 100) / 100];
    };
    const group = groups.get(i);
    if (!group) return null;
    const last = at(k - 1);
    if (!last) return null;
    // The line must end, and the last marker stand, where the last drawn point is: a redraw plotly.js made
    // meanwhile (a zoom, a legend click) from the points it knows is then drawn whole, not extended.
    const near = (m) => m && Math.abs(Number(m[1]) - last[0]) < 0.011 && Math.abs(Number(m[2]) - last[1]) < 0.011;
    const paths = lines ? group.querySelectorAll('path.js-line') : [];
    const path = lines ? paths[paths.length - 1] : null;
    if (lines && !(path && near(/(-?[\d.]+),(-?[\d.]+)$/.exec(path.getAttribute('d') || '')))) return null;
    const marks = markers ? group.querySelectorAll('.points path.point') : [];
    const mark = markers ? marks[marks.length - 1] : null;
    if (markers && !(mark && near(/translate\((-?[\d.]+),\s*(-?[\d.]+)\)/.exec(mark.getAttribute('transform') || '')))) {
      return null;
    }
    const points = [];
    for (let j = k; j < t.x.length; j++) {
      const p = at(j);
      if (!p) return null;
      points.push(p);
    }
    plan.push([i, path, mark, points]);
  }
  return plan;
}

function append(gd, held, plan) {
  for (const [i, path, mark, points] of plan) {
    if (path) path.setAttribute('d', path.getAttribute('d') + points.map(([x, y]) => 'L' + x + ',' + y).join(''));
    if (mark) {
      for (const [x, y] of points) {
        const copy = mark.cloneNode(false);
        copy.setAttribute('transform', 'translate(' + x + ',' + y + ')');
        mark.parentNode.appendChild(copy);
      }
    }
    const now = pointsOf(held.data[i]);
    Object.assign(gd.data[i], now);
    Object.assign(gd._fullData[i], now);
  }
  gd.dataset.appended = String(Number(gd.dataset.appended || 0) + 1);  // how many draws took the lightest way
}

// Draw one chart with what it holds: its lines extended, or in place when only its points moved inside its
// axes, else whole.
function drawChart(Plotly, div, data) {
  const dark = isDarkNow(div);
  const held = div.__held;
  const rows = div.__change === 'rows' && div.dataset.theme === (dark ? 'dark' : 'light');
  div.__change = null;
  div.dataset.theme = dark ? 'dark' : 'light';
  const now = drawnOf(held);  // each trace's style read once a draw: compared, then kept for the next
  const moved = rows ? inPlace(div, held, now) : null;
  const plan = moved ? appendPlan(div, held, moved) : null;
  div.__drawn = now;
  if (moved) retitle(div, titleOf(held.layout));
  if (plan) {
    append(div, held, plan);
    return Promise.resolve();
  }
  div.__synced = performance.now();  // plotly.js draws every point it is given, its hover data with them
  if (moved) {
    div.dataset.inPlace = String(Number(div.dataset.inPlace || 0) + 1);  // how many draws took the cheap way
    return Plotly.animate(div, {data: moved.map((i) => pointsOf(held.data[i])), traces: moved},
                          {transition: {duration: 0}, frame: {duration: 0, redraw: false}, mode: 'immediate'});
  }
  div.__revision = (div.__revision || 0) + 1;
  const layout = {...(div.__stream ? withHeadroom(held) : held.layout), datarevision: div.__revision};
  const fig = dark ? recolor({data: held.data, layout}, data.dark) : {data: held.data, layout};
  return Plotly.react(div, fig.data, fig.layout, data.config);
}

function pump() {
  if (plots.busy) return;
  const next = [...plots.queue.keys()].find((div) => div.isConnected && div.__visible);
  for (const div of [...plots.queue.keys()]) if (!div.isConnected) plots.queue.delete(div);
  if (!next) return;
  const data = plots.queue.get(next);
  plots.queue.delete(next);
  plots.busy = true;
  let spent = 0;  // the draw's own time: what it holds the page for, not the wait for its promise (a frame)
  later(() => loadPlotly(data.src).then((Plotly) => {
    const began = performance.now();
    try {
      return drawChart(Plotly, next, data);
    } finally {
      spent = performance.now() - began;
    }
  }).then(() => { next.dataset.drawn = String((next.__draws = (next.__draws || 0) + 1)); }, (err) => {
    next.textContent = 'The chart could not be drawn: ' + err.message;
  }).finally(() => {  // the draw's share of the page's time: it rests (d / DRAW_SHARE - d) before the next draw
    setTimeout(() => { plots.busy = false; later(pump); }, spent * (1 / DRAW_SHARE - 1));
  }));
}

// Off-screen charts are not drawn: their latest figure waits and is drawn when they scroll into view.
function watch(div) {
  if (!plots.seen) {
    plots.seen = new IntersectionObserver((entries) => {
      for (const e of entries) e.target.__visible = e.isIntersecting;
      pump();
    }, {rootMargin: '200px'});
  }
  plots.seen.observe(div);
}

// The streaming charts of a page share one loop: each period it asks the charts route (live_api.live_charts) for
// every one of them on screen, each with its own query and cursor, in one request, and hands each its answer. One
// request a period instead of one per chart: fewer wake-ups of a server whose training thread shares the GIL.
const hub = window.__gelHub || (window.__gelHub = {charts: new Set(), sent: [], loop: null});

function hubQuery() {
  hub.sent = [...hub.charts].filter((d) => d.isConnected && d.__visible).map((d) => [d, d.__spec]);
  return '?' + hub.sent.map(([d, spec]) => 'c=' + encodeURIComponent(spec + cursorQuery(d.__held))).join('&');
}

function hubGot(answers) {
  hub.sent.forEach(([div, spec], i) => {
    const answer = answers[i];
    if (!answer || div.__spec !== spec || !hub.charts.has(div)) return;  // a rerun handed it another source
    if (answer.status === 404) hub.charts.delete(div);  // its run is gone: it stops, as a lone chart's loop does
    else if (!answer.error) take(div, div.__unwrap(answer, div.__loop));
  });
}

function joinHub(div, data) {
  div.__loop.poll(null);
  div.__spec = data.source.split('/api/chart/')[1];
  hub.charts.add(div);
  if (!hub.loop) {
    hub.loop = poller({read: 'json', got: hubGot, query: hubQuery,
                       due: () => [...hub.charts].some((d) => d.isConnected && d.__visible)});
  }
  hub.loop.poll(data.batch, data.every_ms);
}

function leaveHub(div) {
  hub.charts.delete(div);
  if (hub.loop && !hub.charts.size) hub.loop.poll(null);
}

// What a chart does with an answer of its route (components/live_rows.py): hold a whole figure, append rows, or
// replace a one-step chart's traces. Rows it cannot place (a trace it does not hold) drop its cursor, so the next
// poll brings the whole figure.
function take(div, answer) {
  let change = 'whole';
  if (answer.figure) {
    div.__held = hold(answer.figure, answer.cursor || null);
    div.__stream = false;  // a run's last figure, a view change: drawn as it comes
    div.__still = null;
  } else if (!div.__held) return;
  else if (answer.replace) {
    // Only the points and the title move from one step to the next: anything else (an axis, a line) draws whole.
    const {title, ...rest} = answer.replace.layout || {};
    const still = JSON.stringify(rest);
    if (div.__still === still) change = 'rows';
    div.__still = still;
    replace(div.__held, answer);
  } else if (answer.traces) {
    if (!extend(div.__held, answer)) { div.__held.cursor = null; return; }
    div.__stream = true;
    if (!(answer.shapes || []).length && !(answer.annotations || []).length) change = 'rows';
  } else { div.__held.cursor = answer.cursor; return; }  // nothing new
  div.__change = div.__change === 'whole' ? 'whole' : change;
  // A chart already waiting keeps its place (it will draw every row it holds by then); others join at the back:
  // charts are drawn in the order they first had something new, so none waits behind charts drawn again and again.
  plots.queue.set(div, div.__base);
  pump();
}

// `unwrap` takes each answer of the chart's source (and the chart's loop) and returns what the chart takes of it:
// a live chart's answer is that itself, the live map's holds its figure beside its progress.
function chart({data, parentElement}, unwrap = (answer) => answer) {
  if (data.preload) {  // opened with the page, so the first chart of a run does not wait for plotly.js
    loadPlotly(data.src).catch(() => {});
    return undefined;
  }
  let div = parentElement.querySelector(':scope > .gel-plot');
  if (!div) {
    div = document.createElement('div');
    div.className = 'gel-plot';
    div.style.width = '100%';
    div.style.willChange = 'transform';  // a layer of its own: a redraw re-rasters this chart's tiles alone
    // While the pointer is over a chart, plotly.js draws its every point: its hover shows the newest.
    div.addEventListener('pointerenter', () => { div.__pointer = true; });
    div.addEventListener('pointerleave', () => { div.__pointer = false; });
    parentElement.appendChild(div);
    watch(div);
    // A chart with a source asks it for what is new on its period (alone, or with the page's other streaming
    // charts: joinHub), but only while it is on screen: a chart nobody looks at costs neither the server nor
    // the page anything.
    div.__loop = poller({read: 'json', due: () => div.isConnected && div.__visible,
                         query: () => cursorQuery(div.__held),
                         got: (answer) => take(div, div.__unwrap(answer, div.__loop))});
  }
  div.style.height = data.height + 'px';  // hold the space before the first draw: the page does not jump
  div.__base = data;
  div.__unwrap = unwrap;
  take(div, {figure: JSON.parse(data.figure), cursor: data.cursor});  // only the latest figure is kept
  if (data.batch && data.source) joinHub(div, data);
  else {
    leaveHub(div);
    div.__loop.poll(data.source, data.every_ms);
  }
  return () => {
    div.__loop.poll(null);
    leaveHub(div);
    plots.queue.delete(div);
    if (plots.seen) plots.seen.unobserve(div);
    if (window.Plotly) window.Plotly.purge(div);
  };
}

// The stability map while its sweep runs: a progress bar and the in-place chart, both fed by one answer of the map
// route ({figure, done, total, text, alive}), fetched only while the chart is on screen. When an answer says the
// sweep has ended, the loop stops and the element asks for one rerun, as the status line does when a run ends:
// that rerun draws the final map, which opens a clicked cell in the lab, in this element's place.
function liveMap(args) {
  const {data, parentElement, setTriggerValue} = args;
  let m = parentElement.__gelMap;
  if (!m) {
    m = parentElement.__gelMap = {text: el('div', 'gel-map-progress'), bar: el('progress'), rendered: 'running'};
    m.bar.style.width = '100%';
    parentElement.append(m.text, m.bar);  // before the chart's own node, which chart() appends
  }
  if (m.job !== data.sweep) {  // a new sweep launched over the last: its end is asked for anew
    clearTimeout(m.retry);
    m.asked = null;
    m.job = data.sweep;
  }
  m.stopped = false;
  m.changed = (v) => setTriggerValue('ended', v);
  const update = (state) => {
    setText(m.text, state.text);
    m.bar.max = state.total;
    m.bar.value = state.done;
    parentElement.dataset.done = String(state.done);
    if (!state.alive && m.asked !== 'ended') ask(m, 'ended');
    return state.figure;
  };
  update(data);
  const end = chart(args, (state, loop) => {
    if (!state.alive) loop.poll(null);
    return {figure: JSON.parse(update(state))};
  });
  return () => { m.stopped = true; clearTimeout(m.retry); end(); };
}

export default function (args) {
  if (args.data.status) return statusLine(args);
  return args.data.sweep ? liveMap(args) : chart(args);
}
