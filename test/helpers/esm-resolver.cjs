/**
 * jest resolves packages with the "require" export condition only, so a package published only as
 * an ES module (exports with nothing but "import") is not found. Such packages are retried with
 * "import" added; jest.config.js compiles them to CommonJS. Packages that also ship CommonJS keep
 * resolving to it.
 */
module.exports = (request, options) => {
  try {
    return options.defaultResolver(request, options);
  } catch (err) {
    if (request.startsWith('.') || request.startsWith('/')) throw err;
    return options.defaultResolver(request, {
      ...options,
      conditions: [...(options.conditions ?? []), 'import'],
    });
  }
};
