// `--feature-gates`: kube's syntax (component-base/featuregate): a comma-separated list of
// `Name=bool`, several flags merge, later values win. Only the gates atrest implements are accepted;
// any other name is an error naming it, as kube-apiserver rejects a gate it does not know. A leaf of
// constants and one parser (no imports but the error base), so `atrest serve` can parse its flags
// without loading the server.
import { AtrestError } from '../errors.js';

/** The gates atrest implements, with kube-apiserver 1.32's default and stage. */
export const KNOWN_FEATURE_GATES = {
  /**
   * KEP-3926: DELETE with `ignoreStoreReadErrorWithClusterBreakingPotential: true` removes an object
   * whose stored value cannot be decrypted or decoded, without reading it. Alpha in 1.32, off by default.
   */
  AllowUnsafeMalformedObjectDeletion: { default: false, stage: 'ALPHA' },
} as const;

export type FeatureGateName = keyof typeof KNOWN_FEATURE_GATES;
export type FeatureGates = Readonly<Record<FeatureGateName, boolean>>;

export class FeatureGateError extends AtrestError {
  constructor(message: string) {
    super('FEATURE_GATE_INVALID', message);
  }
}

export function defaultFeatureGates(): FeatureGates {
  const gates = {} as Record<FeatureGateName, boolean>;
  for (const [name, spec] of Object.entries(KNOWN_FEATURE_GATES)) gates[name as FeatureGateName] = spec.default;
  return gates;
}

/** Go's strconv.ParseBool. */
function parseGoBool(text: string): boolean | undefined {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(text)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(text)) return false;
  return undefined;
}

/**
 * Parses one `--feature-gates` value on top of `base` (the previous flags' result). `AllAlpha` /
 * `AllBeta` set every gate of that stage, as kube's; explicit gates win over them whatever the order.
 */
export function parseFeatureGates(value: string, base: FeatureGates = defaultFeatureGates()): FeatureGates {
  const gates: Record<FeatureGateName, boolean> = { ...base };
  const explicit = new Map<FeatureGateName, boolean>();
  const all = new Map<'ALPHA' | 'BETA', boolean>();
  for (const raw of value.split(',')) {
    const item = raw.trim();
    if (item === '') continue;
    const eq = item.indexOf('=');
    if (eq < 0) throw new FeatureGateError(`missing bool value for ${item}`);
    const name = item.slice(0, eq).trim();
    const text = item.slice(eq + 1).trim();
    const enabled = parseGoBool(text);
    if (enabled === undefined) throw new FeatureGateError(`invalid value of ${name}=${text}, err: strconv.ParseBool: parsing ${JSON.stringify(text)}: invalid syntax`);
    if (name === 'AllAlpha' || name === 'AllBeta') {
      all.set(name === 'AllAlpha' ? 'ALPHA' : 'BETA', enabled);
      continue;
    }
    if (!Object.hasOwn(KNOWN_FEATURE_GATES, name)) {
      throw new FeatureGateError(`unrecognized feature gate: ${name} (atrest implements: ${Object.keys(KNOWN_FEATURE_GATES).join(', ')})`);
    }
    explicit.set(name as FeatureGateName, enabled);
  }
  for (const [name, spec] of Object.entries(KNOWN_FEATURE_GATES) as Array<[FeatureGateName, { stage: 'ALPHA' | 'BETA' }]>) {
    const stageValue = all.get(spec.stage);
    if (stageValue !== undefined) gates[name] = stageValue;
  }
  for (const [name, enabled] of explicit) gates[name] = enabled;
  return gates;
}
