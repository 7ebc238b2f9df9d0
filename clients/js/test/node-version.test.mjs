// One Node.js version for everything JavaScript here: the lowest major that
// scripts/lib/services.sh's ensure_node accepts is what clients/js and tests/browser
// declare in `engines`, and no locked package (playwright-core 1.65 needs 20) asks for
// more. This test runs on that Node, so it is at least that too.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const read = (file) => fs.readFileSync(path.join(REPO, file), 'utf8');
const PACKAGES = ['clients/js', 'tests/browser'];

/** The lowest major version an `engines.node` range admits (`>=20`, `^18 || >=20.1`, …). */
function lowestMajor(range) {
  const majors = range.split('||').map((alt) => Number(/(\d+)/.exec(alt)?.[1] ?? 0));
  return Math.min(...majors);
}

const ensured = Number(/^NODE_MIN_MAJOR=(\d+)$/m.exec(read('scripts/lib/services.sh'))?.[1]);

test('ensure_node, the packages and the running Node agree on the lowest Node.js major', () => {
  assert.ok(ensured >= 20, `NODE_MIN_MAJOR in scripts/lib/services.sh: ${ensured}`);
  for (const dir of PACKAGES) {
    const engines = JSON.parse(read(`${dir}/package.json`)).engines?.node;
    assert.equal(engines, `>=${ensured}`, `${dir}/package.json engines.node`);
    const lock = JSON.parse(read(`${dir}/package-lock.json`)).packages[''].engines?.node;
    assert.equal(lock, engines, `${dir}/package-lock.json is current (npm install)`);
  }
  assert.ok(Number(process.versions.node.split('.')[0]) >= ensured, `this Node.js (${process.version}) is older than ${ensured}`);
});

test('no locked dependency needs a newer Node.js than ensure_node provides', () => {
  for (const dir of PACKAGES) {
    const { packages } = JSON.parse(read(`${dir}/package-lock.json`));
    for (const [name, meta] of Object.entries(packages)) {
      if (!name || !meta.engines?.node) continue;
      const needs = lowestMajor(meta.engines.node);
      assert.ok(needs <= ensured, `${dir}: ${name} ${meta.version} needs Node.js ${meta.engines.node}; ensure_node accepts ${ensured}`);
    }
  }
});
