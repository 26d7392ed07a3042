import { readdir, readFile } from 'node:fs/promises';

/**
 * Resident memory (bytes) of every host process whose command line names `needle` (a sandbox id, a container
 * id): what a sandbox holds of the host's memory, for the tests that prove a paused session holds none.
 */
export async function residentBytesOf(needle: string): Promise<number> {
  let total = 0;
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (!cmdline.includes(needle)) continue;
    const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
    const kib = /^VmRSS:\s+(\d+) kB/m.exec(status)?.[1];
    if (kib) total += Number(kib) * 1024;
  }
  return total;
}
