// The serving certificate when no --tls-cert-file is given: a CA and a serving certificate for
// localhost / 127.0.0.1 / ::1 (plus the bind address), generated into the data dir on first start
// with @peculiar/x509 over WebCrypto (ECDSA P-256), private keys 0600, reused on later starts.
// Several `atrest serve` replicas may share one data dir and start at the same moment: generation
// runs under an exclusive lock file (`pki.lock`, O_EXCL) and every file is written to a temporary
// name and renamed, so the others wait and then read the one complete set; what is read is checked
// to belong together (the serving key matches its certificate, which the CA signed).
import { createPrivateKey, webcrypto, randomBytes, X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { AtrestError } from '../errors.js';
import { withLockFile } from '../lock-file.js';
import { writeAtomic } from './atomic-file.js';

type X509 = typeof import('@peculiar/x509');

/** @peculiar/x509 needs a Reflect metadata polyfill (tsyringe): loaded only when generating. */
async function loadX509(): Promise<X509> {
  await import('reflect-metadata');
  return import('@peculiar/x509');
}

export interface ServingPki {
  certPem: string;
  keyPem: string;
  /** The CA to put in kubeconfigs (the generated CA, or the given serving certificate). */
  caPem: string;
  caCertPath?: string;
}

export const PKI_FILES = { caCert: 'ca.crt', caKey: 'ca.key', cert: 'serving.crt', key: 'serving.key' } as const;
/** Held (O_EXCL) while one process generates the PKI; the others wait for it. */
export const PKI_LOCK_FILE = 'pki.lock';

export class PkiError extends AtrestError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('API_PKI_INVALID', message, options);
  }
}

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY_MS = 24 * 3600 * 1000;

function serial(): string {
  const b = randomBytes(16);
  b[0] = (b[0] as number) & 0x7f;
  return b.toString('hex');
}

async function keyPem(x509: X509, key: webcrypto.CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

async function generate(dir: string, hosts: string[]): Promise<void> {
  const x509 = await loadX509();
  const crypto = webcrypto as never;
  x509.cryptoProvider.set(crypto);
  const now = Date.now();
  const caKeys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: 'CN=atrest-ca',
    notBefore: new Date(now - 3600_000),
    notAfter: new Date(now + 10 * 365 * DAY_MS),
    keys: caKeys as never,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey as never),
    ],
  }, crypto);
  const leafKeys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const names = hosts.map((h) => (isIP(h) ? { type: 'ip' as const, value: h } : { type: 'dns' as const, value: h }));
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: 'CN=atrest-apiserver',
    issuer: ca.subject,
    notBefore: new Date(now - 3600_000),
    notAfter: new Date(now + 365 * DAY_MS),
    signingKey: caKeys.privateKey as never,
    publicKey: leafKeys.publicKey as never,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(names),
      await x509.AuthorityKeyIdentifierExtension.create(ca, false, crypto),
    ],
  }, crypto);
  // Keys first (0600), certificates last, each renamed into place whole: a reader never sees half a
  // file, and a crash in between leaves a set with a file missing, which is regenerated whole.
  await writeAtomic(join(dir, PKI_FILES.caKey), await keyPem(x509, caKeys.privateKey), 0o600);
  await writeAtomic(join(dir, PKI_FILES.key), await keyPem(x509, leafKeys.privateKey), 0o600);
  await writeAtomic(join(dir, PKI_FILES.caCert), ca.toString('pem') + '\n', 0o644);
  await writeAtomic(join(dir, PKI_FILES.cert), leaf.toString('pem') + '\n' + ca.toString('pem') + '\n', 0o644);
}

/** The serving key must match the serving certificate, and the CA must have signed it. */
function checkPki(dir: string, pki: { certPem: string; keyPem: string; caPem: string }): void {
  try {
    const leaf = new X509Certificate(pki.certPem);
    const ca = new X509Certificate(pki.caPem);
    if (!leaf.checkPrivateKey(createPrivateKey(pki.keyPem))) throw new PkiError(`${join(dir, PKI_FILES.key)} is not the key of ${join(dir, PKI_FILES.cert)}`);
    if (!leaf.verify(ca.publicKey)) throw new PkiError(`${join(dir, PKI_FILES.cert)} is not signed by ${join(dir, PKI_FILES.caCert)}`);
  } catch (err) {
    if (err instanceof PkiError) throw err;
    throw new PkiError(`the generated certificates in ${dir} cannot be read: ${(err as Error).message}`, { cause: err });
  }
}

/** Loads the generated PKI from `dir`, generating it first when any file is missing. */
export async function ensureGeneratedPki(dir: string, extraHosts: string[] = []): Promise<ServingPki> {
  const paths = Object.values(PKI_FILES).map((f) => join(dir, f));
  const complete = (): boolean => paths.every((p) => existsSync(p));
  if (!complete()) {
    const hosts = [...new Set(['localhost', '127.0.0.1', '::1', ...extraHosts.filter((h) => h && h !== '0.0.0.0' && h !== '::')])];
    // Checked again under the lock: another replica may have generated the set while we waited.
    const lock = join(dir, PKI_LOCK_FILE);
    await withLockFile(lock, async () => {
      if (!complete()) await generate(dir, hosts);
    }, (waitedS) => new PkiError(`another process holds ${lock} (generating the certificates) for more than ${waitedS} s; remove it if no atrest serve is starting`));
  }
  const caCertPath = join(dir, PKI_FILES.caCert);
  const pki = {
    certPem: await readFile(join(dir, PKI_FILES.cert), 'utf8'),
    keyPem: await readFile(join(dir, PKI_FILES.key), 'utf8'),
    caPem: await readFile(caCertPath, 'utf8'),
    caCertPath,
  };
  checkPki(dir, pki);
  return pki;
}

/** A given serving certificate and key (--tls-cert-file / --tls-private-key-file). */
export async function loadServingPki(certFile: string, keyFile: string): Promise<ServingPki> {
  const certPem = await readFile(certFile, 'utf8');
  // Clients trust the served chain itself (Go accepts a certificate that is itself in the roots).
  return { certPem, keyPem: await readFile(keyFile, 'utf8'), caPem: certPem };
}
