import { readFileSync } from 'node:fs';
import type { Logger } from '../../../../shared/logging';
import { PolledFile } from '../../../../shared/polled-file';

export const MIN_SECRET_LENGTH = 16;

/**
 * Values that must never authenticate a cluster: the placeholders this repository ships (the
 * Kubernetes manifests, the docs) are known to anyone who has read it.
 */
export const PLACEHOLDER = /change-?me|placeholder|replace-?me|your-secret|example-secret/i;

/** Why `value` cannot be a cluster secret, or undefined when it can. */
export function secretProblem(value: string): string | undefined {
  if (value.length < MIN_SECRET_LENGTH) return `must be at least ${MIN_SECRET_LENGTH} characters`;
  if (PLACEHOLDER.test(value))
    return 'is a placeholder from the manifests or docs; generate one (openssl rand -hex 32)';
  if (/\s/.test(value)) return 'must not contain spaces';
  return undefined;
}

/**
 * The secrets in a --cluster-secret-file: one per line, blank lines and `#` comments skipped.
 * The first signs; every one is accepted. A rotation without downtime, file by file:
 * `old` -> `old, new` (every node accepts the new one) -> `new, old` (every node signs with it)
 * -> `new`. Throws when the file holds none, or one that secretProblem refuses.
 */
export function parseSecretFile(text: string): string[] {
  const secrets = text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line.length > 0 && !line.startsWith('#'));
  if (secrets.length === 0) throw new Error('holds no secret');
  if (secrets.length > 2)
    throw new Error('holds more than two secrets (the current one and the previous one)');
  for (const [i, s] of secrets.entries()) {
    const problem = secretProblem(s);
    if (problem) throw new Error(`line ${i + 1} ${problem}`);
  }
  return secrets;
}

/** Reads a secret file at start, when an unreadable one must stop the node. */
export function readSecretFile(path: string): string[] {
  return parseSecretFile(readFileSync(path, 'utf8'));
}

/**
 * The cluster secrets this node signs and accepts node-to-node calls and download links with:
 * --cluster-secret, or --cluster-secret-file re-read whenever it changes (a Kubernetes Secret
 * mount), so that a secret rotates without a restart. A file that becomes unreadable or invalid
 * keeps the secrets in use and says so in the log: a node that dropped them would drop out of
 * its cluster. None at all under --insecure.
 */
export class ClusterSecrets {
  private secrets: readonly string[];
  private readonly file: PolledFile | undefined;

  constructor(
    initial: readonly string[],
    file: string | undefined,
    private readonly log: Logger,
  ) {
    this.secrets = initial;
    this.file = file === undefined ? undefined : new PolledFile(file);
  }

  /** The secret new signatures are made with; undefined under --insecure. */
  get signing(): string | undefined {
    return this.secrets[0];
  }

  /** Every secret a signature may have been made with (the current one, and the previous one during a rotation). */
  get accepted(): readonly string[] {
    return this.secrets;
  }

  async start(pollMs = 2_000): Promise<void> {
    await this.file?.start(() => this.reload(), pollMs);
  }

  stop(): void {
    this.file?.stop();
  }

  /** Visible for tests: reads the file again if it changed. */
  async reload(): Promise<void> {
    try {
      const text = await this.file?.readIfChanged();
      if (text === undefined) return;
      const secrets = parseSecretFile(text);
      if (secrets.join('\n') !== this.secrets.join('\n')) {
        this.secrets = secrets;
        this.log.info({ secrets: secrets.length }, 'cluster secrets loaded from file');
      }
    } catch (err) {
      // Never log the secrets themselves.
      this.log.error(
        { err: (err as Error).message },
        'could not use the cluster secret file; keeping the secrets in use',
      );
    }
  }
}
