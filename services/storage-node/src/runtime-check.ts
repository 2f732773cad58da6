/**
 * Imported first by the bin, before anything loads better-sqlite3: on a Node.js older than
 * package.json's engines, better-sqlite3 13 does not fail politely (on Node 20 it crashes the process
 * with a segmentation fault), so say what is needed and stop instead.
 */
const MIN_MAJOR = 22;
const MIN_MINOR = 19;

const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
if (major < MIN_MAJOR || (major === MIN_MAJOR && minor < MIN_MINOR)) {
  process.stderr.write(
    `shoal: needs Node.js ${MIN_MAJOR}.${MIN_MINOR} or newer (24 LTS recommended); this is ${process.version}.\n` +
      '  On a machine with an older Node: `. scripts/use-node.sh` puts Node 24 first on PATH (see README).\n',
  );
  process.exit(2);
}
