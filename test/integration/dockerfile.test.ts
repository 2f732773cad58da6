import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, relative } from 'node:path';
import { DockerfileParser, ModifiableInstruction, type Instruction } from 'dockerfile-ast';
import { validate } from 'dockerfile-utils';
import { envName, NODE_FLAGS } from '../../services/storage-node/src/config';
import { freePort, repoRoot } from '../helpers/cluster';

/**
 * The Dockerfile, checked without a container engine: the dockerfile-utils linter (the checks of
 * the Docker language server), then the image's contract with the node, rule by rule. Building
 * and running the image for real is scripts/container-smoke.sh (podman).
 */

const ROOT = repoRoot();
const DOCKERFILE = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
const PACKAGE = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { bin: { shoal: string } };
const FLAG_VARIABLES = new Set<string>(NODE_FLAGS.map((f) => envName(f)));

function lint(content: string): string[] {
  return validate(content).map((d) => `line ${d.range.start.line + 1}: ${d.message}`);
}

interface Stage {
  from: Instruction;
  name: string | null;
  instructions: Instruction[];
}

function stages(content: string): { preamble: Instruction[]; stages: Stage[] } {
  const preamble: Instruction[] = [];
  const result: Stage[] = [];
  for (const i of DockerfileParser.parse(content).getInstructions()) {
    if (i.getKeyword() === 'FROM') {
      const as = i.getArguments().map((a) => a.getValue());
      const name = as[1]?.toUpperCase() === 'AS' ? (as[2] ?? null) : null;
      result.push({ from: i, name, instructions: [] });
    } else if (result.length === 0) preamble.push(i);
    else result[result.length - 1]?.instructions.push(i);
  }
  return { preamble, stages: result };
}

const { preamble, stages: STAGES } = stages(DOCKERFILE);
const BUILD = STAGES[0] as Stage;
const RUNTIME = STAGES[STAGES.length - 1] as Stage;

function all(stage: Stage, keyword: string): Instruction[] {
  return stage.instructions.filter((i) => i.getKeyword() === keyword);
}

function args(i: Instruction): string[] {
  return i.getArguments().map((a) => a.getValue());
}

/** The exec form of ENTRYPOINT/CMD/HEALTHCHECK CMD, as the JSON array it is. */
function execForm(i: Instruction, after = ''): string[] {
  const text = (i.getArgumentsContent() ?? '').replace(/\\\r?\n\s*/g, ' ').trim();
  const json = text.startsWith(after) ? text.slice(after.length).trim() : text;
  const parsed = JSON.parse(json) as unknown;
  if (!Array.isArray(parsed) || !parsed.every((a) => typeof a === 'string')) {
    throw new Error(`${i.getKeyword()} is not in exec form: ${text}`);
  }
  return parsed;
}

function runtimeEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const i of all(RUNTIME, 'ENV')) {
    const words = args(i);
    for (const word of words) {
      const eq = word.indexOf('=');
      if (eq <= 0) throw new Error(`ENV ${word}: use the KEY=value form`);
      env[word.slice(0, eq)] = word.slice(eq + 1);
    }
  }
  return env;
}

// .dockerignore, matched the way Docker and buildah match it (moby/patternmatcher): the last
// pattern that matches the path or one of its parent directories decides; `!` re-includes.
interface IgnorePattern {
  negated: boolean;
  regex: RegExp;
}

function readDockerignore(): IgnorePattern[] {
  return readFileSync(join(ROOT, '.dockerignore'), 'utf8')
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const negated = line.startsWith('!');
      const pattern = (negated ? line.slice(1) : line).trim().replace(/^\/+/, '').replace(/\/+$/, '');
      let re = '';
      for (let i = 0; i < pattern.length; i++) {
        const c = pattern[i] as string;
        if (pattern.startsWith('**/', i)) {
          re += '(?:.*/)?';
          i += 2;
        } else if (pattern.startsWith('**', i)) {
          re += '.*';
          i += 1;
        } else if (c === '*') re += '[^/]*';
        else if (c === '?') re += '[^/]';
        else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
      }
      return { negated, regex: new RegExp(`^${re}$`) };
    });
}

function inContext(path: string, patterns: IgnorePattern[]): boolean {
  const parts = path.split('/');
  let excluded = false;
  for (const p of patterns) {
    if (p.negated !== excluded) continue;
    const hit = parts.some((_part, i) => p.regex.test(parts.slice(0, i + 1).join('/')));
    if (hit) excluded = !p.negated;
  }
  return !excluded;
}

function filesUnder(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => relative(ROOT, join(e.parentPath, e.name)));
}

/** Runs the HEALTHCHECK command (with this machine's node) against a stand-in node on SHOAL_PORT. */
async function runHealthcheck(status: number | 'down'): Promise<{ code: number | null; paths: string[] }> {
  const [command, ...rest] = execForm(all(RUNTIME, 'HEALTHCHECK')[0] as Instruction, 'CMD');
  if (command !== 'node') throw new Error(`HEALTHCHECK runs ${command}; slim images only have node`);
  const paths: string[] = [];
  const server = createServer((req, res) => {
    paths.push(req.url ?? '');
    res.writeHead(status === 'down' ? 500 : status).end();
  });
  let port: number;
  if (status === 'down') port = await freePort();
  else {
    await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
    port = (server.address() as AddressInfo).port;
  }
  try {
    const env = { PATH: process.env.PATH ?? '', SHOAL_PORT: String(port) };
    const child = spawn(process.execPath, rest, { env, stdio: 'ignore' });
    const code = await new Promise<number | null>((res) => child.on('exit', res));
    return { code, paths };
  } finally {
    if (server.listening) server.close();
  }
}

describe('Dockerfile', () => {
  it('passes the Dockerfile linter (dockerfile-utils) without a single diagnostic', () => {
    expect(lint(DOCKERFILE)).toEqual([]);
  });

  it('is linted for real: a broken copy gets diagnostics', () => {
    const broken = DOCKERFILE.replace('EXPOSE 7000', 'EXPOSE seven').replace('WORKDIR /app', 'WORKDIR app');
    expect(lint(broken)).toEqual([
      expect.stringMatching(/WORKDIR paths should be absolute/),
      expect.stringMatching(/Invalid containerPort: seven/),
    ]);
  });

  it('takes its base from ARG BASE, a current Node LTS slim image by default, in both stages', () => {
    const first = preamble[0];
    expect(first?.getKeyword()).toBe('ARG');
    const m = /^BASE=node:(\d+)-([a-z]+)-slim$/.exec(args(first as Instruction).join(' '));
    expect(m).not.toBeNull();
    const major = Number(m?.[1]);
    // LTS lines are the even majors; 24 became Active LTS in October 2025.
    expect(major % 2).toBe(0);
    expect(major).toBeGreaterThanOrEqual(24);
    expect(STAGES).toHaveLength(2);
    for (const s of STAGES) expect(args(s.from)[0]).toBe('${BASE}');
  });

  it('builds with dev dependencies, then prunes them, in the build stage', () => {
    const script = all(BUILD, 'RUN')
      .map((i) => i.getArgumentsContent() ?? '')
      .join('\n');
    const steps = ['npm ci', 'npm run build', 'npm prune --omit=dev'].map((s) => script.indexOf(s));
    expect(steps.every((at) => at >= 0)).toBe(true);
    expect([...steps].sort((a, b) => a - b)).toEqual(steps);
    // better-sqlite3 ships prebuilt binaries: no compiler in the image, no install script run.
    expect(script).not.toMatch(/python3|g\+\+|node-gyp/);
  });

  it('ships only dist/, production node_modules, package.json and tini in the runtime stage', () => {
    const copies = all(RUNTIME, 'COPY').concat(all(RUNTIME, 'ADD'));
    const sources = copies.map((i) => {
      const flags = i instanceof ModifiableInstruction ? i.getFlags() : [];
      const from = flags.find((f) => f.getName() === 'from')?.getValue();
      expect(from).toBe(BUILD.name);
      return args(i)[0];
    });
    expect(sources.sort()).toEqual([
      '/src/dist',
      '/src/node_modules',
      '/src/package.json',
      '/usr/bin/tini-static',
    ]);
    const runs = all(RUNTIME, 'RUN').map((i) => i.getArgumentsContent() ?? '');
    expect(runs.filter((r) => /\bnpm\b|apt-get/.test(r))).toEqual([]);
  });

  it('runs as a numeric non-root user that owns the data dir', () => {
    const users = all(RUNTIME, 'USER').map((i) => args(i)[0] ?? '');
    const user = users[users.length - 1];
    expect(user).toMatch(/^[1-9]\d*(:\d+)?$/);
    const uid = user?.split(':')[0];
    const setup = all(RUNTIME, 'RUN')
      .map((i) => i.getArgumentsContent() ?? '')
      .join('\n');
    expect(setup).toContain(`chown ${uid}:`);
    expect(setup).toContain(runtimeEnv().SHOAL_DATA_DIR);
  });

  it('declares the data volume and port through SHOAL_* variables the node reads', () => {
    const env = runtimeEnv();
    const shoal = Object.keys(env).filter((k) => k.startsWith('SHOAL_'));
    expect(shoal.filter((k) => !FLAG_VARIABLES.has(k))).toEqual([]);
    expect(env.SHOAL_HOST).toBe('0.0.0.0');
    expect(all(RUNTIME, 'VOLUME').flatMap(args)).toEqual([env.SHOAL_DATA_DIR]);
    expect(all(RUNTIME, 'EXPOSE').flatMap(args)).toEqual([env.SHOAL_PORT]);
  });

  it("starts package.json's bin as `shoal node` under tini, which the image carries", () => {
    const entrypoints = all(RUNTIME, 'ENTRYPOINT');
    expect(entrypoints).toHaveLength(1);
    const [init, separator, node, bin, command] = execForm(entrypoints[0] as Instruction);
    expect([separator, node, bin, command]).toEqual(['--', 'node', PACKAGE.bin.shoal, 'node']);
    const tini = all(RUNTIME, 'COPY').find((i) => args(i)[0]?.endsWith('tini-static'));
    expect(tini && args(tini)[1]).toBe(init);
    expect(all(BUILD, 'RUN').some((i) => /\btini\b/.test(i.getArgumentsContent() ?? ''))).toBe(true);
  });

  it('has a HEALTHCHECK that asks /healthz with node and fails when the node does not answer 200', async () => {
    const healthy = await runHealthcheck(200);
    expect(healthy).toEqual({ code: 0, paths: ['/healthz'] });
    expect((await runHealthcheck(503)).code).toBe(1);
    expect((await runHealthcheck('down')).code).toBe(1);
  });
});

describe('.dockerignore', () => {
  const patterns = readDockerignore();

  it('keeps host builds, data, tests and VCS files out of the build context', () => {
    for (const path of [
      'node_modules/better-sqlite3/prebuilds/linux-x64.node',
      'dist/services/storage-node/src/cli.js',
      'data/node-1/metadata.sqlite',
      '.git/HEAD',
      '.bench/last.json',
      'test/helpers/cluster.ts',
      'k8s/base/statefulset.yaml',
      'Dockerfile',
    ]) {
      expect([path, inContext(path, patterns)]).toEqual([path, false]);
    }
  });

  it('lets in everything the build stage copies: the lockfile, tsconfig and all sources', () => {
    const copied = all(BUILD, 'COPY').flatMap((i) => args(i).slice(0, -1));
    expect(copied.length).toBeGreaterThan(0);
    for (const source of copied) {
      const files = statSync(join(ROOT, source)).isDirectory()
        ? filesUnder(source).filter((f) => !f.endsWith('.test.ts'))
        : [source];
      expect(files.length).toBeGreaterThan(0);
      expect(files.filter((f) => !inContext(f, patterns))).toEqual([]);
    }
  });
});
