// Re-planning on the playground: a scenario's solutions, the chosen one drawn with why each stop is
// unassigned, pins set by clicking stops on the map, a re-solve from the plan with those pins, and
// a comparison of two solutions with the moved stops marked on the map.

import { api } from './api.js';
import { formatDistance, formatDuration } from './format.js';
import { drawPlan, isPlanar } from './plan.js';

const $ = (id) => document.getElementById(id);
const WITH_PLAN = new Set(['succeeded', 'cancelled']);
const list = (value) => (Array.isArray(value) ? value : []);
// Solution ids are UUIDv7: their first digits are a timestamp, so the last ones tell them apart.
const short = (id) => String(id).slice(-8);

const state = {
  hooks: null,
  scenario: null,
  solutions: [],
  // The solution drawn: {id, status, payload}.
  shown: null,
  // Pins for the next re-solve, as the API takes them.
  pins: [],
  // Stop ids the last comparison found moved (drawn highlighted).
  moved: new Set(),
};

/** `hooks`: {planParts, action, announce, solve(extra), solving()} from the page (app.js). */
export function initReplan(hooks) {
  state.hooks = hooks;
  const { action } = hooks;
  $('refresh-solutions').addEventListener('click', action('Reload solutions', () => loadSolutions()));
  $('solution-list').addEventListener(
    'click',
    action('Open solution', (event) => {
      const button = event.target.closest('button[data-solution-id]');
      if (button) return showSolution(button.dataset.solutionId);
    }),
  );
  $('plan').addEventListener('click', action('Pin', (event) => pinAt(event.target)));
  $('plan').addEventListener('keydown', (event) => {
    if (event.key === 'Enter' || event.key === ' ') action('Pin', () => pinAt(event.target))(event);
  });
  $('pin-list').addEventListener('click', (event) => {
    const button = event.target.closest('button[data-pin-index]');
    if (!button) return;
    state.pins.splice(Number(button.dataset.pinIndex), 1);
    renderPins();
    decorate();
  });
  $('clear-pins').addEventListener('click', () => {
    state.pins = [];
    renderPins();
    decorate();
  });
  $('resolve').addEventListener('click', action('Re-solve', resolve));
  $('compare').addEventListener('click', action('Compare', compare));
}

/** A scenario was selected (or none): list its solutions; nothing is drawn until one is picked. */
export async function scenarioShown(scenario) {
  const changed = scenario?.id !== state.scenario?.id;
  state.scenario = scenario;
  $('solutions-panel').hidden = !scenario;
  if (changed) reset();
  if (!scenario || !changed) return;
  await loadSolutions();
  // The newest solution with a plan is drawn at once: a scenario opens on its latest plan.
  const latest = state.solutions.find((solution) => WITH_PLAN.has(solution.status));
  if (latest && state.scenario?.id === scenario.id && !state.hooks.solving()) await showSolution(latest.id);
}

/** A solve ended: when its scenario is still the one shown, list the solution and show it. */
export async function solveFinished(scenarioId, solutionId) {
  if (state.scenario?.id !== scenarioId) return;
  await loadSolutions();
  await showSolution(solutionId);
}

function reset() {
  Object.assign(state, { solutions: [], shown: null, pins: [], moved: new Set() });
  $('solution-list').replaceChildren();
  $('solution-origin').textContent = '';
  $('comparison').replaceChildren();
  renderPins();
  renderUnassigned(null);
  renderCompareChoices();
}

async function loadSolutions() {
  if (!state.scenario) return;
  const scenarioId = state.scenario.id;
  const { data } = await api.listSolutions(scenarioId);
  if (state.scenario?.id !== scenarioId) return;
  state.solutions = data.items;
  renderSolutions();
  renderCompareChoices();
}

function renderSolutions() {
  const entries = state.solutions.map((solution) => {
    const entry = document.createElement('li');
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'item';
    button.dataset.solutionId = solution.id;
    button.dataset.status = solution.status;
    if (solution.id === state.shown?.id) button.setAttribute('aria-current', 'true');
    const meta = document.createElement('span');
    meta.className = 'meta';
    meta.textContent = `${short(solution.id)} · ${new Date(solution.created_at).toLocaleString()}`;
    button.append(`Solution (${solution.status})`, meta);
    entry.append(button);
    return entry;
  });
  if (!entries.length) {
    const empty = document.createElement('li');
    empty.className = 'empty';
    empty.textContent = 'No solutions yet: solve the scenario.';
    entries.push(empty);
  }
  $('solution-list').replaceChildren(...entries);
}

function renderCompareChoices() {
  const others = state.solutions.filter((s) => WITH_PLAN.has(s.status) && s.id !== state.shown?.id);
  const options = others.map((solution) => {
    const option = document.createElement('option');
    option.value = solution.id;
    option.textContent = `${short(solution.id)} (${solution.status}, ${new Date(solution.created_at).toLocaleTimeString()})`;
    return option;
  });
  $('compare-with').replaceChildren(...options);
  $('compare').disabled = !state.shown?.payload || !options.length;
}

async function showSolution(id) {
  const { data } = await api.getSolution(id);
  state.shown = { id: data.id, status: data.status, payload: data.payload ?? null };
  state.pins = [];
  state.moved = new Set();
  $('comparison').replaceChildren();
  redraw();
  renderSolutions();
  renderCompareChoices();
  renderPins();
  const pins = list(data.pins).length;
  $('solution-origin').textContent = data.from_solution
    ? `Re-solved from ${short(data.from_solution)}${pins ? ` with ${pins} pin${pins === 1 ? '' : 's'}` : ''}` +
      `${list(data.payload?.pin_conflicts).length ? `; pins that did not hold: ${data.payload.pin_conflicts.join(', ')}` : ''}.`
    : '';
  const payload = state.shown.payload;
  const planar = isPlanar(state.scenario.request);
  const found = payload ? `: ${payload.routes?.length ?? 0} routes, ${formatDistance(payload.distance, planar)}` : '';
  state.hooks.announce(`Showing solution ${short(data.id)} (${data.status})${found}.`);
}

function redraw() {
  const { planParts } = state.hooks;
  $('plan-heading').textContent = `Plan: ${state.scenario.name} (solution ${state.shown.status})`;
  drawPlan(planParts(), state.scenario.request, state.shown.payload);
  renderUnassigned(state.shown.payload);
  decorate();
}

function renderUnassigned(payload) {
  const entries = list(payload?.unassigned).map((entry) => {
    const id = typeof entry === 'string' ? entry : entry?.id;
    const reasons = typeof entry === 'string' ? [] : list(entry?.reasons);
    const item = document.createElement('li');
    item.dataset.stopId = String(id);
    const code = document.createElement('code');
    code.textContent = String(id);
    item.append(code, `: ${reasons.length ? reasons.join(', ').replaceAll('_', ' ') : 'no reason given'}`);
    return item;
  });
  $('unassigned-list').replaceChildren(...entries);
  $('unassigned-heading').hidden = !entries.length;
}

/** Where a stop is on the shown plan: its route and position. */
function placeOf(stopId) {
  for (const route of list(state.shown?.payload?.routes)) {
    const position = list(route.stops).indexOf(stopId);
    if (position >= 0) return { route, position };
  }
  return null;
}

function pinnedStops() {
  return new Set(state.pins.flatMap((pin) => (pin.stop ? [pin.stop] : list(pin.prefix ?? pin.locked))));
}

/** A click on a stop of the shown plan pins it (to its vehicle), or its route up to it (a prefix). */
function pinAt(target) {
  const marker = target.closest?.('g.stop[data-stop-id]');
  if (!marker || !state.shown?.payload) return;
  const stopId = marker.dataset.stopId;
  const place = placeOf(stopId);
  if (!place) {
    state.hooks.announce(`Stop ${stopId} is on no route: only a planned stop can be pinned.`);
    return;
  }
  const { route, position } = place;
  const vehicle = { vehicle_type: route.vehicle_type, vehicle: route.vehicle ?? 0 };
  const sameVehicle = (pin) => pin.vehicle_type === vehicle.vehicle_type && pin.vehicle === vehicle.vehicle;
  if ($('pin-mode').value === 'prefix') {
    const prefix = list(route.stops).slice(0, position + 1);
    // One route pin per vehicle, and a stop in one pin only: the new prefix replaces what it covers.
    state.pins = state.pins.filter((pin) => !(pin.prefix && sameVehicle(pin)) && !prefix.includes(pin.stop));
    state.pins.push({ ...vehicle, prefix });
    state.hooks.announce(`Route ${vehicle.vehicle_type} #${vehicle.vehicle} pinned up to ${stopId}.`);
  } else {
    if (pinnedStops().has(stopId)) {
      state.hooks.announce(`Stop ${stopId} is already pinned.`);
      return;
    }
    state.pins.push({ stop: stopId, ...vehicle });
    state.hooks.announce(`Stop ${stopId} pinned to ${vehicle.vehicle_type} #${vehicle.vehicle}.`);
  }
  renderPins();
  decorate();
}

function renderPins() {
  const entries = state.pins.map((pin, index) => {
    const item = document.createElement('li');
    const vehicle = `${pin.vehicle_type} #${pin.vehicle}`;
    item.dataset.pinKind = pin.stop ? 'stop' : 'prefix';
    item.append(pin.stop ? `${pin.stop} on ${vehicle}` : `${vehicle} begins ${list(pin.prefix).join(' → ')}`);
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.dataset.pinIndex = String(index);
    remove.textContent = 'Remove';
    remove.setAttribute('aria-label', `Remove pin ${index + 1}`);
    item.append(' ', remove);
    return item;
  });
  $('pin-list').replaceChildren(...entries);
  $('resolve').disabled = !state.shown?.payload || !WITH_PLAN.has(state.shown.status);
  $('clear-pins').disabled = !state.pins.length;
}

/** Marks on the drawn plan: pinned stops and, after a comparison, the moved ones. */
function decorate() {
  const pinned = pinnedStops();
  for (const marker of $('plan').querySelectorAll('g.stop[data-stop-id]')) {
    const id = marker.dataset.stopId;
    marker.classList.toggle('pinned', pinned.has(id));
    marker.classList.toggle('moved', state.moved.has(id));
    marker.querySelector('circle.mark')?.remove();
    if (pinned.has(id) || state.moved.has(id)) {
      const ring = document.createElementNS('http://www.w3.org/2000/svg', 'circle');
      ring.setAttribute('class', 'mark');
      ring.setAttribute('r', '11');
      marker.prepend(ring);
    }
  }
}

async function resolve() {
  if (!state.shown) return;
  const extra = { from_solution: state.shown.id };
  if (state.pins.length) extra.pins = state.pins.map((pin) => ({ ...pin }));
  await state.hooks.solve(extra);
}

async function compare() {
  const other = $('compare-with').value;
  if (!other || !state.shown) return;
  // From the other (earlier) plan to the one shown: where each stop went.
  const { data } = await api.compareSolutions(other, state.shown.id);
  state.moved = new Set(list(data.stops?.moved).map((move) => move.id));
  decorate();
  renderComparison(data, other);
}

function renderComparison(data, other) {
  const planar = isPlanar(state.scenario.request);
  const format = {
    distance: (v) => formatDistance(v, planar),
    duration: (v) => formatDuration(v, planar),
    cost: (v) => (typeof v === 'number' ? String(v) : '—'),
    routes: (v) => (typeof v === 'number' ? String(v) : '—'),
    unassigned: (v) => (typeof v === 'number' ? String(v) : '—'),
  };
  const table = document.createElement('table');
  table.className = 'kpis';
  const head = table.createTHead().insertRow();
  for (const label of ['', short(other), `${short(state.shown.id)} (shown)`, 'change']) {
    const cell = document.createElement('th');
    cell.textContent = label;
    head.append(cell);
  }
  const body = table.createTBody();
  for (const [name, show] of Object.entries(format)) {
    const [a, b, delta] = list(data.kpis?.[name]);
    const row = body.insertRow();
    row.dataset.kpi = name;
    const sign = typeof delta === 'number' && delta > 0 ? '+' : '';
    for (const text of [name, show(a), show(b), typeof delta === 'number' ? sign + show(delta) : '—']) {
      row.insertCell().textContent = text;
    }
  }
  const stops = data.stops ?? {};
  const moved = list(stops.moved);
  const summary = document.createElement('p');
  summary.id = 'comparison-summary';
  summary.textContent =
    `Stops: ${moved.length} moved, ${list(stops.added).length} added, ` +
    `${list(stops.dropped).length} dropped, ${stops.unchanged ?? 0} unchanged.`;
  const moves = document.createElement('ul');
  moves.id = 'moved-stops';
  for (const move of moved) {
    const item = document.createElement('li');
    item.dataset.stopId = move.id;
    const where = (p) => `${p.vehicle_type} #${p.vehicle} at ${p.position + 1}`;
    item.textContent = `${move.id}: ${where(move.from)} → ${where(move.to)}`;
    moves.append(item);
  }
  $('comparison').replaceChildren(table, summary, moves);
  state.hooks.announce(`Compared: ${moved.length} stops moved (marked on the map).`);
}
