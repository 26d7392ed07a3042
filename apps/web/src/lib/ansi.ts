/** One run of text with the SGR attributes in force; rendered as a React text node inside a span. */
export interface AnsiSegment {
  text: string;
  /** CSS class names (ansi-fg-1, ansi-bold, …): never raw styles, never markup. */
  classes: string[];
}

interface SgrState {
  fg: number | null;
  bg: number | null;
  bold: boolean;
  dim: boolean;
  italic: boolean;
  underline: boolean;
}

const RESET: SgrState = { fg: null, bg: null, bold: false, dim: false, italic: false, underline: false };

function apply(state: SgrState, params: number[]): SgrState {
  const next = { ...state };
  const codes = params.length === 0 ? [0] : params;
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i] as number;
    if (c === 0) Object.assign(next, RESET);
    else if (c === 1) next.bold = true;
    else if (c === 2) next.dim = true;
    else if (c === 3) next.italic = true;
    else if (c === 4) next.underline = true;
    else if (c === 22) {
      next.bold = false;
      next.dim = false;
    } else if (c === 23) next.italic = false;
    else if (c === 24) next.underline = false;
    else if (c >= 30 && c <= 37) next.fg = c - 30;
    else if (c >= 90 && c <= 97) next.fg = c - 90 + 8;
    else if (c === 39) next.fg = null;
    else if (c >= 40 && c <= 47) next.bg = c - 40;
    else if (c >= 100 && c <= 107) next.bg = c - 100 + 8;
    else if (c === 49) next.bg = null;
    else if (c === 38 || c === 48) {
      // 256-colour (5;n) maps onto the 16 base colours when it can; truecolour (2;r;g;b) is dropped.
      const mode = codes[i + 1];
      if (mode === 5) {
        const n = codes[i + 2] ?? 0;
        if (n < 16) {
          if (c === 38) next.fg = n;
          else next.bg = n;
        }
        i += 2;
      } else if (mode === 2) {
        i += 4;
      }
    }
  }
  return next;
}

function classesOf(s: SgrState): string[] {
  const out: string[] = [];
  if (s.fg !== null) out.push(`ansi-fg-${s.fg}`);
  if (s.bg !== null) out.push(`ansi-bg-${s.bg}`);
  if (s.bold) out.push('ansi-bold');
  if (s.dim) out.push('ansi-dim');
  if (s.italic) out.push('ansi-italic');
  if (s.underline) out.push('ansi-underline');
  return out;
}

// CSI sequences (ESC [ params final), OSC sequences (ESC ] … BEL/ST) and other two-byte escapes.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching terminal escape sequences is the point
const ESCAPES = /\u001b\[([0-9;?]*)([@-~])|\u001b\][^\u0007\u001b]*(?:\u0007|\u001b\\)?|\u001b[@-Z\\-_]?/g;
// Other C0 controls (except tab and newline) are dropped so they cannot garble the console.
// biome-ignore lint/suspicious/noControlCharactersInRegex: stripping control characters is the point
const CONTROLS = /[\u0000-\u0008\u000b-\u001f\u007f]/g;

/**
 * Parses text with ANSI SGR colour sequences into segments of plain text and class names. Everything else
 * (cursor moves, OSC titles, stray controls) is removed. The output is data for React text nodes: nothing in it
 * is ever interpreted as HTML (SECURITY.md §6).
 */
export function parseAnsi(
  input: string,
  initial: SgrState = RESET,
): { segments: AnsiSegment[]; state: SgrState } {
  const segments: AnsiSegment[] = [];
  let state = initial;
  let last = 0;
  const push = (raw: string) => {
    const text = raw.replace(CONTROLS, '');
    if (text.length === 0) return;
    const classes = classesOf(state);
    const prev = segments[segments.length - 1];
    if (prev && prev.classes.join(' ') === classes.join(' ')) prev.text += text;
    else segments.push({ text, classes });
  };
  for (const match of input.matchAll(ESCAPES)) {
    push(input.slice(last, match.index));
    last = match.index + match[0].length;
    if (match[2] === 'm' && match[1] !== undefined && !match[1].includes('?')) {
      const params = match[1] === '' ? [] : match[1].split(';').map((p) => (p === '' ? 0 : Number(p)));
      state = apply(state, params);
    }
  }
  push(input.slice(last));
  return { segments, state };
}

export type { SgrState };
