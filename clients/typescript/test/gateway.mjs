// Starts a real aigate for the tests (tests/app_contract/launch.py: `aigate serve` with the
// provider simulator) and returns what it printed: url, keys and tokens.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");

function python() {
  if (process.env.AIGATE_PYTHON) return process.env.AIGATE_PYTHON;
  const venv = resolve(ROOT, ".venv/bin/python");
  return existsSync(venv) ? venv : "python3";
}

export async function launchGateway() {
  const child = spawn(python(), ["-m", "tests.app_contract.launch"], {
    cwd: ROOT, stdio: ["pipe", "pipe", "inherit"],
  });
  const lines = createInterface({ input: child.stdout });
  const exited = once(child, "exit").then(([code]) => {
    throw new Error(`the aigate launcher exited with ${code} before it was ready`);
  });
  const [line] = await Promise.race([once(lines, "line"), exited]);
  const info = JSON.parse(line);
  info.stop = async () => {
    if (child.exitCode === null) {
      child.kill("SIGTERM");
      await once(child, "exit");
    }
  };
  return info;
}
