import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { basename, join, relative, resolve } from 'node:path';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import type { IStatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import type { IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import type { ISecret } from 'kubernetes-models/v1/Secret';
import type { IService } from 'kubernetes-models/v1/Service';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IPodSpec } from 'kubernetes-models/v1/PodSpec';
import { parseConfig, type Config } from '../../services/storage-node/src/config';
import { repoRoot } from './cluster';

/**
 * The Kubernetes manifests in k8s/ as `kubectl apply -k` renders them, and the pods as the kubelet
 * would start them, without a cluster: used by test/integration/k8s-manifests.test.ts (schemas and
 * wiring) and test/chaos/kubernetes.test.ts (real nodes configured exactly like pods).
 */

const ROOT = repoRoot();

// ---------------------------------------------------------------------------------------------
// A small kustomize: exactly the features k8s/ uses, and an error for any other field, so the
// renderer can never silently ignore something `kubectl apply -k` would apply.

interface Metadata {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  [key: string]: unknown;
}
export interface Resource {
  apiVersion: string;
  kind: string;
  metadata: Metadata;
  [key: string]: unknown;
}
interface Item {
  res: Resource;
  /** Made by a configMapGenerator/secretGenerator and hashed: its name gets a content hash at the end. */
  generated: boolean;
}
type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const SUPPORTED_FIELDS = new Set([
  'apiVersion',
  'kind',
  'resources',
  'namespace',
  'labels',
  'configMapGenerator',
  'secretGenerator',
  'patches',
  'images',
]);
/** Kinds k8s/ may contain, and whether the namespace transformer sets their namespace. */
const KIND_SCOPE: Record<string, 'namespaced' | 'cluster'> = {
  ConfigMap: 'namespaced',
  Secret: 'namespaced',
  Service: 'namespaced',
  StatefulSet: 'namespaced',
  PodDisruptionBudget: 'namespaced',
  NetworkPolicy: 'namespaced',
  Namespace: 'cluster',
  // cert-manager's, in the TLS overlay.
  Issuer: 'namespaced',
  Certificate: 'namespaced',
};

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function readYamlDocs(file: string): unknown[] {
  return parseAllDocuments(readFileSync(file, 'utf8'))
    .map((doc) => {
      if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0]?.message}`);
      return doc.toJS() as unknown;
    })
    .filter((doc) => doc !== null && doc !== undefined);
}

export function asResource(doc: unknown, where: string): Resource {
  if (
    !isObject(doc) ||
    typeof doc.apiVersion !== 'string' ||
    typeof doc.kind !== 'string' ||
    !isObject(doc.metadata) ||
    typeof doc.metadata.name !== 'string'
  ) {
    throw new Error(`${where}: not a Kubernetes object with apiVersion, kind and metadata.name`);
  }
  if (!(doc.kind in KIND_SCOPE)) throw new Error(`${where}: kind ${doc.kind} is not known to this renderer`);
  return doc as Resource;
}

/** Renders a kustomization directory into the objects `kubectl apply -k DIR` would send. */
export function kustomize(dir: string): Resource[] {
  const items = build(resolve(ROOT, dir));
  const renamed = new Map<string, string>();
  for (const { res, generated } of items) {
    if (!generated) continue;
    const hashed = `${res.metadata.name}-${kustomizeHash(res)}`;
    renamed.set(`${res.kind}/${res.metadata.name}`, hashed);
    res.metadata.name = hashed;
  }
  for (const { res } of items) rewriteReferences(res, renamed);
  return items.map((i) => i.res);
}

function build(dir: string): Item[] {
  const file = join(dir, 'kustomization.yaml');
  const k = readYamlDocs(file)[0];
  if (!isObject(k)) throw new Error(`${file} is empty`);
  const unsupported = Object.keys(k).filter((key) => !SUPPORTED_FIELDS.has(key));
  if (unsupported.length > 0) {
    throw new Error(
      `${relative(ROOT, file)} uses ${unsupported.join(', ')}: not implemented by the renderer in ` +
        'test/helpers/kustomize.ts; implement it there too',
    );
  }
  const items: Item[] = [];
  for (const entry of list(k.resources)) {
    const path = resolve(dir, String(entry));
    if (statSync(path).isDirectory()) items.push(...build(path));
    else
      for (const doc of readYamlDocs(path))
        items.push({ res: asResource(doc, relative(ROOT, path)), generated: false });
  }
  for (const g of list(k.configMapGenerator)) generate('ConfigMap', g, dir, items);
  for (const g of list(k.secretGenerator)) generate('Secret', g, dir, items);
  for (const p of list(k.patches)) applyPatch(p, items);
  if (typeof k.namespace === 'string') setNamespace(k.namespace, items);
  for (const l of list(k.labels)) addLabels(l, items);
  for (const i of list(k.images)) setImage(i, items);

  const seen = new Set<string>();
  for (const { res } of items) {
    const key = `${res.kind}/${res.metadata.namespace ?? ''}/${res.metadata.name}`;
    if (seen.has(key)) throw new Error(`${relative(ROOT, dir)}: ${key} is defined twice`);
    seen.add(key);
  }
  return items;
}

function list(v: unknown): unknown[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw new Error(`expected a list, got ${JSON.stringify(v)}`);
  return v;
}

function onlyKeys(obj: Record<string, unknown>, allowed: string[], what: string): void {
  const extra = Object.keys(obj).filter((key) => !allowed.includes(key));
  if (extra.length > 0) throw new Error(`${what}: ${extra.join(', ')} not implemented by this renderer`);
}

/** Key=value lines; blank lines and # comments skipped (kustomize's env file format). */
function parseEnvLines(lines: string[], where: string): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  for (const raw of lines) {
    const line = raw.replace(/^\s+/, '');
    if (line === '' || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) throw new Error(`${where}: "${line}" is not KEY=value`);
    const key = line.slice(0, eq);
    if (!/^[-._a-zA-Z0-9]+$/.test(key)) throw new Error(`${where}: ${key} is not a valid key`);
    const value = line.slice(eq + 1);
    if (/^["']/.test(value)) throw new Error(`${where}: quoted values are not implemented by this renderer`);
    pairs.push([key, value]);
  }
  return pairs;
}

function generate(kind: 'ConfigMap' | 'Secret', g: unknown, dir: string, items: Item[]): void {
  if (!isObject(g) || typeof g.name !== 'string') throw new Error(`${kind} generator without a name`);
  onlyKeys(
    g,
    ['name', 'behavior', 'envs', 'files', 'literals', 'type', 'options'],
    `${kind} generator ${g.name}`,
  );
  let hashed = true;
  if (g.options !== undefined) {
    if (!isObject(g.options)) throw new Error(`${kind} generator ${g.name}: options is not a map`);
    onlyKeys(g.options, ['disableNameSuffixHash'], `${kind} generator ${g.name} options`);
    hashed = g.options.disableNameSuffixHash !== true;
  }
  const data: Record<string, string> = {};
  for (const env of list(g.envs)) {
    const path = resolve(dir, String(env));
    for (const [key, value] of parseEnvLines(readFileSync(path, 'utf8').split(/\r?\n/), path)) {
      data[key] = value;
    }
  }
  // `key=path` or `path` (the key is then the file's base name); the whole file is the value.
  for (const entry of list(g.files).map(String)) {
    const eq = entry.indexOf('=');
    const path = resolve(dir, eq < 0 ? entry : entry.slice(eq + 1));
    const key = eq < 0 ? basename(path) : entry.slice(0, eq);
    if (!/^[-._a-zA-Z0-9]+$/.test(key)) throw new Error(`${g.name} files: ${key} is not a valid key`);
    data[key] = readFileSync(path, 'utf8');
  }
  for (const [key, value] of parseEnvLines(list(g.literals).map(String), `${g.name} literals`)) {
    data[key] = value;
  }
  const encoded =
    kind === 'Secret'
      ? Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')]))
      : data;
  const behavior = g.behavior ?? 'create';
  if (behavior === 'create') {
    const res: Resource = { apiVersion: 'v1', kind, metadata: { name: g.name }, data: encoded };
    if (kind === 'Secret') res.type = typeof g.type === 'string' ? g.type : 'Opaque';
    items.push({ res, generated: hashed });
    return;
  }
  const existing = items.find((i) => i.res.kind === kind && i.res.metadata.name === g.name);
  if (!existing) throw new Error(`${kind} generator ${g.name}: behavior ${String(behavior)} but no base`);
  if (behavior === 'merge') existing.res.data = { ...(existing.res.data as object), ...encoded };
  else if (behavior === 'replace') existing.res.data = encoded;
  else throw new Error(`${kind} generator ${g.name}: behavior ${String(behavior)} not implemented`);
}

/**
 * kustomize's name suffix: sha256 of Go's JSON of {data, kind, name, type (Secrets)}, 10 characters
 * with some swapped. kustomize v5 hashes before it names the object, so `name` is always empty.
 */
export function kustomizeHash(res: Resource): string {
  const subject: Record<string, Json> = { kind: res.kind, name: '', data: res.data as Json };
  if (res.kind === 'Secret') subject.type = res.type as Json;
  const hex = createHash('sha256').update(goJson(subject)).digest('hex');
  const swap: Record<string, string> = { '0': 'g', '1': 'h', '3': 'k', a: 'm', e: 't' };
  return [...hex.slice(0, 10)].map((c) => swap[c] ?? c).join('');
}

/** encoding/json.Marshal: map keys sorted, <, > and & escaped as in Go. */
function goJson(v: Json): string {
  if (Array.isArray(v)) return `[${v.map(goJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const keys = Object.keys(v).sort();
    return `{${keys.map((k) => `${goJson(k)}:${goJson(v[k] as Json)}`).join(',')}}`;
  }
  return JSON.stringify(v)
    .replace(/</g, '\\u003c')
    .replace(/>/g, '\\u003e')
    .replace(/&/g, '\\u0026')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

function applyPatch(p: unknown, items: Item[]): void {
  if (!isObject(p) || !isObject(p.target) || typeof p.patch !== 'string') {
    throw new Error('only inline JSON 6902 patches with a target are implemented');
  }
  onlyKeys(p, ['target', 'patch'], 'patch');
  const target = p.target;
  onlyKeys(target, ['kind', 'name'], 'patch target');
  const ops = parseYaml(p.patch) as unknown;
  if (!Array.isArray(ops)) throw new Error('only JSON 6902 patches (a list of operations) are implemented');
  const targets = items.filter((i) => i.res.kind === target.kind && i.res.metadata.name === target.name);
  if (targets.length === 0) throw new Error(`patch target ${JSON.stringify(target)} matches nothing`);
  for (const { res } of targets) for (const op of ops) applyOperation(res, op);
}

function applyOperation(doc: Record<string, unknown>, op: unknown): void {
  if (!isObject(op) || typeof op.op !== 'string' || typeof op.path !== 'string') {
    throw new Error(`bad JSON patch operation ${JSON.stringify(op)}`);
  }
  const tokens = op.path
    .split('/')
    .slice(1)
    .map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
  const last = tokens.pop();
  if (last === undefined) throw new Error(`JSON patch path ${op.path} has no target`);
  let parent: unknown = doc;
  for (const t of tokens) {
    parent = Array.isArray(parent) ? parent[Number(t)] : isObject(parent) ? parent[t] : undefined;
    if (parent === undefined) throw new Error(`JSON patch path ${op.path} does not exist`);
  }
  if (op.op === 'test') {
    const here = Array.isArray(parent) ? parent[Number(last)] : isObject(parent) ? parent[last] : undefined;
    if (JSON.stringify(here) !== JSON.stringify(op.value))
      throw new Error(`JSON patch test ${op.path} failed: found ${JSON.stringify(here)}`);
    return;
  }
  if (Array.isArray(parent)) {
    const index = last === '-' ? parent.length : Number(last);
    if (!Number.isInteger(index) || index < 0 || index > parent.length) {
      throw new Error(`JSON patch path ${op.path}: bad index`);
    }
    if (op.op === 'add') parent.splice(index, 0, op.value);
    else if (op.op === 'replace' && index < parent.length) parent[index] = op.value;
    else if (op.op === 'remove' && index < parent.length) parent.splice(index, 1);
    else throw new Error(`JSON patch ${op.op} ${op.path} cannot be applied`);
  } else if (isObject(parent)) {
    if (op.op === 'add') parent[last] = op.value;
    else if (op.op === 'replace' && last in parent) parent[last] = op.value;
    else if (op.op === 'remove' && last in parent) delete parent[last];
    else throw new Error(`JSON patch ${op.op} ${op.path} cannot be applied`);
  } else {
    throw new Error(`JSON patch path ${op.path} does not exist`);
  }
}

function setNamespace(namespace: string, items: Item[]): void {
  for (const { res } of items) {
    if (KIND_SCOPE[res.kind] === 'namespaced') res.metadata.namespace = namespace;
    else if (res.kind === 'Namespace' && res.metadata.name !== namespace) {
      throw new Error(
        `Namespace ${res.metadata.name} differs from the kustomization's namespace ${namespace}`,
      );
    }
  }
}

function addLabels(l: unknown, items: Item[]): void {
  if (!isObject(l) || !isObject(l.pairs)) throw new Error('labels entry without pairs');
  onlyKeys(l, ['pairs'], 'labels entry (includeSelectors/includeTemplates are not implemented)');
  for (const { res } of items) res.metadata.labels = { ...res.metadata.labels, ...(l.pairs as object) };
}

export function podSpecOf(res: Resource): IPodSpec | undefined {
  if (res.kind !== 'StatefulSet') return undefined;
  return (res as unknown as IStatefulSet).spec?.template.spec;
}

function setImage(i: unknown, items: Item[]): void {
  if (!isObject(i) || typeof i.name !== 'string') throw new Error('images entry without a name');
  onlyKeys(i, ['name', 'newName', 'newTag', 'digest'], `images entry ${i.name}`);
  for (const { res } of items) {
    const spec = podSpecOf(res);
    for (const c of [...(spec?.containers ?? []), ...(spec?.initContainers ?? [])]) {
      const m = /^(.*?)(?::([^:/@]+))?(?:@(.+))?$/.exec(c.image ?? '');
      if (!m || m[1] !== i.name) continue;
      const name = typeof i.newName === 'string' ? i.newName : m[1];
      const suffix =
        typeof i.digest === 'string'
          ? `@${i.digest}`
          : typeof i.newTag === 'string' || typeof i.newTag === 'number'
            ? `:${i.newTag}`
            : m[2] !== undefined
              ? `:${m[2]}`
              : '';
      c.image = name + suffix;
    }
  }
}

/** Points references to generated ConfigMaps/Secrets at their hashed names (kustomize's nameReference). */
function rewriteReferences(res: Resource, renamed: Map<string, string>): void {
  const spec = podSpecOf(res);
  if (!spec) return;
  const fix = (kind: string, ref: { name?: string } | undefined): void => {
    if (ref?.name !== undefined) ref.name = renamed.get(`${kind}/${ref.name}`) ?? ref.name;
  };
  for (const c of [...spec.containers, ...(spec.initContainers ?? [])]) {
    for (const from of c.envFrom ?? []) {
      fix('ConfigMap', from.configMapRef);
      fix('Secret', from.secretRef);
    }
    for (const e of c.env ?? []) {
      fix('ConfigMap', e.valueFrom?.configMapKeyRef);
      fix('Secret', e.valueFrom?.secretKeyRef);
    }
  }
  for (const v of spec.volumes ?? []) {
    fix('ConfigMap', v.configMap);
    if (v.secret?.secretName !== undefined) {
      v.secret.secretName = renamed.get(`Secret/${v.secret.secretName}`) ?? v.secret.secretName;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The pod as Kubernetes would start it.

export class Rendering {
  constructor(
    readonly objects: Resource[],
    readonly namespace: string,
  ) {}

  all<T>(kind: string): T[] {
    return this.objects.filter((o) => o.kind === kind) as unknown as T[];
  }

  one<T>(kind: string, name?: string): T {
    const found = this.objects.filter(
      (o) => o.kind === kind && (name === undefined || o.metadata.name === name),
    );
    if (found.length !== 1) throw new Error(`expected one ${kind} ${name ?? ''}, found ${found.length}`);
    return found[0] as unknown as T;
  }

  get statefulSet(): IStatefulSet {
    return this.one<IStatefulSet>('StatefulSet');
  }

  get podSpec(): IPodSpec {
    const spec = this.statefulSet.spec?.template.spec;
    if (!spec) throw new Error('StatefulSet without a pod spec');
    return spec;
  }

  get container(): IContainer {
    const containers = this.podSpec.containers;
    if (containers.length !== 1) throw new Error(`expected one container, found ${containers.length}`);
    return containers[0] as IContainer;
  }

  get headless(): IService {
    return this.one<IService>('Service', this.statefulSet.spec?.serviceName);
  }

  podNames(): string[] {
    const replicas = this.statefulSet.spec?.replicas ?? 1;
    return [...new Set([0, replicas - 1])].map((i) => `${this.statefulSet.metadata?.name}-${i}`);
  }

  /**
   * The environment of pod `podName`: envFrom sources first, then env in order, with $(VAR)
   * expanded against what is defined before it, as the kubelet does. Also returns the names
   * used in $(...) references.
   */
  podEnv(podName: string): { env: Record<string, string>; referenced: Set<string>; sourced: string[] } {
    const env: Record<string, string> = {};
    const referenced = new Set<string>();
    const sourced: string[] = [];
    const c = this.container;
    for (const from of c.envFrom ?? []) {
      const data = from.configMapRef
        ? this.one<IConfigMap>('ConfigMap', from.configMapRef.name).data
        : from.secretRef
          ? decode(this.one<ISecret>('Secret', from.secretRef.name).data)
          : undefined;
      if (!data) throw new Error('envFrom source without data');
      for (const [key, value] of Object.entries(data)) {
        env[(from.prefix ?? '') + key] = value;
        sourced.push((from.prefix ?? '') + key);
      }
    }
    for (const e of c.env ?? []) {
      if (e.value !== undefined) {
        env[e.name] = e.value.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (whole, name?: string) => {
          if (name === undefined) return '$';
          referenced.add(name);
          return env[name] ?? whole;
        });
      } else if (e.valueFrom?.fieldRef?.fieldPath === 'metadata.name') {
        env[e.name] = podName;
      } else if (e.valueFrom?.fieldRef?.fieldPath === 'metadata.namespace') {
        env[e.name] = this.namespace;
      } else if (e.valueFrom?.configMapKeyRef) {
        const ref = e.valueFrom.configMapKeyRef;
        const value = this.one<IConfigMap>('ConfigMap', ref.name).data?.[ref.key];
        if (value === undefined) throw new Error(`${e.name}: ConfigMap ${ref.name} has no ${ref.key}`);
        env[e.name] = value;
      } else if (e.valueFrom?.secretKeyRef) {
        const ref = e.valueFrom.secretKeyRef;
        const value = decode(this.one<ISecret>('Secret', ref.name).data)[ref.key];
        if (value === undefined) throw new Error(`${e.name}: Secret ${ref.name} has no ${ref.key}`);
        env[e.name] = value;
      } else {
        throw new Error(`${e.name}: this test does not know how Kubernetes fills it`);
      }
    }
    return { env, referenced, sourced };
  }

  /**
   * The pod's node config once its placeholder cluster secret is replaced, as docs/kubernetes.md
   * says to (with the placeholder the node refuses to start: k8s-manifests.test).
   */
  config(podName: string): Config {
    const env = this.podEnv(podName).env;
    if (env.SHOAL_CLUSTER_SECRET !== undefined) env.SHOAL_CLUSTER_SECRET = 'a-replaced-cluster-secret-0';
    // The file is the pod's, not this machine's (read at start: parseConfig would fail on it).
    if (env.SHOAL_CLUSTER_SECRET_FILE !== undefined) {
      delete env.SHOAL_CLUSTER_SECRET_FILE;
      env.SHOAL_CLUSTER_SECRET = 'a-replaced-cluster-secret-0';
    }
    return parseConfig({}, env);
  }

  /** A port of the container by number or name, as probes and Services' targetPort give it. */
  containerPort(port: string | number | undefined): number | undefined {
    if (typeof port === 'number') return port;
    return this.container.ports?.find((p) => p.name === port)?.containerPort;
  }

  /**
   * Lays out the volumes of pod `podName` under `root` as the kubelet would: the claim of a
   * volumeClaimTemplate is a directory named like its PersistentVolumeClaim (`data-shoal-0`) that
   * outlives the pod; an emptyDir is a new empty directory; a Secret is written in the kubelet's
   * layout (see writeSecretVolume), from the rendering or, for Secrets a controller makes (cert-manager's
   * certificates), from `issued`. Returns where each mount path of the container lives.
   */
  podVolumes(podName: string, root: string, issued: Record<string, Record<string, string>> = {}): PodMount[] {
    const claims = new Set((this.statefulSet.spec?.volumeClaimTemplates ?? []).map((t) => t.metadata?.name));
    return (this.container.volumeMounts ?? []).map((m) => {
      if (claims.has(m.name)) {
        const hostPath = join(root, `${m.name}-${podName}`);
        mkdirSync(hostPath, { recursive: true });
        return { mountPath: m.mountPath, hostPath, volume: m.name, readOnly: m.readOnly === true };
      }
      const volume = (this.podSpec.volumes ?? []).find((v) => v.name === m.name);
      const hostPath = join(root, `${podName}-${m.name}`);
      if (volume?.emptyDir) {
        rmSync(hostPath, { recursive: true, force: true });
        mkdirSync(hostPath, { recursive: true });
      } else if (volume?.secret?.secretName) {
        const name = volume.secret.secretName;
        writeSecretVolume(hostPath, issued[name] ?? this.secretData(name));
      } else {
        throw new Error(`volume ${m.name}: this simulation does not know how Kubernetes fills it`);
      }
      return { mountPath: m.mountPath, hostPath, volume: m.name, readOnly: m.readOnly === true };
    });
  }

  /** The decoded data of the Secret `name`. */
  secretData(name: string): Record<string, string> {
    return decode(this.one<ISecret>('Secret', name).data);
  }
}

/** A container's mount path and the directory on this machine that stands in for it. */
export interface PodMount {
  mountPath: string;
  hostPath: string;
  volume: string;
  readOnly: boolean;
}

/**
 * The pod's environment with every value that is a path under a mount path pointed at the
 * directory standing in for that mount (what the container's mount namespace does in Kubernetes).
 */
export function onHost(env: Record<string, string>, mounts: readonly PodMount[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) {
    const m = mounts.find((x) => value === x.mountPath || value.startsWith(`${x.mountPath}/`));
    out[key] = m ? m.hostPath + value.slice(m.mountPath.length) : value;
  }
  return out;
}

/**
 * Writes a Secret volume the way the kubelet does, so that an update is one atomic rename: the
 * files live in a timestamped directory, `..data` links to it, and each key is a link through
 * `..data`. Writing again swaps `..data` to a new directory and removes the old one.
 */
export function writeSecretVolume(dir: string, files: Record<string, string>): void {
  mkdirSync(dir, { recursive: true });
  const stamp = `..${new Date().toISOString().replace(/[-:.TZ]/g, '_')}${process.hrtime.bigint() % 1_000_000n}`;
  mkdirSync(join(dir, stamp));
  for (const [key, value] of Object.entries(files)) writeFileSync(join(dir, stamp, key), value);
  const old = existsSync(join(dir, '..data')) ? readlinkSync(join(dir, '..data')) : undefined;
  symlinkSync(stamp, join(dir, '..data_tmp'));
  renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
  for (const key of Object.keys(files)) {
    if (!existsSync(join(dir, key))) symlinkSync(join('..data', key), join(dir, key));
  }
  if (old) rmSync(join(dir, old), { recursive: true, force: true });
}

export function decode(data: Record<string, string> | undefined): Record<string, string> {
  return Object.fromEntries(
    Object.entries(data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]),
  );
}
