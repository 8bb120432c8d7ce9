// How numbers from a solvable request or its payload read on the page. Times are seconds from the start of
// the planning day; distances are metres for lat/lon requests and plain units for x/y benchmarks.

const pad = (n) => String(n).padStart(2, '0');

/** 28800 → "08:00", 28845 → "08:00:45", 90000 → "25:00" (past midnight stays on the same day). */
export function formatClock(seconds) {
  if (typeof seconds !== 'number') return '—';
  const s = Math.round(seconds);
  const clock = `${pad(Math.floor(s / 3600))}:${pad(Math.floor((s % 3600) / 60))}`;
  return s % 60 ? `${clock}:${pad(s % 60)}` : clock;
}

export function formatWindow(window) {
  return Array.isArray(window) ? `${formatClock(window[0])}–${formatClock(window[1])}` : 'none';
}

export function formatDistance(value, planar) {
  if (typeof value !== 'number') return '—';
  return planar ? String(value) : `${(value / 1000).toFixed(1)} km`;
}

export function formatDuration(seconds, planar) {
  if (typeof seconds !== 'number') return '—';
  if (planar) return String(seconds);
  const minutes = Math.round(seconds / 60);
  return minutes < 60 ? `${minutes} min` : `${Math.floor(minutes / 60)} h ${pad(minutes % 60)} min`;
}

/** A load or demand: one number, or one per dimension ("7 / 2"). */
export function formatLoad(load) {
  if (Array.isArray(load)) return load.join(' / ');
  return typeof load === 'number' ? String(load) : '—';
}
