// KEK version retirement for the kmip backend: Revoke with reason Superseded, which moves the
// object to Deactivated. KMIP's state model has no way back from Deactivated (only to Destroyed or
// Compromised), and PyKMIP refuses Encrypt and Decrypt with a Deactivated key (PERMISSION_DENIED,
// measured), so a kmip retirement is final: there is no restore-key, and `atrest rotate` retires
// only after proving no stored value needs the version. Destroying the object is left to the
// KMIP server's owner.
import type { BackendContext, KeyVersionInfo } from '../backend.js';
import { BackendError } from '../backend.js';
import type { KmipClient } from './client.js';
import type { KmipSettings } from './config.js';
import { keyIdOf, listVersions, newKmipClient, toBackendError, type KeyVersion } from './kek.js';
import { RevocationReasonCode, State } from './tags.js';

async function withVersions<T>(s: KmipSettings, context: BackendContext, fn: (client: KmipClient, versions: KeyVersion[]) => Promise<T>): Promise<T> {
  const client = newKmipClient(s, context.metrics);
  try {
    const versions = await listVersions(client, s.keyName);
    if (versions.length === 0) throw new BackendError('KEY_NOT_FOUND', `--kmip-key-name: no KMIP key ${JSON.stringify(s.keyName)}; create it with init-key first`);
    return await fn(client, versions);
  } catch (e) {
    throw toBackendError(e, `KMIP key ${JSON.stringify(s.keyName)}`);
  } finally {
    client.close();
  }
}

/** The newest Active version: the one the backend wraps with. */
function currentOf(versions: KeyVersion[]): KeyVersion | undefined {
  return versions.filter((v) => v.state === State.Active).at(-1);
}

function info(keyName: string, v: KeyVersion, current: KeyVersion | undefined, createdAt?: number): KeyVersionInfo {
  return {
    keyId: keyIdOf(keyName, v),
    version: v.version,
    // Anything not Active (Pre-Active after a failed activation, Deactivated, Destroyed) does not unwrap.
    state: v === current ? 'current' : v.state === State.Active ? 'active' : 'retired',
    ...(createdAt !== undefined ? { createdAt } : {}),
  };
}

/** Every version of the key (any state), oldest first, with the server's creation time. */
export function listKmipVersions(s: KmipSettings, context: BackendContext): Promise<KeyVersionInfo[]> {
  return withVersions(s, context, async (client, versions) => {
    const current = currentOf(versions);
    const out: KeyVersionInfo[] = [];
    for (const v of versions) {
      const d = await client.describe(v.uid, { dates: true });
      out.push(info(s.keyName, v, current, d.initialDate ?? d.activationDate));
    }
    return out;
  });
}

/** Revokes (Superseded) an Active version that is not current; one already not Active is left as it is. */
export function retireKmipVersion(s: KmipSettings, context: BackendContext, keyId: string): Promise<KeyVersionInfo> {
  return withVersions(s, context, async (client, versions) => {
    const target = versions.find((v) => keyIdOf(s.keyName, v) === keyId);
    if (!target) {
      throw new BackendError('KEY_NOT_FOUND', `KMIP key ${JSON.stringify(s.keyName)} has no version with key_id ${JSON.stringify(keyId)} (it has ${versions.map((v) => keyIdOf(s.keyName, v)).join(', ')})`);
    }
    const current = currentOf(versions);
    if (target === current) throw new BackendError('CONFIG', `key_id ${keyId} is the current version: it cannot be retired (rotate first)`);
    if (target.state === State.Active) {
      await client.revoke(target.uid, RevocationReasonCode.Superseded, 'retired by atrest rotate: no stored value needs it');
      context.log.info({ event: 'kmip-key-retired', backend: 'kmip', keyName: s.keyName, version: target.version, keyId }, 'kmip key version revoked (Superseded): it is Deactivated');
    }
    return info(s.keyName, { ...target, state: State.Deactivated }, current);
  });
}
