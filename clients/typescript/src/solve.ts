// A typed Routebook client end to end: sign-in is the caller's (ROUTEBOOK_TOKEN), then a session, a
// scenario holding a SolveRequest, a solve, a wait for its end, and the first route's stops.
// Types come from the server's own OpenAPI document (src/generated/api.d.ts, by openapi-typescript);
// a change of shape on either side fails `tsc --strict` before anything runs.
import createClient from "openapi-fetch";

import type { components, paths } from "./generated/api.js";

type SolveRequest = components["schemas"]["SolveRequest"];
type SolutionRead = components["schemas"]["SolutionRead"];
type SolutionPayload = components["schemas"]["SolutionPayload"];
type Status = components["schemas"]["SolutionSummary"]["status"];

const FINAL: readonly Status[] = ["succeeded", "failed", "cancelled"];

function setting(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

// A recorded solution's payload may be any object; a solve's is a SolutionPayload.
function isSolvePayload(payload: SolutionRead["payload"]): payload is SolutionPayload {
  return typeof payload === "object" && payload !== null && Array.isArray(payload["routes"]);
}

// JSON responses: GET /solutions/{id} also answers GeoJSON (Accept: application/geo+json), and a
// client names the media type it reads so that the types are JSON's alone.
const api = createClient<paths, "application/json">({
  baseUrl: setting("ROUTEBOOK_URL"),
  headers: { Authorization: `Bearer ${setting("ROUTEBOOK_TOKEN")}` },
});

const request: SolveRequest = {
  depots: [{ id: "depot", location: { lat: 52.5219, lon: 13.4132 }, time_window: [21600, 72000] }],
  stops: [
    { id: "kreuzberg", location: { lat: 52.4986, lon: 13.403 }, demand: 4, service_duration: 300 },
    { id: "mitte", location: { lat: 52.52, lon: 13.405 }, demand: 3, time_window: [28800, 43200] },
    { id: "wedding", location: { lat: 52.5503, lon: 13.3597 }, demand: [2] },
  ],
  vehicle_types: [{ id: "van", count: 2, capacity: 10, depot: "depot", shift: [25200, 64800] }],
};

const session = await api.POST("/api/v1/sessions", { body: { name: "typed client" } });
if (!session.data) throw new Error(`session: ${JSON.stringify(session.error)}`);

const scenario = await api.POST("/api/v1/sessions/{session_id}/scenarios", {
  params: { path: { session_id: session.data.id } },
  body: { name: "Berlin", request },
});
if (!scenario.data) throw new Error(`scenario: ${JSON.stringify(scenario.error)}`);

const queued = await api.POST("/api/v1/scenarios/{scenario_id}/solve", {
  params: { path: { scenario_id: scenario.data.id } },
  body: { time_limit_s: 1, seed: 1 },
});
if (!queued.data) throw new Error(`solve: ${JSON.stringify(queued.error)}`);

let solution: SolutionRead | undefined;
const deadline = Date.now() + 60_000;
while (Date.now() < deadline) {
  const read = await api.GET("/api/v1/solutions/{solution_id}", {
    params: { path: { solution_id: queued.data.id } },
  });
  if (!read.data) throw new Error(`solution: ${JSON.stringify(read.error)}`);
  if (FINAL.includes(read.data.status)) {
    solution = read.data;
    break;
  }
  await new Promise((resolve) => setTimeout(resolve, 100));
}
if (!solution) throw new Error("the solve did not end within 60 s");

const payload = solution.payload;
if (solution.status !== "succeeded" || !isSolvePayload(payload)) {
  throw new Error(`the solve ended ${solution.status}: ${solution.reason ?? ""}`);
}
const first = payload.routes[0];
if (!first) throw new Error("the solution has no route");

const stops: string[] = first.stops;
console.log(
  JSON.stringify({
    solution: solution.id,
    status: solution.status,
    stops,
    distance_m: payload.distance,
    // Each unassigned stop comes with its reasons; the ids are what this check compares.
    unassigned: payload.unassigned.map((entry) => entry.id),
    unassigned_required: payload.unassigned_required,
    scenario_version: payload.scenario_version,
  }),
);
