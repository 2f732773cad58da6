import { spawnSync } from 'node:child_process';
import { accessSync, closeSync, constants, existsSync, openSync, readFileSync } from 'node:fs';
import { basename, delimiter, join } from 'node:path';

/**
 * System suites: tests that need more than Node and npm (root, network namespaces, loop devices,
 * tmpfs mounts, Chromium). `npm test` must pass on a fresh machine, so where something is missing
 * such a suite skips itself with one line saying what it needs and how to run it. CI and
 * `npm run test:system` set SHOAL_SYSTEM_TESTS=required: there a missing prerequisite fails the
 * suite instead, so nothing is skipped without anyone noticing.
 *
 *   SHOAL_SYSTEM_TESTS unset   run what this machine can, skip the rest with a line each
 *   SHOAL_SYSTEM_TESTS=required   a missing prerequisite is a test failure
 *   SHOAL_SYSTEM_TESTS=skip    skip every system suite on purpose
 */

export interface Requirement {
  /** What the suite needs, as the skip line names it: "root", "iproute2 (ip)". */
  need: string;
  /** What is missing on this machine and how to get it, or undefined when it is there. */
  missing(): string | undefined;
}

const MODE_VARIABLE = 'SHOAL_SYSTEM_TESTS';

/** Capability bits of /proc/self/status (linux/capability.h). */
const CAPABILITIES = { CAP_NET_ADMIN: 12, CAP_SYS_ADMIN: 21 } as const;

/**
 * Root, with the capabilities given: a container's root often lacks CAP_SYS_ADMIN, and then it
 * can mount nothing and make no network namespace.
 */
export function root(...caps: Array<keyof typeof CAPABILITIES>): Requirement {
  return {
    need: 'root',
    missing() {
      if (process.getuid?.() !== 0) return 'not root (run as root)';
      const effective = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
      const lacking = caps.filter(
        (c) => !effective || !((BigInt(`0x${effective}`) >> BigInt(CAPABILITIES[c])) & 1n),
      );
      return lacking.length ? `root without ${lacking.join(', ')} (an unprivileged container?)` : undefined;
    },
  };
}

/** A program on PATH, from a Debian package. */
export function command(tool: string, debianPackage: string): Requirement {
  return {
    need: tool === debianPackage ? tool : `${debianPackage} (${tool})`,
    missing() {
      if (findOnPath(tool)) return undefined;
      // A user's PATH on Debian has no sbin directories, root's has: for a user a tool there is
      // found (every suite that needs one needs root too, and says so); for root it is not.
      if (process.getuid?.() !== 0 && findOnPath(tool, '/usr/sbin:/sbin')) return undefined;
      return `no ${tool} on PATH (apt-get install ${debianPackage})`;
    },
  };
}

/** An executable at a fixed path. */
export function executable(path: string, need: string, howToGet: string): Requirement {
  return {
    need,
    missing() {
      try {
        accessSync(path, constants.X_OK);
        return undefined;
      } catch {
        return `no ${path} (${howToGet})`;
      }
    },
  };
}

/** Loop devices and ext4 in the kernel (a container may have neither). */
export const loopDevicesAndExt4: Requirement = {
  need: 'loop devices and ext4',
  missing() {
    if (!existsSync('/dev/loop-control')) return 'no loop devices (/dev/loop-control is missing)';
    if (!/\bext4\b/.test(readFileSync('/proc/filesystems', 'utf8'))) return 'the kernel has no ext4';
    return undefined;
  },
};

/** FUSE: the kernel's file system and a /dev/fuse this process may open (a container may lack both). */
export const fuseDevice: Requirement = {
  need: 'FUSE (/dev/fuse)',
  missing() {
    if (!/\bfuse\b/.test(readFileSync('/proc/filesystems', 'utf8'))) return 'the kernel has no FUSE';
    try {
      closeSync(openSync('/dev/fuse', 'r+'));
      return undefined;
    } catch (err) {
      return `cannot open /dev/fuse (${(err as NodeJS.ErrnoException).code ?? String(err)})`;
    }
  },
};

/** A Python module that `python` (an absolute path: Debian's modules live beside its own python) imports. */
export function pythonModule(python: string, module: string, debianPackage: string): Requirement {
  return {
    need: `${debianPackage} (${module})`,
    missing() {
      const run = spawnSync(python, ['-c', `import ${module}`], { stdio: 'ignore', timeout: 10_000 });
      if (run.error) return `no ${python} (apt-get install python3)`;
      return run.status === 0
        ? undefined
        : `${python} cannot import ${module} (apt-get install ${debianPackage})`;
    },
  };
}

export interface SystemSuiteOptions {
  needs: Requirement[];
  /** A variable that, set to 1, skips this suite on purpose (older than SHOAL_SYSTEM_TESTS=skip). */
  optOut?: string;
}

/**
 * `describe` for a system suite: the real describe when this machine has what the suite needs;
 * otherwise one printed line and describe.skip, or, with SHOAL_SYSTEM_TESTS=required, a suite
 * whose one test fails with that line (its body never runs: its setup would only fail less clearly).
 */
export function systemDescribe(options: SystemSuiteOptions): (name: string, body: () => void) => void {
  const mode = systemTestMode();
  const needs = options.needs.map((r) => r.need).join(', ');
  return (name, body) => {
    const suite = suiteLabel(name);
    const optedOut = mode === 'skip' || (options.optOut !== undefined && process.env[options.optOut] === '1');
    if (optedOut) {
      const by = mode === 'skip' ? `${MODE_VARIABLE}=skip` : `${options.optOut}=1`;
      if (mode === 'required')
        return failing(name, `${suite}: ${by} skips it, but ${MODE_VARIABLE}=required`);
      say(`${suite} skipped on purpose (${by}); it needs ${needs}`);
      return describe.skip(name, body);
    }
    const missing = options.needs.map((r) => r.missing()).filter((m): m is string => m !== undefined);
    if (missing.length === 0) return describe(name, body);
    const why = `needs ${needs}; missing: ${missing.join('; ')}`;
    if (mode === 'required') return failing(name, `${suite} ${why}. Not skipped: ${MODE_VARIABLE}=required`);
    say(`${suite} skipped: ${why}. Then run \`npm run test:system\``);
    return describe.skip(name, body);
  };
}

function systemTestMode(): 'auto' | 'required' | 'skip' {
  const value = process.env[MODE_VARIABLE] ?? '';
  if (value === '' || value === 'auto') return 'auto';
  if (value === 'required' || value === 'skip') return value;
  // A typo must not turn "required" into a silent skip.
  throw new Error(`${MODE_VARIABLE}=${value}: expected required, skip or auto`);
}

function failing(name: string, message: string): void {
  say(message);
  describe(name, () => {
    it('has what it needs to run', () => {
      // No stack: the place to look is the message, not this file.
      throw Object.assign(new Error(message), { stack: message });
    });
  });
}

/** The test file's name (what to pass to jest to run it alone), else the suite's name. */
function suiteLabel(name: string): string {
  const path = expect.getState().testPath;
  return path ? basename(path) : `"${name}"`;
}

/** One line, straight to the terminal: jest would print console.log with a stack under it. */
function say(line: string): void {
  process.stdout.write(`[system test] ${line}\n`);
}

/** The directory on PATH that has an executable `tool`, if any. */
function findOnPath(tool: string, path = process.env.PATH ?? ''): string | undefined {
  return path.split(delimiter).find((dir) => {
    try {
      accessSync(join(dir, tool), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}
