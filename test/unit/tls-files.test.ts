import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../../shared/logging';
import { ConfigError } from '../../services/storage-node/src/config';
import { TlsFiles } from '../../services/storage-node/src/peers/tls';
import { issueCert, makeCa } from '../helpers/certs';

const log = createLogger({ nodeId: 'test', level: 'silent' });

describe('TlsFiles', () => {
  const ca = makeCa();
  const first = issueCert(ca, 'node-1');
  const second = issueCert(ca, 'node-1');

  function files(): { cert: string; key: string } {
    const dir = mkdtempSync(join(tmpdir(), 'shoal-tls-unit-'));
    const cert = join(dir, 'tls.crt');
    const key = join(dir, 'tls.key');
    copyFileSync(first.cert, cert);
    copyFileSync(first.key, key);
    return { cert, key };
  }

  it('refuses to start on a key that does not match the certificate', () => {
    const f = files();
    copyFileSync(second.key, f.key);
    expect(
      () => new TlsFiles({ certFile: f.cert, keyFile: f.key, caFile: undefined, mutual: false }, log),
    ).toThrow(ConfigError);
  });

  it('takes a renewed pair once both files have changed, and never a mismatched half', async () => {
    const f = files();
    const tls = new TlsFiles({ certFile: f.cert, keyFile: f.key, caFile: ca.caCert, mutual: true }, log);
    const seen: string[] = [];
    tls.onChange((m) => seen.push(m.cert));

    // Half a swap (the new certificate, the old key): kept as it was, nobody told.
    writeFileSync(f.cert, readFileSync(second.cert));
    await tls.poll();
    expect(tls.current.cert).toBe(readFileSync(first.cert, 'utf8'));
    expect(seen).toHaveLength(0);

    // The other half arrives: the new pair is taken and announced.
    writeFileSync(f.key, readFileSync(second.key));
    await tls.poll();
    expect(tls.current.cert).toBe(readFileSync(second.cert, 'utf8'));
    expect(seen).toEqual([readFileSync(second.cert, 'utf8')]);
    // Peers are checked against the cluster's CA, and present this node's certificate.
    expect(tls.peerConnectOptions()).toMatchObject({
      ca: readFileSync(ca.caCert, 'utf8'),
      cert: tls.current.cert,
    });
  });
});
