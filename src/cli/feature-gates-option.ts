// `--feature-gates` for `atrest serve` and `atrest dev`: kube's syntax, parsed by
// src/api/feature-gates.ts (a leaf module: parsing the flag loads nothing of the server). Repeated
// flags merge, as kube's; an unknown gate or a bad value is a usage error naming it.
import { InvalidArgumentError, Option } from 'commander';
import { KNOWN_FEATURE_GATES, parseFeatureGates, type FeatureGates } from '../api/feature-gates.js';
import { messageOf } from '../errors.js';

export function featureGatesOption(): Option {
  const known = Object.entries(KNOWN_FEATURE_GATES).map(([name, spec]) => `${name}=true|false (${spec.stage} - default=${String(spec.default)})`).join(', ');
  return new Option('--feature-gates <gates>', `comma-separated key=value pairs of feature gates: ${known}`)
    .argParser((value: string, previous: FeatureGates | undefined): FeatureGates => {
      try {
        return parseFeatureGates(value, previous);
      } catch (err) {
        throw new InvalidArgumentError(messageOf(err));
      }
    });
}
