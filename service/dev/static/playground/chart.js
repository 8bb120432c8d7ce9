// The best distance found so far against elapsed time, in the inline <svg id="progress-chart">.

const SVG_NS = 'http://www.w3.org/2000/svg';
const WIDTH = 320;
const HEIGHT = 120;
// Room for the axis labels on the left and below the plot.
const LEFT = 56;
const RIGHT = 8;
const TOP = 8;
const BOTTOM = 22;

function add(parent, name, attributes, text) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  parent.append(node);
  return node;
}

/** Redraw from all points so far ({elapsed_s, best_distance}); a solve sends about one a second. */
export function drawProgressChart(chart, points) {
  chart.replaceChildren();
  chart.setAttribute('viewBox', `0 0 ${WIDTH} ${HEIGHT}`);
  const usable = points.filter((p) => Number.isFinite(p.elapsed_s) && Number.isFinite(p.best_distance));
  add(chart, 'line', { class: 'axis', x1: LEFT, y1: TOP, x2: LEFT, y2: HEIGHT - BOTTOM });
  add(chart, 'line', { class: 'axis', x1: LEFT, y1: HEIGHT - BOTTOM, x2: WIDTH - RIGHT, y2: HEIGHT - BOTTOM });
  if (!usable.length) {
    add(chart, 'text', { x: LEFT + 8, y: HEIGHT / 2 }, 'No progress yet');
    chart.setAttribute('aria-label', 'Best distance over time: no progress yet');
    return;
  }
  const maxT = Math.max(...usable.map((p) => p.elapsed_s), 1);
  const distances = usable.map((p) => p.best_distance);
  const [low, high] = [Math.min(...distances), Math.max(...distances)];
  // A flat series (one point, or no improvement) still needs a non-zero span to scale by.
  const span = high - low || Math.max(1, high * 0.05);
  const x = (t) => LEFT + (t / maxT) * (WIDTH - LEFT - RIGHT);
  const y = (d) => HEIGHT - BOTTOM - ((d - low) / span) * (HEIGHT - TOP - BOTTOM);
  add(chart, 'polyline', {
    class: 'best-distance',
    points: usable.map((p) => `${x(p.elapsed_s).toFixed(1)},${y(p.best_distance).toFixed(1)}`).join(' '),
  });
  add(chart, 'text', { x: LEFT - 4, y: TOP + 10, 'text-anchor': 'end' }, String(Math.round(low + span)));
  add(chart, 'text', { x: LEFT - 4, y: HEIGHT - BOTTOM, 'text-anchor': 'end' }, String(Math.round(low)));
  add(chart, 'text', { x: LEFT, y: HEIGHT - 6 }, '0 s');
  add(chart, 'text', { x: WIDTH - RIGHT, y: HEIGHT - 6, 'text-anchor': 'end' }, `${maxT.toFixed(1)} s`);
  const last = usable[usable.length - 1];
  chart.setAttribute(
    'aria-label',
    `Best distance over time: from ${distances[0]} to ${last.best_distance} after ${last.elapsed_s.toFixed(1)} s`,
  );
}
