// Every rule of kube-apiserver's EncryptionConfiguration validation (format.md §3.3; upstream
// pkg/apis/apiserver/validation/validation_encryption.go), in the same order with the same
// texts, collecting ALL errors. Secrets are never shown: their value is always "REDACTED".
import { ConfigError } from './errors.js';
import type { FieldError } from './field-errors.js';
import { invalidRendered, invalidString, renderFieldErrors, required } from './field-errors.js';
import { goIntSlice, goQuote, goStringSlice } from './go-format.js';
import { formatGoDuration, millisToNanos } from './go-duration.js';
import { parseGoUrl } from './go-url.js';
import { parseGroupResource } from './group-resource.js';
import { decodeKeySecret } from './secret.js';
import type { EncryptionConfiguration, KMSConfiguration, KeysConfiguration } from './types.js';

export interface ValidateOptions {
  /** Automatic reload is on: kms v1 names must be unique too. */
  reload?: boolean;
}

/** A `providers` element seen loosely: a file may set none or several providers in one element. */
export interface ProviderElement {
  aesgcm?: KeysConfiguration;
  aescbc?: KeysConfiguration;
  secretbox?: KeysConfiguration;
  identity?: Record<string, never>;
  kms?: KMSConfiguration;
}

export const AES_KEY_SIZES: readonly number[] = [16, 24, 32];
export const SECRETBOX_KEY_SIZES: readonly number[] = [32];

const MSG = {
  moreThanOne: 'more than one provider specified in a single element, should split into different list elements',
  noProvider: 'provider does not contain any of the expected providers: KMS, AESGCM, AESCBC, Secretbox, Identity',
  base64: 'secrets must be base64 encoded',
  eventsGroup:
    "'*.events.k8s.io' objects are stored using the 'events' API group in etcd. Use 'events' instead in the config file",
  extensionsGroup: "'extensions' group has been removed and cannot be used for encryption",
  starResource: "use '*.' to encrypt all the resources from core API group or *.* to encrypt all resources",
  overlap:
    "using overlapping resources such as 'secrets' and '*.' in the same resource list is not allowed as they will be masked",
  nonRest: 'resources which do not have REST API/s cannot be encrypted',
  capital: 'resource name should not contain capital letters',
  acrossGroups: 'encrypting the same resource across groups is not supported',
  duplicateResource: 'the same resource cannot be specified multiple times',
  cachesizeV2: 'cachesize is not supported in v2',
} as const;

const atLeastOne = (what: string): string => `at least one ${what} is required`;
const mandatory = (field: string, of: string): string => `${field} is a mandatory field for a ${of}`;

function list<T>(v: unknown): T[] {
  return Array.isArray(v) ? (v as T[]) : [];
}
function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

/** Go's `%#v` of the internal ProviderConfiguration; set pointers show as `(set)` instead of an
 * address (kube prints a memory address there; nothing else of the provider is shown). */
function providerDump(p: ProviderElement): string {
  const ptr = (set: boolean, type: string): string => `(*apiserver.${type})(${set ? 'set' : 'nil'})`;
  return (
    'apiserver.ProviderConfiguration{' +
    `AESGCM:${ptr(p.aesgcm !== undefined, 'AESConfiguration')}, ` +
    `AESCBC:${ptr(p.aescbc !== undefined, 'AESConfiguration')}, ` +
    `Secretbox:${ptr(p.secretbox !== undefined, 'SecretboxConfiguration')}, ` +
    `Identity:${ptr(p.identity !== undefined, 'IdentityConfiguration')}, ` +
    `KMS:${ptr(p.kms !== undefined, 'KMSConfiguration')}}`
  );
}

function sameGR(a: { group: string; resource: string }, b: { group: string; resource: string }): boolean {
  return a.group === b.group && a.resource === b.resource;
}

/** Duplicates and wildcard overlaps inside one `resources` list (kube's exact loop, whose
 * quirks matter: `['*.', '*.']` reports both errors). */
function validateResourceOverlap(resources: string[], path: string): FieldError[] {
  if (resources.length < 2) return [];
  const grs = resources.map(parseGroupResource);
  let hasOverlap = false;
  let hasDuplicate = false;
  grs.forEach((r1, i) => {
    grs.forEach((r2, j) => {
      if (i === j) return;
      if (sameGR(r1, r2) && !hasDuplicate) {
        hasDuplicate = true;
        return;
      }
      if (hasOverlap) return;
      if (r1.group === '*' && r1.resource === '*') {
        hasOverlap = true;
        return;
      }
      if (r1.group !== r2.group) return;
      if (r1.resource === '*' || r2.resource === '*') hasOverlap = true;
    });
  });
  const errs: FieldError[] = [];
  if (hasDuplicate) errs.push(invalidRendered(path, goStringSlice(resources), MSG.duplicateResource));
  if (hasOverlap) errs.push(invalidRendered(path, goStringSlice(resources), MSG.overlap));
  return errs;
}

function validateResourceNames(resources: string[], path: string): FieldError[] {
  const errs: FieldError[] = [];
  resources.forEach((res, j) => {
    const p = `${path}[${j}]`;
    if (res.toLowerCase() !== res) errs.push(invalidString(p, res, MSG.capital));
    else if (res === '*') errs.push(invalidString(p, res, MSG.starResource));
    else if (res === 'apiserveripinfo' || res === 'serviceipallocations' || res === 'servicenodeportallocations') {
      errs.push(invalidString(p, res, MSG.nonRest));
    } else {
      const gr = parseGroupResource(res);
      if (gr.group === 'events.k8s.io') errs.push(invalidString(p, res, MSG.eventsGroup));
      else if (gr.group === 'extensions') errs.push(invalidString(p, res, MSG.extensionsGroup));
      else if (gr.group === '*' && gr.resource !== '*') errs.push(invalidString(p, res, MSG.acrossGroups));
    }
  });
  return errs;
}

function validateKeys(keys: unknown, path: string, sizes: readonly number[]): FieldError[] {
  const list_ = list<{ name?: unknown; secret?: unknown }>(keys);
  if (list_.length === 0) return [required(path, atLeastOne('keys'))];
  const errs: FieldError[] = [];
  list_.forEach((key, i) => {
    const p = `${path}[${i}]`;
    const name = str(key?.name);
    const secret = str(key?.secret);
    if (name === '') errs.push(required(`${p}.name`, mandatory('name', 'key')));
    if (secret === '') {
      errs.push(required(`${p}.secret`, mandatory('secret', 'key')));
      return;
    }
    const bytes = decodeKeySecret(secret);
    if (bytes === undefined) {
      errs.push(invalidString(`${p}.secret`, 'REDACTED', MSG.base64));
      return;
    }
    if (!sizes.includes(bytes.length)) {
      errs.push(
        invalidString(
          `${p}.secret`,
          'REDACTED',
          `secret is not of the expected length, got ${bytes.length}, expected one of ${goIntSlice(sizes)}`,
        ),
      );
    }
    bytes.fill(0);
  });
  return errs;
}

function validateKms(kms: KMSConfiguration, path: string, names: Set<string>, reload: boolean): FieldError[] {
  const errs: FieldError[] = [];
  const apiVersion = str(kms.apiVersion);
  const name = str(kms.name);
  const endpoint = str(kms.endpoint);

  // name
  if (name === '') errs.push(required(`${path}.name`, mandatory('name', 'provider')));
  if (apiVersion !== 'v1' && name.includes(':')) {
    errs.push(invalidString(`${path}.name`, name, `invalid KMS provider name ${name}, must not contain ':'`));
  }
  if ((reload || apiVersion !== 'v1') && names.has(name)) {
    errs.push(invalidString(`${path}.name`, name, `duplicate KMS provider name ${name}, names must be unique`));
  }

  // timeout
  const timeoutMs = typeof kms.timeoutMs === 'number' && Number.isFinite(kms.timeoutMs) ? kms.timeoutMs : 0;
  if (!(timeoutMs > 0)) {
    errs.push(invalidRendered(`${path}.timeout`, formatGoDuration(millisToNanos(timeoutMs)), 'timeout should be a positive value'));
  }

  // endpoint
  if (endpoint === '') {
    errs.push(invalidString(`${path}.endpoint`, '', mandatory('endpoint', 'kms')));
  } else {
    const url = parseGoUrl(endpoint);
    if (!url.ok) {
      errs.push(invalidString(`${path}.endpoint`, endpoint, `invalid endpoint for kms provider, error: ${url.error}`));
    } else if (url.scheme !== 'unix') {
      errs.push(
        invalidString(`${path}.endpoint`, endpoint, `unsupported scheme "${url.scheme}" for KMS provider, only unix is supported`),
      );
    }
  }

  // cachesize (defaulting set it for v1)
  const cachesize = typeof kms.cachesize === 'number' ? kms.cachesize : undefined;
  if (apiVersion !== 'v1' && cachesize !== undefined) {
    errs.push(invalidRendered(`${path}.cachesize`, String(cachesize), MSG.cachesizeV2));
  }
  if (apiVersion === 'v1' && cachesize === 0) {
    errs.push(invalidRendered(`${path}.cachesize`, '0', 'cachesize should be a positive value, or negative to disable'));
  }

  // apiVersion (sic: kube substitutes the literal word "apiVersion")
  if (apiVersion !== 'v1' && apiVersion !== 'v2') {
    errs.push(
      invalidString(`${path}.apiVersion`, apiVersion, 'unsupported apiVersion apiVersion for KMS provider, only v1 and v2 are supported'),
    );
  }
  return errs;
}

/**
 * Validates a defaulted configuration; returns every failed rule (empty when valid). Pass
 * `reload: true` when the file is (re)loaded with automatic reload on.
 */
export function validateEncryptionConfiguration(config: EncryptionConfiguration, options: ValidateOptions = {}): FieldError[] {
  const reload = options.reload === true;
  const entries = list<{ resources?: unknown; providers?: unknown }>(config?.resources);
  if (entries.length === 0) return [required('resources', atLeastOne('resources'))];

  const errs: FieldError[] = [];
  const kmsNames = new Set<string>();
  entries.forEach((entry, i) => {
    const r = `resources[${i}].resources`;
    const p = `resources[${i}].providers`;
    const resources = list<unknown>(entry?.resources).map(str);
    const providers = list<ProviderElement>(entry?.providers);

    if (resources.length === 0) errs.push(required(r, atLeastOne(r)));
    errs.push(...validateResourceOverlap(resources, r));
    errs.push(...validateResourceNames(resources, r));
    if (providers.length === 0) errs.push(required(p, atLeastOne(p)));

    providers.forEach((element, j) => {
      // null counts as unset, like a nil pointer in Go
      const provider: ProviderElement = {};
      for (const name of ['aesgcm', 'aescbc', 'secretbox', 'identity', 'kms'] as const) {
        const value = (element as Record<string, unknown> | null | undefined)?.[name];
        if (value !== undefined && value !== null) (provider as Record<string, unknown>)[name] = value;
      }
      const path = `${p}[${j}]`;
      const set = [provider.kms, provider.aesgcm, provider.aescbc, provider.secretbox, provider.identity].filter(
        (x) => x !== undefined,
      ).length;
      if (set === 0) errs.push(invalidRendered(path, providerDump(provider), MSG.noProvider));
      else if (set > 1) errs.push(invalidRendered(path, providerDump(provider), MSG.moreThanOne));

      if (provider.kms !== undefined) {
        errs.push(...validateKms(provider.kms, `${path}.kms`, kmsNames, reload));
        kmsNames.add(str(provider.kms.name));
      } else if (provider.aesgcm !== undefined) {
        errs.push(...validateKeys(provider.aesgcm?.keys, `${path}.aesgcm.keys`, AES_KEY_SIZES));
      } else if (provider.aescbc !== undefined) {
        errs.push(...validateKeys(provider.aescbc?.keys, `${path}.aescbc.keys`, AES_KEY_SIZES));
      } else if (provider.secretbox !== undefined) {
        errs.push(...validateKeys(provider.secretbox?.keys, `${path}.secretbox.keys`, SECRETBOX_KEY_SIZES));
      }
    });
  });
  return errs;
}

/** The one-line message for a file that failed validation (kube: `error while parsing file: ...`). */
export function validationMessage(path: string, errors: readonly FieldError[]): string {
  return `error while parsing file ${goQuote(path)}: ${renderFieldErrors(errors)}`;
}

/** Throws ConfigError CONFIG_INVALID naming `path` when any rule fails. */
export function assertValidEncryptionConfiguration(
  config: EncryptionConfiguration,
  path: string,
  options: ValidateOptions = {},
): void {
  const errors = validateEncryptionConfiguration(config, options);
  if (errors.length > 0) {
    throw new ConfigError('CONFIG_INVALID', validationMessage(path, errors), { path, fieldErrors: errors });
  }
}
