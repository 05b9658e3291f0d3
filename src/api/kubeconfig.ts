// `<data-dir>/admin.kubeconfig` (0600): the cluster's CA data, the server URL and the admin token.
import { writeFile, rename } from 'node:fs/promises';
import { stringify } from 'yaml';

export interface KubeconfigInput {
  server: string;
  caPem: string;
  token: string;
  user?: string;
}

export function renderKubeconfig(input: KubeconfigInput): string {
  const user = input.user ?? 'admin';
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'atrest', cluster: { server: input.server, 'certificate-authority-data': Buffer.from(input.caPem).toString('base64') } }],
    users: [{ name: user, user: { token: input.token } }],
    contexts: [{ name: 'atrest', context: { cluster: 'atrest', user, namespace: 'default' } }],
    'current-context': 'atrest',
    preferences: {},
  });
}

/** Written to a temporary file and renamed, so a reader never sees half a kubeconfig. */
export async function writeKubeconfig(path: string, input: KubeconfigInput): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, renderKubeconfig(input), { mode: 0o600 });
  await rename(tmp, path);
}
