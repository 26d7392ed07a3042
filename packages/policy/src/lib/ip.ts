// Internal IP address helpers shared by the host rules (preview targets, egress). Not part of the public surface.

const HEX_GROUP = /^[0-9A-Fa-f]{1,4}$/;
export const STRICT_DOTTED =
  /^(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}$/;

// One inet_aton / WHATWG number: decimal, octal with a leading 0, hex with 0x ('0x' alone is 0 in both).
function parseIpv4Number(text: string): number | null {
  if (text === '' || text.length > 34) return null;
  if (/^0[xX][0-9A-Fa-f]*$/.test(text)) return text.length === 2 ? 0 : Number.parseInt(text.slice(2), 16);
  if (/^0[0-7]*$/.test(text)) return Number.parseInt(text, 8);
  if (/^[1-9][0-9]*$/.test(text)) return Number(text);
  return null;
}

export function endsInNumber(label: string): boolean {
  return /^[0-9]+$/.test(label) || /^0x[0-9a-f]*$/.test(label);
}

// The 1-4 part forms inet_aton accepts: a.b.c.d, a.b.c (c is 16 bits), a.b (b is 24 bits), a (32 bits).
export function parseIpv4(parts: readonly string[]): number | null {
  if (parts.length < 1 || parts.length > 4) return null;
  const numbers: number[] = [];
  for (const part of parts) {
    const n = parseIpv4Number(part);
    if (n === null) return null;
    numbers.push(n);
  }
  const last = numbers.pop() as number;
  if (numbers.some((n) => n > 255)) return null;
  if (last >= 2 ** (8 * (4 - numbers.length))) return null;
  let value = last;
  numbers.forEach((n, i) => {
    value += n * 2 ** (8 * (3 - i));
  });
  return value;
}

export function formatIpv4(value: number): string {
  return [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255].join('.');
}

export function parseIpv6(text: string): number[] | null {
  if (text.length === 0 || text.length > 45) return null;
  const first = text.indexOf('::');
  if (first !== text.lastIndexOf('::')) return null;
  const split = (s: string): string[] => (s === '' ? [] : s.split(':'));
  const head = first === -1 ? split(text) : split(text.slice(0, first));
  const tail = first === -1 ? [] : split(text.slice(first + 2));
  const groupsOf = (parts: string[], isLast: boolean): number[] | null => {
    const out: number[] = [];
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i] as string;
      if (HEX_GROUP.test(part)) {
        out.push(Number.parseInt(part, 16));
      } else if (isLast && i === parts.length - 1 && STRICT_DOTTED.test(part)) {
        const [a, b, c, d] = part.split('.').map(Number) as [number, number, number, number];
        out.push(a * 256 + b, c * 256 + d);
      } else {
        return null;
      }
    }
    return out;
  };
  // An embedded IPv4 address may only be the last 32 bits, so before '::' it is never allowed.
  const headGroups = groupsOf(head, first === -1);
  const tailGroups = groupsOf(tail, true);
  if (headGroups === null || tailGroups === null) return null;
  const count = headGroups.length + tailGroups.length;
  if (first === -1) return count === 8 ? headGroups : null;
  if (count > 7) return null;
  return [...headGroups, ...new Array<number>(8 - count).fill(0), ...tailGroups];
}

// RFC 5952: lowercase, no leading zeros, the longest run (>= 2) of zero groups as '::', the first on a tie.
export function formatIpv6(groups: readonly number[]): string {
  let bestStart = -1;
  let bestLength = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestLength < 2) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}

export function ipv4Number(dotted: string): number {
  return parseIpv4(dotted.split('.')) as number;
}

export function inV4(ip: number, net: string, bits: number): boolean {
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return (ip & mask) >>> 0 === (ipv4Number(net) & mask) >>> 0;
}

export function inV6(groups: readonly number[], net: string, bits: number): boolean {
  const netGroups = parseIpv6(net) as number[];
  for (let i = 0; i < 8 && bits > 0; i++, bits -= 16) {
    const take = Math.min(16, bits);
    const mask = (0xffff << (16 - take)) & 0xffff;
    if (((groups[i] as number) & mask) !== ((netGroups[i] as number) & mask)) return false;
  }
  return true;
}
