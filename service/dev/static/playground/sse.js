/**
 * Read a server-sent event stream with fetch(), so that the request can carry an Authorization
 * header (a browser EventSource cannot). Self-contained: copy it into any SPA as it is.
 *
 *   await readEventStream(`/api/v1/solutions/${id}/events`, {
 *     headers: { Authorization: `Bearer ${token}` },
 *     onEvent: ({ type, data, id }) => console.log(type, JSON.parse(data)),
 *   });
 *
 * Parsing follows the WHATWG rules for text/event-stream: lines end in CRLF, LF or CR, anywhere in
 * a chunk; `field: value` with one optional space after the colon; `data` lines accumulate; a blank
 * line dispatches; a line starting with ":" is a comment (servers send them as heartbeats).
 * Resolves when the server ends the stream (an event left without its blank line is dropped, as
 * the standard says). Rejects on a non-2xx answer (error.status), a body that is not an event
 * stream, a network failure, or when `signal` aborts. It never reconnects by itself: pass the last
 * event's `id` back as `lastEventId` to resume where the stream stopped.
 */
export async function readEventStream(url, { headers = {}, signal, lastEventId, onEvent, onComment } = {}) {
  const requestHeaders = { Accept: 'text/event-stream', ...headers };
  if (lastEventId) requestHeaders['Last-Event-ID'] = lastEventId;
  const response = await fetch(url, { headers: requestHeaders, signal, cache: 'no-store' });
  if (!response.ok) {
    const error = new Error(`Event stream refused: HTTP ${response.status}`);
    error.status = response.status;
    error.response = response;
    throw error;
  }
  const contentType = response.headers.get('Content-Type') || '';
  if (!contentType.startsWith('text/event-stream')) {
    throw new Error(`Not an event stream: ${contentType || 'no Content-Type'}`);
  }

  let type = '';
  let data = '';
  let id = lastEventId || '';
  const handleLine = (line) => {
    if (line === '') {
      // An event without data lines is not dispatched, but its id still counts for resuming.
      if (data !== '') onEvent?.({ type: type || 'message', data: data.slice(0, -1), id });
      type = '';
      data = '';
      return;
    }
    if (line.startsWith(':')) {
      onComment?.(line.slice(1));
      return;
    }
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') type = value;
    else if (field === 'data') data += `${value}\n`;
    else if (field === 'id' && !value.includes('\0')) id = value;
    // `retry` and unknown fields are ignored: when to reconnect is the caller's choice.
  };

  // TextDecoderStream keeps multi-byte characters split across chunks intact and drops a leading BOM.
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      // A CR at the very end may be the first half of a CRLF whose LF is in the next chunk:
      // hold it back so the pair is not read as two line ends (which would dispatch early).
      const heldCR = buffer.endsWith('\r');
      const lines = (heldCR ? buffer.slice(0, -1) : buffer).split(/\r\n|\r|\n/);
      buffer = lines.pop() + (heldCR ? '\r' : '');
      lines.forEach(handleLine);
    }
    // At the end no LF can follow, so a held CR did end its line; any other remainder is partial.
    if (buffer.endsWith('\r')) handleLine(buffer.slice(0, -1));
  } finally {
    // Closes the connection when onEvent threw or the caller aborted; a no-op after a normal end.
    reader.cancel().catch(() => {});
  }
}
