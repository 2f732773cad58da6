import { constantTimeEqual, hmacHex, sha256Hex } from '../../../../shared/hashing';
import { ShoalError } from '../../../../shared/errors';
import type { Logger } from '../../../../shared/logging';
import { PolledFile } from '../../../../shared/polled-file';
import { PLACEHOLDER } from '../peers/cluster-secrets';

/** How long a keys file may be gone (a Secret being swapped) before no key is valid. */
export const KEYS_FILE_GRACE_MS = 30_000;

/**
 * What a key may do. `read`: GET and HEAD, and download links. `write`: also uploads and deletes,
 * everything the public contract offers (a key without a role is this). `admin`: also what
 * changes the cluster (draining a node).
 */
export type Role = 'read' | 'write' | 'admin';
const RANK: Record<Role, number> = { read: 0, write: 1, admin: 2 };

export function allows(role: Role, needed: Role): boolean {
  return RANK[role] >= RANK[needed];
}

export interface ApiKey {
  key: string;
  role: Role;
  /** Names the key in download links (a hash prefix: it does not reveal the key). */
  id: string;
}

/** One entry of --api-keys or a keys file: `KEY`, or `read:KEY`, `write:KEY`, `admin:KEY`. */
export function parseKeyEntry(entry: string): ApiKey {
  const match = /^(read|write|admin):(.+)$/.exec(entry);
  const key = match ? match[2]! : entry;
  return { key, role: match ? (match[1] as Role) : 'write', id: sha256Hex(key).slice(0, 16) };
}

/**
 * The API keys a node accepts: those given with --api-keys, plus those in --api-keys-file (one
 * per line or comma-separated; a Kubernetes Secret mount), re-read whenever the file changes, so
 * keys rotate without a restart. A file that stays unreadable for KEYS_FILE_GRACE_MS (deleted,
 * say, to revoke every key) leaves no key from it valid; an empty one, none at once. A placeholder
 * key from the manifests or docs is never valid. Each key has a role (parseKeyEntry).
 */
export class ApiKeys {
  private readonly fixed: readonly ApiKey[];
  private fromFile: ApiKey[] = [];
  private readonly file: PolledFile | undefined;
  /** When the file was last read, or found unchanged. */
  private lastSeen = Date.now();
  /** Whether the file's keys were dropped for its absence (logged once). */
  private gone = false;

  constructor(
    fixed: readonly string[],
    file: string | undefined,
    private readonly log: Logger,
  ) {
    this.fixed = fixed.map(parseKeyEntry);
    this.file = file === undefined ? undefined : new PolledFile(file);
  }

  async start(pollMs = 2_000): Promise<void> {
    await this.file?.start(() => this.reload(), pollMs);
  }

  stop(): void {
    this.file?.stop();
  }

  /** True when keys are required at all. */
  get enabled(): boolean {
    return this.fixed.length > 0 || this.file !== undefined;
  }

  /** The accepted key presented, checked against every key in time that does not depend on which is close. */
  find(given: string | undefined): ApiKey | undefined {
    let found: ApiKey | undefined;
    for (const key of [...this.fixed, ...this.fromFile])
      if (given !== undefined && constantTimeEqual(given, key.key) && !found) found = key;
    return found;
  }

  accepts(given: string | undefined): boolean {
    return this.find(given) !== undefined;
  }

  /** The accepted key with this id, if any: a link made with a key lives only as long as the key. */
  byId(id: string): ApiKey | undefined {
    return [...this.fixed, ...this.fromFile].find((k) => k.id === id);
  }

  /** Visible for tests: reads the file again if it changed. */
  async reload(now: number = Date.now()): Promise<void> {
    try {
      const text = await this.file?.readIfChanged();
      this.lastSeen = now;
      this.gone = false;
      if (text === undefined) return;
      // One key per line or comma-separated; lines starting with # are comments (whose key it is).
      const keys = text
        .split('\n')
        .filter((line) => !line.trimStart().startsWith('#'))
        .flatMap((line) => line.split(','))
        .map((k) => k.trim())
        .filter((k) => k.length > 0)
        .map(parseKeyEntry);
      const real = keys.filter((k) => !PLACEHOLDER.test(k.key));
      if (real.length < keys.length)
        this.log.error(
          { ignored: keys.length - real.length },
          'the API keys file holds a placeholder key from the manifests or docs; it is not valid',
        );
      this.fromFile = real;
      this.log.info({ keys: real.length }, 'API keys loaded from file');
    } catch (err) {
      // A Secret being swapped can vanish for a moment: keep the keys for a grace period, not for
      // good, since deleting the file is also how an operator revokes every key. Never log keys.
      if (now - this.lastSeen <= KEYS_FILE_GRACE_MS) {
        this.log.warn(
          { err: (err as Error).message },
          'could not read the API keys file; keeping the previous keys for now',
        );
      } else if (!this.gone) {
        this.fromFile = [];
        this.gone = true;
        this.file?.forget();
        this.log.error(
          { err: (err as Error).message, graceMs: KEYS_FILE_GRACE_MS },
          'the API keys file is gone; no key from it is valid any more',
        );
      }
    }
  }
}

/**
 * Signed download links: `GET /files/<id>?expires=<unix s>[&kid=<key id>]&sig=<hex>` works
 * without an API key until it expires. The signature is an HMAC over method, path, expiry and
 * the id of the API key that made the link, with a key derived from the cluster secret, so any
 * node can check a link made by any other; changing any part of the link breaks it, and removing
 * the key revokes its links (the caller checks the key id). During a secret rotation, links made
 * with the previous secret still work.
 */
export class LinkSigner {
  constructor(
    private readonly secrets: { readonly signing: string | undefined; readonly accepted: readonly string[] },
  ) {}

  /**
   * Whether links can be made: not without a cluster secret (--insecure), since a key derived
   * from nothing secret would let anyone make a link to any file.
   */
  get available(): boolean {
    return this.secrets.signing !== undefined;
  }

  /** `keyId` empty: a link made while API keys are off. */
  sign(fileId: string, expiresAt: number, keyId = ''): string {
    if (!this.secrets.signing)
      throw new ShoalError('conflict', 'signed links need a cluster secret; this node runs --insecure');
    return this.signWith(this.secrets.signing, fileId, expiresAt, keyId);
  }

  verify(
    fileId: string,
    expires: string,
    sig: string,
    keyId = '',
    now: number = Date.now(),
  ): 'ok' | 'expired' | 'bad' {
    if (!/^\d{1,12}$/.test(expires) || !/^[0-9a-f]{64}$/.test(sig) || !/^([0-9a-f]{16})?$/.test(keyId))
      return 'bad';
    const secrets = this.secrets.accepted;
    let valid = false;
    for (const secret of secrets)
      valid = constantTimeEqual(sig, this.signWith(secret, fileId, Number(expires), keyId)) || valid;
    if (!valid) return 'bad';
    return Number(expires) * 1000 < now ? 'expired' : 'ok';
  }

  private signWith(secret: string, fileId: string, expiresAt: number, keyId: string): string {
    const key = hmacHex(secret, 'shoal-download-links-v1');
    // Without a key id, exactly the text of links made before key ids existed.
    return hmacHex(key, `GET\n/files/${fileId}\n${expiresAt}${keyId === '' ? '' : `\n${keyId}`}`);
  }
}
