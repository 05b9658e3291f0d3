// Lint: the recommended JS and TypeScript rules, plus the layer rule of ARCHITECTURE.md.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'src/gen/**', 'test/fixtures/**', '.atrest/**'] },
  js.configs.recommended,
  { languageOptions: { globals: { ...globals.node } } },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'off',
    },
  },
  {
    files: ['src/**/*.ts'],
    ignores: ['src/cli/**'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ group: ['**/cli/*'], message: 'nothing imports cli (ARCHITECTURE.md)' }] }],
    },
  },
  {
    // crypto and config are the bottom layers: they import nothing of ours.
    files: ['src/crypto/**/*.ts', 'src/config/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ group: ['../transform/*', '../kms/*', '../plugin/*', '../storage/*', '../api/*', '../tools/*', '../cli/*', '**/cli/*'], message: 'crypto and config import nothing of ours (ARCHITECTURE.md)' }] }],
    },
  },
  {
    // k8s-objects (the Kubernetes object decoders shared by api and tools) is a leaf like src/gen.
    files: ['src/k8s-objects/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ group: ['../transform/*', '../kms/*', '../plugin/*', '../storage/*', '../api/*', '../tools/*', '../config/*', '../crypto/*', '../cli/*', '**/cli/*'], message: 'k8s-objects imports nothing of ours but src/errors.ts (ARCHITECTURE.md)' }] }],
    },
  },
  {
    // Controllers (the background work of serve) sit between api and storage: api starts them and
    // implements the small interfaces they own; they never import api (nor tools, plugin, cli).
    files: ['src/controllers/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ group: ['../api/*', '../../api/*', '../tools/*', '../../tools/*', '../plugin/*', '../../plugin/*', '../cli/*', '**/cli/*'], message: 'controllers may import storage, transform, config, k8s-objects and the leaves, not api, tools, plugin or cli (ARCHITECTURE.md)' }] }],
    },
  },
  {
    // Operator tools work on stored data through storage/transform/config; they never import the API server.
    files: ['src/tools/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ group: ['../api/*', '../plugin/*', '../cli/*', '**/cli/*'], message: 'tools may import storage, transform, config, kms, k8s-objects and gen, not api, plugin or cli (ARCHITECTURE.md)' }] }],
    },
  },
);
