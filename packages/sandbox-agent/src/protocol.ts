/**
 * Wire format shared with the agent (`guest/`; see `agent/PROTOCOL.md`). Internal to the agent
 * client; the agent (Rust) keeps its own copy of these constants.
 */

export const FrameType = {
  OPEN: 1,
  REPLY: 2,
  DATA: 3,
  DATA_ERR: 4,
  EOF: 5,
  WINDOW: 6,
  CONTROL: 7,
  CLOSE: 8,
  LOG: 9,
  ERROR: 10,
  /** agent→host: a stream the agent opened (a connection to a `listen` socket); id has the high bit set. */
  ACCEPT: 11,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

export const PROTOCOL_VERSION = 1;
/** Bytes before the payload: u32 length, u8 type, u32 channel. */
export const HEADER_BYTES = 9;
/** Largest payload either side accepts; a longer frame is a protocol error. */
export const MAX_PAYLOAD = 1024 * 1024;
/** Default receive window per channel and direction. */
export const DEFAULT_WINDOW = 256 * 1024;
/** Largest DATA payload we send in one frame. */
export const DATA_CHUNK = 64 * 1024;
/** Precedes the bytes the host sends before its first hello, and (with the hello's nonce) the agent's answer. */
export const SYNC_MAGIC = Buffer.from('\0\0STUDIO-AGENT-SYNC-1\0\0', 'latin1');
/**
 * What the host sends before its first hello on a stream: enough 0xFF bytes to complete any frame a
 * previous host left half-written (then the length 0xFFFFFFFF sends the agent looking for the marker),
 * then the marker. Costs 1 MiB once per connection.
 */
export function syncPreamble(): Buffer {
  const pad = Buffer.alloc(MAX_PAYLOAD + HEADER_BYTES + 8, 0xff);
  return Buffer.concat([pad, SYNC_MAGIC]);
}

export function encodeFrame(type: FrameType, channel: number, payload?: Uint8Array): Buffer {
  const len = payload?.length ?? 0;
  const b = Buffer.allocUnsafe(HEADER_BYTES + len);
  b.writeUInt32BE(5 + len, 0);
  b[4] = type;
  b.writeUInt32BE(channel >>> 0, 5);
  if (payload && len) b.set(payload, HEADER_BYTES);
  return b;
}

export interface Frame {
  type: number;
  channel: number;
  payload: Buffer;
}

/**
 * Splits the agent's output into frames. Until `expect(marker)` is satisfied it discards input
 * (keeping only enough to find a marker split across chunks), so whatever a stream carried before our
 * hello's answer is never parsed. Memory is bounded by one frame.
 */
export class FrameDecoder {
  #parts: Buffer[] = [];
  #len = 0;
  #need = 0;
  #marker: Buffer | undefined;
  #tail: Buffer = Buffer.alloc(0);
  readonly #maxPayload: number;

  constructor(maxPayload = MAX_PAYLOAD) {
    this.#maxPayload = maxPayload;
  }

  /** Bytes held for an incomplete frame. */
  get bufferedBytes(): number {
    return this.#len + this.#tail.length;
  }

  /** Drops whatever is buffered (the connection is gone). */
  clear(): void {
    this.#parts = [];
    this.#len = 0;
    this.#need = 0;
    this.#tail = Buffer.alloc(0);
  }

  /** Discards everything up to and including `marker` (from now on, including what is buffered). */
  expect(marker: Buffer): void {
    this.#marker = marker;
    this.#tail = this.#parts.length ? Buffer.concat(this.#parts) : Buffer.alloc(0);
    this.#parts = [];
    this.#len = 0;
    this.#need = 0;
  }

  /** Frames completed by `chunk`. Throws on a malformed frame (the stream cannot be trusted after it). */
  push(chunk: Buffer): Frame[] {
    let data: Buffer | undefined = chunk;
    if (this.#marker) {
      data = this.#scan(chunk);
      if (!data) return [];
    }
    if (data.length) {
      this.#parts.push(data);
      this.#len += data.length;
    }
    const frames: Frame[] = [];
    for (;;) {
      if (this.#need === 0) {
        if (this.#len < 4) break;
        const length = this.#take(4, false).readUInt32BE(0);
        if (length < 5 || length > this.#maxPayload + 5) throw new Error(`bad frame length ${length}`);
        this.#need = 4 + length;
      }
      if (this.#len < this.#need) break;
      const f = this.#take(this.#need, true);
      this.#need = 0;
      frames.push({ type: f[4] ?? 0, channel: f.readUInt32BE(5), payload: f.subarray(HEADER_BYTES) });
    }
    return frames;
  }

  #scan(chunk: Buffer): Buffer | undefined {
    const marker = this.#marker as Buffer;
    const buf = this.#tail.length ? Buffer.concat([this.#tail, chunk]) : chunk;
    const at = buf.indexOf(marker);
    if (at < 0) {
      this.#tail = Buffer.from(buf.subarray(Math.max(0, buf.length - marker.length + 1)));
      return undefined;
    }
    this.#marker = undefined;
    this.#tail = Buffer.alloc(0);
    return buf.subarray(at + marker.length);
  }

  #take(n: number, consume: boolean): Buffer {
    const first = this.#parts[0] as Buffer;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (consume) {
        if (first.length === n) this.#parts.shift();
        else this.#parts[0] = first.subarray(n);
      }
    } else {
      const all = Buffer.concat(this.#parts);
      out = all.subarray(0, n);
      if (consume) this.#parts = all.length > n ? [all.subarray(n)] : [];
      else this.#parts = [all];
    }
    if (consume) this.#len -= n;
    return out;
  }
}
