"""Offline token counting: the shipped encoding files, their published hashes, real counts."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tiktoken_ext.openai_public

from aigate.providers import tokens
from aigate.providers.http import estimate_tokens, estimate_usage

TEXTS = {
    "zh": "人工智能正在改变我们的生活方式。每天，数以百万计的人使用智能助手来回答问题、翻译文本和编写代码。",
    "ja": "人工知能は私たちの生活を変えつつあります。毎日、何百万人もの人々がスマートアシスタントを使って質問に答え、"
    "文章を翻訳し、コードを書いています。",
    "en": "Artificial intelligence is changing the way we live. Every day, millions of people use smart "
    "assistants to answer questions, translate text and write code.",
}
# o200k_base counts of TEXTS, as tiktoken gives them
O200K = {"zh": 30, "ja": 51, "en": 28}

# Runs in a fresh interpreter with every socket connect refused: aigate's counts and
# tiktoken's own get_encoding (reading a private cache holding the same files) must agree.
OFFLINE = r"""
import json, socket, sys
def refuse(*a, **k):
    raise OSError("network disabled in this test")
socket.socket.connect = refuse
socket.create_connection = refuse
import tiktoken
from aigate.providers import tokens
texts = json.loads(sys.argv[1])
own = tiktoken.get_encoding("o200k_base")  # tiktoken's loader, from TIKTOKEN_CACHE_DIR
print(json.dumps({k: [tokens.count_text(t, "gpt-4o"), len(own.encode_ordinary(t))] for k, t in texts.items()}))
"""


def test_published_hashes_are_tiktokens_own():
    source = Path(tiktoken_ext.openai_public.__file__).read_text()
    for name, digest in tokens.PUBLISHED_SHA256.items():
        block = re.search(rf"def {name}\(\):.*?expected_hash=\"([0-9a-f]{{64}})\"", source, re.S)
        assert block is not None and block.group(1) == digest, name


def test_shipped_files_match_the_published_sha256():
    for name in tokens.PUBLISHED_SHA256:
        assert tokens.verify(name) == tokens.cache_file(name)


def test_counts_offline_equal_tiktokens_own(tmp_path):
    import json

    cache = tmp_path / "tiktoken-cache"
    cache.mkdir()
    for name in tokens.PUBLISHED_SHA256:
        shutil.copy(tokens.cache_file(name), cache / tokens.cache_file(name).name)
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(cache)}
    out = subprocess.run(
        [sys.executable, "-c", OFFLINE, json.dumps(TEXTS)], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    for key, (ours, theirs) in got.items():
        assert ours == theirs == O200K[key], key


def test_chars_over_four_undercounts_cjk_text():
    for key in ("zh", "ja"):
        real = tokens.count_text(TEXTS[key], "gpt-4o")
        old = estimate_tokens(len(TEXTS[key]))
        assert old * 2 < real, (key, old, real)  # the old figure was under half the real count
    assert tokens.count_text(TEXTS["zh"], "gpt-4o") == O200K["zh"]


def test_model_picks_the_encoding():
    assert tokens.encoding_name("gpt-4o-mini") == "o200k_base"
    assert tokens.encoding_name("gpt-4") == "cl100k_base"
    assert tokens.encoding_name("claude-sonnet-4") == "o200k_base"  # unknown: o200k, an approximation
    cl100k = tokens.count_text(TEXTS["zh"], "gpt-4")
    assert cl100k == len(tokens.encoding("cl100k_base").encode_ordinary(TEXTS["zh"])) != O200K["zh"]


def test_estimated_usage_counts_prompt_and_reply():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": TEXTS["zh"]}]
    usage = estimate_usage(messages, TEXTS["ja"], "gpt-4o")
    assert usage.estimated
    assert usage.output_tokens == O200K["ja"]
    # framing: 3 per message + the role + 3 priming the reply
    system = tokens.count_text("Be brief.") + tokens.count_text("system")
    assert usage.input_tokens == 3 + (3 + system) + (3 + tokens.count_text("user") + O200K["zh"])


def test_an_altered_file_is_refused_not_downloaded(tmp_path, monkeypatch):
    name = "cl100k_base"
    copy = tmp_path / tokens.cache_file(name).name
    data = bytearray(tokens.cache_file(name).read_bytes())
    data[10] ^= 1
    copy.write_bytes(bytes(data))
    monkeypatch.setattr(tokens, "CACHE_DIR", tmp_path)
    with pytest.raises(tokens.EncodingFileError, match="SHA-256"):
        tokens.verify(name)
    (tmp_path / copy.name).unlink()
    with pytest.raises(tokens.EncodingFileError, match="missing"):
        tokens.verify(name)
