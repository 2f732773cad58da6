import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Separate network hosts on one machine, for partition tests: one network namespace per node,
 * all on one bridge, with addresses in the loopback range 127.0.101.0/24 (route_localnet), so no
 * packet ever uses a private or public address. The test process itself joins the bridge from the
 * root namespace at 127.0.101.254. Partitions are iptables DROP rules inside the namespaces.
 * Needs root, iproute2 and iptables (.ci/run installs iptables when it is missing).
 */
const NET = '127.0.101';
const PREFIX = 'shl';
const ETC_NETNS = '/etc/netns';

function run(...args: string[]): string {
  return execFileSync(args[0]!, args.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function tryRun(...args: string[]): void {
  try {
    run(...args);
  } catch {
    // cleanup of something that may not exist
  }
}

export function netLabMissing(): string | undefined {
  if (process.getuid?.() !== 0) return 'partition tests need root (network namespaces)';
  for (const tool of ['ip', 'iptables']) {
    try {
      run('sh', '-c', `command -v ${tool}`);
    } catch {
      return `partition tests need ${tool}`;
    }
  }
  return undefined;
}

export class NetLab {
  private constructor(
    private readonly tag: string,
    readonly hosts: number,
  ) {}

  static create(hosts: number): NetLab {
    NetLab.removeLeftovers();
    const lab = new NetLab(randomBytes(2).toString('hex'), hosts);
    const br = lab.bridgeNs();
    run('ip', 'netns', 'add', br);
    run('ip', 'netns', 'exec', br, 'ip', 'link', 'add', 'br0', 'type', 'bridge');
    run('ip', 'netns', 'exec', br, 'ip', 'link', 'set', 'br0', 'up');
    for (let i = 1; i <= hosts; i++) {
      const ns = lab.ns(i);
      run('ip', 'netns', 'add', ns);
      run('ip', 'link', 'add', 'eth0', 'netns', ns, 'type', 'veth', 'peer', 'name', `v${i}`, 'netns', br);
      run('ip', 'netns', 'exec', br, 'ip', 'link', 'set', `v${i}`, 'master', 'br0', 'up');
      run('ip', 'netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up');
      run(
        'ip',
        'netns',
        'exec',
        ns,
        'sysctl',
        '-qw',
        'net.ipv4.conf.all.route_localnet=1',
        'net.ipv4.conf.eth0.route_localnet=1',
      );
      run('ip', 'netns', 'exec', ns, 'ip', 'addr', 'add', `${NET}.${i}/24`, 'dev', 'eth0');
      run('ip', 'netns', 'exec', ns, 'ip', 'link', 'set', 'eth0', 'up');
    }
    // The test process reaches every host through its own leg on the bridge.
    const leg = `${PREFIX}${lab.tag}h`;
    run('ip', 'link', 'add', leg, 'type', 'veth', 'peer', 'name', 'vh', 'netns', br);
    run('ip', 'netns', 'exec', br, 'ip', 'link', 'set', 'vh', 'master', 'br0', 'up');
    run('sysctl', '-qw', `net.ipv4.conf.${leg}.route_localnet=1`);
    run('ip', 'addr', 'add', `${NET}.254/24`, 'dev', leg);
    run('ip', 'link', 'set', leg, 'up');
    return lab;
  }

  /** Removes namespaces and links a crashed earlier run may have left. */
  static removeLeftovers(): void {
    const namespaces = run('ip', 'netns', 'list')
      .split('\n')
      .map((l) => l.split(' ')[0] ?? '')
      .filter((n) => n.startsWith(PREFIX));
    for (const ns of namespaces) {
      for (const pid of tryPids(ns)) tryRun('kill', '-9', pid);
      tryRun('ip', 'netns', 'del', ns);
    }
    if (existsSync(ETC_NETNS)) {
      for (const dir of readdirSync(ETC_NETNS)) {
        if (dir.startsWith(PREFIX)) rmSync(join(ETC_NETNS, dir), { recursive: true, force: true });
      }
    }
    const links = run('ip', '-o', 'link', 'show')
      .split('\n')
      .map((l) => /^\d+:\s+([^@:]+)/.exec(l)?.[1] ?? '')
      .filter((n) => n.startsWith(PREFIX));
    for (const link of links) tryRun('ip', 'link', 'del', link);
  }

  /**
   * Sets /etc/<name> as programs in host i see it (`ip netns exec` binds /etc/netns/<ns>/<name> over
   * it), e.g. `hosts` for the names they resolve. Rewritten in place, so running programs see a
   * change at their next lookup.
   */
  setEtcFile(i: number, name: string, content: string): void {
    const dir = join(ETC_NETNS, this.ns(i));
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, name), content);
  }

  address(i: number): string {
    return `${NET}.${i}`;
  }

  /** Command prefix that runs a program inside host i (1-based). */
  wrap(i: number): string[] {
    return ['ip', 'netns', 'exec', this.ns(i)];
  }

  /** Drops all traffic between every host of `a` and every host of `b`, both ways. */
  partition(a: number[], b: number[]): void {
    for (const i of a) {
      for (const j of b) {
        for (const [x, y] of [
          [i, j],
          [j, i],
        ] as const) {
          run(
            'ip',
            'netns',
            'exec',
            this.ns(x),
            'iptables',
            '-I',
            'INPUT',
            '-s',
            this.address(y),
            '-j',
            'DROP',
          );
          run(
            'ip',
            'netns',
            'exec',
            this.ns(x),
            'iptables',
            '-I',
            'OUTPUT',
            '-d',
            this.address(y),
            '-j',
            'DROP',
          );
        }
      }
    }
  }

  heal(): void {
    for (let i = 1; i <= this.hosts; i++) run('ip', 'netns', 'exec', this.ns(i), 'iptables', '-F');
  }

  destroy(): void {
    for (let i = 1; i <= this.hosts; i++) {
      for (const pid of tryPids(this.ns(i))) tryRun('kill', '-9', pid);
      tryRun('ip', 'netns', 'del', this.ns(i));
      rmSync(join(ETC_NETNS, this.ns(i)), { recursive: true, force: true });
    }
    tryRun('ip', 'netns', 'del', this.bridgeNs());
    tryRun('ip', 'link', 'del', `${PREFIX}${this.tag}h`);
  }

  private ns(i: number): string {
    return `${PREFIX}${this.tag}${i}`;
  }

  private bridgeNs(): string {
    return `${PREFIX}${this.tag}br`;
  }
}

function tryPids(ns: string): string[] {
  try {
    return run('ip', 'netns', 'pids', ns).split('\n').filter(Boolean);
  } catch {
    return [];
  }
}
