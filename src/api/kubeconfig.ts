// `<data-dir>/admin.kubeconfig` (0600): the cluster's CA data, the server URL and the admin token.
import { stringify } from 'yaml';
import { writeAtomic } from './atomic-file.js';

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
  await writeAtomic(path, renderKubeconfig(input), 0o600);
}
