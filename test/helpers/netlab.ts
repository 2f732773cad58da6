import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { command, root, type Requirement } from './requirements';

/**
 * Separate network hosts on one machine, for partition tests: one network namespace per node,
 * all on one bridge, with addresses in the loopback range 127.0.101.0/24 (route_localnet), so no
 * packet ever uses a private or public address. The test process itself joins the bridge from the
 * root namespace at 127.0.101.254. Needs root and iproute2, nothing else.
 *
 * A partition is a cut cable, not a refusal: packets between the two sides vanish and a sender
 * learns nothing until its own timeouts fire. Each host gets a permanent neighbour (ARP) entry
 * for every host across the cut that points at a MAC address no interface has, so the bridge
 * floods those frames and every host discards them. (A blackhole or prohibit route would fail a
 * local sender at once with EINVAL or EACCES: a crash, not a partition.)
 */
const NET = '127.0.101';
const PREFIX = 'shl';
const ETC_NETNS = '/etc/netns';
/** Locally administered and unicast; no veth is given it. */
const NOWHERE_MAC = '02:00:00:5e:00:00';

/** What a NetLab needs of this machine. */
export const NETLAB_NEEDS: Requirement[] = [
  root('CAP_NET_ADMIN', 'CAP_SYS_ADMIN'),
  command('ip', 'iproute2'),
];

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

/** Turns on route_localnet (127.0.0.0/8 on a real link) in namespace `ns`, for `links`. */
function routeLocalnet(ns: string, links: string[]): void {
  // /proc/sys/net belongs to the namespace of the process that opens it; sh, unlike sysctl, is
  // on every machine.
  const writes = links.map((l) => `echo 1 > /proc/sys/net/ipv4/conf/${l}/route_localnet`).join('; ');
  run('ip', 'netns', 'exec', ns, 'sh', '-c', writes);
}

function killAll(pids: string[]): void {
  for (const pid of pids) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // already gone
    }
  }
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
      routeLocalnet(ns, ['all', 'eth0']);
      run('ip', 'netns', 'exec', ns, 'ip', 'addr', 'add', `${NET}.${i}/24`, 'dev', 'eth0');
      run('ip', 'netns', 'exec', ns, 'ip', 'link', 'set', 'eth0', 'up');
    }
    // The test process reaches every host through its own leg on the bridge.
    const leg = `${PREFIX}${lab.tag}h`;
    run('ip', 'link', 'add', leg, 'type', 'veth', 'peer', 'name', 'vh', 'netns', br);
    run('ip', 'netns', 'exec', br, 'ip', 'link', 'set', 'vh', 'master', 'br0', 'up');
    writeFileSync(`/proc/sys/net/ipv4/conf/${leg}/route_localnet`, '1');
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
      killAll(tryPids(ns));
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

  /** Cuts every host of `a` off from every host of `b`, both ways: their packets are lost. */
  partition(a: number[], b: number[]): void {
    for (const i of a) {
      for (const j of b) {
        this.sendNowhere(i, j);
        this.sendNowhere(j, i);
      }
    }
  }

  /** Ends every partition: hosts learn each other's real addresses again by ARP. */
  heal(): void {
    for (let i = 1; i <= this.hosts; i++)
      run('ip', '-n', this.ns(i), 'neigh', 'flush', 'dev', 'eth0', 'nud', 'permanent');
  }

  destroy(): void {
    for (let i = 1; i <= this.hosts; i++) {
      killAll(tryPids(this.ns(i)));
      tryRun('ip', 'netns', 'del', this.ns(i));
      rmSync(join(ETC_NETNS, this.ns(i)), { recursive: true, force: true });
    }
    tryRun('ip', 'netns', 'del', this.bridgeNs());
    tryRun('ip', 'link', 'del', `${PREFIX}${this.tag}h`);
  }

  /** Host `from` addresses frames for host `to` to a MAC address no interface has. */
  private sendNowhere(from: number, to: number): void {
    const entry = [this.address(to), 'lladdr', NOWHERE_MAC, 'dev', 'eth0', 'nud', 'permanent'];
    run('ip', '-n', this.ns(from), 'neigh', 'replace', ...entry);
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
