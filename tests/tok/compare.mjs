// compare.mjs — ids of `kvstudio tokenize --json` against ref.mjs, text by text.
// usage: node compare.mjs NAME REF.jsonl OURS.jsonl TEXT_FILE [--each-line]
// Exit 1 on any difference, naming the first differing text (line of
// TEXT_FILE with --each-line; else the line where the first differing token starts).
import { readFileSync } from "node:fs";

const [name, refPath, oursPath, textPath, mode] = process.argv.slice(2);
const rows = (p) => readFileSync(p, "utf8").split("\n").filter((l) => l.length).map((l) => JSON.parse(l).ids);
const ref = rows(refPath), ours = rows(oursPath);
const lines = readFileSync(textPath, "utf8").split("\n");
let bad = 0, first = -1;
for (let i = 0; i < Math.max(ref.length, ours.length); i++) {
    const a = ref[i] ?? null, b = ours[i] ?? null;
    if (JSON.stringify(a) !== JSON.stringify(b)) {
        bad++;
        if (first < 0) first = i;
    }
}
if (!bad) {
    console.log(`${name}: ${ref.length} texts, ${ref.reduce((s, r) => s + r.length, 0)} ids identical`);
    process.exit(0);
}
const a = ref[first] ?? [], b = ours[first] ?? [];
let k = 0;
while (k < a.length && k < b.length && a[k] === b[k]) k++;
let where = `text ${first + 1}`;
if (mode === "--each-line") where = `line ${first + 1}: ${JSON.stringify(lines[first])}`;
console.log(`${name}: ${bad} of ${Math.max(ref.length, ours.length)} texts differ; first: ${where}`);
console.log(`  at id ${k}: reference ${JSON.stringify(a.slice(k, k + 8))}, kvstudio ${JSON.stringify(b.slice(k, k + 8))}`);
process.exit(1);
