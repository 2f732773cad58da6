#!/usr/bin/env node
import { Command } from 'commander';
import { registerClientCommands } from './commands';

/**
 * A bin with only the client commands, for trying them before they are wired into cli.ts. It
 * handles errors the way cli.ts does, so exit codes behave as they will there.
 */
async function main(): Promise<void> {
  const program = new Command('shoal').showHelpAfterError().exitOverride();
  registerClientCommands(program);
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    const e = err as { code?: string; exitCode?: number; message?: string };
    if (e.code?.startsWith('commander.')) process.exit(e.exitCode ?? 2);
    process.stderr.write(`shoal: ${e.message ?? String(err)}\n`);
    process.exit(1);
  }
}

if (require.main === module) void main();
