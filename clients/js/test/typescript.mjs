// The TypeScript compiler (a devDependency: `npm ci` here) for the tests that read the
// declarations and the README's examples.
let ts;
try {
  ts = (await import('typescript')).default;
} catch (error) {
  throw new Error(`these tests need the typescript devDependency: run 'npm ci' in clients/js (${error.message})`);
}

export default ts;

/**
 * The names a declaration file exports as values (functions, classes, constants) and
 * the members of each interface it declares.
 * @param {string} file
 */
export function declarations(file) {
  const program = ts.createProgram([file], { noEmit: true, types: [] });
  const source = program.getSourceFile(file);
  const values = new Set();
  const interfaces = new Map();
  const exported = (node) => node.modifiers?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword);
  for (const node of source.statements) {
    if (!exported(node)) continue;
    if (ts.isFunctionDeclaration(node) || ts.isClassDeclaration(node)) values.add(node.name.text);
    if (ts.isVariableStatement(node)) for (const d of node.declarationList.declarations) values.add(d.name.text);
    if (ts.isInterfaceDeclaration(node)) {
      interfaces.set(node.name.text, new Set(node.members.map((m) => m.name?.getText(source)).filter(Boolean)));
    }
  }
  return { values, interfaces };
}
