import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { onCleanup } from './report.ts';

/**
 * Runs a bench client (`script`, a file beside this one) in its own Node process with `job` as its one argument
 * (JSON) and returns what it printed on stdout (JSON): API figures are taken with the client in a separate
 * process (the house rule), never in the process serving the API. Its stderr passes through; a line
 * `<name> client: <reason>` there becomes the error when it fails. It is killed if the bench is interrupted.
 */
export function runClientProcess<T>(script: string, job: unknown): Promise<T> {
  const path = fileURLToPath(new URL(`./${script}`, import.meta.url));
  return new Promise((resolve, reject) => {
    const client = spawn(process.execPath, ['--import', 'tsx', path, JSON.stringify(job)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const kill = onCleanup(async () => {
      client.kill('SIGKILL');
    });
    let out = '';
    let failure = '';
    client.stdout.setEncoding('utf8');
    client.stdout.on('data', (chunk: string) => {
      out += chunk;
    });
    client.stderr.setEncoding('utf8');
    client.stderr.on('data', (chunk: string) => {
      process.stderr.write(chunk);
      failure = /\bclient: (.*)/.exec(chunk)?.[1] ?? failure;
    });
    client.once('error', reject);
    client.once('exit', (code, signal) => {
      void kill();
      if (code !== 0) {
        return reject(new Error(failure || `bench/${script} ended (${signal ?? `exit code ${code}`})`));
      }
      try {
        resolve(JSON.parse(out) as T);
      } catch (error) {
        reject(error);
      }
    });
  });
}
