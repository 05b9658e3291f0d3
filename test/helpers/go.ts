// Go programs of the test fixtures, built offline with Debian's toolchain and golang-google-grpc-dev
// (GOPATH mode, no module proxy: see bench/go-plugin/README.md) into the OS temp dir, once per
// source version: the binary's name carries a hash of its source, so a changed main.go is rebuilt
// and concurrent test files share one build (written under a temporary name, then renamed).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from './plugin.js';

export const GO_BUILD_ENV = { GO111MODULE: 'off', GOPATH: '/usr/share/gocode', GOPROXY: 'off', GOFLAGS: '' };

/** Path of the binary built from `<repo>/<dir>/main.go`; throws with go's output when the build fails. */
export function goFixtureBinary(dir: string): string {
  const source = readFileSync(join(repoRoot, dir, 'main.go'));
  const hash = createHash('sha256').update(source).digest('hex').slice(0, 16);
  const out = join(tmpdir(), `atrest-${dir.replace(/[^a-z0-9]+/gi, '-')}-${hash}`);
  if (existsSync(out)) return out;
  const tmp = `${out}.${process.pid}.tmp`;
  const r = spawnSync('go', ['build', '-o', tmp, `./${dir}`], { cwd: repoRoot, env: { ...process.env, ...GO_BUILD_ENV }, encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    throw new Error(`go build ./${dir} failed (needs golang-go, golang-google-grpc-dev, golang-google-protobuf-dev: scripts/install-test-deps.sh): ${r.error?.message ?? r.stderr}`);
  }
  renameSync(tmp, out);
  return out;
}
