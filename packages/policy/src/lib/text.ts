// Internal text helpers shared by the rules. Not part of the public surface (index.ts does not export them).
// Written as char-code loops rather than regexes so control characters never appear in source literals.

/** True for C0 controls (U+0000-001F, which includes NUL), DEL (U+007F) and C1 controls (U+0080-009F). */
export function isControlCode(code: number): boolean {
  return code <= 0x1f || (code >= 0x7f && code <= 0x9f);
}

/** Index of the first C0/C1/DEL control character, or -1. */
export function findControlChar(text: string): number {
  for (let i = 0; i < text.length; i++) {
    if (isControlCode(text.charCodeAt(i))) return i;
  }
  return -1;
}

/**
 * True when `text` contains an unpaired UTF-16 surrogate. Such a string has no UTF-8 form: encoders swap in
 * U+FFFD, so two different inputs would name the same file or claim.
 */
export function hasLoneSurrogate(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code >= 0xd800 && code <= 0xdbff) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        i++;
        continue;
      }
      return true;
    }
    if (code >= 0xdc00 && code <= 0xdfff) return true;
  }
  return false;
}

/** Length of `text` in UTF-8 bytes (lone surrogates count as the 3 bytes of U+FFFD). */
export function utf8ByteLength(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x80) bytes += 1;
    else if (code < 0x800) bytes += 2;
    else if (code >= 0xd800 && code <= 0xdbff) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 4;
        i++;
      } else bytes += 3;
    } else bytes += 3;
  }
  return bytes;
}

/** Shows a refused character in a message without echoing raw control bytes into logs. */
export function describeChar(text: string, index: number): string {
  const code = text.codePointAt(index) ?? 0;
  return `U+${code.toString(16).toUpperCase().padStart(4, '0')}`;
}

/** True when `value` is a safe integer within [min, max]. */
export function isIntInRange(value: unknown, min: number, max: number): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= min && value <= max;
}
