/**
 * Preloaded into node processes by the GC soak test (NODE_OPTIONS="--expose-gc --require ..."):
 * runs a full garbage collection every SHOAL_FORCE_GC_MS milliseconds, so objects that native
 * modules finalise (better-sqlite3 statements, undici bodies) are collected at once, again and
 * again, instead of whenever V8 happens to need the memory.
 */
const every = Number(process.env.SHOAL_FORCE_GC_MS || 1000);
if (typeof global.gc !== 'function') {
  throw new Error('force-gc.cjs needs --expose-gc');
}
setInterval(() => global.gc(), every).unref();
