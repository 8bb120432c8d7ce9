// The Routebook HTTP API, same origin. The access token lives only in this module's variable:
// never in storage, a cookie or the URL, so closing or reloading the tab forgets it. So does the
// chosen workspace, sent as the Routebook-Workspace header on every API call (none: the server's
// default, the token's organisation or the personal workspace).

const API = '/api/v1';
const PAGE_SIZE = 20;

let token = null;
let workspace = null;
let unauthorizedHandler = () => {};

export function setToken(value) {
  token = value || null;
}

/** The workspace every API call acts in from now on; null for the server's default. */
export function setWorkspace(id) {
  workspace = id || null;
}

/** What every API call carries: the token and the chosen workspace (the event stream too). */
export function authHeaders() {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  if (token && workspace) headers['Routebook-Workspace'] = workspace;
  return headers;
}

/** Called with the ApiError when the server refuses the token (401), e.g. after it expired. */
export function onUnauthorized(handler) {
  unauthorizedHandler = handler;
}

/** A refused request, carrying the RFC 9457 problem document the server sent. */
export class ApiError extends Error {
  constructor(status, problem, headers) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.name = 'ApiError';
    this.status = status;
    this.problem = problem || {};
    this.headers = headers || new Headers();
  }

  /** Validation errors: `pointer` (solve) or `loc` (request bodies), with `msg` and `type`. */
  get errors() {
    return Array.isArray(this.problem.errors) ? this.problem.errors : [];
  }
}

async function readBody(response) {
  if (response.status === 204) return null;
  const type = response.headers.get('Content-Type') || '';
  if (type.includes('json')) return response.json().catch(() => null);
  const text = await response.text();
  return text ? { detail: text } : null;
}

/** One call; resolves to {data, etag, headers, status}, rejects with ApiError. */
async function call(method, path, { body, etag, auth = true } = {}) {
  const headers = { Accept: 'application/json, application/problem+json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (auth) Object.assign(headers, authHeaders());
  if (etag) headers['If-Match'] = etag;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
    });
  } catch {
    throw new ApiError(0, { title: 'Network error', detail: 'The server could not be reached.' });
  }
  const data = await readBody(response);
  if (!response.ok) {
    const error = new ApiError(response.status, data, response.headers);
    if (response.status === 401 && auth) unauthorizedHandler(error);
    throw error;
  }
  return { data, etag: response.headers.get('ETag'), headers: response.headers, status: response.status };
}

function page(path, cursor) {
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (cursor) query.set('cursor', cursor);
  return call('GET', `${path}?${query}`);
}

const at = (...parts) => [API, ...parts.map((part) => encodeURIComponent(part))].join('/');

export const api = {
  devToken: (email, roles) =>
    call('POST', '/dev/token', { body: roles.length ? { email, roles } : { email }, auth: false }),
  me: () => call('GET', `${API}/users/me`),

  listWorkspaces: () => call('GET', `${API}/workspaces`),
  createWorkspace: (name) => call('POST', `${API}/workspaces`, { body: { name } }),
  listMembers: (workspaceId) => call('GET', at('workspaces', workspaceId) + '/members'),
  setMember: (workspaceId, userId, role) =>
    call('PUT', at('workspaces', workspaceId, 'members', userId), { body: { role } }),
  removeMember: (workspaceId, userId) => call('DELETE', at('workspaces', workspaceId, 'members', userId)),

  listSessions: (cursor) => page(`${API}/sessions`, cursor),
  createSession: (name) => call('POST', `${API}/sessions`, { body: { name } }),
  getSession: (id) => call('GET', at('sessions', id)),
  renameSession: (id, name, etag) => call('PATCH', at('sessions', id), { body: { name }, etag }),
  deleteSession: (id, etag) => call('DELETE', at('sessions', id), { etag }),

  listScenarios: (sessionId, cursor) => page(at('sessions', sessionId) + '/scenarios', cursor),
  createScenario: (sessionId, name, request) =>
    call('POST', at('sessions', sessionId) + '/scenarios', { body: { name, request } }),
  getScenario: (id) => call('GET', at('scenarios', id)),
  renameScenario: (id, name, etag) => call('PATCH', at('scenarios', id), { body: { name }, etag }),
  deleteScenario: (id, etag) => call('DELETE', at('scenarios', id), { etag }),

  solve: (scenarioId, options) => call('POST', at('scenarios', scenarioId) + '/solve', { body: options }),
  listSolutions: (scenarioId) => call('GET', at('scenarios', scenarioId) + '/solutions?limit=1'),
  getSolution: (id) => call('GET', at('solutions', id)),
  cancelSolution: (id) => call('POST', at('solutions', id) + '/cancel'),
  solutionEventsUrl: (id) => at('solutions', id) + '/events',
  listSolutions: (scenarioId, cursor) => page(at('scenarios', scenarioId) + '/solutions', cursor),
  compareSolutions: (a, b) => call('GET', at('solutions', a, 'compare', b)),
};
