// The serving certificate when no --tls-cert-file is given: a CA and a serving certificate for
// localhost / 127.0.0.1 / ::1 (plus the bind address), generated into the data dir on first start
// with @peculiar/x509 over WebCrypto (ECDSA P-256), private keys 0600, reused on later starts.
import { webcrypto, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';

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
  // Keys first (0600, exclusive create), certificates last: a crash in between regenerates all.
  await writeFile(join(dir, PKI_FILES.caKey), await keyPem(x509, caKeys.privateKey), { mode: 0o600 });
  await writeFile(join(dir, PKI_FILES.key), await keyPem(x509, leafKeys.privateKey), { mode: 0o600 });
  await writeFile(join(dir, PKI_FILES.caCert), ca.toString('pem') + '\n', { mode: 0o644 });
  await writeFile(join(dir, PKI_FILES.cert), leaf.toString('pem') + '\n' + ca.toString('pem') + '\n', { mode: 0o644 });
}

/** Loads the generated PKI from `dir`, generating it first when any file is missing. */
export async function ensureGeneratedPki(dir: string, extraHosts: string[] = []): Promise<ServingPki> {
  const paths = Object.values(PKI_FILES).map((f) => join(dir, f));
  if (!paths.every((p) => existsSync(p))) {
    const hosts = [...new Set(['localhost', '127.0.0.1', '::1', ...extraHosts.filter((h) => h && h !== '0.0.0.0' && h !== '::')])];
    await generate(dir, hosts);
  }
  const caCertPath = join(dir, PKI_FILES.caCert);
  return {
    certPem: await readFile(join(dir, PKI_FILES.cert), 'utf8'),
    keyPem: await readFile(join(dir, PKI_FILES.key), 'utf8'),
    caPem: await readFile(caCertPath, 'utf8'),
    caCertPath,
  };
}

/** A given serving certificate and key (--tls-cert-file / --tls-private-key-file). */
export async function loadServingPki(certFile: string, keyFile: string): Promise<ServingPki> {
  const certPem = await readFile(certFile, 'utf8');
  // Clients trust the served chain itself (Go accepts a certificate that is itself in the roots).
  return { certPem, keyPem: await readFile(keyFile, 'utf8'), caPem: certPem };
}
