// Draws a solvable request (and, once solved, its payload) into the inline <svg id="plan">.

import { formatClock, formatDistance, formatDuration, formatLoad, formatWindow } from './format.js';

const SVG_NS = 'http://www.w3.org/2000/svg';
const WIDTH = 800;
const HEIGHT = 520;
const MARGIN = 28;

// Each at least 3:1 against the white plan (WCAG 1.4.11), hues far apart; red is kept for
// unassigned stops. Colour never works alone: every route also has its own dash pattern, and the
// legend names it in text.
const ROUTE_COLOURS = ['#1565c0', '#2e7d32', '#6a1b9a', '#c25e00', '#00838f', '#ad1457', '#5d4037', '#3949ab'];
const DASHES = ['', '12 5', '3 4', '14 4 3 4', '7 3 1 3'];
const UNROUTED = '#5f6368';
const UNASSIGNED = '#c62828';

const routeStyle = (index) => ({
  colour: ROUTE_COLOURS[index % ROUTE_COLOURS.length],
  dash: DASHES[index % DASHES.length],
});

/** The tooltip text of each marker, looked up on hover and focus. */
const tooltips = new WeakMap();

function svg(name, attributes = {}, parent = null) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) {
    if (value !== undefined && value !== '') node.setAttribute(key, String(value));
  }
  parent?.append(node);
  return node;
}

// A scenario's request may be any JSON object, so every member is checked before it is drawn.
const list = (value) => (Array.isArray(value) ? value : []);

export function isPlanar(request) {
  const first = list(request?.depots)[0]?.location ?? list(request?.stops)[0]?.location;
  return typeof first === 'object' && first !== null && 'x' in first;
}

// A shipment's two ends are drawn as places of their own, keyed like this.
export const endKey = (shipmentId, kind) => `${shipmentId}#${kind}`;

function shipmentEnds(request) {
  return list(request.shipments).flatMap((shipment) =>
    ['pickup', 'delivery'].map((kind) => ({
      id: typeof shipment?.id === 'string' ? endKey(shipment.id, kind) : null,
      location: shipment?.[kind]?.location,
      kind,
      shipment,
    })),
  );
}

function places(request) {
  return [...list(request.depots), ...list(request.stops), ...shipmentEnds(request)].filter(
    (place) => typeof place?.id === 'string' && typeof place.location === 'object' && place.location,
  );
}

/**
 * SVG coordinates for every depot and stop, fitted and centred in the box, y pointing up.
 * Lat/lon use an equirectangular projection: longitude shrinks by cos(latitude) around the
 * middle latitude, so a city's streets keep their shape; x/y are drawn as they are.
 */
function project(request) {
  const planar = isPlanar(request);
  const all = places(request);
  const lats = all.map((place) => place.location.lat).filter(Number.isFinite);
  const midLat = lats.length ? ((Math.min(...lats) + Math.max(...lats)) / 2) * (Math.PI / 180) : 0;
  const raw = new Map();
  for (const { id, location } of all) {
    const point = planar ? [location.x, location.y] : [location.lon * Math.cos(midLat), location.lat];
    if (point.every(Number.isFinite)) raw.set(id, point);
  }
  const xs = [...raw.values()].map(([x]) => x);
  const ys = [...raw.values()].map(([, y]) => y);
  const [minX, maxX, minY, maxY] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  // A zero span (one place, or all on a line) must not divide by zero: the other axis decides.
  const scale = Math.min(
    (WIDTH - 2 * MARGIN) / Math.max(maxX - minX, 1e-9),
    (HEIGHT - 2 * MARGIN) / Math.max(maxY - minY, 1e-9),
  );
  const [midX, midY] = [(minX + maxX) / 2, (minY + maxY) / 2];
  const positions = new Map();
  for (const [id, [x, y]] of raw) {
    positions.set(id, [WIDTH / 2 + (x - midX) * scale, HEIGHT / 2 - (y - midY) * scale]);
  }
  return positions;
}

/** Where each routed stop is served: its route and arrival time. */
function visits(payload) {
  const byStop = new Map();
  list(payload?.routes).forEach((route, routeIndex) => {
    list(route.stops).forEach((stopId, position) => {
      byStop.set(stopId, { routeIndex, route, arrival: route.arrivals?.[position] });
    });
  });
  return byStop;
}

// Stop id -> why it is unassigned. A solve lists {id, reasons}; an older or recorded payload may
// list bare ids, which have no reasons to show.
const unassignedReasons = (payload) =>
  new Map(
    list(payload?.unassigned).map((entry) =>
      typeof entry === 'string' ? [entry, []] : [entry?.id, list(entry?.reasons)],
    ),
  );

function focusable(node, lines) {
  node.setAttribute('tabindex', '0');
  node.setAttribute('role', 'img');
  node.setAttribute('aria-label', lines.join(', '));
  tooltips.set(node, lines);
}

function drawRoutes(layer, request, payload, positions) {
  const types = new Map(list(request.vehicle_types).map((type) => [type.id, type]));
  list(payload?.routes).forEach((route, index) => {
    const type = types.get(route.vehicle_type) ?? {};
    // Every visit in order when the payload lists them (pickups, deliveries, reloads at a depot);
    // an older payload has stops only.
    const middle = Array.isArray(route.visits)
      ? route.visits.map((visit) =>
          visit?.kind === 'pickup' || visit?.kind === 'delivery' ? endKey(visit.id, visit.kind) : visit?.id,
        )
      : list(route.stops);
    const path = [type.depot, ...middle, type.end_depot ?? type.depot];
    const points = path.map((id) => positions.get(id)).filter(Boolean);
    const { colour, dash } = routeStyle(index);
    svg('polyline', {
      class: 'route',
      'data-route-index': index,
      'data-vehicle-type': route.vehicle_type,
      points: points.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(' '),
      stroke: colour,
      'stroke-dasharray': dash,
    }, layer);
  });
}

function drawDepots(layer, request, positions) {
  for (const depot of list(request.depots)) {
    const at = positions.get(depot.id);
    if (!at) continue;
    const node = svg('rect', {
      class: 'depot', 'data-depot-id': depot.id, x: at[0] - 8, y: at[1] - 8, width: 16, height: 16,
    }, layer);
    focusable(node, [`Depot ${depot.id}`, `Open ${formatWindow(depot.time_window)}`]);
  }
}

function stopLines(stop, visit, reasons, planar) {
  let served = 'Not solved yet';
  if (visit) served = `Arrival ${formatClock(visit.arrival)} (route ${visit.routeIndex + 1}, ${visit.route.vehicle_type})`;
  else if (reasons) served = reasons.length ? `Unassigned: ${reasons.join(', ').replaceAll('_', ' ')}` : 'Unassigned';
  return [
    `Stop ${stop.id}`,
    `Time window ${formatWindow(stop.time_window)}`,
    served,
    `Demand ${formatLoad(stop.demand)}, service ${formatDuration(stop.service_duration ?? 0, planar)}`,
  ];
}

function drawStops(layer, request, payload, positions) {
  const planar = isPlanar(request);
  const visited = visits(payload);
  const unassigned = unassignedReasons(payload);
  for (const stop of list(request.stops)) {
    const at = positions.get(stop.id);
    if (!at) continue;
    const visit = visited.get(stop.id);
    const isUnassigned = unassigned.has(stop.id);
    const group = svg('g', {
      class: isUnassigned ? 'stop unassigned' : 'stop',
      'data-stop-id': stop.id,
      transform: `translate(${at[0].toFixed(1)} ${at[1].toFixed(1)})`,
    }, layer);
    if (isUnassigned) {
      // Hollow ring with a cross: unassigned reads from the shape, not only from the red.
      svg('circle', { r: 8, fill: '#ffffff', stroke: UNASSIGNED, 'stroke-width': 2 }, group);
      svg('path', { d: 'M-4.5,-4.5L4.5,4.5M-4.5,4.5L4.5,-4.5', stroke: UNASSIGNED, 'stroke-width': 2.5 }, group);
    } else {
      const fill = visit ? routeStyle(visit.routeIndex).colour : UNROUTED;
      svg('circle', { r: 6, fill, stroke: '#ffffff', 'stroke-width': 1.5 }, group);
    }
    focusable(group, stopLines(stop, visit, unassigned.get(stop.id), planar));
  }
}

function drawShipmentEnds(layer, request, payload, positions) {
  const served = new Map();
  list(payload?.routes).forEach((route, routeIndex) => {
    for (const visit of list(route.visits)) {
      if (visit?.kind === 'pickup' || visit?.kind === 'delivery') {
        served.set(endKey(visit.id, visit.kind), { routeIndex, route, arrival: visit.arrival });
      }
    }
  });
  const unassigned = unassignedReasons(payload);
  for (const end of shipmentEnds(request)) {
    const at = end.id && positions.get(end.id);
    if (!at) continue;
    const visit = served.get(end.id);
    const group = svg('g', {
      class: `shipment-end ${end.kind}`,
      'data-shipment-id': end.shipment.id,
      'data-kind': end.kind,
      transform: `translate(${at[0].toFixed(1)} ${at[1].toFixed(1)})`,
    }, layer);
    // A triangle pointing up for a pickup, down for a delivery.
    const d = end.kind === 'pickup' ? 'M0,-8L7,5L-7,5Z' : 'M0,8L7,-5L-7,-5Z';
    const fill = visit ? routeStyle(visit.routeIndex).colour : unassigned.has(end.shipment.id) ? UNASSIGNED : UNROUTED;
    svg('path', { d, fill, stroke: '#ffffff', 'stroke-width': 1.5 }, group);
    const reasons = unassigned.get(end.shipment.id);
    let text = 'Not solved yet';
    if (visit) text = `Arrival ${formatClock(visit.arrival)} (route ${visit.routeIndex + 1}, ${visit.route.vehicle_type})`;
    else if (reasons) text = reasons.length ? `Unassigned: ${reasons.join(', ').replaceAll('_', ' ')}` : 'Unassigned';
    focusable(group, [`Shipment ${end.shipment.id} ${end.kind}`, text, `Amount ${formatLoad(end.shipment.amount)}`]);
  }
}

function legendEntry(route, index, planar) {
  const item = document.createElement('li');
  item.dataset.routeIndex = String(index);
  const { colour, dash } = routeStyle(index);
  const swatch = svg('svg', { class: 'swatch', width: 44, height: 12, viewBox: '0 0 44 12', 'aria-hidden': 'true' });
  svg('line', { x1: 2, y1: 6, x2: 42, y2: 6, stroke: colour, 'stroke-width': 3, 'stroke-dasharray': dash }, swatch);
  const text = document.createElement('span');
  const stops = list(route.stops).length;
  const vehicle = Number.isInteger(route.vehicle) ? ` #${route.vehicle}` : '';
  const trips = Number.isInteger(route.trips) ? `, ${route.trips} trips` : '';
  text.textContent =
    `Route ${index + 1} · ${route.vehicle_type}${vehicle}: ${stops} stop${stops === 1 ? '' : 's'}${trips}, ` +
    `distance ${formatDistance(route.distance, planar)}, duration ${formatDuration(route.duration, planar)}, ` +
    `load ${formatLoad(route.load)}, ${formatClock(route.start)}–${formatClock(route.end)}`;
  item.append(swatch, text);
  return item;
}

function summaryText(request, payload, planar) {
  const stops = list(request.stops).length;
  const depots = list(request.depots).length;
  if (!payload) return `${stops} stops and ${depots} depot${depots === 1 ? '' : 's'}; not solved yet.`;
  const unassigned = list(payload.unassigned).length;
  return (
    `${list(payload.routes).length} routes, total distance ${formatDistance(payload.distance, planar)}, ` +
    `duration ${formatDuration(payload.duration, planar)}; ${payload.feasible ? 'feasible' : 'not feasible'}; ` +
    `${unassigned} unassigned stop${unassigned === 1 ? '' : 's'}.`
  );
}

/** Redraw the plan: the request's places, and the payload's routes when there is one. */
export function drawPlan({ plan, legend, summary }, request, payload = null) {
  plan.replaceChildren();
  legend.replaceChildren();
  plan.setAttribute('viewBox', `0 0 ${WIDTH} ${HEIGHT}`);
  if (!request) {
    summary.textContent = 'Pick a scenario to see its stops.';
    return;
  }
  const planar = isPlanar(request);
  const positions = project(request);
  // Later layers paint on top: lines under markers, so every stop stays visible and hoverable.
  drawRoutes(svg('g', { class: 'routes' }, plan), request, payload, positions);
  drawDepots(svg('g', { class: 'depots' }, plan), request, positions);
  drawShipmentEnds(svg('g', { class: 'shipment-ends' }, plan), request, payload, positions);
  drawStops(svg('g', { class: 'stops' }, plan), request, payload, positions);
  list(payload?.routes).forEach((route, index) => legend.append(legendEntry(route, index, planar)));
  summary.textContent = summaryText(request, payload, planar);
}

/** Show a marker's details beside it on hover and on keyboard focus; Escape hides them. */
export function attachTooltip(plan, tooltip) {
  const wrap = tooltip.parentElement; // positioned (CSS), so offsets are relative to it
  const markerOf = (target) => target.closest?.('.stop, .depot, .shipment-end');
  const show = (marker) => {
    const lines = tooltips.get(marker);
    if (!lines) return;
    tooltip.textContent = lines.join('\n');
    tooltip.hidden = false;
    const box = marker.getBoundingClientRect();
    const frame = wrap.getBoundingClientRect();
    tooltip.style.left = `${box.left - frame.left + box.width / 2}px`;
    tooltip.style.top = `${box.top - frame.top}px`;
  };
  const hide = () => {
    tooltip.hidden = true;
  };
  plan.addEventListener('pointerover', (event) => markerOf(event.target) && show(markerOf(event.target)));
  plan.addEventListener('pointerout', (event) => markerOf(event.target) && hide());
  plan.addEventListener('focusin', (event) => markerOf(event.target) && show(markerOf(event.target)));
  plan.addEventListener('focusout', hide);
  document.addEventListener('keydown', (event) => event.key === 'Escape' && hide());
}
