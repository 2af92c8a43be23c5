"""What a live chart holds stays bounded on a long run, in a real Chromium (components/live_stream.js): the newest
RECENT points as they came, older ones thinned by the min and max of each bucket (the server's rule), so a one-step
spike stays visible however many rows arrive."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

STREAM_JS = Path(__file__).resolve().parent.parent / "components" / "live_stream.js"

# 400 answers of 32 rows each (12,800 steps, as the route sends them: uid, x, y; the heatmap's z per layer), a spike
# at step 1234 and a gap (null) at step 2000; after each answer, the points held. Returns what it saw.
FEED = """() => {
  const fig = {data: [{type: 'scatter', name: 'loss', x: [0], y: [1]},
                      {type: 'heatmap', name: 'g', x: [0], y: ['a', 'b'], z: [[0], [0]], zmin: 0, zmax: 1}],
               layout: {}};
  const held = hold(fig, {after: [0], view: 'v'});
  const [line, heat] = held.data.map((t) => t.uid);
  const sizes = [];
  for (let a = 0; a < 400; a++) {
    const x = Array.from({length: 32}, (_, i) => a * 32 + i + 1);
    const y = x.map((s) => (s === 1234 ? 1e6 : s === 2000 ? null : 1 + (s % 7) / 100));
    const z = [x.map((s) => (s === 1234 ? 9 : 0.5)), x.map(() => 0.25)];
    if (!extend(held, {cursor: {after: [x[31]], view: 'v'},
                       traces: [{uid: line, x, y}, {uid: heat, x, z, zmin: 0, zmax: 9}]})) return null;
    sizes.push(Math.max(held.data[0].x.length, held.data[1].x.length, held.data[1].z[0].length));
  }
  const [t, h] = held.data;
  return {sizes, x: t.x, y: t.y, hx: h.x, z0: h.z[0], z1: h.z[1], recent: RECENT, most: HELD, cursor: held.cursor};
}"""


def test_a_long_run_stays_bounded_in_the_page_and_a_one_step_spike_survives(browser_page):
    page = browser_page
    page.set_content("<html><body></body></html>")
    page.add_script_tag(content=STREAM_JS.read_text(encoding="utf-8"))
    got = page.evaluate(FEED)
    assert got is not None, "an answer's rows found no trace to extend (the uids of hold and the rows differ)"
    assert max(got["sizes"]) <= got["most"] < 12_800 // 4  # bounded all along, far under what arrived
    x, y = got["x"], got["y"]
    assert x == sorted(x) and len(set(x)) == len(x) and x[-1] == 12_800 and got["cursor"]["after"] == [12_800]
    assert x[-got["recent"]:] == list(range(12_800 - got["recent"] + 1, 12_801))  # the newest, as they came
    assert y[x.index(1234)] == 1e6  # the spike, folded into old buckets several times, is still drawn
    assert all(v is None or v > 0 for v in y)  # a gap is never turned into a number (thinned, as on the server)
    assert len(got["hx"]) == len(got["z0"]) == len(got["z1"]) <= got["most"]  # the heatmap's columns too
    assert max(got["z0"]) == 9 and got["hx"] == sorted(got["hx"]) and got["hx"][-1] == 12_800
