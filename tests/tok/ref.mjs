// ref.mjs — reference token ids from Hugging Face tokenizers.js
// (@huggingface/tokenizers) for tests/tok/compare.sh and bench/tok_bench.sh.
// usage: node ref.mjs NPM_DIR TOKENIZER_DIR TEXT_FILE [--each-line] [--no-special] [--time ROUNDS]
// Prints {"ids": [...]} per text: one per line of TEXT_FILE with --each-line
// (without the "\n", as `kvstudio tokenize --each-line`), else one for the
// whole file. --time: encode ROUNDS times, print {"seconds", "bytes", "tokens"}.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const [npmDir, tokDir, file, ...rest] = process.argv.slice(2);
const require = createRequire(join(npmDir, "package.json"));
const { Tokenizer } = require("@huggingface/tokenizers");
const json = JSON.parse(readFileSync(join(tokDir, "tokenizer.json"), "utf8"));
const cfg = JSON.parse(readFileSync(join(tokDir, "tokenizer_config.json"), "utf8"));
const tok = new Tokenizer(json, cfg);
const opts = { add_special_tokens: !rest.includes("--no-special") };
const whole = readFileSync(file, "utf8");
let texts = [whole];
if (rest.includes("--each-line")) {
    texts = whole.split("\n");
    if (texts.length && texts[texts.length - 1] === "") texts.pop();
}
const ti = rest.indexOf("--time");
if (ti >= 0) {
    const rounds = Number(rest[ti + 1] || 1);
    let bytes = 0, n = 0;
    for (const t of texts) bytes += Buffer.byteLength(t);
    const t0 = process.hrtime.bigint();
    for (let r = 0; r < rounds; r++) for (const t of texts) n += tok.encode(t, opts).ids.length;
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    console.log(JSON.stringify({ seconds: s, bytes: bytes * rounds, tokens: n }));
} else {
    process.stdout.write(texts.map((t) => JSON.stringify({ ids: tok.encode(t, opts).ids })).join("\n") + "\n");
}
