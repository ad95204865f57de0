"""The TypeScript examples in README.md and in the client's README compile, strictly,
against the client's sources (so an example cannot call what the client does not have)."""

from __future__ import annotations

import json
import re
import subprocess

from tests.app_contract.conftest import ROOT
from tests.app_contract.test_typescript_client import CLIENT, require_client_tools

READMES = [ROOT / "README.md", CLIENT / "README.md"]
# what the examples leave to the reader's app
GLOBALS = """
declare function fetchMyUserToken(forceRefresh: boolean): Promise<{ token: string }>;
declare const output: HTMLElement;
"""


def examples() -> list[tuple[str, str]]:
    found = []
    for readme in READMES:
        for n, block in enumerate(re.findall(r"^```ts\n(.*?)^```$", readme.read_text(), re.S | re.M)):
            found.append((f"{readme.parent.name}_{n}", block))
    return found


def test_readme_examples_compile(tmp_path):
    require_client_tools()
    blocks = examples()
    assert len(blocks) >= 4, "the READMEs' TypeScript examples were not found"
    for name, code in blocks:
        (tmp_path / f"{name}.ts").write_text(code + "\nexport {};\n")
    (tmp_path / "globals.d.ts").write_text(GLOBALS)
    (tmp_path / "tsconfig.json").write_text(
        json.dumps(
            {
                "compilerOptions": {
                    "target": "ES2022",
                    "module": "ES2022",
                    "moduleResolution": "Bundler",
                    "strict": True,
                    "noEmit": True,
                    "lib": ["ES2022", "DOM", "DOM.Iterable"],
                    "types": ["node"],
                    "typeRoots": [str(CLIENT / "node_modules" / "@types")],
                    "paths": {
                        "aigate-client": [str(CLIENT / "src" / "index.ts")],
                        "aigate-client/server": [str(CLIENT / "src" / "server.ts")],
                    },
                },
                "include": ["*.ts"],
            }
        )
    )
    result = subprocess.run(
        [str(CLIENT / "node_modules" / ".bin" / "tsc"), "-p", str(tmp_path / "tsconfig.json")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
