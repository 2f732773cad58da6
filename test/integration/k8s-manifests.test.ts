import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import ts from 'typescript';
import { parseAllDocuments } from 'yaml';
import { StatefulSet, type IStatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import {
  PodDisruptionBudget,
  type IPodDisruptionBudget,
} from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ConfigMap, type IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace, type INamespace } from 'kubernetes-models/v1/Namespace';
import { Secret, type ISecret } from 'kubernetes-models/v1/Secret';
import { Service, type IService } from 'kubernetes-models/v1/Service';
import { NetworkPolicy, type INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { Agent, request as undiciRequest } from 'undici';
import { envName, NODE_FLAGS } from '../../services/storage-node/src/config';
import { INTERNAL_PREFIX } from '../../shared/protocol';
import { issueCert, makeCa, servedCertificate } from '../helpers/certs';
import { CLI, freePort, repoRoot } from '../helpers/cluster';
import {
  asResource,
  kustomize,
  kustomizeHash,
  onHost,
  podSpecOf,
  Rendering,
  writeSecretVolume,
  type Resource,
} from '../helpers/kustomize';

/**
 * The Kubernetes manifests in k8s/, checked without a cluster: rendered the way `kubectl apply -k`
 * renders them (a small kustomize, cross-checked against `kubectl kustomize` where kubectl is on
 * PATH), validated against the Kubernetes API schemas (kubernetes-models), and wired to the node:
 * every SHOAL_* variable is a flag, the pod environment is a valid config, the advertise URL and
 * discovery name are the headless Service's, ports, probes and the data mount agree, and a real
 * node configured exactly like a pod answers the probes.
 */

const ROOT = repoRoot();
/** What each rendering is deployed as: kubectl's namespace for the base, the overlay's own for dev. */
const RENDERINGS: Array<{ dir: string; namespace: string }> = [
  { dir: 'k8s', namespace: 'default' },
  { dir: 'k8s/overlays/dev', namespace: 'shoal-dev' },
  { dir: 'k8s/overlays/tls', namespace: 'shoal' },
];

// ---------------------------------------------------------------------------------------------
// Schemas: kubernetes-models' validators (the OpenAPI schemas of the Kubernetes API), plus the
// TypeScript interfaces of the same package for what the schemas allow silently: unknown fields,
// which the API server rejects (kubectl's default --validate=strict) and which are usually typos.

const MODELS: Record<string, { validate: (data: unknown) => void; type: [string, string] }> = {
  'v1/ConfigMap': {
    validate: (d) => new ConfigMap(d as IConfigMap).validate(),
    type: ['kubernetes-models/v1/ConfigMap', 'IConfigMap'],
  },
  'v1/Secret': {
    validate: (d) => new Secret(d as ISecret).validate(),
    type: ['kubernetes-models/v1/Secret', 'ISecret'],
  },
  'v1/Service': {
    validate: (d) => new Service(d as IService).validate(),
    type: ['kubernetes-models/v1/Service', 'IService'],
  },
  'v1/Namespace': {
    validate: (d) => new Namespace(d as INamespace).validate(),
    type: ['kubernetes-models/v1/Namespace', 'INamespace'],
  },
  'apps/v1/StatefulSet': {
    validate: (d) => new StatefulSet(d as IStatefulSet).validate(),
    type: ['kubernetes-models/apps/v1/StatefulSet', 'IStatefulSet'],
  },
  'networking.k8s.io/v1/NetworkPolicy': {
    validate: (d) => new NetworkPolicy(d as INetworkPolicy).validate(),
    type: ['kubernetes-models/networking.k8s.io/v1/NetworkPolicy', 'INetworkPolicy'],
  },
  'policy/v1/PodDisruptionBudget': {
    validate: (d) => new PodDisruptionBudget(d as IPodDisruptionBudget).validate(),
    type: ['kubernetes-models/policy/v1/PodDisruptionBudget', 'IPodDisruptionBudget'],
  },
};

/** cert-manager's kinds (the TLS overlay): not the Kubernetes API's, checked by certManagerProblems. */
const isCertManager = (res: Resource): boolean => res.apiVersion === 'cert-manager.io/v1';

function modelOf(res: Resource): (typeof MODELS)[string] {
  const model = MODELS[`${res.apiVersion}/${res.kind}`];
  if (!model) throw new Error(`no schema for ${res.apiVersion} ${res.kind}`);
  return model;
}

/**
 * Type-checks every object as an object literal of its API type: TypeScript's excess property
 * check reports each field the API does not define. Returns the messages per object label.
 */
function unknownFields(objects: Array<{ label: string; res: Resource }>): Map<string, string[]> {
  const file = join(ROOT, 'test/integration/__k8s_manifest_types__.ts');
  const imports = new Set<string>();
  const lines: string[] = [];
  objects.forEach(({ res }, i) => {
    const [module, type] = modelOf(res).type;
    imports.add(`import type { ${type} } from '${module}';`);
    lines.push(`export const o${i}: ${type} = ${JSON.stringify(res)};`);
  });
  const header = [...imports];
  const source = [...header, ...lines].join('\n');
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
    lib: ['lib.es2023.d.ts'],
    target: ts.ScriptTarget.ES2023,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, languageVersion, ...rest) =>
    resolve(name) === file
      ? ts.createSourceFile(name, source, languageVersion)
      : getSourceFile(name, languageVersion, ...rest);
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => resolve(name) === file || fileExists(name);
  const program = ts.createProgram([file], options, host);
  const errors = new Map<string, string[]>(objects.map(({ label }) => [label, []]));
  for (const d of ts.getPreEmitDiagnostics(program)) {
    const message = ts.flattenDiagnosticMessageText(d.messageText, '\n');
    const line = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line : -1;
    const label = objects[line - header.length]?.label;
    if (label === undefined) throw new Error(`type check of the manifests failed: ${message}`);
    errors.get(label)?.push(message);
  }
  return errors;
}

// ---------------------------------------------------------------------------------------------
// The pod as Kubernetes would start it.

const FLAG_VARIABLES = new Set<string>(NODE_FLAGS.map((f) => envName(f)));
const SHUTDOWN_GRACE_MS = (() => {
  const main = readFileSync(join(ROOT, 'services/storage-node/src/main.ts'), 'utf8');
  const m = /SHUTDOWN_GRACE_MS = ([\d_]+)/.exec(main);
  if (!m?.[1]) throw new Error('SHUTDOWN_GRACE_MS not found in main.ts: update this test');
  return Number(m[1].replace(/_/g, ''));
})();

function selects(selector: Record<string, string> | undefined, labels: Record<string, string> | undefined) {
  return (
    selector !== undefined &&
    Object.keys(selector).length > 0 &&
    Object.entries(selector).every(([k, v]) => labels?.[k] === v)
  );
}

/** The Docker-link variables the kubelet injects for a Service when service links are on. */
function serviceLinkVariables(service: IService): string[] {
  const prefix = (service.metadata?.name ?? '').toUpperCase().replace(/-/g, '_');
  const names = [`${prefix}_SERVICE_HOST`, `${prefix}_SERVICE_PORT`, `${prefix}_PORT`];
  for (const p of service.spec?.ports ?? []) {
    const proto = (p.protocol ?? 'TCP').toUpperCase();
    const base = `${prefix}_PORT_${p.port}_${proto}`;
    names.push(base, `${base}_PROTO`, `${base}_PORT`, `${base}_ADDR`);
    if (p.name) names.push(`${prefix}_SERVICE_PORT_${p.name.toUpperCase().replace(/-/g, '_')}`);
  }
  return names;
}

function dockerfileUser(): { uid: number; gid: number } {
  const users = [
    ...readFileSync(join(ROOT, 'Dockerfile'), 'utf8').matchAll(/^USER\s+(\d+)(?::(\d+))?\s*$/gm),
  ];
  const last = users[users.length - 1];
  if (!last?.[1]) throw new Error('the Dockerfile has no numeric USER');
  return { uid: Number(last[1]), gid: Number(last[2] ?? last[1]) };
}

const hasKubectl = spawnSync('kubectl', ['version', '--client'], { stdio: 'ignore' }).status === 0;

// ---------------------------------------------------------------------------------------------

describe('the kustomize renderer used by these tests', () => {
  it('renders k8s/ as the base', () => {
    expect(kustomize('k8s')).toEqual(kustomize('k8s/base'));
  });

  it('names generated objects with the same content hash as kustomize', () => {
    // The names `kubectl kustomize` (kustomize v5.5) gives ConfigMaps generated from A=1 and from
    // A=1, B=<&> (Go's JSON escapes <, & and >), and a Secret generated from K=v<&>.
    const cm: Resource = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c' }, data: { A: '1' } };
    const html: Resource = { ...cm, data: { A: '1', B: '<&>' } };
    const secret: Resource = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 's' },
      type: 'Opaque',
      data: { K: Buffer.from('v<&>').toString('base64') },
    };
    expect(kustomizeHash(cm)).toBe('89g4tffbfk');
    expect(kustomizeHash(html)).toBe('6mggc5fd49');
    expect(kustomizeHash(secret)).toBe('kk8bk6k466');
  });

  it('refuses kustomization fields it does not implement', () => {
    const dir = mkdtempSync(join(tmpdir(), 'shoal-kustomize-'));
    try {
      writeFileSync(
        join(dir, 'kustomization.yaml'),
        'resources: []\nreplicas:\n  - name: shoal\n    count: 5\n',
      );
      expect(() => kustomize(dir)).toThrow(/replicas: not implemented/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  (hasKubectl ? it.each(RENDERINGS) : it.skip.each(RENDERINGS))(
    'renders $dir exactly as `kubectl kustomize` does',
    ({ dir }) => {
      const out = spawnSync('kubectl', ['kustomize', join(ROOT, dir)], { encoding: 'utf8' });
      expect(out.stderr).toBe('');
      expect(out.status).toBe(0);
      const key = (o: Resource) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;
      const byKey = (objects: Resource[]) => Object.fromEntries(objects.map((o) => [key(o), o]));
      const theirs = parseAllDocuments(out.stdout).map((d) => asResource(d.toJS(), 'kubectl kustomize'));
      // kubectl folds long base64 values over several lines; the value is the same.
      for (const o of theirs) {
        if (o.kind !== 'Secret') continue;
        const data = o.data as Record<string, string>;
        for (const k of Object.keys(data)) data[k] = (data[k] ?? '').replace(/\s+/g, '');
      }
      expect(byKey(kustomize(dir))).toEqual(byKey(theirs));
    },
  );
});

describe.each(RENDERINGS)('$dir', ({ dir, namespace }) => {
  const r = new Rendering(kustomize(dir), namespace);
  const flagFor = (name: string) => NODE_FLAGS.find((f) => envName(f) === name);

  it('holds a StatefulSet, both Services, the ConfigMap, the Secrets, a PodDisruptionBudget and a NetworkPolicy', () => {
    expect(r.all('StatefulSet')).toHaveLength(1);
    expect(r.all('Service')).toHaveLength(2);
    expect(r.all('ConfigMap')).toHaveLength(1);
    expect(r.all('Secret')).toHaveLength(2);
    expect(r.all('PodDisruptionBudget')).toHaveLength(1);
    expect(r.all('NetworkPolicy')).toHaveLength(1);
  });

  it('passes the Kubernetes API schemas', () => {
    for (const o of r.objects.filter((x) => !isCertManager(x))) {
      expect(() => modelOf(o).validate(o)).not.toThrow();
    }
  });

  it('uses no field the Kubernetes API does not define', () => {
    const objects = r.objects
      .filter((x) => !isCertManager(x))
      .map((res) => ({ label: `${res.kind}/${res.metadata.name}`, res }));
    // A control: a misspelt probe must be reported, or this check proves nothing.
    const typo = structuredClone(r.statefulSet) as unknown as Resource;
    const spec = podSpecOf(typo);
    const c = spec?.containers[0] as unknown as Record<string, unknown>;
    c.livenesProbe = c.livenessProbe;
    delete c.livenessProbe;
    const errors = unknownFields([...objects, { label: 'typo', res: typo }]);
    expect(errors.get('typo')?.join('\n')).toMatch(/livenesProbe/);
    errors.delete('typo');
    expect(Object.fromEntries(errors)).toEqual(Object.fromEntries(objects.map((o) => [o.label, []])));
  });

  it('is rejected by the schema check when broken (the check is live)', () => {
    const broken = structuredClone(r.statefulSet) as unknown as Resource;
    (podSpecOf(broken)?.containers[0]?.ports ?? [])[0] = { containerPort: 'http' as unknown as number };
    expect(() => modelOf(broken).validate(broken)).toThrow(/containerPort/);
  });

  it('gives each pod its own volume, starts pods in parallel and mounts the volume at SHOAL_DATA_DIR', () => {
    const spec = r.statefulSet.spec;
    expect(spec?.podManagementPolicy).toBe('Parallel');
    const claims = (spec?.volumeClaimTemplates ?? []).map((t) => t.metadata?.name);
    expect(claims).toHaveLength(1);
    expect(claims[0]).toEqual(expect.any(String));
    // The claim, not a pod volume of the same name, backs the mount.
    expect((r.podSpec.volumes ?? []).map((v) => v.name)).not.toContain(claims[0]);
    const mount = (r.container.volumeMounts ?? []).find((m) => m.name === claims[0]);
    for (const pod of r.podNames()) expect(mount?.mountPath).toBe(r.config(pod).dataDir);
  });

  it('sets only SHOAL_* variables that are flags of `shoal node`, and helpers it uses', () => {
    const [pod] = r.podNames();
    const { env, referenced, sourced } = r.podEnv(pod as string);
    const unknown = Object.keys(env).filter((name) =>
      name.startsWith('SHOAL_') ? flagFor(name) === undefined : !referenced.has(name),
    );
    expect(unknown).toEqual([]);
    // ConfigMap and Secret keys become variables as they are: each must be a flag.
    expect(sourced.filter((name) => flagFor(name) === undefined)).toEqual([]);
    expect(Object.keys(env)).toEqual(
      expect.arrayContaining([
        'SHOAL_CLUSTER_SECRET_FILE',
        'SHOAL_NODE_ID',
        'SHOAL_ADVERTISE_URL',
        'SHOAL_DISCOVERY_DNS',
      ]),
    );
  });

  /**
   * A file the node re-reads, from a Secret mounted read-only and updated in place: not
   * name-hashed (kustomize's disableNameSuffixHash), since a new name would roll every pod where
   * an update in place reaches the running pods' files. Readable by the node (fsGroup), by no one
   * else. Returns the Secret's name.
   */
  function mountedSecretFile(file: string | undefined): string {
    expect(file).toEqual(expect.stringMatching(/^\//));
    const mount = (r.container.volumeMounts ?? []).find((m) => file?.startsWith(`${m.mountPath}/`));
    expect(mount?.readOnly).toBe(true);
    const volume = (r.podSpec.volumes ?? []).find((v) => v.name === mount?.name);
    const secretName = volume?.secret?.secretName ?? '';
    const key = file?.slice((mount?.mountPath.length ?? 0) + 1) ?? '';
    expect(Object.keys(r.secretData(secretName))).toContain(key);
    expect(r.one<ISecret>('Secret', secretName).metadata?.name).toBe(secretName);
    expect(volume?.secret?.defaultMode).toBe(0o440);
    return secretName;
  }

  it('reads the API keys from a mounted Secret that an apply updates in place', () => {
    const [pod] = r.podNames();
    const { env } = r.podEnv(pod as string);
    // Keys only from the file: a key in the environment could not be revoked without a restart.
    expect(env.SHOAL_API_KEYS).toBeUndefined();
    expect(mountedSecretFile(r.config(pod as string).apiKeysFile)).toBe('shoal-api-keys');
  });

  it('reads the cluster secret from a mounted Secret too, so that it rotates without a restart', () => {
    const [pod] = r.podNames();
    const { env } = r.podEnv(pod as string);
    // Never a variable: `kubectl describe` and every process of the pod can read those.
    expect(env.SHOAL_CLUSTER_SECRET).toBeUndefined();
    expect(mountedSecretFile(env.SHOAL_CLUSTER_SECRET_FILE)).toBe('shoal-cluster-secret');
  });

  it('configures every pod validly, with the pod name as node id', () => {
    for (const pod of r.podNames()) {
      const config = r.config(pod);
      expect(config.nodeId).toBe(pod);
      expect(config.insecure).toBe(false);
      expect(config.writeQuorum).toBeLessThanOrEqual(config.replicas);
      expect(r.statefulSet.spec?.replicas).toBeGreaterThanOrEqual(config.replicas);
    }
  });

  it("advertises each pod's stable DNS name under the StatefulSet's headless Service", () => {
    const headless = r.headless;
    expect(headless.spec?.clusterIP).toBe('None');
    expect(headless.spec?.publishNotReadyAddresses).toBe(true);
    for (const pod of r.podNames()) {
      const config = r.config(pod);
      const url = new URL(config.advertiseUrl);
      expect(url.hostname).toBe(`${pod}.${headless.metadata?.name}.${namespace}.svc.cluster.local`);
      expect(Number(url.port || 80)).toBe(config.port);
    }
  });

  it('discovers peers through the headless Service', () => {
    for (const pod of r.podNames()) {
      expect(r.config(pod).discoveryDns).toBe(`${r.headless.metadata?.name}.${namespace}.svc.cluster.local`);
    }
  });

  it('listens on all interfaces at the ports the container, probes and Services use', () => {
    const config = r.config(r.podNames()[0] as string);
    expect(['0.0.0.0', '::']).toContain(config.host);
    expect(r.container.ports?.map((p) => p.containerPort)).toEqual([
      config.port,
      config.internalPort,
      config.s3Port,
    ]);
    const c = r.container;
    for (const probe of [c.startupProbe, c.livenessProbe, c.readinessProbe]) {
      expect(r.containerPort(probe?.httpGet?.port)).toBe(config.port);
      // The kubelet speaks the scheme the node serves (it does not check the certificate).
      expect(probe?.httpGet?.scheme ?? 'HTTP').toBe(config.tls ? 'HTTPS' : 'HTTP');
    }
    for (const service of r.all<IService>('Service')) {
      expect(selects(service.spec?.selector, r.statefulSet.spec?.template.metadata?.labels)).toBe(true);
      const targets = (service.spec?.ports ?? []).map((p) => r.containerPort(p.targetPort ?? p.port));
      // Clients get the public port and S3; the headless Service names the internal port too.
      expect(targets).toEqual(
        service === r.headless ? [config.port, config.internalPort] : [config.port, config.s3Port],
      );
    }
  });

  it("opens the node-to-node port to the StatefulSet's own pods only, and peers reach each other there", () => {
    const labels = r.statefulSet.spec?.template.metadata?.labels;
    const config = r.config(r.podNames()[0] as string);
    expect(config.internalPort).toEqual(expect.any(Number));
    expect(new URL(config.peerUrl).port).toBe(String(config.internalPort));
    const policy = r.one<INetworkPolicy>('NetworkPolicy').spec;
    expect(selects(policy?.podSelector?.matchLabels, labels)).toBe(true);
    expect(policy?.policyTypes).toEqual(['Ingress']);
    const rules = policy?.ingress ?? [];
    const admitting = (port: number) =>
      rules.filter((rule) => (rule.ports ?? []).some((p) => r.containerPort(p.port) === port));
    // The public port and S3: anyone (no `from`). The internal port: one rule, from these pods only.
    expect(admitting(config.port).map((rule) => rule.from)).toEqual([undefined]);
    expect(config.s3Port).toBe(7200);
    expect(admitting(config.s3Port).map((rule) => rule.from)).toEqual([undefined]);
    const internal = admitting(config.internalPort as number);
    expect(internal).toHaveLength(1);
    expect(internal[0]?.from).toHaveLength(1);
    expect(internal[0]?.from?.[0]?.namespaceSelector).toBeUndefined();
    expect(selects(internal[0]?.from?.[0]?.podSelector?.matchLabels, labels)).toBe(true);
  });

  it('probes liveness on /healthz and readiness on /readyz', () => {
    const c = r.container;
    expect(c.startupProbe?.httpGet?.path).toBe('/healthz');
    expect(c.livenessProbe?.httpGet?.path).toBe('/healthz');
    expect(c.readinessProbe?.httpGet?.path).toBe('/readyz');
  });

  it('selects its own pods in every selector', () => {
    const labels = r.statefulSet.spec?.template.metadata?.labels;
    const sts = r.statefulSet.spec;
    expect(selects(sts?.selector.matchLabels, labels)).toBe(true);
    expect(
      selects(r.one<IPodDisruptionBudget>('PodDisruptionBudget').spec?.selector?.matchLabels, labels),
    ).toBe(true);
    const anti = r.podSpec.affinity?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution ?? [];
    expect(anti.map((t) => t.podAffinityTerm.topologyKey)).toEqual(['kubernetes.io/hostname']);
    expect(anti.every((t) => selects(t.podAffinityTerm.labelSelector?.matchLabels, labels))).toBe(true);
    const spread = r.podSpec.topologySpreadConstraints ?? [];
    expect(spread.map((s) => s.topologyKey)).toEqual(['topology.kubernetes.io/zone']);
    expect(spread.every((s) => selects(s.labelSelector?.matchLabels, labels))).toBe(true);
  });

  it("pauses before SIGTERM while endpoints drop the pod, and then allows the node's shutdown grace", () => {
    const seconds = r.podSpec.terminationGracePeriodSeconds ?? 30;
    const preStop = (r.container.lifecycle?.preStop?.sleep?.seconds ?? 0) * 1000;
    expect(preStop).toBeGreaterThan(0);
    expect(seconds * 1000).toBeGreaterThanOrEqual(preStop + SHUTDOWN_GRACE_MS + 5_000);
  });

  it('keeps Service links from shadowing SHOAL_* variables', () => {
    const clashes = r
      .all<IService>('Service')
      .flatMap(serviceLinkVariables)
      .filter((name) => FLAG_VARIABLES.has(name));
    // A Service named "shoal" clashes (SHOAL_PORT=tcp://...): links must be off.
    if (clashes.length > 0) expect(r.podSpec.enableServiceLinks).toBe(false);
  });

  it("runs as the image's non-root user, through the image's entrypoint, able to write its volume", () => {
    const { uid, gid } = dockerfileUser();
    const security = r.podSpec.securityContext;
    expect(uid).toBeGreaterThan(0);
    expect(security?.runAsNonRoot).toBe(true);
    expect(security?.runAsUser).toBe(uid);
    expect(security?.fsGroup).toBe(gid);
    // A command would replace the image's ENTRYPOINT, and tini with it.
    expect(r.container.command).toBeUndefined();
    expect(r.container.args).toBeUndefined();
  });

  it('gives the pods no Kubernetes API token: a node finds its peers through DNS and never calls the API', () => {
    expect(r.podSpec.automountServiceAccountToken).toBe(false);
  });

  it('requests and limits resources, and lets one pod be disrupted at a time', () => {
    const resources = r.container.resources;
    for (const key of ['cpu', 'memory']) {
      expect(resources?.requests?.[key]).toBeDefined();
      expect(resources?.limits?.[key]).toBeDefined();
    }
    expect(r.one<IPodDisruptionBudget>('PodDisruptionBudget').spec?.maxUnavailable).toBe(1);
  });
});

describe('a node configured exactly like pod shoal-0', () => {
  it('refuses to start with the placeholder cluster secret the manifests ship', () => {
    const r = new Rendering(kustomize('k8s'), 'default');
    const pod = r.podNames()[0] as string;
    const root = mkdtempSync(join(tmpdir(), 'shoal-k8s-pod-'));
    try {
      const env = onHost(r.podEnv(pod).env, r.podVolumes(pod, root));
      Object.assign(env, { SHOAL_HOST: '127.0.0.1', SHOAL_PORT: '0' });
      const outer = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SHOAL_')));
      const run = spawnSync(process.execPath, [CLI, 'node'], { env: { ...outer, ...env }, encoding: 'utf8' });
      expect(run.status).not.toBe(0);
      expect(run.stderr).toMatch(/--cluster-secret-file \S+: line 1 is a placeholder/);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('with its secrets replaced, answers the probes without an API key while the API needs one, and stops on SIGTERM', async () => {
    if (!statSync(CLI, { throwIfNoEntry: false })) throw new Error(`${CLI} is missing: npm run build`);
    const r = new Rendering(kustomize('k8s'), 'default');
    const pod = r.podNames()[0] as string;
    const port = await freePort();
    const root = mkdtempSync(join(tmpdir(), 'shoal-k8s-pod-'));
    // Only what cannot exist on this machine changes: the address, and the volumes' paths. The
    // cluster DNS name cannot be looked up here either. And the secrets, as docs/kubernetes.md says.
    const secret = { 'shoal-cluster-secret': { secret: `${randomBytes(32).toString('hex')}\n` } };
    const env = onHost(r.podEnv(pod).env, r.podVolumes(pod, root, secret));
    Object.assign(env, {
      SHOAL_HOST: '127.0.0.1',
      SHOAL_PORT: String(port),
      SHOAL_ADVERTISE_URL: `http://127.0.0.1:${port}`,
    });
    delete env.SHOAL_DISCOVERY_DNS;
    const keysFile = env.SHOAL_API_KEYS_FILE as string;
    const placeholderKeys = readFileSync(keysFile, 'utf8');
    const realKey = randomBytes(16).toString('hex');
    // The mount is read-only for the node (0440): replaced, not written through.
    rmSync(keysFile);
    writeFileSync(keysFile, `${placeholderKeys}${realKey}\n`);
    const outer = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SHOAL_')));
    const child = spawn(process.execPath, [CLI, 'node'], { env: { ...outer, ...env }, stdio: 'ignore' });
    const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
    const get = async (path: string) => (await fetch(`http://127.0.0.1:${port}${path}`)).status;
    try {
      const c = r.container;
      const deadline = Date.now() + 30_000;
      while ((await get(c.readinessProbe?.httpGet?.path ?? '/').catch(() => 0)) !== 200) {
        if (Date.now() > deadline) throw new Error('the node never turned ready');
        await new Promise((res) => setTimeout(res, 200));
      }
      expect(await get(c.startupProbe?.httpGet?.path ?? '/')).toBe(200);
      expect(await get(c.livenessProbe?.httpGet?.path ?? '/')).toBe(200);
      expect(await get('/cluster')).toBe(401);
      const as = async (key: string) =>
        (await fetch(`http://127.0.0.1:${port}/cluster`, { headers: { authorization: `Bearer ${key}` } }))
          .status;
      expect(await as(realKey)).toBe(200);
      // The placeholder key from k8s/base/api-keys.txt opens nothing; nor do its comment lines.
      expect(placeholderKeys).toContain('CHANGE-ME-placeholder-api-key');
      expect(await as('CHANGE-ME-placeholder-api-key')).toBe(401);
      expect(await as(placeholderKeys.split('\n')[0] ?? '')).toBe(401);
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      child.kill('SIGKILL');
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('k8s/overlays/tls', () => {
  const r = new Rendering(kustomize('k8s/overlays/tls'), 'shoal');
  const certificate = (name: string): CertManagerObject => r.one<CertManagerObject>('Certificate', name);
  const issuer = (name: string): CertManagerObject => r.one<CertManagerObject>('Issuer', name);

  it("signs the nodes' certificate with a CA of the cluster's own, which cert-manager makes", () => {
    const node = certificate('shoal-tls').spec;
    expect(node.issuerRef).toEqual({ kind: 'Issuer', name: 'shoal-ca' });
    const caSecret = issuer('shoal-ca').spec.ca?.secretName;
    const ca = r.all<CertManagerObject>('Certificate').find((c) => c.spec.secretName === caSecret);
    expect(ca?.spec.isCA).toBe(true);
    expect(issuer(ca?.spec.issuerRef?.name ?? '').spec.selfSigned).toEqual({});
    // One certificate serves clients and peers, and is presented to peers (mutual TLS).
    expect(node.usages).toEqual(expect.arrayContaining(['server auth', 'client auth']));
  });

  it("names every pod's advertised host and the client Service", () => {
    const names = certificate('shoal-tls').spec.dnsNames ?? [];
    const covered = (host: string) =>
      names.some(
        (n) => n === host || (n.startsWith('*.') && host.slice(host.indexOf('.') + 1) === n.slice(2)),
      );
    for (const pod of r.podNames()) expect(covered(new URL(r.config(pod).advertiseUrl).hostname)).toBe(true);
    const service = r.all<IService>('Service').find((s) => s !== r.headless)?.metadata?.name ?? '';
    expect(covered(`${service}.shoal.svc.cluster.local`)).toBe(true);
    expect(covered(`${service}.shoal.svc`)).toBe(true);
  });

  it('mounts that certificate where the node reads it, with the CA, and turns on mutual TLS', () => {
    const config = r.config(r.podNames()[0] as string);
    expect(config.advertiseUrl).toMatch(/^https:/);
    expect(config.tls?.mutual).toBe(true);
    const secretName = certificate('shoal-tls').spec.secretName;
    for (const file of [config.tls?.certFile, config.tls?.keyFile, config.tls?.caFile]) {
      const mount = (r.container.volumeMounts ?? []).find((m) => file?.startsWith(`${m.mountPath}/`));
      expect(mount?.readOnly).toBe(true);
      const volume = (r.podSpec.volumes ?? []).find((v) => v.name === mount?.name);
      expect(volume?.secret?.secretName).toBe(secretName);
      // The keys cert-manager writes into a Certificate's Secret.
      expect(['tls.crt', 'tls.key', 'ca.crt']).toContain(file?.slice((mount?.mountPath.length ?? 0) + 1));
    }
  });

  it('runs a node like pod shoal-0: HTTPS probes answer, the internal port wants a node certificate, a renewal is picked up', async () => {
    if (!statSync(CLI, { throwIfNoEntry: false })) throw new Error(`${CLI} is missing: npm run build`);
    const pod = r.podNames()[0] as string;
    const [port, internalPort] = [await freePort(), await freePort()];
    const root = mkdtempSync(join(tmpdir(), 'shoal-k8s-tls-'));
    const ca = makeCa();
    const secretOf = (c: { cert: string; key: string }) => ({
      'tls.crt': readFileSync(c.cert, 'utf8'),
      'tls.key': readFileSync(c.key, 'utf8'),
      'ca.crt': readFileSync(ca.caCert, 'utf8'),
    });
    const secretName = certificate('shoal-tls').spec.secretName ?? '';
    const mounts = r.podVolumes(pod, root, {
      [secretName]: secretOf(issueCert(ca, 'shoal')),
      'shoal-cluster-secret': { secret: randomBytes(32).toString('hex') },
    });
    const env = onHost(r.podEnv(pod).env, mounts);
    Object.assign(env, {
      SHOAL_HOST: '127.0.0.1',
      SHOAL_PORT: String(port),
      SHOAL_INTERNAL_PORT: String(internalPort),
      SHOAL_ADVERTISE_URL: `https://127.0.0.1:${port}`,
    });
    delete env.SHOAL_DISCOVERY_DNS;
    const outer = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SHOAL_')));
    const child = spawn(process.execPath, [CLI, 'node'], { env: { ...outer, ...env }, stdio: 'ignore' });
    const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
    const agent = new Agent({ connect: { ca: readFileSync(ca.caCert) } });
    const get = async (p: number, path: string) =>
      (await undiciRequest(`https://127.0.0.1:${p}${path}`, { dispatcher: agent })).statusCode;
    try {
      const c = r.container;
      const deadline = Date.now() + 30_000;
      while ((await get(port, c.readinessProbe?.httpGet?.path ?? '/').catch(() => 0)) !== 200) {
        if (Date.now() > deadline) throw new Error('the node never turned ready');
        await new Promise((res) => setTimeout(res, 200));
      }
      expect(await get(port, c.livenessProbe?.httpGet?.path ?? '/')).toBe(200);
      expect(await get(internalPort, `${INTERNAL_PREFIX}/status`)).toBe(401);

      // cert-manager renews: the kubelet swaps the Secret's files under the running pod.
      const serial = async () => (await servedCertificate(port, ca.caCert)).serialNumber;
      const before = await serial();
      writeSecretVolume(mounts.find((m) => m.volume === 'tls')!.hostPath, secretOf(issueCert(ca, 'shoal')));
      const renewedBy = Date.now() + 15_000;
      while ((await serial()) === before) {
        if (Date.now() > renewedBy) throw new Error('the renewed certificate was never served');
        await new Promise((res) => setTimeout(res, 200));
      }
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      child.kill('SIGKILL');
      await agent.close();
      rmSync(root, { recursive: true, force: true });
    }
  });
});

/** The fields of cert-manager's Issuer and Certificate these manifests use. */
interface CertManagerObject {
  spec: {
    secretName?: string;
    isCA?: boolean;
    dnsNames?: string[];
    usages?: string[];
    issuerRef?: { kind: string; name: string };
    ca?: { secretName: string };
    selfSigned?: Record<string, never>;
  };
}
