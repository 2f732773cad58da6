import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { isValidId } from '../../../../shared/ids';
import { CliError, EXIT, networkError, usageError } from './errors';
import { printable } from './format';
import { getFile } from './get';
import { ShoalClient, parseBaseUrl } from './http-client';
import { DEFAULT_PAGE_SIZE, listFiles, removeFile, showInfo, showStatus } from './inspect';
import { checkContentType, putFiles } from './put';

/**
 * The client half of the `shoal` bin: put, get, ls, rm, info, status against any node.
 *
 * Every command reports its own failures (`shoal: <message>` on stderr) and sets the exit code
 * that says what went wrong (see EXIT in ./errors), so the bin's generic handler, which would
 * turn every error into 1, only ever sees usage errors from commander, remapped to 2 here.
 */

export const DEFAULT_URL = 'http://127.0.0.1:7001';

interface CommonOptions {
  to: string;
  apiKey?: string;
  json?: boolean;
}

interface Context {
  client: ShoalClient;
  json: boolean;
}

/** Commander's own errors (missing argument, unknown option) are usage errors: exit 2, not 1. */
function usageExit(err: CommanderError): never {
  if (err.exitCode === 0) throw err; // --help
  throw new CommanderError(EXIT.usage, err.code, err.message);
}

function withCommonOptions(command: Command): Command {
  return command
    .addOption(new Option('--to <url>', 'any node of the cluster').env('SHOAL_URL').default(DEFAULT_URL))
    .addOption(
      new Option(
        '--api-key <key>',
        'API key, sent as a Bearer token (prefer the variable: argv is public)',
      ).env('SHOAL_API_KEY'),
    )
    .option('--json', 'print JSON instead of text')
    .exitOverride(usageExit)
    .configureOutput({ outputError: (text, write) => write(text.replace(/^error: /, 'shoal: ')) });
}

function fileId(value: string): string {
  if (!isValidId(value)) {
    throw usageError(`not a file id: ${JSON.stringify(value)} (ids are 1-64 letters, digits, "-" and "_")`);
  }
  return value;
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('expected a whole number above 0');
  return n;
}

/**
 * Runs one command against a node: builds the client, turns Ctrl-C/SIGTERM into an abort (the
 * command cleans up its temp files and exits 130), prints the failure, sets the exit code.
 */
async function run(options: CommonOptions, work: (ctx: Context) => Promise<void>): Promise<void> {
  const controller = new AbortController();
  const onSignal = (): void => {
    // A second signal while cleaning up means "now".
    if (controller.signal.aborted) process.exit(EXIT.interrupted);
    controller.abort(new CliError('interrupted', EXIT.interrupted));
  };
  // A reader that goes away (`shoal ls | head`) ends the command quietly instead of crashing it.
  const onStdoutError = (err: NodeJS.ErrnoException): void => {
    controller.abort(
      new CliError(err.code === 'EPIPE' ? '' : `cannot write output: ${err.message}`, EXIT.error),
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.stdout.on('error', onStdoutError);
  // Until the command finishes, an exit for any other reason (a promise that never settles
  // lets the process drain and end) must not look like success.
  process.exitCode = EXIT.error;
  let client: ShoalClient | undefined;
  try {
    client = new ShoalClient(parseBaseUrl(options.to), options.apiKey || undefined, controller.signal);
    const task = work({ client, json: options.json === true });
    try {
      await Promise.race([task, aborted(controller.signal)]);
    } catch (err) {
      // Interrupted: give the command a moment to remove its temp file before we report.
      if (controller.signal.aborted) await Promise.race([task.catch(() => undefined), delay(2_000)]);
      throw err;
    }
    process.exitCode = EXIT.ok;
  } catch (err) {
    const reason: unknown = controller.signal.aborted ? controller.signal.reason : err;
    const failure = reason instanceof CliError ? reason : networkError(reason, client?.where ?? options.to);
    if (failure.message !== '') process.stderr.write(`shoal: ${printable(failure.message)}\n`);
    process.exitCode = failure.exitCode;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.stdout.off('error', onStdoutError);
    await client?.close();
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/** Rejects once the signal aborts, so a command waiting on something else still ends promptly. */
function aborted(signal: AbortSignal): Promise<never> {
  return new Promise((_resolve, reject) => {
    signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true });
  });
}

/** Adds `put`, `get`, `ls`, `rm`, `info`, `status`, `drain`, `key` and `bucket` to the bin's program. */
export function registerClientCommands(program: Command): void {
  withCommonOptions(
    program
      .command('put')
      .description('upload files; prints the id of each')
      .argument('<file...>', 'files to upload')
      .option('--type <content-type>', 'content type to store (default: guessed from the extension)')
      .option('--no-progress', 'no progress bar'),
  ).action(async (files: string[], opts: CommonOptions & { type?: string; progress: boolean }) => {
    await run(opts, async ({ client, json }) => {
      const type = opts.type === undefined ? undefined : checkContentType(opts.type);
      await putFiles(client, files, { json, progress: opts.progress, type });
    });
  });

  withCommonOptions(
    program
      .command('get')
      .description('download a file, verified against its sha256 (default: saved under its own name)')
      .argument('<id>', 'file id')
      .option('-o, --output <file>', 'where to save it: a file, a directory, or - for stdout')
      .option('-f, --force', 'overwrite the output file if it exists')
      .option('--no-progress', 'no progress bar'),
  ).action(
    async (id: string, opts: CommonOptions & { output?: string; force?: boolean; progress: boolean }) => {
      await run(opts, async ({ client, json }) => {
        await getFile(client, fileId(id), {
          output: opts.output,
          force: opts.force === true,
          json,
          progress: opts.progress,
        });
      });
    },
  );

  withCommonOptions(
    program
      .command('ls')
      .description("list the whole cluster's files, by id")
      .option('--after <id>', 'start after this id')
      .option('--limit <n>', 'list at most n files', positiveInt)
      .option('--page-size <n>', 'files asked for per request', positiveInt, DEFAULT_PAGE_SIZE),
  ).action(async (opts: CommonOptions & { after?: string; limit?: number; pageSize: number }) => {
    await run(opts, async ({ client, json }) => {
      const after = opts.after === undefined ? undefined : fileId(opts.after);
      await listFiles(client, { json, after, max: opts.limit, pageSize: opts.pageSize });
    });
  });

  withCommonOptions(
    program.command('rm').description('delete a file from every node').argument('<id>', 'file id'),
  ).action(async (id: string, opts: CommonOptions) => {
    await run(opts, ({ client, json }) => removeFile(client, fileId(id), json));
  });

  withCommonOptions(
    program
      .command('info')
      .description('show a file and the state of each of its copies')
      .argument('<id>', 'file id'),
  ).action(async (id: string, opts: CommonOptions) => {
    await run(opts, ({ client, json }) => showInfo(client, fileId(id), json));
  });

  withCommonOptions(
    program.command('status').description('show the members of the cluster and how they are doing'),
  ).action(async (opts: CommonOptions) => {
    await run(opts, ({ client, json }) => showStatus(client, json));
  });

  withCommonOptions(
    program
      .command('drain')
      .description(
        'hand every copy the node at --to holds to its next owners, so it can be removed (a preStop hook)',
      )
      .option('--wait', 'wait until the node holds nothing any more')
      .option('--cancel', 'stop draining; the node takes its share again'),
  ).action(async (opts: CommonOptions & { wait?: boolean; cancel?: boolean }) => {
    await run(opts, async ({ client, json }) => {
      let status = await client.drain(opts.cancel ? 'DELETE' : 'POST');
      while (opts.wait && !opts.cancel && !status.done) {
        if (!json) process.stderr.write(`${status.node}: ${status.files} copies left to hand over\n`);
        // A referenced timer: nothing else keeps the process alive between polls.
        await new Promise((resolve) => setTimeout(resolve, 1_000));
        status = await client.drain('GET');
      }
      if (json) process.stdout.write(JSON.stringify(status) + '\n');
      else
        process.stdout.write(
          `${status.node}: ${status.done ? 'drained' : status.draining ? 'draining' : 'not draining'} (${status.files} copies held)\n`,
        );
    });
  });

  registerKeyCommands(program);
  registerBucketCommands(program);
}

/** `shoal bucket allow`: another S3 key may use a bucket too. */
function registerBucketCommands(program: Command): void {
  const bucket = program
    .command('bucket')
    .description('S3 buckets: grant other keys access')
    .exitOverride(usageExit);
  withCommonOptions(
    bucket
      .command('allow')
      .description('let another S3 access key read and/or write a bucket (added to what it may already do)')
      .argument('<bucket>', 'bucket name')
      .requiredOption('--key <id>', 'access key id to grant')
      .option('--read', 'may list and read objects')
      .option('--write', 'may write and delete objects'),
  ).action(async (name: string, opts: CommonOptions & { key: string; read?: boolean; write?: boolean }) => {
    await run(opts, async ({ client, json }) => {
      if (!opts.read && !opts.write) throw usageError('say what the key may do: --read, --write or both');
      const grant = await client.allowBucket(name, {
        accessKeyId: opts.key,
        read: opts.read === true,
        write: opts.write === true,
      });
      if (json) process.stdout.write(JSON.stringify(grant) + '\n');
      else {
        const rights = [grant.read ? 'read' : '', grant.write ? 'write' : ''].filter(Boolean).join(' and ');
        process.stdout.write(`${grant.accessKeyId} may ${rights} ${printable(grant.bucket)}\n`);
      }
    });
  });
}

/** `shoal key create|ls|rm`: S3 access keys, kept by the whole cluster. */
function registerKeyCommands(program: Command): void {
  const key = program
    .command('key')
    .description('S3 access keys: create, list, revoke (any node; the whole cluster knows them)')
    .exitOverride(usageExit);

  withCommonOptions(
    key
      .command('create')
      .description('create an S3 access key; prints its id and secret (the secret is shown only here)')
      .argument('<name>', 'a label for people'),
  ).action(async (name: string, opts: CommonOptions) => {
    await run(opts, async ({ client, json }) => {
      const made = await client.createS3Key(name);
      if (json)
        process.stdout.write(
          JSON.stringify({
            accessKeyId: made.accessKeyId,
            secretAccessKey: made.secretAccessKey,
            name: made.name,
          }) + '\n',
        );
      else
        process.stdout.write(
          `access key id:     ${made.accessKeyId}\nsecret access key: ${made.secretAccessKey}\n` +
            'the secret is shown only now: keep it.\n',
        );
    });
  });

  withCommonOptions(key.command('ls').description('list S3 access keys (never their secrets)')).action(
    async (opts: CommonOptions) => {
      await run(opts, async ({ client, json }) => {
        const keys = await client.listS3Keys();
        if (json) process.stdout.write(JSON.stringify(keys) + '\n');
        else
          for (const k of keys)
            process.stdout.write(`${k.accessKeyId}  ${k.createdAt}  ${printable(k.name)}\n`);
      });
    },
  );

  withCommonOptions(
    key.command('rm').description('revoke an S3 access key everywhere').argument('<id>', 'access key id'),
  ).action(async (id: string, opts: CommonOptions) => {
    await run(opts, async ({ client, json }) => {
      await client.removeS3Key(id);
      if (json) process.stdout.write(JSON.stringify({ accessKeyId: id, revoked: true }) + '\n');
      else process.stdout.write(`${id} revoked\n`);
    });
  });
}
