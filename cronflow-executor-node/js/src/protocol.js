// Framing of the worker protocol (PROTOCOL.md): newline-delimited JSON with a size cap.
// Decoding is linear in the bytes received: chunks are kept as they arrive and only new bytes
// are scanned for '\n'; a line is assembled with one Buffer.concat.

/** Default maximum line size in bytes (16 MiB). */
export const DEFAULT_MAX_FRAME = 16 * 1024 * 1024;

const NEWLINE = 0x0a;

/** Thrown for a line over the cap or a line that is not JSON. */
export class ProtocolError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ProtocolError';
  }
}

/** The max frame size from an environment value, or an Error message. */
export function parseMaxFrame(text) {
  if (text === undefined || text === '') return DEFAULT_MAX_FRAME;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n <= 0) {
    throw new ProtocolError(`CRONFLOW_MAX_FRAME must be a positive whole number of bytes, found '${text}'`);
  }
  return n;
}

/** Splits a byte stream into lines and parses each as JSON. */
export class FrameDecoder {
  /**
   * @param {number} maxFrame maximum line size in bytes, newline excluded
   * @param {(message: any) => void} onMessage
   */
  constructor(maxFrame, onMessage) {
    this.maxFrame = maxFrame;
    this.onMessage = onMessage;
    this.pending = []; // chunks (or tails of chunks) of the current, unfinished line
    this.pendingLength = 0;
  }

  /** Feeds bytes; throws a ProtocolError on an oversized or invalid line. */
  push(chunk) {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(NEWLINE, start);
      if (nl === -1) break;
      const length = this.pendingLength + (nl - start);
      if (length > this.maxFrame) this._tooLong(length);
      let line;
      if (this.pending.length === 0) {
        line = chunk.subarray(start, nl);
      } else {
        this.pending.push(chunk.subarray(start, nl));
        line = Buffer.concat(this.pending, length);
        this.pending = [];
        this.pendingLength = 0;
      }
      start = nl + 1;
      if (line.length > 0) this._parse(line);
    }
    if (start < chunk.length) {
      const rest = start === 0 ? chunk : chunk.subarray(start);
      this.pendingLength += rest.length;
      if (this.pendingLength > this.maxFrame) this._tooLong(this.pendingLength);
      this.pending.push(rest);
    }
  }

  _parse(line) {
    let message;
    try {
      message = JSON.parse(line.toString('utf8'));
    } catch (e) {
      throw new ProtocolError(`a line is not JSON: ${e.message}`);
    }
    this.onMessage(message);
  }

  _tooLong(length) {
    throw new ProtocolError(`a line of at least ${length} bytes exceeds the maximum frame of ${this.maxFrame} bytes`);
  }
}

/**
 * Writes lines to a socket, coalescing the lines written in one tick into one write.
 * Returns a function `send(line)`; `line` is a JSON text without its newline.
 */
export function lineWriter(socket) {
  let corked = false;
  const uncork = () => {
    corked = false;
    socket.uncork();
  };
  return (line) => {
    if (!corked) {
      corked = true;
      socket.cork();
      process.nextTick(uncork);
    }
    socket.write(`${line}\n`);
  };
}
