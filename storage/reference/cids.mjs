// Root CIDs from IPFS's own UnixFS importer for deterministic files, written to
// tests/fixtures/unixfs_cids.json. storage/ must give the same CIDs. Run: npm run fixtures.
import { writeFileSync } from "node:fs";
import { MemoryBlockstore } from "blockstore-core";
import { importer } from "ipfs-unixfs-importer";
import { fixedSize } from "ipfs-unixfs-importer/chunker";
import { balanced } from "ipfs-unixfs-importer/layout";

// byte i of a test file of length n: (i * 31 + 7) % 251, the same generator as the Python tests
function content(n) {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + 7) % 251;
  return out;
}

const profiles = {
  "unixfs-v1-2025": { chunkSize: 1048576, maxChildrenPerNode: 1024 },
  kubo: { chunkSize: 262144, maxChildrenPerNode: 174 },
  // tiny: many levels from small files
  "test-tiny": { chunkSize: 1024, maxChildrenPerNode: 4 },
};
const sizes = {
  "unixfs-v1-2025": [0, 1, 1048576, 1048577, 3000000],
  kubo: [0, 1, 262144, 262145, 3000000],
  "test-tiny": [1023, 1024, 1025, 4096, 4097, 16385, 70000],
};

const cases = [];
for (const [profile, p] of Object.entries(profiles)) {
  for (const size of sizes[profile]) {
    const options = {
      cidVersion: 1,
      rawLeaves: true,
      chunker: fixedSize({ chunkSize: p.chunkSize }),
      layout: balanced({ maxChildrenPerNode: p.maxChildrenPerNode }),
      reduceSingleLeafToSelf: true,
    };
    let root;
    for await (const entry of importer([{ content: content(size) }], new MemoryBlockstore(), options)) {
      root = entry;
    }
    cases.push({ profile, ...p, size, cid: root.cid.toString(), dagSize: Number(root.size) });
  }
}
// A directory tree: names and sizes of its files, content from the same generator.
const tree = [
  ["d/a.txt", 10],
  ["d/b.bin", 5000],
  ["d/sub/c.txt", 1025],
  ["d/sub/empty", 0],
  ["d/Zeta", 3],
  ["d/\u00e9t\u00e9.txt", 7],
];
const directories = [];
for (const [profile, p] of Object.entries(profiles)) {
  const options = {
    cidVersion: 1,
    rawLeaves: true,
    chunker: fixedSize({ chunkSize: p.chunkSize }),
    layout: balanced({ maxChildrenPerNode: p.maxChildrenPerNode }),
  };
  const entries = [];
  for await (const entry of importer(
    tree.map(([path, size]) => ({ path, content: content(size) })),
    new MemoryBlockstore(),
    options,
  )) {
    entries.push({ path: entry.path, cid: entry.cid.toString(), dagSize: Number(entry.size) });
  }
  directories.push({ profile, ...p, files: tree, entries });
}
const out = new URL("../../tests/fixtures/unixfs_cids.json", import.meta.url);
const doc = { importer: "ipfs-unixfs-importer 17.1.1", cases, directories };
writeFileSync(out, JSON.stringify(doc, null, 1) + "\n");
console.log(`wrote ${cases.length} cases`);
