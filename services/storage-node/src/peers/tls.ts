import { readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { createSecureContext, type ConnectionOptions, type TlsOptions } from 'node:tls';
import type { Logger } from '../../../../shared/logging';
import { PolledFile } from '../../../../shared/polled-file';
import { ConfigError, type TlsConfig } from '../config';

/** The PEM texts in use: the node's chain and key, and the cluster's CA if one was given. */
export interface TlsMaterial {
  readonly cert: string;
  readonly key: string;
  readonly ca: string | undefined;
}

/**
 * The node's certificate, key and CA (--tls-cert, --tls-key, --tls-ca), re-read when a file
 * changes (cert-manager renews a certificate by updating its Secret; the kubelet swaps the mounted
 * files). A new set is only taken once it loads as a whole: a key that does not match the
 * certificate (the poll saw one file swapped and not yet the other) or a broken file keeps the
 * set in use, and says so. Listeners (the HTTPS servers, the peer client) get every new set.
 */
export class TlsFiles {
  private material: TlsMaterial;
  private readonly texts: Map<PolledFile, string>;
  private readonly listeners: Array<(material: TlsMaterial) => void> = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    readonly config: TlsConfig,
    private readonly log: Logger,
  ) {
    const read = (flag: string, path: string): string => {
      try {
        return readFileSync(path, 'utf8');
      } catch (err) {
        throw new ConfigError(`--${flag} ${path}: ${(err as Error).message}`);
      }
    };
    const cert = new PolledFile(config.certFile);
    const key = new PolledFile(config.keyFile);
    const ca = config.caFile === undefined ? undefined : new PolledFile(config.caFile);
    this.texts = new Map([
      [cert, read('tls-cert', config.certFile)],
      [key, read('tls-key', config.keyFile)],
    ]);
    if (ca && config.caFile) this.texts.set(ca, read('tls-ca', config.caFile));
    this.material = { cert: this.texts.get(cert)!, key: this.texts.get(key)!, ca: ca && this.texts.get(ca) };
    const problem = unusable(this.material);
    if (problem) throw new ConfigError(`--tls-cert, --tls-key and --tls-ca do not load: ${problem}`);
  }

  get current(): TlsMaterial {
    return this.material;
  }

  onChange(listener: (material: TlsMaterial) => void): void {
    this.listeners.push(listener);
  }

  /** Logs what the certificate is good for, then polls the files every `pollMs` until stop(). */
  start(pollMs = 2_000): void {
    this.describe('TLS certificate loaded');
    void this.poll();
    this.timer = setInterval(() => void this.poll(), pollMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** Options for https.createServer: this node's certificate; a client certificate asked for under --mutual-tls. */
  serverOptions(): TlsOptions {
    return {
      ...this.secureContextOptions(),
      minVersion: 'TLSv1.2',
      requestCert: this.config.mutual,
      // Clients of the public routes have no certificate; the internal routes check
      // socket.authorized themselves (internal-routes.ts) and answer a JSON 401.
      rejectUnauthorized: false,
    };
  }

  /** What setSecureContext takes when the files change. */
  secureContextOptions(): TlsOptions {
    const { cert, key, ca } = this.material;
    return { cert, key, ...(ca === undefined ? {} : { ca }) };
  }

  /**
   * How this node connects to peers. With --tls-ca, a peer's certificate must chain to that CA
   * alone (not to any public CA), and that is the check: the CA signs only this cluster's nodes,
   * and peers are also reached by the bare pod IPs that --discovery-dns finds, which no
   * certificate names. Which node it is, the signed request proves (peers/auth.ts). Without a CA,
   * the system's CAs and the usual host name check apply.
   */
  peerConnectOptions(): ConnectionOptions {
    const { cert, key, ca } = this.material;
    return {
      minVersion: 'TLSv1.2',
      ...(this.config.mutual ? { cert, key } : {}),
      ...(ca === undefined ? {} : { ca, checkServerIdentity: () => undefined }),
    };
  }

  /** Visible for tests: reads the files that changed, and takes the new set if it loads. */
  async poll(): Promise<void> {
    let changed = false;
    for (const [file] of this.texts) {
      try {
        const text = await file.readIfChanged();
        if (text === undefined) continue;
        if (text !== this.texts.get(file)) changed = true;
        this.texts.set(file, text);
      } catch (err) {
        this.log.error(
          { err: (err as Error).message, file: file.path },
          'could not read a TLS file; keeping the certificate in use',
        );
      }
    }
    if (!changed) return;
    const [cert, key, ca] = [...this.texts.values()];
    const next: TlsMaterial = { cert: cert!, key: key!, ca };
    const problem = unusable(next);
    if (problem) {
      this.log.error(
        { err: problem },
        'the TLS files changed but do not load; keeping the certificate in use',
      );
      return;
    }
    this.material = next;
    this.describe('TLS certificate reloaded');
    for (const listener of this.listeners) {
      // One listener failing (a server refusing the context) must not keep the others on the old set.
      try {
        listener(next);
      } catch (err) {
        this.log.error({ err: (err as Error).message }, 'could not take the reloaded TLS certificate');
      }
    }
  }

  private describe(message: string): void {
    try {
      const leaf = new X509Certificate(this.material.cert);
      this.log.info(
        { subject: leaf.subject.replace(/\n/g, ', '), names: leaf.subjectAltName, validTo: leaf.validTo },
        message,
      );
    } catch {
      // unusable() already accepted it; the log line is a courtesy.
    }
  }
}

/** Why a set of PEM texts cannot serve TLS (a key that does not match, a broken file), or undefined. */
function unusable(material: TlsMaterial): string | undefined {
  try {
    createSecureContext({ cert: material.cert, key: material.key, ca: material.ca });
    new X509Certificate(material.cert);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}
