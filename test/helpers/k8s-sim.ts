import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import type { ISecret } from 'kubernetes-models/v1/Secret';
import { CLI, waitFor } from './cluster';
import { onHost, writeSecretVolume, type PodMount, type Rendering } from './kustomize';
import type { NetLab } from './netlab';

/**
 * What Kubernetes does with Shoal's StatefulSet, done with real node processes on this machine:
 * each pod runs `shoal node` (the image's entrypoint) with exactly the environment the kubelet
 * would give it (ConfigMap, Secret, downward API, $(VAR) expansion: Rendering.podEnv), on its own
 * network host (a network namespace with its own address, every pod on the container port), with
 * its volumes laid out as the kubelet would (Rendering.podVolumes). Cluster DNS is the /etc/hosts
 * each host sees: every pod's stable name, and the headless Service's name with one address per
 * pod. A pod recreated under the same name gets another address, as in Kubernetes; only its name
 * and its volume stay.
 *
 * What differs, and why: paths under a mount are the directories standing in for the mounts
 * (no mount namespace per pod), and the process runs as root (`ip netns exec` needs it).
 */

export interface Pod {
  name: string;
  ordinal: number;
  host: number;
  address: string;
  proc: ChildProcess;
  exit: Promise<number | null>;
  logFile: string;
  mounts: PodMount[];
  /** In the Services' endpoints (ready, and not terminating). */
  ready: boolean;
}

export class StatefulSetSim {
  readonly pods = new Map<number, Pod>();
  /** Exit codes of every pod stopped, in order. */
  readonly exits: Array<{ pod: string; code: number | null }> = [];
  private readonly freeHosts: number[];
  private next = 0;

  constructor(
    readonly r: Rendering,
    private readonly lab: NetLab,
    private readonly root: string,
  ) {
    this.freeHosts = Array.from({ length: lab.hosts }, (_, i) => i + 1);
    this.publishDns();
  }

  get name(): string {
    return this.r.statefulSet.metadata?.name ?? 'shoal';
  }

  get port(): number {
    const port = this.r.container.ports?.[0]?.containerPort;
    if (!port) throw new Error('the container exposes no port');
    return port;
  }

  /** The headless Service's DNS name: what SHOAL_DISCOVERY_DNS looks up. */
  get serviceDnsName(): string {
    return `${this.r.headless.metadata?.name}.${this.r.namespace}.svc.cluster.local`;
  }

  podDnsName(name: string): string {
    return `${name}.${this.serviceDnsName}`;
  }

  pod(ordinal: number): Pod {
    const p = this.pods.get(ordinal);
    if (!p) throw new Error(`no pod ${this.name}-${ordinal}`);
    return p;
  }

  url(ordinal: number): string {
    return `http://${this.pod(ordinal).address}:${this.port}`;
  }

  /** The client Service: a ready pod, in turn. */
  serviceUrl(): string {
    const ready = [...this.pods.values()].filter((p) => p.ready);
    const p = ready[this.next++ % Math.max(1, ready.length)];
    if (!p) throw new Error('the Service has no endpoints');
    return `http://${p.address}:${this.port}`;
  }

  /**
   * `kubectl scale statefulset --replicas=n` under podManagementPolicy Parallel: every missing
   * pod is created at once, every pod at or above n is deleted at once; returns when the new pods
   * are ready.
   */
  async scale(replicas: number): Promise<void> {
    const ordinals = [...this.pods.keys()];
    await Promise.all(ordinals.filter((o) => o >= replicas).map((o) => this.deletePod(o)));
    const missing = Array.from({ length: replicas }, (_, i) => i).filter((o) => !this.pods.has(o));
    await Promise.all(missing.map((o) => this.createPod(o)));
  }

  /**
   * `kubectl rollout restart`: highest ordinal first, one pod at a time; the next only once the
   * new pod is ready and has stayed ready for minReadySeconds.
   */
  async rollingRestart(afterEach?: (pod: Pod) => Promise<void>): Promise<void> {
    const minReady = (this.r.statefulSet.spec?.minReadySeconds ?? 0) * 1000;
    for (const ordinal of [...this.pods.keys()].sort((a, b) => b - a)) {
      await this.deletePod(ordinal);
      const pod = await this.createPod(ordinal);
      await sleep(minReady);
      await afterEach?.(pod);
    }
  }

  /** Creates pod `<name>-<ordinal>` on a free host and waits until its readiness probe passes. */
  async createPod(ordinal: number): Promise<Pod> {
    const name = `${this.name}-${ordinal}`;
    const host = this.freeHosts.shift();
    if (host === undefined) throw new Error('no free host for a pod');
    const mounts = this.r.podVolumes(name, this.root);
    const env = onHost(this.r.podEnv(name).env, mounts);
    const outer = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SHOAL_')));
    const logFile = join(this.root, `${name}.log`);
    const fd = openSync(logFile, 'a');
    const [command, ...prefix] = [...this.lab.wrap(host), process.execPath, CLI, 'node'];
    const proc = spawn(command!, prefix, { env: { ...outer, ...env }, stdio: ['ignore', fd, fd] });
    closeSync(fd);
    const pod: Pod = {
      name,
      ordinal,
      host,
      address: this.lab.address(host),
      proc,
      exit: new Promise((res) => proc.once('exit', (code) => res(code))),
      logFile,
      mounts,
      ready: false,
    };
    this.pods.set(ordinal, pod);
    if (this.r.headless.spec?.publishNotReadyAddresses) this.publishDns();
    const probe = this.r.container.readinessProbe?.httpGet;
    await waitFor(
      async () => {
        if (proc.exitCode !== null) throw new Error(`${name} exited with ${proc.exitCode}; see ${logFile}`);
        const res = await fetch(`http://${pod.address}:${this.port}${probe?.path ?? '/'}`, {
          signal: AbortSignal.timeout(2_000),
        }).catch(() => undefined);
        return res?.status === 200;
      },
      60_000,
      `${name} to be ready`,
    );
    pod.ready = true;
    this.publishDns();
    return pod;
  }

  /**
   * Deletes a pod as the kubelet does: out of the Services' endpoints, the preStop hook (a sleep),
   * SIGTERM, and SIGKILL if it is still running after terminationGracePeriodSeconds. Returns its
   * exit code. Its volume stays; its name leaves DNS and its host is free again.
   */
  async deletePod(ordinal: number): Promise<number | null> {
    const pod = this.pod(ordinal);
    pod.ready = false;
    const grace = (this.r.podSpec.terminationGracePeriodSeconds ?? 30) * 1000;
    const started = Date.now();
    await sleep((this.r.container.lifecycle?.preStop?.sleep?.seconds ?? 0) * 1000);
    pod.proc.kill('SIGTERM');
    const killer = setTimeout(() => pod.proc.kill('SIGKILL'), Math.max(0, grace - (Date.now() - started)));
    const code = await pod.exit;
    clearTimeout(killer);
    this.exits.push({ pod: pod.name, code });
    this.pods.delete(ordinal);
    this.freeHosts.push(pod.host);
    this.publishDns();
    return code;
  }

  /** `kubectl exec <pod> -- node dist/.../cli.js <args>`: runs the CLI on the pod's host. */
  exec(ordinal: number, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const [command, ...prefix] = [...this.lab.wrap(this.pod(ordinal).host), process.execPath, CLI, ...args];
    return new Promise((resolve) => {
      const child = spawn(command!, prefix, { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('exit', (code) => resolve({ code, stdout, stderr }));
    });
  }

  /**
   * `kubectl apply` of a changed Secret whose name does not change: the object is updated in
   * place and the kubelet swaps the files of every running pod that mounts it.
   */
  updateSecret(name: string, files: Record<string, string>): void {
    const secret = this.r.one<ISecret>('Secret', name);
    secret.data = Object.fromEntries(
      Object.entries(files).map(([k, v]) => [k, Buffer.from(v).toString('base64')]),
    );
    const volumes = (this.r.podSpec.volumes ?? []).filter((v) => v.secret?.secretName === name);
    for (const pod of this.pods.values()) {
      for (const m of pod.mounts) {
        if (volumes.some((v) => v.name === m.volume)) writeSecretVolume(m.hostPath, files);
      }
    }
  }

  /** Kills every pod (the end of a test). */
  async stopAll(): Promise<void> {
    for (const pod of this.pods.values()) pod.proc.kill('SIGKILL');
    await Promise.all([...this.pods.values()].map((p) => p.exit));
    this.pods.clear();
  }

  /** Cluster DNS as every host sees it: each pod's name, and the headless Service's addresses. */
  private publishDns(): void {
    const lines = ['127.0.0.1 localhost'];
    for (const p of this.pods.values()) {
      if (!p.ready && !this.r.headless.spec?.publishNotReadyAddresses) continue;
      lines.push(`${p.address} ${this.podDnsName(p.name)}`, `${p.address} ${this.serviceDnsName}`);
    }
    const hosts = lines.join('\n') + '\n';
    for (let i = 1; i <= this.lab.hosts; i++) {
      this.lab.setEtcFile(i, 'hosts', hosts);
      // No name server: names outside the cluster fail at once instead of timing out.
      this.lab.setEtcFile(i, 'resolv.conf', 'options timeout:1 attempts:1\n');
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
