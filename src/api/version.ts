// /version. The minor MUST be "32": /usr/bin/kubectl is gcloud's dispatcher, which picks the kubectl
// binary from this field (27..31 and 33 select other binaries that send other bodies; kubectl.md §0.1).
export const KUBE_MINOR = '32';

export function versionInfo(): unknown {
  return {
    major: '1',
    minor: KUBE_MINOR,
    gitVersion: `v1.32.0-atrest`,
    gitCommit: '0000000000000000000000000000000000000000',
    gitTreeState: 'clean',
    buildDate: '2026-01-01T00:00:00Z',
    goVersion: `node${process.versions.node}`,
    compiler: 'tsc',
    platform: `${process.platform}/${process.arch === 'x64' ? 'amd64' : process.arch}`,
  };
}
