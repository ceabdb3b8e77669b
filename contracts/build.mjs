// Compile contracts/src with the pinned solc-js into contracts/artifacts/<Name>.json.
//   npm run build            (make contracts)
// Offline: imports resolve from node_modules; no compiler is downloaded.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const solc = require("solc");
const here = dirname(fileURLToPath(import.meta.url));
const CONTRACTS = ["RewardToken", "RewardDistributor", "NodeStaking"];

// py-evm, the embedded chain, runs nothing newer than prague.
export const settings = {
  evmVersion: "prague",
  optimizer: { enabled: true, runs: 200 },
  outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
};

const sha256 = (text) => createHash("sha256").update(text).digest("hex");

function findImport(path) {
  try {
    return { contents: readFileSync(require.resolve(path), "utf8") };
  } catch {
    return { error: `not found: ${path}` };
  }
}

const sources = {};
for (const name of readdirSync(join(here, "src")).filter((f) => f.endsWith(".sol")).sort()) {
  sources[`src/${name}`] = { content: readFileSync(join(here, "src", name), "utf8") };
}
const input = { language: "Solidity", sources, settings };
const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImport }));
const errors = (output.errors ?? []).filter((e) => e.severity === "error");
for (const e of output.errors ?? []) console.error(e.formattedMessage);
if (errors.length) process.exit(1);

// Every source the compiler read, with its hash, so a test can tell stale artifacts.
const used = {};
for (const path of Object.keys(output.sources).sort()) {
  used[path] = sha256(path in sources ? sources[path].content : findImport(path).contents);
}

mkdirSync(join(here, "artifacts"), { recursive: true });
for (const contract of CONTRACTS) {
  const compiled = output.contracts[`src/${contract}.sol`][contract];
  const artifact = {
    contractName: contract,
    compiler: { name: "solc-js", version: solc.version() },
    settings: { evmVersion: settings.evmVersion, optimizer: settings.optimizer },
    sources: used,
    abi: compiled.abi,
    bytecode: "0x" + compiled.evm.bytecode.object,
    deployedBytecode: "0x" + compiled.evm.deployedBytecode.object,
  };
  writeFileSync(join(here, "artifacts", `${contract}.json`), JSON.stringify(artifact, null, 2) + "\n");
  console.log(`artifacts/${contract}.json  ${compiled.evm.deployedBytecode.object.length / 2} bytes`);
}
