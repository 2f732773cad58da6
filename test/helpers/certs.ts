import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type PeerCertificate } from 'node:tls';

/** PEM files of a certificate authority made for one test. */
export interface TestCa {
  dir: string;
  caCert: string;
  caKey: string;
}

/** A certificate and its key, as files. */
export interface TestCert {
  cert: string;
  key: string;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A fresh CA (EC P-256, good for a day), made with the openssl command line as an operator would. */
export function makeCa(name = 'shoal-test-ca'): TestCa {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-tls-'));
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ca.key'], dir);
  openssl(
    [
      'req',
      '-x509',
      '-new',
      '-key',
      'ca.key',
      '-sha256',
      '-days',
      '1',
      '-subj',
      `/CN=${name}`,
      '-out',
      'ca.pem',
    ],
    dir,
  );
  return { dir, caCert: join(dir, 'ca.pem'), caKey: join(dir, 'ca.key') };
}

let serial = 0;

/**
 * A certificate signed by `ca` for `cn`, naming 127.0.0.1 and localhost (what the test nodes
 * listen on), usable by servers and clients alike (node-to-node mutual TLS).
 */
export function issueCert(ca: TestCa, cn: string): TestCert {
  const base = `${cn}-${++serial}`;
  const dir = ca.dir;
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${base}.key`], dir);
  openssl(['req', '-new', '-key', `${base}.key`, '-subj', `/CN=${cn}`, '-out', `${base}.csr`], dir);
  writeFileSync(
    join(dir, `${base}.ext`),
    'subjectAltName=IP:127.0.0.1,DNS:localhost\n' +
      'extendedKeyUsage=serverAuth,clientAuth\n' +
      'keyUsage=digitalSignature\n',
  );
  openssl(
    [
      'x509',
      '-req',
      '-in',
      `${base}.csr`,
      '-CA',
      ca.caCert,
      '-CAkey',
      ca.caKey,
      '-CAcreateserial',
      '-days',
      '1',
      '-sha256',
      '-extfile',
      `${base}.ext`,
      '-out',
      `${base}.pem`,
    ],
    dir,
  );
  return { cert: join(dir, `${base}.pem`), key: join(dir, `${base}.key`) };
}

/** The certificate a port on 127.0.0.1 presents to a new connection, checked against the CA file. */
export function servedCertificate(port: number, caFile: string): Promise<PeerCertificate> {
  return new Promise((resolve, reject) => {
    const socket = connect(
      { host: '127.0.0.1', port, ca: readFileSync(caFile), servername: 'localhost' },
      () => {
        const cert = socket.getPeerCertificate();
        socket.end();
        resolve(cert);
      },
    );
    socket.on('error', reject);
  });
}
