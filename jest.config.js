/** Unit tests run in-process through ts-jest; integration tests drive real node processes built to dist/. */
const common = {
  testEnvironment: 'node',
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }],
    // Dependencies published only as ES modules, compiled to CommonJS for jest's loader.
    '/node_modules/.+\\.js$': '<rootDir>/test/helpers/esm-transform.cjs',
  },
  transformIgnorePatterns: [],
  resolver: '<rootDir>/test/helpers/esm-resolver.cjs',
};

module.exports = {
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/test/unit/**/*.test.ts'] },
    {
      ...common,
      displayName: 'integration',
      testMatch: ['<rootDir>/test/integration/**/*.test.ts', '<rootDir>/test/chaos/**/*.test.ts'],
    },
    { ...common, displayName: 'e2e', testMatch: ['<rootDir>/test/e2e/**/*.e2e.test.ts'] },
  ],
  // Integration tests start real processes; two cores cannot run several clusters at once.
  maxWorkers: 1,
  testTimeout: 120000,
};
