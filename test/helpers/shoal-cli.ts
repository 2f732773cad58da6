import { spawn } from 'node:child_process';
import { CLI } from './cluster';

export interface CliRun {
  code: number | null;
  out: string;
  err: string;
}

/**
 * Runs the `shoal` bin as a person would, with pipes for stdout and stderr and no SHOAL_* variable
 * of the caller's, apart from the API key given.
 */
export function runShoal(args: string[], apiKey?: string): Promise<CliRun> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env))
    if (v !== undefined && !k.startsWith('SHOAL_')) env[k] = v;
  if (apiKey !== undefined) env.SHOAL_API_KEY = apiKey;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (err += c.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out, err }));
  });
}
