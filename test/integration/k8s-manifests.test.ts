import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import ts from 'typescript';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { StatefulSet, type IStatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import {
  PodDisruptionBudget,
  type IPodDisruptionBudget,
} from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ConfigMap, type IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace, type INamespace } from 'kubernetes-models/v1/Namespace';
import { Secret, type ISecret } from 'kubernetes-models/v1/Secret';
import { Service, type IService } from 'kubernetes-models/v1/Service';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IPodSpec } from 'kubernetes-models/v1/PodSpec';
import { envName, NODE_FLAGS, parseConfig, type Config } from '../../services/storage-node/src/config';
import { CLI, freePort, repoRoot } from '../helpers/cluster';

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
];

// ---------------------------------------------------------------------------------------------
// A small kustomize: exactly the features k8s/ uses, and an error for any other field, so the
// renderer can never silently ignore something `kubectl apply -k` would apply.

interface Metadata {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  [key: string]: unknown;
}
interface Resource {
  apiVersion: string;
  kind: string;
  metadata: Metadata;
  [key: string]: unknown;
}
interface Item {
  res: Resource;
  /** Made by a configMapGenerator/secretGenerator: its name gets a content hash at the end. */
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
  Namespace: 'cluster',
};

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function readYamlDocs(file: string): unknown[] {
  return parseAllDocuments(readFileSync(file, 'utf8'))
    .map((doc) => {
      if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0]?.message}`);
      return doc.toJS() as unknown;
    })
    .filter((doc) => doc !== null && doc !== undefined);
}

function asResource(doc: unknown, where: string): Resource {
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
function kustomize(dir: string): Resource[] {
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
        'test/integration/k8s-manifests.test.ts; implement it there too',
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
  onlyKeys(g, ['name', 'behavior', 'envs', 'literals', 'type'], `${kind} generator ${g.name}`);
  const data: Record<string, string> = {};
  for (const env of list(g.envs)) {
    const path = resolve(dir, String(env));
    for (const [key, value] of parseEnvLines(readFileSync(path, 'utf8').split(/\r?\n/), path)) {
      data[key] = value;
    }
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
    items.push({ res, generated: true });
    return;
  }
  const existing = items.find((i) => i.generated && i.res.kind === kind && i.res.metadata.name === g.name);
  if (!existing) throw new Error(`${kind} generator ${g.name}: behavior ${String(behavior)} but no base`);
  if (behavior === 'merge') existing.res.data = { ...(existing.res.data as object), ...encoded };
  else if (behavior === 'replace') existing.res.data = encoded;
  else throw new Error(`${kind} generator ${g.name}: behavior ${String(behavior)} not implemented`);
}

/**
 * kustomize's name suffix: sha256 of Go's JSON of {data, kind, name, type (Secrets)}, 10 characters
 * with some swapped. kustomize v5 hashes before it names the object, so `name` is always empty.
 */
function kustomizeHash(res: Resource): string {
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

function podSpecOf(res: Resource): IPodSpec | undefined {
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
  'policy/v1/PodDisruptionBudget': {
    validate: (d) => new PodDisruptionBudget(d as IPodDisruptionBudget).validate(),
    type: ['kubernetes-models/policy/v1/PodDisruptionBudget', 'IPodDisruptionBudget'],
  },
};

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
    lib: ['lib.es2022.d.ts'],
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.CommonJS,
    moduleResolution: ts.ModuleResolutionKind.Node10,
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

class Rendering {
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

  config(podName: string): Config {
    return parseConfig({}, this.podEnv(podName).env);
  }

  /** A port of the container by number or name, as probes and Services' targetPort give it. */
  containerPort(port: string | number | undefined): number | undefined {
    if (typeof port === 'number') return port;
    return this.container.ports?.find((p) => p.name === port)?.containerPort;
  }
}

function decode(data: Record<string, string> | undefined): Record<string, string> {
  return Object.fromEntries(
    Object.entries(data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]),
  );
}

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
      expect(byKey(kustomize(dir))).toEqual(byKey(theirs));
    },
  );
});

describe.each(RENDERINGS)('$dir', ({ dir, namespace }) => {
  const r = new Rendering(kustomize(dir), namespace);
  const flagFor = (name: string) => NODE_FLAGS.find((f) => envName(f) === name);

  it('holds a StatefulSet, both Services, the ConfigMap, the Secret and a PodDisruptionBudget', () => {
    expect(r.all('StatefulSet')).toHaveLength(1);
    expect(r.all('Service')).toHaveLength(2);
    expect(r.all('ConfigMap')).toHaveLength(1);
    expect(r.all('Secret')).toHaveLength(1);
    expect(r.all('PodDisruptionBudget')).toHaveLength(1);
  });

  it('passes the Kubernetes API schemas', () => {
    for (const o of r.objects) {
      expect(() => modelOf(o).validate(o)).not.toThrow();
    }
  });

  it('uses no field the Kubernetes API does not define', () => {
    const objects = r.objects.map((res) => ({ label: `${res.kind}/${res.metadata.name}`, res }));
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
        'SHOAL_CLUSTER_SECRET',
        'SHOAL_NODE_ID',
        'SHOAL_ADVERTISE_URL',
        'SHOAL_DISCOVERY_DNS',
      ]),
    );
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

  it('listens on all interfaces at the port the container, probes and Services use', () => {
    const config = r.config(r.podNames()[0] as string);
    expect(['0.0.0.0', '::']).toContain(config.host);
    expect(r.container.ports?.map((p) => p.containerPort)).toEqual([config.port]);
    const c = r.container;
    for (const probe of [c.startupProbe, c.livenessProbe, c.readinessProbe]) {
      expect(r.containerPort(probe?.httpGet?.port)).toBe(config.port);
    }
    for (const service of r.all<IService>('Service')) {
      expect(selects(service.spec?.selector, r.statefulSet.spec?.template.metadata?.labels)).toBe(true);
      const targets = (service.spec?.ports ?? []).map((p) => r.containerPort(p.targetPort ?? p.port));
      expect(targets).toEqual([config.port]);
    }
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

  it("gives a stopping pod more time than the node's own shutdown grace", () => {
    const seconds = r.podSpec.terminationGracePeriodSeconds ?? 30;
    expect(seconds * 1000).toBeGreaterThanOrEqual(SHUTDOWN_GRACE_MS + 5_000);
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
  it('answers the probes without an API key while the API needs one, and stops on SIGTERM', async () => {
    if (!statSync(CLI, { throwIfNoEntry: false })) throw new Error(`${CLI} is missing: npm run build`);
    const r = new Rendering(kustomize('k8s'), 'default');
    const pod = r.podNames()[0] as string;
    const { env } = r.podEnv(pod);
    const port = await freePort();
    const dataDir = mkdtempSync(join(tmpdir(), 'shoal-k8s-pod-'));
    // Only what cannot exist on this machine changes: the address and the volume. The cluster
    // DNS name cannot be looked up here either.
    Object.assign(env, {
      SHOAL_HOST: '127.0.0.1',
      SHOAL_PORT: String(port),
      SHOAL_DATA_DIR: dataDir,
      SHOAL_ADVERTISE_URL: `http://127.0.0.1:${port}`,
    });
    delete env.SHOAL_DISCOVERY_DNS;
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
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      child.kill('SIGKILL');
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
