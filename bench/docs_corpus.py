"""An offline English corpus of ~81 M characters for GPU runs on hosts without network: the Linux
kernel's documentation, the Python 3.11 documentation sources and the GNU Collaborative
International Dictionary of English, from Debian packages (`apt-get download`, so a machine that
reaches only its package mirror can build it). Documents are shuffled with a fixed seed; the first 4 %
of characters validate. The two files are what `bench/gpu.md`'s `files-5cb835c3c7d8` rows trained on:

    python bench/docs_corpus.py /tmp/corpus          # writes /tmp/corpus/out/{train,val}.txt
    cd experiments/gpt-pretrain
    python prepare.py --source /tmp/corpus/out/train.txt /tmp/corpus/out/val.txt

Its 24.7 M training tokens are far fewer than a 300 s run reads (~490 M): it stands in for the
reference corpus only for speed, and for val_bpb at short budgets (see bench/gpu.md)."""

from __future__ import annotations

import argparse
import gzip
import random
import subprocess
import sys
from pathlib import Path

PACKAGES = ("linux-doc-6.12", "python3.11-doc", "dict-gcide")
DICTIONARY_PIECE = 20_000  # characters: the dictionary is cut so it spreads over train and validation
VALIDATION_SHARE = 0.04
SEED = 0


def unpack(workdir: Path) -> Path:
    """The packages downloaded into `workdir` and unpacked under workdir/root; returns usr/share."""
    workdir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", *PACKAGES], cwd=workdir, check=True)
    for deb in sorted(workdir.glob("*.deb")):
        subprocess.run(["dpkg", "-x", str(deb), str(workdir / "root")], check=True)
    return workdir / "root" / "usr" / "share"


def gunzip(path: Path) -> str:
    with gzip.open(path, "rt", errors="replace") as handle:
        return handle.read()


def documents(share: Path) -> list[str]:
    """Each documentation file one document; the dictionary in pieces of DICTIONARY_PIECE."""
    texts: list[str] = []
    for path in sorted((share / "doc" / "linux-doc-6.12" / "Documentation").rglob("*")):
        if path.name.endswith((".rst.gz", ".txt.gz")):
            texts.append(gunzip(path))
    for path in sorted((share / "doc" / "python3.11" / "html" / "_sources").rglob("*.rst.txt")):
        texts.append(path.read_text(errors="replace"))
    dictionary = gunzip(share / "dictd" / "gcide.dict.dz")  # dictzip is gzip
    texts += [dictionary[i : i + DICTIONARY_PIECE] for i in range(0, len(dictionary), DICTIONARY_PIECE)]
    return texts


def split(texts: list[str]) -> tuple[list[str], list[str]]:
    """Shuffled with SEED; documents validate until VALIDATION_SHARE of the characters do."""
    shuffled = list(texts)
    random.Random(SEED).shuffle(shuffled)
    total = sum(map(len, shuffled))
    train: list[str] = []
    val: list[str] = []
    seen = 0
    for text in shuffled:
        (val if seen < total * VALIDATION_SHARE else train).append(text)
        seen += len(text)
    return train, val


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path, help="where the packages are downloaded and out/ is written")
    workdir = parser.parse_args().workdir.resolve()
    train, val = split(documents(unpack(workdir)))
    out = workdir / "out"
    out.mkdir(exist_ok=True)
    (out / "train.txt").write_text("\n\n".join(train))
    (out / "val.txt").write_text("\n\n".join(val))
    chars = sum(map(len, train)) + sum(map(len, val))
    print(f"{len(train) + len(val)} documents, {chars / 1e6:.1f} M characters in {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
