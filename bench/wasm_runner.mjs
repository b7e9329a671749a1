// Run a MicroPython script on the WebAssembly port (wasm32: 32-bit words and GC blocks, as on
// an ESP32) under Node.js, with a host directory copied into its in-memory filesystem.
//
//   node wasm_runner.mjs HEAP_KB ROOT_DIR SCRIPT [ROMFS_IMAGE]
//
// ROOT_DIR (or "-" for none) is copied to /flash, the script's working directory. ROMFS_IMAGE,
// a file, becomes the port's ROMFS segment 0 (vfs.rom_ioctl), held in the module's memory
// outside the Python heap, as a device's ROMFS partition is memory-mapped flash. The port's
// heap starts at HEAP_KB; it is not a hard cap (the port adds heap when it runs out), so the
// caller reads gc.mem_alloc() rather than relying on MemoryError.
//
// This port (its "pyscript" build) never collects while Python code runs: gc.collect() only
// asks for a collection, made when control returns to JavaScript (where no heap pointer can
// be on the stack). So the script is run in pieces, split at lines `#--- top level ---`, each
// piece a separate call in the same globals: a piece that calls gc.collect() leaves the next
// one a collected heap to read. Exit status 1 on an uncaught Python exception (its traceback
// on stderr).
import fs from "node:fs";
import path from "node:path";
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

const [heapKb, rootDir, scriptPath, romfsPath] = process.argv.slice(2);
const mp = await loadMicroPython({
  heapsize: parseInt(heapKb, 10) * 1024,
  ...(romfsPath ? { romfs: new Uint8Array(fs.readFileSync(romfsPath)) } : {}),
  stdout: (line) => process.stdout.write(line + "\n"),
  stderr: (line) => process.stderr.write(line + "\n"),
});

function copyTree(src, dst) {
  mp.FS.mkdirTree(dst);
  for (const entry of fs.readdirSync(src, { withFileTypes: true })) {
    const from = path.join(src, entry.name);
    const to = dst + "/" + entry.name;
    if (entry.isDirectory()) copyTree(from, to);
    else if (entry.isFile()) mp.FS.writeFile(to, fs.readFileSync(from));
  }
}

if (rootDir !== "-") copyTree(rootDir, "/flash");
else mp.FS.mkdirTree("/flash");
try {
  mp.runPython("import os\nos.chdir('/flash')\ndel os\n");
  for (const piece of fs.readFileSync(scriptPath, "utf8").split(/^#--- top level ---$/m)) {
    mp.runPython(piece);
  }
} catch (err) {
  process.stderr.write(String(err && err.message ? err.message : err) + "\n");
  process.exit(1);
}
