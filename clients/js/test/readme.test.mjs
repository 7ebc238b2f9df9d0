// The READMEs' examples are meant to be copied (clients/js/README.md's, and the root
// README's client example): each ```js / ```jsx block, and each ```html block's module
// script, must parse as a module on its own, import what it uses
// from the package (or ./tidings.js) and leave no name undefined. The TypeScript
// compiler checks them against the declarations, reporting syntax errors, names that
// are not defined, imports that do not resolve or are not exported, and members the
// API does not have. (Types beyond that are not asked of a plain-JS example.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import ts from './typescript.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');
const READMES = [path.join(ROOT, 'README.md'), path.resolve(ROOT, '../../README.md')];

/** What an example may not do: each a TypeScript diagnostic code. */
const CHECKED = new Map([
  [2304, 'a name that is not defined'],
  [2552, 'a name that is not defined'],
  [2307, 'an import that does not resolve'],
  [2305, 'a name the module does not export'],
  [2724, 'a name the module does not export'],
  [2614, 'a name the module does not export'],
  [2339, 'a member the API does not have'],
  [2551, 'a member the API does not have'],
  [2554, 'a call with the wrong number of arguments'],
  [2353, 'an option the API does not have'],
  [2561, 'an option the API does not have'],
  [18004, 'a name that is not defined'], // a shorthand property: `{ edgeUrl }`
]);

/** Plain JS cannot name a topic's type: members of an `unknown` value are its own business. */
const untyped = (d) => d.code === 2339 && /on type 'unknown'/.test(ts.flattenDiagnosticMessageText(d.messageText, ' '));

/** A README's examples: `{ name, lang, code }`, html blocks reduced to their module scripts. */
export function examples(markdown, readme = 'README') {
  const blocks = [];
  const fence = /^```(\w+)[^\n]*\n([\s\S]*?)^```/gm;
  for (const m of markdown.matchAll(fence)) {
    const [, lang, body] = m;
    const line = markdown.slice(0, m.index).split('\n').length;
    if (lang === 'js' || lang === 'jsx') blocks.push({ name: `${readme} line ${line}`, lang, code: body });
    if (lang === 'html') {
      for (const s of body.matchAll(/<script type="module">([\s\S]*?)<\/script>/g)) {
        blocks.push({ name: `${readme} line ${line} (html)`, lang: 'js', code: s[1] });
      }
    }
  }
  return blocks;
}

/** The diagnostics of `blocks`, each compiled as its own module, as readable lines. */
export function check(blocks) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tidings-readme-'));
  try {
    // `./tidings.js` next to a page resolves to the declarations, as in a real copy.
    fs.copyFileSync(path.join(ROOT, 'tidings.d.ts'), path.join(dir, 'tidings.d.ts'));
    const files = blocks.map((b, i) => {
      const file = path.join(dir, `example-${i}.${b.lang === 'jsx' ? 'jsx' : 'mjs'}`);
      fs.writeFileSync(file, b.code);
      return file;
    });
    const options = {
      allowJs: true,
      checkJs: true,
      noEmit: true,
      jsx: ts.JsxEmit.Preserve,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.ESNext,
      moduleResolution: ts.ModuleResolutionKind.Bundler,
      lib: ['lib.es2022.d.ts', 'lib.dom.d.ts'],
      types: [],
      paths: {
        '@tidings/client': [path.join(ROOT, 'tidings.d.ts')],
        '@tidings/client/react': [path.join(ROOT, 'react.d.ts')],
      },
    };
    const program = ts.createProgram(files, options);
    const lines = [];
    for (const [i, file] of files.entries()) {
      const source = program.getSourceFile(file);
      const diagnostics = [
        ...program.getSyntacticDiagnostics(source),
        ...program.getSemanticDiagnostics(source).filter((d) => CHECKED.has(d.code) && !untyped(d)),
      ];
      for (const d of diagnostics) {
        const { line } = source.getLineAndCharacterOfPosition(d.start ?? 0);
        const what = CHECKED.get(d.code) ?? 'a syntax error';
        lines.push(`${blocks[i].name}, its line ${line + 1}: ${what}: ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`);
      }
    }
    return lines;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test('every README example is a module that defines or imports every name it uses', () => {
  const blocks = READMES.flatMap((file) => examples(fs.readFileSync(file, 'utf8'), path.relative(path.resolve(ROOT, '../..'), file)));
  assert.ok(blocks.length >= 8, `found only ${blocks.length} examples`);
  assert.deepEqual(check(blocks), []);
});

test('the check catches what it is for', () => {
  const bad = [
    { name: 'undefined', lang: 'js', code: "const board = createTidings({ edgeUrl, topics: ['ranking'] });\n" },
    { name: 'import', lang: 'js', code: "import { createTiding } from '@tidings/client';\ncreateTiding;\n" },
    { name: 'member', lang: 'js', code: "import { createTidings } from '@tidings/client';\ncreateTidings({ edgeUrl: 'x' }).inbox.markAll();\n" },
    { name: 'syntax', lang: 'jsx', code: 'export function A() { return <p>; }\n' },
  ];
  const found = check(bad);
  for (const [what, pattern] of [
    ['undefined', /undefined, its line 1: a name that is not defined: Cannot find name 'createTidings'/],
    ['undefined', /undefined, its line 1: a name that is not defined: No value exists in scope for the shorthand property 'edgeUrl'/],
    ['import', /import, its line 1: a name the module does not export/],
    ['member', /member, its line 2: a member the API does not have/],
    ['syntax', /syntax, its line 1: a syntax error/],
  ]) {
    assert.ok(found.some((l) => pattern.test(l)), `${what}: ${pattern} in\n${found.join('\n')}`);
  }
});
