// The playground page: sign in, workspaces and their members, sessions and scenarios, solving with
// live progress, the plan.

import { api, ApiError, authHeaders, onUnauthorized, setToken, setWorkspace } from './api.js';
import { drawProgressChart } from './chart.js';
import { formatDistance } from './format.js';
import { attachTooltip, drawPlan, isPlanar } from './plan.js';
import { initReplan, scenarioShown, solveFinished } from './replan.js';
import { readEventStream } from './sse.js';

const $ = (id) => document.getElementById(id);
const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);
// A dropped stream is resumed this many times (with Last-Event-ID) before falling back to polling.
const STREAM_ATTEMPTS = 3;

// The page's last read of the server, which stays the source of truth.
const state = {
  // The workspace requests act in (/users/me's `workspace`), and the caller's workspaces.
  workspace: null,
  workspaces: [],
  sessions: [],
  sessionCursor: null,
  session: null,
  scenarios: [],
  scenarioCursor: null,
  scenario: null,
  // Resource id → the ETag of its last read, sent back as If-Match so a stale write gets 412.
  etags: new Map(),
  // The solve being watched: {id, name, request, controller, points}.
  solve: null,
};

const planParts = () => ({ plan: $('plan'), legend: $('plan-legend'), summary: $('plan-summary') });

function remember(id, etag) {
  if (etag) state.etags.set(id, etag);
}

function announce(text) {
  $('status-message').textContent = text;
}

function clearError() {
  $('error-message').replaceChildren();
}

function describe(error, what) {
  if (!(error instanceof ApiError)) return error.message || String(error);
  const detail = error.problem.detail ? ` ${error.problem.detail}` : '';
  switch (error.status) {
    case 0:
      return `${what}: the server could not be reached.`;
    case 401:
      return 'The token was refused (expired or not valid): sign in again.';
    case 404:
      return `${what}: it no longer exists (deleted elsewhere?) — reload.`;
    case 412:
      return `${what}: changed elsewhere — reload, then try again.`;
    case 422:
      return `${what}: the server found the request invalid.${detail}`;
    case 429: {
      const wait = error.headers.get('Retry-After');
      return `${what}: too many solves are running${wait ? `; try again in ${wait} s` : ''}.`;
    }
    default:
      return `${what}: ${error.problem.title || 'failed'} (HTTP ${error.status}).${detail}`;
  }
}

/** Show an error in the live region, with each validation error's pointer (or loc) and message. */
function showError(error, what) {
  const region = $('error-message');
  const text = document.createElement('p');
  text.textContent = describe(error, what);
  region.replaceChildren(text);
  const errors = error instanceof ApiError ? error.errors : [];
  if (!errors.length) return;
  const list = document.createElement('ul');
  list.className = 'problem-errors';
  for (const item of errors) {
    const pointer = item.pointer ?? `/${(item.loc ?? []).join('/')}`;
    const entry = document.createElement('li');
    entry.dataset.pointer = pointer;
    const code = document.createElement('code');
    code.textContent = pointer;
    entry.append(code, ` — ${item.msg ?? 'invalid'}${item.type ? ` (${item.type})` : ''}`);
    list.append(entry);
  }
  region.append(list);
}

/** An event handler that clears the last error, runs the action and reports its failure. */
function action(what, run) {
  return async (event) => {
    event?.preventDefault();
    clearError();
    try {
      await run(event);
    } catch (error) {
      if (error.name !== 'AbortError') showError(error, what);
    }
  };
}

async function signInWithDevToken() {
  const email = $('email').value.trim();
  const roles = $('roles').value.split(',').map((role) => role.trim()).filter(Boolean);
  let data;
  try {
    ({ data } = await api.devToken(email, roles));
  } catch (error) {
    // Without the dev issuer there is no /dev/token at all: say so rather than "not found".
    if (error.status === 404) throw new Error('This server has no dev issuer: paste a provider token instead.');
    throw error;
  }
  await useToken(data.access_token);
}

async function signInWithPastedToken() {
  const token = $('token-input').value.trim().replace(/^Bearer\s+/i, '');
  // The token is kept in memory only, so it does not stay in the form either.
  $('token-input').value = '';
  await useToken(token);
}

async function useToken(token) {
  setToken(token);
  let me;
  try {
    ({ data: me } = await api.me());
  } catch (error) {
    setToken(null);
    throw error;
  }
  const roles = me.roles?.length ? `, roles: ${me.roles.join(', ')}` : '';
  const org = me.org?.id ? `, organisation ${me.org.id}${me.org.role ? ` (${me.org.role})` : ''}` : '';
  $('whoami').textContent = `Signed in as ${me.email || me.subject} (${me.provider}${roles}${org}).`;
  $('my-user-id').textContent = me.id;
  showWorkspace(me.workspace);
  showSignedIn(true);
  announce(`Signed in as ${me.email || me.subject}.`);
  await loadWorkspaces();
  await loadMembers();
  await loadSessions();
}

function showSignedIn(signedIn) {
  $('signed-in').hidden = !signedIn;
  $('signed-out').hidden = signedIn;
  for (const id of ['workspace', 'sessions', 'solve-panel', 'plan-panel']) $(id).hidden = !signedIn;
}

const describeWorkspace = (workspace) => `${workspace.name} (${workspace.kind}, ${workspace.role})`;

function showWorkspace(workspace) {
  state.workspace = workspace ?? null;
  $('workspace-current').textContent = workspace ? describeWorkspace(workspace) : '—';
  $('workspace-current').dataset.workspaceId = workspace?.id ?? '';
  // Only an admin of a workspace Routebook manages adds members; the server says so either way.
  $('add-member-form').hidden = !workspace || workspace.kind === 'personal' || workspace.role !== 'admin';
}

function renderWorkspaces() {
  const options = state.workspaces.map((workspace) => {
    const option = document.createElement('option');
    option.value = workspace.id;
    option.textContent = describeWorkspace(workspace);
    option.selected = workspace.id === state.workspace?.id;
    return option;
  });
  $('workspace-select').replaceChildren(...options);
}

async function loadWorkspaces() {
  const { data } = await api.listWorkspaces();
  state.workspaces = Array.isArray(data) ? data : data.items;
  renderWorkspaces();
}

function renderMembers(members) {
  const entries = members.map((member) => {
    const entry = document.createElement('li');
    entry.dataset.userId = member.user_id;
    entry.dataset.role = member.role;
    entry.textContent = `${member.email || member.user_id} — ${member.role}`;
    return entry;
  });
  $('member-list').replaceChildren(...entries);
}

async function loadMembers() {
  if (!state.workspace) return renderMembers([]);
  const { data } = await api.listMembers(state.workspace.id);
  renderMembers(data.items);
}

/** Act in another workspace: every later call sends it; the page's planning state starts over. */
async function switchWorkspace(id) {
  stopWatching();
  setWorkspace(id);
  const { data: me } = await api.me();
  showWorkspace(me.workspace);
  renderWorkspaces();
  Object.assign(state, { sessions: [], sessionCursor: null, session: null });
  Object.assign(state, { scenarios: [], scenarioCursor: null, scenario: null });
  renderSessions();
  showSession(null);
  resetSolveView();
  await loadMembers();
  await loadSessions();
  announce(`Now in workspace “${me.workspace?.name ?? id}”.`);
}

async function createWorkspace() {
  const { data } = await api.createWorkspace($('new-workspace-name').value.trim());
  $('new-workspace-name').value = '';
  await loadWorkspaces();
  await switchWorkspace(data.id);
  announce(`Workspace “${data.name}” created; you are its admin.`);
}

async function addMember() {
  const userId = $('member-user-id').value.trim();
  const { data } = await api.setMember(state.workspace.id, userId, $('member-role').value);
  $('member-user-id').value = '';
  await loadMembers();
  announce(`${data.email || data.user_id} is now a ${data.role} of “${state.workspace.name}”.`);
}

function signOut() {
  stopWatching();
  setToken(null);
  setWorkspace(null);
  Object.assign(state, { workspace: null, workspaces: [] });
  renderWorkspaces();
  renderMembers([]);
  Object.assign(state, { sessions: [], sessionCursor: null, session: null });
  Object.assign(state, { scenarios: [], scenarioCursor: null, scenario: null });
  state.etags.clear();
  renderSessions();
  showSession(null);
  resetSolveView();
  showSignedIn(false);
  announce('Signed out; the token is forgotten.');
}

/** Render sessions or scenarios as buttons; keeps keyboard focus on the selected one. */
function renderList(list, items, selectedId, kind, emptyText) {
  const hadFocus = list.contains(document.activeElement);
  const entries = items.map((item) => {
    const entry = document.createElement('li');
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'item';
    button.dataset[`${kind}Id`] = item.id;
    if (item.id === selectedId) button.setAttribute('aria-current', 'true');
    const meta = document.createElement('span');
    meta.className = 'meta';
    meta.textContent = `updated ${new Date(item.updated_at).toLocaleString()}`;
    button.append(item.name, meta);
    entry.append(button);
    return entry;
  });
  if (!entries.length) {
    const empty = document.createElement('li');
    empty.className = 'empty';
    empty.textContent = emptyText;
    entries.push(empty);
  }
  list.replaceChildren(...entries);
  if (hadFocus) list.querySelector('[aria-current="true"]')?.focus();
}

const replaceItem = (items, fresh) => items.map((item) => (item.id === fresh.id ? { ...item, ...fresh } : item));

function renderSessions() {
  renderList($('session-list'), state.sessions, state.session?.id, 'session', 'No sessions yet.');
  $('more-sessions').hidden = !state.sessionCursor;
}

async function loadSessions({ more = false } = {}) {
  const { data } = await api.listSessions(more ? state.sessionCursor : null);
  state.sessions = more ? [...state.sessions, ...data.items] : data.items;
  state.sessionCursor = data.next_cursor ?? null;
  renderSessions();
}

/** Read one session again: its current name and the ETag that renames and deletes send back. */
async function readSession(id) {
  const { data, etag } = await api.getSession(id);
  remember(id, etag);
  state.session = data;
  state.sessions = replaceItem(state.sessions, data);
  renderSessions();
  showSession(data);
}

async function selectSession(id) {
  await readSession(id);
  Object.assign(state, { scenarios: [], scenarioCursor: null, scenario: null });
  showScenario(null);
  await loadScenarios();
}

function showSession(session) {
  $('session-detail').hidden = !session;
  $('scenarios').hidden = !session;
  if (!session) {
    showScenario(null);
    return;
  }
  $('session-name').value = session.name;
  $('scenarios-heading').textContent = `Scenarios in “${session.name}”`;
}

async function createSession() {
  const { data, etag } = await api.createSession($('new-session-name').value.trim());
  remember(data.id, etag);
  state.sessions = [data, ...state.sessions.filter((session) => session.id !== data.id)];
  $('new-session-name').value = '';
  announce(`Session “${data.name}” created.`);
  await selectSession(data.id);
}

async function renameSession() {
  const { id } = state.session;
  const { data, etag } = await api.renameSession(id, $('session-name').value.trim(), state.etags.get(id));
  remember(id, etag);
  state.session = data;
  state.sessions = replaceItem(state.sessions, data);
  renderSessions();
  showSession(data);
  announce(`Session renamed to “${data.name}”.`);
}

async function deleteSession() {
  const { id, name } = state.session;
  await api.deleteSession(id, state.etags.get(id));
  state.etags.delete(id);
  state.sessions = state.sessions.filter((session) => session.id !== id);
  Object.assign(state, { session: null, scenarios: [], scenarioCursor: null, scenario: null });
  renderSessions();
  showSession(null);
  // The focused button has just been hidden: give keyboard users a place to continue from.
  $('sessions-heading').focus();
  announce(`Session “${name}” deleted, with its scenarios.`);
}

function renderScenarios() {
  renderList($('scenario-list'), state.scenarios, state.scenario?.id, 'scenario', 'No scenarios yet.');
  $('more-scenarios').hidden = !state.scenarioCursor;
}

async function loadScenarios({ more = false } = {}) {
  const { data } = await api.listScenarios(state.session.id, more ? state.scenarioCursor : null);
  state.scenarios = more ? [...state.scenarios, ...data.items] : data.items;
  state.scenarioCursor = data.next_cursor ?? null;
  renderScenarios();
}

async function selectScenario(id) {
  const { data, etag } = await api.getScenario(id);
  remember(id, etag);
  state.scenario = data;
  state.scenarios = replaceItem(state.scenarios, data);
  renderScenarios();
  showScenario(data);
  await showLatestSolution(data);
}

/** The scenario's newest solution (anyone's in the workspace), drawn when the page is not solving. */
async function showLatestSolution(scenario) {
  const latest = $('latest-solution');
  const { data: page } = await api.listSolutions(scenario.id);
  const [newest] = page.items;
  latest.dataset.status = newest?.status ?? '';
  if (!newest) {
    latest.textContent = 'none yet';
    return;
  }
  const { data: solution } = await api.getSolution(newest.id);
  latest.dataset.status = solution.status;
  latest.dataset.solutionId = solution.id;
  const payload = solution.payload ?? null;
  const found = payload ? `, distance ${formatDistance(payload.distance, isPlanar(scenario.request))}` : '';
  latest.textContent = `${solution.status}${found}`;
  if (!state.solve && state.scenario?.id === scenario.id && payload) {
    drawPlan(planParts(), scenario.request, payload);
  }
}

function showScenario(scenario) {
  $('scenario-detail').hidden = !scenario;
  $('solve').disabled = !scenario || Boolean(state.solve);
  $('plan-heading').textContent = scenario ? `Plan: ${scenario.name}` : 'Plan';
  if (!state.solve) drawPlan(planParts(), scenario?.request ?? null);
  scenarioShown(scenario).catch((error) => showError(error, 'Solutions'));
  if (!scenario) return;
  $('scenario-name').value = scenario.name;
  $('scenario-request').textContent = JSON.stringify(scenario.request, null, 2);
}

/** The pasted or loaded request, refused here unless it is a JSON object. */
function parseRequest(text) {
  let request;
  try {
    request = JSON.parse(text);
  } catch (error) {
    throw new Error(`The request is not valid JSON: ${error.message}`);
  }
  if (typeof request !== 'object' || request === null || Array.isArray(request)) {
    const kind = Array.isArray(request) ? 'an array' : request === null ? 'null' : `a ${typeof request}`;
    throw new Error(`The request must be a JSON object ({…}), not ${kind}.`);
  }
  return request;
}

async function createScenario() {
  const request = parseRequest($('scenario-json').value);
  const name = $('new-scenario-name').value.trim();
  const { data, etag } = await api.createScenario(state.session.id, name, request);
  remember(data.id, etag);
  state.scenarios = [data, ...state.scenarios.filter((scenario) => scenario.id !== data.id)];
  announce(`Scenario “${data.name}” created.`);
  await selectScenario(data.id);
}

async function renameScenario() {
  const { id, request } = state.scenario;
  const { data, etag } = await api.renameScenario(id, $('scenario-name').value.trim(), state.etags.get(id));
  remember(id, etag);
  // PATCH answers with the summary; the request it did not change is kept from the last read.
  state.scenario = { ...data, request };
  state.scenarios = replaceItem(state.scenarios, data);
  renderScenarios();
  showScenario(state.scenario);
  announce(`Scenario renamed to “${data.name}”.`);
}

async function deleteScenario() {
  const { id, name } = state.scenario;
  await api.deleteScenario(id, state.etags.get(id));
  state.etags.delete(id);
  state.scenarios = state.scenarios.filter((scenario) => scenario.id !== id);
  state.scenario = null;
  renderScenarios();
  showScenario(null);
  $('scenarios-heading').focus();
  announce(`Scenario “${name}” deleted.`);
}

function offerRequest(text, name) {
  $('scenario-json').value = text;
  // A name the user typed wins over the file's.
  if (!$('new-scenario-name').value.trim()) $('new-scenario-name').value = name;
}

async function loadExample() {
  const file = $('example-select').value;
  // Resolved against this module, so the page works wherever the playground is mounted.
  const response = await fetch(new URL(`examples/${file}`, import.meta.url));
  if (!response.ok) throw new Error(`The example ${file} could not be loaded (HTTP ${response.status}).`);
  offerRequest(await response.text(), file.replace(/\.json$/, ''));
  announce(`Example ${file} loaded; name it and create the scenario.`);
}

async function loadFile() {
  const file = $('scenario-file').files[0];
  if (!file) return;
  offerRequest(await file.text(), file.name.replace(/\.json$/i, ''));
  announce(`${file.name} loaded; create the scenario to save it.`);
}

function field(name) {
  return $('progress').querySelector(`[data-field="${name}"]`);
}

function setStatus(status, reason = '') {
  $('solve-status').textContent = status;
  $('solve-status').dataset.status = status;
  $('solve-reason').textContent = reason ? `(${reason})` : '';
}

function resetSolveView() {
  for (const name of ['elapsed', 'iterations', 'best-distance', 'feasible']) field(name).textContent = '—';
  setStatus('');
  drawProgressChart($('progress-chart'), []);
  $('cancel').disabled = true;
}

function showProgress(solve, progress) {
  if (state.solve !== solve) return;
  if (Number.isFinite(progress.elapsed_s)) field('elapsed').textContent = progress.elapsed_s.toFixed(1);
  if (Number.isFinite(progress.iterations)) field('iterations').textContent = String(progress.iterations);
  field('best-distance').textContent = progress.best_distance ?? '—';
  field('feasible').textContent = progress.feasible ? 'yes' : 'no';
  if (progress.status) setStatus(progress.status);
  solve.points.push({ elapsed_s: progress.elapsed_s, best_distance: progress.best_distance });
  drawProgressChart($('progress-chart'), solve.points);
}

function setSolving(solving) {
  $('solve').disabled = solving || !state.scenario;
  $('cancel').disabled = !solving;
}

function stopWatching() {
  state.solve?.controller.abort();
  state.solve = null;
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    const abort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener('abort', abort, { once: true });
  });
}

/** Follow the event stream to its final status; null when it cannot be had (then poll). */
async function streamUntilFinal(solve) {
  let lastEventId;
  let final = null;
  for (let attempt = 1; attempt <= STREAM_ATTEMPTS && !final; attempt += 1) {
    try {
      await readEventStream(api.solutionEventsUrl(solve.id), {
        headers: authHeaders(),
        signal: solve.controller.signal,
        lastEventId,
        onEvent: ({ type, data, id }) => {
          lastEventId = id || lastEventId;
          if (type === 'progress') showProgress(solve, JSON.parse(data));
          else if (type === 'status') final = JSON.parse(data);
        },
      });
    } catch (error) {
      if (error.name === 'AbortError') throw error;
      // A refusal (e.g. 401, 404) will not change on retry; polling reports it properly.
      if (error.status >= 400 && error.status < 500 && error.status !== 429) return null;
      await sleep(500 * attempt, solve.controller.signal);
    }
  }
  return final;
}

async function pollUntilFinal(solve) {
  for (;;) {
    const { data } = await api.getSolution(solve.id);
    if (TERMINAL.has(data.status)) return { status: data.status };
    if (data.progress) showProgress(solve, { ...data.progress, status: data.status });
    else setStatus(data.status);
    await sleep(1000, solve.controller.signal);
  }
}

/** The solve has ended: read the solution and draw what it found. */
async function finish(solve, final) {
  const { data } = await api.getSolution(solve.id);
  setStatus(data.status, final.reason);
  const payload = data.payload ?? null;
  $('plan-heading').textContent = `Plan: ${solve.name} (solution ${data.status})`;
  drawPlan(planParts(), solve.request, payload);
  await solveFinished(solve.scenarioId, solve.id);
  const found = payload ? `, distance ${formatDistance(payload.distance, isPlanar(solve.request))}` : '';
  announce(`Solve ${data.status}${found}${final.reason ? ` — ${final.reason}` : ''}.`);
}

/** `extra`: more of the solve body (a re-solve's from_solution and pins, replan.js). */
async function startSolve(extra = {}) {
  const scenario = state.scenario;
  // The inputs' min/max/step have already been checked by the browser before submit fires.
  const limit = Number($('time-limit').value);
  const options = { time_limit_s: limit, ...extra };
  if ($('seed').value.trim() !== '') options.seed = Number($('seed').value);
  $('solve').disabled = true;
  let data;
  try {
    ({ data } = await api.solve(scenario.id, options));
  } catch (error) {
    $('solve').disabled = false;
    throw error;
  }
  resetSolveView();
  const solve = { id: data.id, scenarioId: scenario.id, name: scenario.name, request: scenario.request, points: [] };
  solve.controller = new AbortController();
  state.solve = solve;
  setStatus(data.status);
  setSolving(true);
  drawPlan(planParts(), solve.request);
  announce(`Solving “${scenario.name}” for up to ${limit} s.`);
  try {
    const final = (await streamUntilFinal(solve)) ?? (await pollUntilFinal(solve));
    await finish(solve, final);
  } finally {
    if (state.solve === solve) {
      state.solve = null;
      setSolving(false);
    }
  }
}

async function cancelSolve() {
  const { solve } = state;
  if (!solve) return;
  $('cancel').disabled = true;
  try {
    await api.cancelSolution(solve.id);
    announce('Cancelling; the best solution so far is kept.');
  } catch (error) {
    if (error.status === 409) return announce('The solve had already finished.');
    $('cancel').disabled = false;
    throw error;
  }
}

function onListClick(list, attribute, select, what) {
  list.addEventListener(
    'click',
    action(what, (event) => {
      const button = event.target.closest(`button[${attribute}]`);
      if (button) return select(button.getAttribute(attribute));
    }),
  );
}

function wire() {
  // The 401 itself is reported by whichever action met it; here the page forgets the token.
  onUnauthorized(signOut);
  $('dev-token-form').addEventListener('submit', action('Sign in', signInWithDevToken));
  $('paste-token-form').addEventListener('submit', action('Sign in', signInWithPastedToken));
  $('sign-out').addEventListener('click', action('Sign out', signOut));

  $('workspace-select').addEventListener(
    'change',
    action('Switch workspace', () => switchWorkspace($('workspace-select').value)),
  );
  $('refresh-workspaces').addEventListener(
    'click',
    action('Reload workspaces', async () => {
      await loadWorkspaces();
      await loadMembers();
    }),
  );
  $('new-workspace-form').addEventListener('submit', action('Create workspace', createWorkspace));
  $('add-member-form').addEventListener('submit', action('Add member', addMember));

  $('new-session-form').addEventListener('submit', action('Create session', createSession));
  $('refresh-sessions').addEventListener(
    'click',
    action('Reload sessions', async () => {
      await loadSessions();
      if (state.session) await readSession(state.session.id);
    }),
  );
  $('more-sessions').addEventListener('click', action('More sessions', () => loadSessions({ more: true })));
  onListClick($('session-list'), 'data-session-id', selectSession, 'Open session');
  $('rename-session-form').addEventListener('submit', action('Rename session', renameSession));
  $('delete-session').addEventListener('click', action('Delete session', deleteSession));

  $('refresh-scenarios').addEventListener('click', action('Reload scenarios', () => loadScenarios()));
  $('more-scenarios').addEventListener('click', action('More scenarios', () => loadScenarios({ more: true })));
  onListClick($('scenario-list'), 'data-scenario-id', selectScenario, 'Open scenario');
  $('rename-scenario-form').addEventListener('submit', action('Rename scenario', renameScenario));
  $('reload-scenario').addEventListener('click', action('Reload scenario', () => selectScenario(state.scenario.id)));
  $('delete-scenario').addEventListener('click', action('Delete scenario', deleteScenario));
  $('load-example').addEventListener('click', action('Load example', loadExample));
  $('scenario-file').addEventListener('change', action('Read file', loadFile));
  $('new-scenario-form').addEventListener('submit', action('Create scenario', createScenario));

  $('solve-form').addEventListener('submit', action('Solve', () => startSolve()));
  $('cancel').addEventListener('click', action('Cancel', cancelSolve));

  initReplan({ planParts, action, announce, solve: startSolve, solving: () => Boolean(state.solve) });
  attachTooltip($('plan'), $('plan-tooltip'));
  resetSolveView();
  drawPlan(planParts(), null);
}

wire();
