"""Prepare the nanochat task's data: a corpus, a byte-level BPE tokenizer trained on it, and token files.

Protected: agents must not edit this file; it fixes the data every run is measured on.

    python nanochat/prepare.py                     # offline: this Python's standard library sources, unless
                                                   # data is prepared already (then it is kept)
    python nanochat/prepare.py --corpus DIR        # any folder of text files
    python nanochat/prepare.py --download 8        # online: 8 ClimbMix shards + the fixed validation shard
    python nanochat/prepare.py --parquet-dir DIR   # parquet shards on disk; the last (sorted) is validation

Everything lands in `$AUTOORG_DATA/nanochat/` (default `~/.cache/autoorg/nanochat/`): downloaded shards under
`shards/`, the prepared data under `data/` (meta.json, tokenizer.json, token_bytes.npy, train.bin, val.bin).
A second call with the same corpus and settings finds meta.json matching and returns at once. Without a source
flag, data already prepared from any source is kept: a task's setup step never replaces a download.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import hashlib
import json
import os
import shutil
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMAT = 3  # bump when the layout or the tokenizer recipe changes: old caches are then rebuilt
MEASURED_FILES = ("val.bin", "heldout.bin", "token_bytes.npy")  # what evaluate.py reads; sha256 in meta.json
VOCAB_SIZE = 2048  # offline corpora: sized for the CPU preset, whose tiny model spends much time in the head
SHARD_VOCAB_SIZE = 8192  # parquet shards (web text, for GPU runs)
VAL_FRACTION = 0.05  # share of files (by a stable hash of their path) held out for validation
HELDOUT_FRACTION = 0.05  # and as many again for the held-out split, whose numbers no agent sees
STDLIB_MAX_MB = 8.0  # train text taken from the standard library; enough for a 60 s CPU run
TOKENIZER_CHARS = 500_000_000  # text the tokenizer is trained on, at most (matters only for downloads)
BOS = "<|bos|>"  # starts every document; it has no bytes, so it never counts towards bits per byte
# GPT-4's split pattern: words, numbers of up to three digits, punctuation runs and whitespace stay apart
SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|"""
    r"""\s+(?!\S)|\s+"""
)
DATASETS = {  # name -> (base URL, index of the fixed validation shard, the last one)
    "climbmix": ("https://huggingface.co/datasets/karpathy/climbmix-400b-shuffle/resolve/main", 6542),
    "fineweb-edu": ("https://huggingface.co/datasets/karpathy/fineweb-edu-100b-shuffle/resolve/main", 1822),
}
SKIP_DIRS = {"site-packages", "dist-packages", "__pycache__", "test", "tests", "idle_test"}


class PrepareError(Exception):
    """A problem the user can fix (bad arguments, no data); printed as one line, exit status 2."""


class MissingDataError(PrepareError):
    def __init__(self, where: Path):
        super().__init__(f"no prepared data in {where}; run `python nanochat/prepare.py` first")


# --------------------------------------------------------------------------------------------------------------
# Where the data lives (also used by train.py and evaluate.py)


def cache_dir() -> Path:
    """`$AUTOORG_DATA/nanochat`, default `~/.cache/autoorg/nanochat`."""
    env = os.environ.get("AUTOORG_DATA")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "autoorg"
    return root / "nanochat"


def data_dir() -> Path:
    return cache_dir() / "data"


def load_meta(where: Path | None = None) -> dict:
    """The prepared data's meta.json; MissingDataError when prepare.py has not run (or did not finish)."""
    where = where or data_dir()
    try:
        meta = json.loads((where / "meta.json").read_text())
    except (OSError, ValueError):
        raise MissingDataError(where) from None
    if meta.get("format") != FORMAT:
        raise PrepareError(f"data in {where} has an old format; run `python nanochat/prepare.py` again")
    return meta


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_checksums(where: Path | None = None) -> None:
    """The files a measurement reads must be the ones prepare.py wrote (a run may not double token_bytes.npy)."""
    where = where or data_dir()
    expected = load_meta(where).get("sha256", {})
    for name in MEASURED_FILES:
        if name not in expected or file_sha256(where / name) != expected[name]:
            raise PrepareError(f"{where / name} does not match the checksum prepare.py recorded in meta.json; "
                               "run `python nanochat/prepare.py --force` to rebuild the data")


def load_tokens(split: str, where: Path | None = None) -> np.ndarray:
    """Token ids of `train`, `val` or `heldout` as a read-only uint16 memmap."""
    assert split in ("train", "val", "heldout")
    where = where or data_dir()
    load_meta(where)
    path = where / f"{split}.bin"
    if not path.is_file() or path.stat().st_size == 0:  # autoorg covers the measured splits in a run's training
        raise PrepareError(f"{split}.bin is hidden here: only evaluate.py reads the validation and held-out tokens "
                           "(train on the train split)")
    return np.memmap(path, dtype=np.uint16, mode="r")


def load_token_bytes(where: Path | None = None) -> np.ndarray:
    """UTF-8 byte length of every token id (0 for BOS): what bits per byte divides by."""
    return np.load((where or data_dir()) / "token_bytes.npy")


# --------------------------------------------------------------------------------------------------------------
# Progress bars (stderr; redrawn on a terminal, one summary line otherwise)


class Progress:
    """A minimal progress bar: `label [#####.....] 52% 3.1/6.0 MB 1.2 s`."""

    def __init__(self, label: str, total: float, unit: str = "", scale: float = 1.0):
        self.label, self.total, self.unit, self.scale = label, max(total, 1e-9), unit, scale
        self.done = 0.0
        self.start = self.last_draw = time.monotonic()
        self.live = sys.stderr.isatty()

    def update(self, amount: float) -> None:
        self.done += amount
        now = time.monotonic()
        if self.live and now - self.last_draw > 0.1:
            self.last_draw = now
            self._draw("\r")

    def close(self) -> None:
        self._draw("\r" if self.live else "")
        sys.stderr.write("\n")
        sys.stderr.flush()

    def _draw(self, prefix: str) -> None:
        frac = min(self.done / self.total, 1.0)
        bar = "#" * int(20 * frac) + "." * (20 - int(20 * frac))
        amount = f"{self.done / self.scale:.1f}/{self.total / self.scale:.1f}{self.unit}"
        elapsed = time.monotonic() - self.start
        sys.stderr.write(f"{prefix}{self.label} [{bar}] {frac:4.0%} {amount} {elapsed:.1f} s")
        sys.stderr.flush()


# --------------------------------------------------------------------------------------------------------------
# Corpora: a name, a content hash of exactly what is used, and the train and validation documents


@dataclass
class Corpus:
    source: str
    sha256: str
    train: Callable[[], Iterable[str]]
    val: Callable[[], Iterable[str]]
    heldout: Callable[[], Iterable[str]]
    train_chars: int  # for progress bars: exact for folders, an estimate for parquet shards
    val_chars: int
    heldout_chars: int


def stable_fraction(key: str) -> float:
    """A number in [0, 1) fixed by `key` alone: the same on every machine and every Python."""
    return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) / 2**32


def read_text_file(path: Path) -> str | None:
    """The file's text, or None for binary or non-UTF-8 files (skipped, not an error)."""
    try:
        raw = path.read_bytes()
        return None if b"\0" in raw else raw.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def folder_corpus(root: Path, source: str, suffixes: tuple[str, ...] | None, max_mb: float | None) -> Corpus:
    """Every text file under `root` is one document; the split (validation, held-out, train) is decided by a
    stable hash of its path.

    Files are taken in hash order, a spread sample of the folder, until the train text reaches `max_mb`.
    """
    if not root.is_dir():
        raise PrepareError(f"corpus folder {root} does not exist")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.startswith(".")]
        for name in filenames:
            if suffixes is None or name.endswith(suffixes):
                rel = Path(dirpath, name).relative_to(root).as_posix()
                found.append((stable_fraction(rel), rel))
    found.sort()
    cap = int(max_mb * 1e6) if max_mb else None
    train: list[tuple[str, str]] = []
    val: list[tuple[str, str]] = []
    heldout: list[tuple[str, str]] = []
    train_bytes = 0
    for frac, rel in found:
        if cap is not None and train_bytes >= cap:
            break
        text = read_text_file(root / rel)
        if not text:
            continue
        if frac < VAL_FRACTION:
            val.append((rel, text))
        elif frac < VAL_FRACTION + HELDOUT_FRACTION:
            heldout.append((rel, text))
        else:
            train.append((rel, text))
            train_bytes += len(text.encode())
    if not train and not val and not heldout:
        raise PrepareError(f"corpus folder {root} has no text files")
    for held in (val, heldout):
        if not held and len(train) > 1:  # a tiny corpus: hold out its last files rather than fail
            held.append(train.pop())
    if not train or not val or not heldout:
        raise PrepareError(f"corpus folder {root} has too few text files; need at least three (one for "
                           "validation, one held out)")
    digest = hashlib.sha256()
    for split, docs in (("train", train), ("val", val), ("heldout", heldout)):
        for rel, text in docs:
            digest.update(f"{split}\0{rel}\0{len(text)}\0".encode())
            digest.update(text.encode())
    return Corpus(
        source=source, sha256=digest.hexdigest(), train=lambda: (t for _, t in train),
        val=lambda: (t for _, t in val), heldout=lambda: (t for _, t in heldout),
        train_chars=sum(len(t) for _, t in train), val_chars=sum(len(t) for _, t in val),
        heldout_chars=sum(len(t) for _, t in heldout),
    )


def stdlib_corpus(max_mb: float | None) -> Corpus:
    """The running interpreter's standard library .py sources: text every machine with Python has."""
    root = Path(sysconfig.get_paths()["stdlib"])
    source = f"stdlib:python{sys.version_info.major}.{sys.version_info.minor}"
    return folder_corpus(root, source, (".py",), STDLIB_MAX_MB if max_mb is None else max_mb)


def parquet_documents(paths: list[Path], max_chars: int | None = None, part: int | None = None) -> Iterator[str]:
    """The `text` column of parquet shards, row group by row group (never a whole shard in memory); with `part`
    (0 or 1) only the documents a stable hash of their text puts in that half."""
    import pyarrow.parquet as pq

    seen = 0
    for path in paths:
        shard = pq.ParquetFile(path)
        if "text" not in shard.schema_arrow.names:
            raise PrepareError(f"parquet shard {path} has no 'text' column")
        for group in range(shard.num_row_groups):
            for text in shard.read_row_group(group, columns=["text"]).column("text").to_pylist():
                if not text or (part is not None and (stable_fraction(text) < 0.5) != (part == 1)):
                    continue
                if max_chars is not None and seen >= max_chars:
                    return
                seen += len(text)
                yield text


def parquet_corpus(train_paths: list[Path], val_path: Path, source: str, max_mb: float | None) -> Corpus:
    """Shards as a corpus: whole train shards, one fixed shard split by a stable hash of each document into the
    validation and the held-out halves; the hash covers their bytes."""
    digest = hashlib.sha256()
    for path in [*train_paths, val_path]:
        digest.update(f"{path.name}\0".encode())
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 24):
                digest.update(chunk)
    cap = int(max_mb * 1e6) if max_mb else None
    digest.update(f"cap\0{cap}".encode())
    estimate = cap or sum(p.stat().st_size for p in train_paths) * 2  # parquet text compresses about 2x
    return Corpus(
        source=source, sha256=digest.hexdigest(), train=lambda: parquet_documents(train_paths, cap),
        val=lambda: parquet_documents([val_path], part=0), heldout=lambda: parquet_documents([val_path], part=1),
        train_chars=estimate, val_chars=val_path.stat().st_size, heldout_chars=val_path.stat().st_size,
    )


def local_parquet_corpus(folder: Path, max_mb: float | None) -> Corpus:
    if not folder.is_dir():
        raise PrepareError(f"parquet folder {folder} does not exist")
    shards = sorted(folder.glob("*.parquet"))
    if len(shards) < 2:
        raise PrepareError(f"parquet folder {folder} has {len(shards)} .parquet files; need at least two "
                           "(the last in sorted order is the validation shard)")
    return parquet_corpus(shards[:-1], shards[-1], f"parquet:{folder}", max_mb)


# --------------------------------------------------------------------------------------------------------------
# Downloads (plain HTTPS with urllib; any URL urllib opens works, file:// included)


def download_file(url: str, dest: Path, attempts: int = 4) -> None:
    """Fetch `url` to `dest` through a temporary name, retrying with backoff; a present `dest` is kept."""
    if dest.exists():
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, attempts + 1):
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
                total = float(response.headers.get("Content-Length") or 0)
                bar = Progress(f"download {dest.name}", total, " MB", 1e6)
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
                bar.close()
            os.replace(tmp, dest)
            return
        except (urllib.error.URLError, OSError) as exc:
            tmp.unlink(missing_ok=True)
            if attempt == attempts:
                raise PrepareError(f"could not download {url}: {exc}") from None
            wait = 2**attempt
            print(f"download of {url} failed ({exc}); retrying in {wait} s", file=sys.stderr)
            time.sleep(wait)


def download_corpus(dataset: str, shards: int, base_url: str | None, max_mb: float | None) -> Corpus:
    """The first `shards` train shards of `dataset` plus its fixed validation shard (the last one)."""
    default_url, val_index = DATASETS[dataset]
    if not 1 <= shards < val_index:
        raise PrepareError(f"--download takes 1 to {val_index - 1} shards, not {shards}")
    base_url = (base_url or default_url).rstrip("/")
    folder = cache_dir() / "shards" / dataset
    paths = []
    for index in [*range(shards), val_index]:
        name = f"shard_{index:05d}.parquet"
        download_file(f"{base_url}/{name}", folder / name)
        paths.append(folder / name)
    return parquet_corpus(paths[:-1], paths[-1], f"{dataset}:{shards}", max_mb)


# --------------------------------------------------------------------------------------------------------------
# Tokenizer: byte-level BPE, so every byte sequence is representable and bits per byte are exact


def byte_to_unicode() -> dict[int, str]:
    """The byte-level alphabet: printable bytes stand for themselves, the others for code points from 256 up."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


def train_tokenizer(docs: Iterable[str], vocab_size: int, total_chars: int, max_chars: int):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[BOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bar = Progress("tokenizer", min(total_chars, max_chars), " MB", 1e6)

    def counted() -> Iterator[str]:
        seen = 0
        for doc in docs:
            if seen >= max_chars:
                break
            seen += len(doc)
            bar.update(len(doc))
            yield doc

    tokenizer.train_from_iterator(counted(), trainer)
    bar.close()
    assert tokenizer.token_to_id(BOS) == 0, "BOS must be id 0"
    assert tokenizer.get_vocab_size() <= 65536, "token ids are stored as uint16"
    return tokenizer


def token_byte_lengths(tokenizer) -> np.ndarray:
    """UTF-8 length of each token; 0 for BOS, so it is excluded from bits per byte."""
    char_to_byte = {c: b for b, c in byte_to_unicode().items()}
    lengths = np.zeros(tokenizer.get_vocab_size(), dtype=np.int32)
    for token, index in tokenizer.get_vocab().items():
        if token != BOS:
            assert all(c in char_to_byte for c in token), f"token {token!r} is not byte-level"
            lengths[index] = len(token)  # one alphabet character per byte
    return lengths


def encode_split(tokenizer, docs: Iterable[str], out: Path, label: str, total_chars: int,
                 token_bytes: np.ndarray) -> dict:
    """Encode documents (each preceded by BOS) into a uint16 file; checks that tokens cover every byte."""
    bar = Progress(label, total_chars, " MB", 1e6)
    tokens = text_bytes = token_bytes_total = count = 0
    batch: list[str] = []

    def flush(fh) -> None:
        nonlocal tokens, token_bytes_total, count
        for encoding in tokenizer.encode_batch(batch, add_special_tokens=False):
            ids = np.asarray([0, *encoding.ids], dtype=np.uint16)
            ids.tofile(fh)
            tokens += len(ids)
            token_bytes_total += int(token_bytes[ids].sum())
        count += len(batch)
        bar.update(sum(len(d) for d in batch))
        batch.clear()

    with open(out, "wb") as fh:
        for doc in docs:
            batch.append(doc)
            text_bytes += len(doc.encode())
            if len(batch) == 512:
                flush(fh)
        if batch:
            flush(fh)
    bar.close()
    # bits per byte divides by these bytes; they must be the text's own bytes, no more, no less
    assert token_bytes_total == text_bytes, f"{label}: tokens cover {token_bytes_total} bytes of {text_bytes}"
    return {"docs": count, "tokens": tokens, "bytes": text_bytes}


# --------------------------------------------------------------------------------------------------------------
# Build the cache


def build(corpus: Corpus, vocab_size: int, force: bool, tokenizer_chars: int) -> dict:
    """Tokenize `corpus` into `data_dir()` unless it already holds exactly this; returns meta.json's content."""
    target = data_dir()
    settings = {"vocab_size": vocab_size, "tokenizer_chars": tokenizer_chars}
    meta = existing_meta() or {}
    if not force and meta.get("corpus_sha256") == corpus.sha256 and meta.get("settings") == settings:
        meta["already"] = True
        return meta
    started = time.monotonic()
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    work.chmod(0o755)  # mkdtemp makes it private; the data is for everyone who may read the cache
    try:
        tokenizer = train_tokenizer(corpus.train(), vocab_size, corpus.train_chars, tokenizer_chars)
        tokenizer.save(str(work / "tokenizer.json"))
        token_bytes = token_byte_lengths(tokenizer)
        np.save(work / "token_bytes.npy", token_bytes)
        train = encode_split(tokenizer, corpus.train(), work / "train.bin", "train", corpus.train_chars,
                             token_bytes)
        val = encode_split(tokenizer, corpus.val(), work / "val.bin", "val", corpus.val_chars, token_bytes)
        heldout = encode_split(tokenizer, corpus.heldout(), work / "heldout.bin", "heldout", corpus.heldout_chars,
                               token_bytes)
        meta = {
            "format": FORMAT, "source": corpus.source, "corpus_sha256": corpus.sha256,
            "settings": settings, "vocab_size": tokenizer.get_vocab_size(), "bos_id": 0,
            "train_docs": train["docs"], "train_tokens": train["tokens"], "train_bytes": train["bytes"],
            "val_docs": val["docs"], "val_tokens": val["tokens"], "val_bytes": val["bytes"],
            "heldout_docs": heldout["docs"], "heldout_tokens": heldout["tokens"], "heldout_bytes": heldout["bytes"],
            "python": sys.version.split()[0], "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": round(time.monotonic() - started, 1),
            "sha256": {name: file_sha256(work / name) for name in MEASURED_FILES},
        }
        (work / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        # swap the whole folder in: a run that has the old files open keeps reading them
        old = target.with_name(f".old-{os.getpid()}")
        if target.exists():
            os.replace(target, old)
        os.replace(work, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return meta


def existing_meta() -> dict | None:
    try:
        return load_meta()
    except PrepareError:
        return None


@contextmanager
def exclusive_cache():
    """Hold a lock on the cache while preparing: a second prepare.py waits, then finds the work done."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4


def keep_freed_memory() -> bool:
    """Have glibc keep freed memory for the next step instead of handing it back, for train.py and evaluate.py
    on the CPU. By default every block over 32 MB (one forward's logits on the cpu preset: 16 x 256 x 2048
    floats, 33.5 MB) is mmap'd when allocated and unmapped when freed, so each step page-faults it back in, zeroed,
    in the kernel: 12 of a 70-s run's CPU seconds (26 to 32 steps in 60 s on one seed, side by side; 40 and 40
    without the churn), and 4.7 of evaluate.py's 19 s on both splits (0.5 without). Returns whether glibc took
    it (False on other C libraries: nothing changes)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    settings = ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**30), (M_TOP_PAD, 64 * 2**20))
    return all(mallopt(param, value) == 1 for param, value in settings)


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (no usage block) and exits 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def choose_corpus(args: argparse.Namespace) -> Corpus:
    if args.corpus is not None:
        return folder_corpus(args.corpus.resolve(), f"dir:{args.corpus.resolve()}", None, args.max_mb)
    if args.parquet_dir is not None:
        return local_parquet_corpus(args.parquet_dir.resolve(), args.max_mb)
    if args.download is not None:
        return download_corpus(args.dataset, args.download, args.base_url, args.max_mb)
    return stdlib_corpus(args.max_mb)


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="prepare.py", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--stdlib", action="store_true", help="this Python's standard library sources (default "
                        "when nothing is prepared; without a source flag, data already prepared is kept)")
    source.add_argument("--corpus", type=Path, help="folder of text files")
    source.add_argument("--parquet-dir", type=Path, help="folder of parquet shards with a 'text' column")
    source.add_argument("--download", type=int, metavar="N", help="download N train shards + the val shard")
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="climbmix", help="for --download")
    parser.add_argument("--base-url", help="mirror of the dataset's shard folder, for --download")
    parser.add_argument("--vocab-size", type=int,
                        help=f"default {VOCAB_SIZE} for folders, {SHARD_VOCAB_SIZE} for parquet shards")
    parser.add_argument("--max-mb", type=float, help=f"cap on train text (stdlib default {STDLIB_MAX_MB:g})")
    parser.add_argument("--tokenizer-chars", type=int, default=TOKENIZER_CHARS)
    parser.add_argument("--force", action="store_true", help="rebuild even if the cache matches")
    args = parser.parse_args(argv)
    # no flag at all: whatever is prepared stays (a task's setup must not replace a download made on purpose)
    keep_existing = not any([args.stdlib, args.corpus, args.parquet_dir, args.download is not None, args.force,
                             args.vocab_size, args.max_mb is not None])
    shards = args.parquet_dir is not None or args.download is not None
    args.vocab_size = args.vocab_size or (SHARD_VOCAB_SIZE if shards else VOCAB_SIZE)
    try:
        if not 257 <= args.vocab_size <= 65536:
            raise PrepareError(f"--vocab-size must be between 257 and 65536, not {args.vocab_size}")
        with exclusive_cache():
            meta = existing_meta() if keep_existing else None
            if meta is not None:
                meta["already"] = True
            else:
                meta = build(choose_corpus(args), args.vocab_size, args.force, args.tokenizer_chars)
    except PrepareError as exc:
        print(f"prepare.py: error: {exc}", file=sys.stderr)
        return 2
    state = "already prepared" if meta.get("already") else f"prepared in {meta['seconds']} s"
    print(f"nanochat data {state}: {meta['source']} (corpus sha256 {meta['corpus_sha256'][:12]}), "
          f"{meta['train_tokens']:,} train / {meta['val_tokens']:,} val tokens, vocab {meta['vocab_size']}, "
          f"in {data_dir()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
