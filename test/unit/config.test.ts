import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, DEFAULTS, parseConfig, resolveNodeId } from '../../services/storage-node/src/config';

const secret = { 'cluster-secret': 'a-secret-of-enough-length' };

describe('config', () => {
  it('applies the defaults of the contract', () => {
    const c = parseConfig({ ...secret }, {});
    expect(c.host).toBe('0.0.0.0');
    expect(c.port).toBe(7000);
    expect(c.dataDir).toBe('./data');
    expect(c.replicas).toBe(3);
    expect(c.writeQuorum).toBe(2);
    expect(c.seeds).toEqual([]);
    expect(c.apiKeys).toEqual([]);
    expect(c.maxFileSize).toBe(DEFAULTS.maxFileSize);
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('reads SHOAL_ variables, and a flag wins over its variable', () => {
    const env = {
      SHOAL_PORT: '7100',
      SHOAL_DATA_DIR: '/srv/shoal',
      SHOAL_CLUSTER_SECRET: 'from-the-environment-123',
    };
    const c = parseConfig({ port: '7200' }, env);
    expect(c.port).toBe(7200);
    expect(c.dataDir).toBe('/srv/shoal');
    expect(c.clusterSecrets).toEqual(['from-the-environment-123']);
  });

  it('parses lists and normalises URLs', () => {
    const c = parseConfig({ ...secret, seeds: 'http://a:7000/, http://b:7000', 'api-keys': 'k1,,k2 ' }, {});
    expect(c.seeds).toEqual(['http://a:7000', 'http://b:7000']);
    expect(c.apiKeys).toEqual(['k1', 'k2']);
  });

  it.each([
    [{ port: '70000' }, /port/],
    [{ port: 'abc' }, /port/],
    [{ replicas: '0' }, /replicas/],
    [{ replicas: '2', 'write-quorum': '3' }, /write-quorum/],
    [{ 'max-file-size': '-5' }, /max-file-size/],
    [{ 'failure-timeout-ms': '100', 'gossip-interval-ms': '100' }, /failure-timeout-ms/],
    [{ seeds: 'not a url' }, /seeds/],
    [{ seeds: 'ftp://x' }, /seeds/],
    [{ 'advertise-url': 'nope' }, /advertise-url/],
    [{ 'node-id': 'has space' }, /node-id/],
    [{ 'log-level': 'loud' }, /log-level/],
    [{ 'cluster-secret': 'short' }, /cluster-secret/],
    // The manifests' placeholder: anyone who read the repository knows it.
    [{ 'cluster-secret': 'CHANGE-ME-placeholder-cluster-secret' }, /--cluster-secret is a placeholder/],
    [{ 'cluster-secret': 'changeme-changeme-changeme' }, /placeholder/],
  ])('refuses %j at start', (flags, message) => {
    expect(() => parseConfig({ ...secret, ...flags }, {})).toThrow(ConfigError);
    expect(() => parseConfig({ ...secret, ...flags }, {})).toThrow(message);
  });

  it('requires a cluster secret unless --insecure', () => {
    expect(() => parseConfig({}, {})).toThrow(/cluster-secret/);
    expect(parseConfig({ insecure: true }, {}).clusterSecrets).toEqual([]);
  });

  it('reads the cluster secrets from a file: one, or the current and the previous one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'shoal-config-'));
    const file = join(dir, 'secret');
    try {
      writeFileSync(file, '# rotated 2026-11-27\nthe-new-cluster-secret-01\n\nthe-old-cluster-secret-01\n');
      expect(parseConfig({ 'cluster-secret-file': file }, {}).clusterSecrets).toEqual([
        'the-new-cluster-secret-01',
        'the-old-cluster-secret-01',
      ]);
      writeFileSync(file, 'CHANGE-ME-placeholder-cluster-secret\n');
      expect(() => parseConfig({ 'cluster-secret-file': file }, {})).toThrow(/line 1 is a placeholder/);
      expect(() => parseConfig({ 'cluster-secret-file': join(dir, 'missing') }, {})).toThrow(
        /--cluster-secret-file .*missing: ENOENT/,
      );
      writeFileSync(file, '\n# nothing\n');
      expect(() => parseConfig({ 'cluster-secret-file': file }, {})).toThrow(/holds no secret/);
      writeFileSync(file, 'the-new-cluster-secret-01\n');
      expect(() =>
        parseConfig({ 'cluster-secret-file': file, 'cluster-secret': 'the-new-cluster-secret-01' }, {}),
      ).toThrow(/not both/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('serves HTTPS with a certificate and key, and asks for both', () => {
    const tls = { 'tls-cert': '/etc/shoal/tls/tls.crt', 'tls-key': '/etc/shoal/tls/tls.key' };
    const c = parseConfig({ ...secret, ...tls, host: '10.0.0.5', port: '7443' }, {});
    expect(c.tls).toEqual({
      certFile: tls['tls-cert'],
      keyFile: tls['tls-key'],
      caFile: undefined,
      mutual: false,
    });
    // The default advertise URL follows the scheme the node speaks.
    expect(c.advertiseUrl).toBe('https://10.0.0.5:7443');
    expect(parseConfig({ ...secret }, {}).tls).toBeUndefined();
    expect(() => parseConfig({ ...secret, 'tls-cert': '/c.pem' }, {})).toThrow(/--tls-cert and --tls-key/);
    expect(() => parseConfig({ ...secret, 'tls-ca': '/ca.pem' }, {})).toThrow(/need --tls-cert/);
    // Mutual TLS checks peers against the cluster's CA: without one it would trust any public CA.
    expect(() => parseConfig({ ...secret, ...tls, 'mutual-tls': true }, {})).toThrow(
      /--mutual-tls needs --tls-ca/,
    );
    const mutual = parseConfig({ ...secret, ...tls, 'tls-ca': '/ca.pem' }, { SHOAL_MUTUAL_TLS: 'true' });
    expect(mutual.tls).toMatchObject({ caFile: '/ca.pem', mutual: true });
  });

  it('puts node-to-node routes on --internal-port, where peers reach them', () => {
    const base = { ...secret, 'advertise-url': 'https://shoal-0.shoal-headless.ns.svc:7000' };
    const c = parseConfig({ ...base, 'internal-port': '7100' }, {});
    expect(c.internalPort).toBe(7100);
    expect(c.advertiseUrl).toBe('https://shoal-0.shoal-headless.ns.svc:7000');
    expect(c.peerUrl).toBe('https://shoal-0.shoal-headless.ns.svc:7100');
    expect(parseConfig({ ...base }, {}).peerUrl).toBe(base['advertise-url']);
    const named = parseConfig(
      { ...base, 'internal-port': '7100', 'internal-url': 'https://peer.example:9000/' },
      {},
    );
    expect(named.peerUrl).toBe('https://peer.example:9000');
    expect(() => parseConfig({ ...base, 'internal-port': '7000' }, {})).toThrow(/must differ from --port/);
    expect(() => parseConfig({ ...base, 'internal-url': 'https://x:1' }, {})).toThrow(
      /needs --internal-port/,
    );
  });

  it('opens S3 only on request, on a port of its own, with a region and an optional domain', () => {
    const off = parseConfig({ ...secret }, {});
    expect({ port: off.s3Port, region: off.s3Region, domain: off.s3Domain }).toEqual({
      port: 0,
      region: 'us-east-1',
      domain: undefined,
    });
    const on = parseConfig(
      { ...secret, 's3-region': 'eu-central-1', 's3-domain': 'S3.Example.com' },
      {
        SHOAL_S3_PORT: '7300',
      },
    );
    expect({ port: on.s3Port, region: on.s3Region, domain: on.s3Domain }).toEqual({
      port: 7300,
      region: 'eu-central-1',
      domain: 's3.example.com',
    });
    expect(() => parseConfig({ ...secret, 's3-port': '7000' }, {})).toThrow(/--s3-port must differ/);
    expect(() => parseConfig({ ...secret, 's3-port': '70000' }, {})).toThrow(/s3-port/);
    expect(() => parseConfig({ ...secret, 's3-region': 'EU West' }, {})).toThrow(/--s3-region/);
    expect(() => parseConfig({ ...secret, 's3-domain': 'http://x' }, {})).toThrow(/--s3-domain/);
  });

  it('removes abandoned multipart uploads after a day, or the time given', () => {
    expect(parseConfig({ ...secret }, {}).s3UploadExpiryMs).toBe(86_400_000);
    expect(parseConfig({ ...secret }, { SHOAL_S3_UPLOAD_EXPIRY_MS: '5000' }).s3UploadExpiryMs).toBe(5000);
    expect(() => parseConfig({ ...secret, 's3-upload-expiry-ms': '10' }, {})).toThrow(/s3-upload-expiry-ms/);
  });

  it('keeps the node id a data dir already has, and refuses a different one', () => {
    expect(resolveNodeId(undefined, 'node-7')).toBe('node-7');
    expect(resolveNodeId('node-7', 'node-7')).toBe('node-7');
    expect(resolveNodeId('node-8', undefined)).toBe('node-8');
    expect(() => resolveNodeId('node-8', 'node-7')).toThrow(/differs/);
  });
});
