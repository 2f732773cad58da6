/**
 * jest's module loader runs CommonJS only (require(esm) needs Node 24.9+ and an experimental flag),
 * while several dependencies, and theirs, are published only as ES modules; Node itself loads
 * them from our CommonJS build with require(esm). Under jest, a file of node_modules that has
 * top-level import or export statements is compiled to CommonJS here; any other file passes
 * through untouched, so the cost is one regular expression per file (and jest caches results).
 */
const ts = require('typescript');

const ESM_STATEMENT = /^(?:import\s*[\w{*'"]|export\s*[\w{*])/m;

module.exports = {
  process(source, filename) {
    if (!ESM_STATEMENT.test(source)) return { code: source };
    const { outputText } = ts.transpileModule(source, {
      fileName: filename,
      compilerOptions: {
        module: ts.ModuleKind.CommonJS,
        target: ts.ScriptTarget.ES2023,
        allowJs: true,
        esModuleInterop: true,
      },
    });
    return { code: outputText };
  },
};
