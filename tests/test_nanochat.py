"""The bundled nanochat task: prepare, train and evaluate, run as autoorg's runner runs them (subprocesses from
the repository root, data under AUTOORG_DATA pointed at tmp_path)."""

from __future__ import annotations

import ast
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autoorg.agents.knobs import read_knobs
from autoorg.experiments import process
from autoorg.experiments import run as runner
from autoorg.experiments.sandbox import NAMESPACES, Sealing, run_env, seal_mode
from autoorg.spec import load_task

# The task's own dependencies come with the `task` extra; with only the base extras these tests are skipped.
np = pytest.importorskip("numpy")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
torch = pytest.importorskip("torch")
pytest.importorskip("tokenizers")
pytestmark = pytest.mark.xdist_group("nanochat")  # one worker prepares the module's corpus once

REPO = Path(__file__).resolve().parent.parent
NANOCHAT = REPO / "nanochat"
sys.path.insert(0, str(NANOCHAT))  # nanochat/ is not a package: its modules import each other by name

import evaluate  # noqa: E402
import prepare  # noqa: E402
import train  # noqa: E402

WORDS = ["the", "model", "reads", "bytes", "of", "text", "and", "code", "then", "learns", "to", "predict", "which",
         "token", "comes", "next", "from", "what", "came", "before", "so", "loss", "falls", "while", "budget", "lasts"]
FINAL_KEYS = {"final", "val_bpb", "steps", "tokens", "params", "flops", "train_s", "warmup_s", "peak_mem_mb"}


def write_corpus(folder: Path, files: int = 30, seed: int = 0) -> Path:
    """Small deterministic documents, some with multi-byte characters, plus a binary file to be skipped."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) + "." for _ in range(60)]
        lines.insert(rng.randrange(60), "naïve café — 東京 ✓")
        (folder / f"doc{i:02d}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "image.bin").write_bytes(bytes(range(256)))
    return folder


def write_shard(path: Path, rows: int, seed: int) -> None:
    rng = random.Random(seed)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 60))) for _ in range(rows)]
    pq.write_table(pa.table({"text": texts, "id": list(range(rows))}), path, row_group_size=50)


def run(script: str, *args: str, data: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "AUTOORG_DATA": str(data)}
    return subprocess.run([sys.executable, f"nanochat/{script}", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def metric_lines(stdout: str) -> list[dict]:
    return [json.loads(line[len("@metric "):]) for line in stdout.splitlines() if line.startswith("@metric ")]


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """AUTOORG_DATA holding the tiny corpus, prepared once for the module."""
    root = tmp_path_factory.mktemp("nanochat")
    corpus = write_corpus(root / "corpus")
    proc = run("prepare.py", "--corpus", str(corpus), "--vocab-size", "512", data=root / "data")
    assert proc.returncode == 0, proc.stderr
    return root / "data"


@pytest.fixture
def use_data(prepared, monkeypatch) -> Path:
    monkeypatch.setenv("AUTOORG_DATA", str(prepared))
    return prepared


# --------------------------------------------------------------------------------------------------------------
# prepare.py


def test_prepare_folder_corpus_once(prepared, monkeypatch):
    monkeypatch.setenv("AUTOORG_DATA", str(prepared))
    meta = prepare.load_meta()
    assert meta["source"].startswith("dir:") and len(meta["corpus_sha256"]) == 64
    assert meta["settings"]["vocab_size"] == 512 and 256 < meta["vocab_size"] <= 512, "a tiny corpus has few merges"
    assert meta["train_docs"] >= 1 and meta["val_docs"] >= 1 and meta["heldout_docs"] >= 1
    assert meta["train_docs"] + meta["val_docs"] + meta["heldout_docs"] == 30, "the binary file is skipped"
    train_ids, val_ids = prepare.load_tokens("train"), prepare.load_tokens("val")
    assert len(train_ids) == meta["train_tokens"] and len(val_ids) == meta["val_tokens"]
    heldout_ids = prepare.load_tokens("heldout")
    assert len(heldout_ids) == meta["heldout_tokens"] and set(meta["sha256"]) == set(prepare.MEASURED_FILES)
    assert np.asarray(heldout_ids).tobytes() not in (np.asarray(val_ids).tobytes(), np.asarray(train_ids).tobytes())
    token_bytes = prepare.load_token_bytes()
    assert token_bytes[0] == 0, "BOS stands for no bytes"
    assert int(token_bytes[np.asarray(val_ids)].sum()) == meta["val_bytes"], "tokens cover the text's bytes exactly"
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(prepared / "nanochat" / "data" / "tokenizer.json"))
    assert "naïve café — 東京 ✓" in tokenizer.decode(np.asarray(val_ids).tolist()), "byte-level BPE round-trips"

    corpus = prepared.parent / "corpus"
    again = run("prepare.py", "--corpus", str(corpus), "--vocab-size", "512", data=prepared)
    assert again.returncode == 0 and "already prepared" in again.stdout
    # without a source flag (a task's setup step) whatever is prepared stays, even if it is not the stdlib
    plain = run("prepare.py", data=prepared)
    assert plain.returncode == 0 and "already prepared: dir:" in plain.stdout
    assert prepare.load_meta()["created"] == meta["created"], "the cache was not rebuilt"


def test_prepare_bad_corpus(tmp_path):
    (tmp_path / "empty").mkdir()
    assert "no text files" in one_line_error(run("prepare.py", "--corpus", str(tmp_path / "empty"), data=tmp_path))
    assert "does not exist" in one_line_error(run("prepare.py", "--corpus", str(tmp_path / "nope"), data=tmp_path))
    one_line_error(run("prepare.py", "--vocab-size", "10", data=tmp_path))
    one_line_error(run("prepare.py", "--no-such-flag", data=tmp_path))


def test_prepare_parquet_shards_local_and_downloaded(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    for i, rows in enumerate([120, 80]):
        write_shard(shards / f"part_{i}.parquet", rows, seed=i)
    data = tmp_path / "data"
    proc = run("prepare.py", "--parquet-dir", str(shards), "--vocab-size", "400", data=data)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((data / "nanochat" / "data" / "meta.json").read_text())
    assert meta["train_docs"] == 120, "the last shard in sorted order is validation and held-out"
    assert meta["val_docs"] + meta["heldout_docs"] == 80 and meta["val_docs"] > 20 and meta["heldout_docs"] > 20

    # the download path, through urllib with file:// URLs: shards 0 and 1, then the fixed validation shard
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for index, rows in [(0, 60), (1, 50), (6542, 40)]:
        write_shard(mirror / f"shard_{index:05d}.parquet", rows, seed=index)
    proc = run("prepare.py", "--download", "2", "--base-url", mirror.as_uri(), "--vocab-size", "400", data=data)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((data / "nanochat" / "data" / "meta.json").read_text())
    assert meta["source"] == "climbmix:2" and (meta["train_docs"], meta["val_docs"] + meta["heldout_docs"]) == (110, 40)
    assert sorted(p.name for p in (data / "nanochat" / "shards" / "climbmix").iterdir()) == [
        "shard_00000.parquet", "shard_00001.parquet", "shard_06542.parquet"]


# --------------------------------------------------------------------------------------------------------------
# train.py and evaluate.py


def test_train_reports_metrics_within_budget(prepared, tmp_path):
    budget = 6
    proc = run("train.py", "--preset", "cpu", "--budget", str(budget), "--seed", "1", "--log-every", "1",
               data=prepared)
    assert proc.returncode == 0, proc.stderr
    metrics = metric_lines(proc.stdout)
    progress = [m for m in metrics if not m.get("final")]
    finals = [m for m in metrics if m.get("final")]
    assert progress and all(set(m) == {"step", "train_loss", "tok_per_s"} for m in progress)
    assert len(finals) == 1 and set(finals[0]) >= FINAL_KEYS and "mfu" not in finals[0]
    final = finals[0]
    assert np.isfinite(final["val_bpb"]) and 0 < final["val_bpb"] < 20
    assert final["steps"] == len(progress) and final["tokens"] == final["steps"] * train.BATCH_TOKENS
    # no step starts once the budget is spent (on a quiet machine that keeps train_s within the runner's 2%)
    last_step_s = train.BATCH_TOKENS / progress[-1]["tok_per_s"]
    assert final["train_s"] - last_step_s < budget + 0.05


FAULTS_PROBE = """
import resource, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import prepare

def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        block = np.ones(40 * 2**20 // 8)  # 40 MB, like a cpu step's logits: over glibc's mmap threshold
        del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

churn = faults()
if len(sys.argv) > 2:  # evaluate.py's arguments: its main() on the CPU sets it
    import evaluate
    kept = evaluate.main(sys.argv[2:]) == 0
else:
    kept = prepare.keep_freed_memory()
faults()  # the first block after the change comes from the kernel once
print(churn, kept, faults())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_cpu_training_keeps_its_freed_blocks_instead_of_faulting_them_in_every_step():
    proc = subprocess.run([sys.executable, "-c", FAULTS_PROBE, str(NANOCHAT)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    churn, kept, after = proc.stdout.split()
    assert kept == "True" and int(churn) > 100 and int(after) < 10, proc.stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_cpu_evaluation_keeps_its_freed_blocks_too(prepared, tmp_path):
    """evaluate.py's forward passes churn the same blocks as training's (on the real vocabulary, 4.7 of its 19 s
    in the kernel): its main() on the CPU keeps them as train.py does."""
    model = str(tmp_path / "model.pt2")
    trained = run("train.py", "--preset", "cpu", "--budget", "1", "--seed", "4", "--save", model, "--no-eval",
                  data=prepared)
    assert trained.returncode == 0, trained.stderr
    proc = subprocess.run([sys.executable, "-c", FAULTS_PROBE, str(NANOCHAT), model], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "AUTOORG_DATA": str(prepared)})
    assert proc.returncode == 0, proc.stderr
    churn, kept, after = proc.stdout.splitlines()[-1].split()
    assert kept == "True" and int(churn) > 100 and int(after) < 10, proc.stdout


def test_a_saved_model_measures_the_same_without_train_py(prepared, tmp_path):
    """`train.py --save` writes a self-contained model: evaluate.py, in a folder without train.py, gives the
    val_bpb train.py printed for the same weights."""
    proc = run("train.py", "--preset", "cpu", "--budget", "1", "--seed", "2", "--save", str(tmp_path / "model.pt2"),
               data=prepared)
    assert proc.returncode == 0, proc.stderr
    printed = [m for m in metric_lines(proc.stdout) if m.get("final")][0]["val_bpb"]
    alone = tmp_path / "protected"
    alone.mkdir()
    for name in ("evaluate.py", "prepare.py"):
        (alone / name).write_text((NANOCHAT / name).read_text())
    env = {**os.environ, "AUTOORG_DATA": str(prepared)}
    measured = subprocess.run([sys.executable, str(alone / "evaluate.py"), str(tmp_path / "model.pt2")], cwd=alone,
                              env=env, capture_output=True, text=True, timeout=120)
    assert measured.returncode == 0, measured.stderr
    assert metric_lines(measured.stdout)[0]["val_bpb"] == pytest.approx(printed, rel=1e-6)

    (tmp_path / "junk.pt2").write_text("not a model")
    assert "cannot read checkpoint" in one_line_error(run("evaluate.py", str(tmp_path / "junk.pt2"), data=prepared))


def test_the_tasks_commands_train_then_measure_in_another_process(prepared, tmp_path):
    """task.yaml's run saves the model without measuring it; its evaluate command gives the one final val_bpb,
    and refuses data whose checksums no longer match what prepare.py recorded."""
    task = load_task(NANOCHAT / "task.yaml")
    assert "--save {out}/model.pt2" in task.run["cpu"] and task.evaluate and task.metric_range == (0, 16)
    model = str(tmp_path / "model.pt2")
    proc = run("train.py", "--preset", "cpu", "--budget", "1", "--seed", "3", "--save", model, "--no-eval",
               data=prepared)
    assert proc.returncode == 0, proc.stderr
    assert "val_bpb" not in [m for m in metric_lines(proc.stdout) if m.get("final")][0]  # progress only
    measured = run("evaluate.py", model, data=prepared)
    assert measured.returncode == 0, measured.stderr
    (final,) = metric_lines(measured.stdout)
    assert final["final"] is True and 0 < final["val_bpb"] < 16

    # the held-out split: task.yaml's heldout command, on the same model, another number, checksums checked too
    assert task.heldout and "--heldout" in task.heldout
    held = run("evaluate.py", model, "--heldout", data=prepared)
    assert held.returncode == 0, held.stderr
    (held_final,) = metric_lines(held.stdout)
    assert 0 < held_final["val_bpb"] < 16 and held_final["val_bpb"] != final["val_bpb"]
    # ... which evaluate scores in the same process for the gate's runs (the model loaded once): the same numbers
    assert "--heldout-to {heldout_out}" in task.evaluate
    both = run("evaluate.py", model, "--heldout-to", str(tmp_path / "heldout.log"), data=prepared)
    assert both.returncode == 0, both.stderr
    assert metric_lines(both.stdout) == [final]  # stdout (the run's log) holds validation only
    assert metric_lines((tmp_path / "heldout.log").read_text()) == [held_final]

    doctored = tmp_path / "doctored"
    shutil.copytree(prepared, doctored)
    heldout_bin = doctored / "nanochat" / "data" / "heldout.bin"
    heldout_bin.write_bytes(heldout_bin.read_bytes()[:-2])
    assert "heldout.bin does not match the checksum" in one_line_error(run("evaluate.py", model, data=doctored))
    shutil.rmtree(doctored)
    shutil.copytree(prepared, doctored)
    token_bytes = doctored / "nanochat" / "data" / "token_bytes.npy"
    np.save(token_bytes, np.load(token_bytes) * 2)  # every token "stands for" twice the bytes: half the bpb
    assert "does not match the checksum" in one_line_error(run("evaluate.py", model, data=doctored))


def test_sealed_training_cannot_read_the_measured_splits_and_the_evaluator_can(prepared, tmp_path):
    """Under the task's seal (its `hidden` files covered), train.py trains and saves while val.bin and heldout.bin
    read as empty; a run that reaches for them fails; evaluate.py, sealed without them hidden, measures the model."""
    if seal_mode().mode != NAMESPACES:
        pytest.skip(f"no namespaces here: {seal_mode().why}")
    task = load_task(NANOCHAT / "task.yaml")
    hidden = runner.hidden_data(task, prepared)
    data = prepared / "nanochat" / "data"
    assert hidden == (data / "heldout.bin", data / "val.bin")  # no shards downloaded here
    for folder in ("run/tmp", "run/home"):
        (tmp_path / folder).mkdir(parents=True)
    env = run_env({"AUTOORG_DATA": str(prepared)}, tmp_path / "run/tmp", tmp_path / "run/home")

    def sealed(command: str, hide: tuple[Path, ...], name: str) -> tuple[int | None, str]:
        out = process.run_command(command, cwd=REPO, env=env, limit_s=120, log_path=tmp_path / f"{name}.log",
                                  metrics_path=tmp_path / f"{name}.jsonl",
                                  sealing=Sealing(seal_mode(), tmp_path / "run", (REPO, prepared), hide))
        return out.exit_code, (tmp_path / f"{name}.log").read_text()

    model = tmp_path / "run" / "model.pt2"
    code, log = sealed(f"{sys.executable} nanochat/train.py --preset cpu --budget 1 --seed 1 --save {model} --no-eval",
                       hidden, "train")
    assert code == 0 and model.is_file(), log
    peek = ("import sys; sys.path.insert(0, 'nanochat'); import prepare; "
            "print('read', [len(open(prepare.data_dir() / f, 'rb').read()) for f in ('val.bin', 'heldout.bin')]); "
            "prepare.load_tokens('val')")
    code, log = sealed(f"{sys.executable} -c \"{peek}\"", hidden, "peek")
    assert "read [0, 0]" in log and "val.bin is hidden here: only evaluate.py reads" in log and code != 0, log
    code, log = sealed(f"{sys.executable} nanochat/evaluate.py {model}", (), "evaluate")
    assert code == 0 and 0 < metric_lines(log)[-1]["val_bpb"] < 16, log


def test_evaluate_imports_nothing_editable():
    """The protected evaluator depends on no editable file (train.py may be anything), not even inside a function."""
    editable = {Path(path).stem for path in load_task(NANOCHAT / "task.yaml").editable}
    assert "train" in editable
    tree = ast.parse((NANOCHAT / "evaluate.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported and not imported & editable, imported & editable
    assert "__import__" not in ast.dump(tree) and "importlib" not in imported


def small_model(vocab_size: int, seq_len: int = 64) -> train.GPT:
    torch.manual_seed(0)
    cfg = train.GPTConfig(vocab_size=vocab_size, seq_len=seq_len, depth=2, width=64, head_dim=32, mlp_ratio=4,
                          logit_softcap=15.0, rope_base=10000.0, value_embed_every=1, window_pattern="SL",
                          short_window=16)
    return train.GPT(cfg)


def test_evaluate_is_deterministic(use_data):
    meta = prepare.load_meta()
    model = small_model(meta["vocab_size"])
    first = evaluate.evaluate_bpb(model, 64, "cpu", batch_size=8)
    second = evaluate.evaluate_bpb(model, 64, "cpu", batch_size=8)
    assert first == second and first > 0
    # an untrained model predicts roughly uniformly: about log2(vocab) bits per token
    assert 0.5 < first / (np.log2(meta["vocab_size"]) * meta["val_tokens"] / meta["val_bytes"]) < 1.5


def test_evaluate_refuses_a_model_that_sees_the_future(use_data):
    class Peeking(torch.nn.Module):
        def __init__(self, vocab_size: int):
            super().__init__()
            self.vocab_size = vocab_size

        def forward(self, idx):
            nxt = torch.roll(idx, -1, dims=1)  # the very token it is asked to predict
            return torch.nn.functional.one_hot(nxt, self.vocab_size).float() * 30

    with pytest.raises(evaluate.EvaluationError, match="not causal"):
        evaluate.evaluate_bpb(Peeking(prepare.load_meta()["vocab_size"]), 64, "cpu")


def test_presets_fill_in_their_own_shape():
    cpu, gpu = train.parse_args(["--preset", "cpu"]), train.parse_args(["--preset", "gpu"])
    assert (cpu.depth, cpu.head_dim, cpu.seq_len, cpu.value_embed_every) == (
        train.DEPTH, train.HEAD_DIM, train.SEQ_LEN, train.VALUE_EMBED_EVERY)
    assert (gpu.depth, gpu.head_dim, gpu.seq_len, gpu.value_embed_every) == (
        train.GPU_DEPTH, train.GPU_HEAD_DIM, train.GPU_SEQ_LEN, train.GPU_VALUE_EMBED_EVERY)
    assert gpu.budget == 300 and cpu.budget == 60
    # a flag wins over the preset, 0 (off) included
    off = train.parse_args(["--preset", "gpu", "--value-embed-every", "0", "--head-dim", "64"])
    assert (off.value_embed_every, off.head_dim) == (0, 64)


def test_flops_per_token_counts_attention_as_mfu_conventionally_does():
    model = small_model(vocab_size=256, seq_len=64)  # depth 2, width 64, windows S (16) then L (64)
    matrices = 2 * (4 * 64 * 64 + 2 * 64 * 256) + 64 * 256  # q, k, v, proj, fc, proj per block; lm_head
    assert model.flops_per_token() == 6 * matrices + 12 * 64 * (16 + 64)


@pytest.mark.parametrize(("args", "expected"), [
    (["--preset", "tpu"], "invalid choice"),
    (["--budget", "0"], "--budget must be a positive number"),
    (["--budget", "-5"], "--budget must be a positive number"),
])
def test_train_bad_arguments_exit_2(prepared, args, expected):
    assert expected in one_line_error(run("train.py", *args, data=prepared))


def test_train_without_data_says_to_prepare(tmp_path):
    line = one_line_error(run("train.py", "--preset", "cpu", "--budget", "5", data=tmp_path))
    assert "run `python nanochat/prepare.py` first" in line


# --------------------------------------------------------------------------------------------------------------
# task.yaml


def test_task_yaml_knobs_are_constants_of_train_py():
    task = load_task(NANOCHAT / "task.yaml")
    assert task.editable == ["nanochat/train.py"] and task.metric == "val_bpb" and task.direction == "minimize"
    assert {"nanochat/prepare.py", "nanochat/evaluate.py", "nanochat/task.yaml"} <= set(task.protected)
    assert task.budget == {"cpu": 60.0, "gpu": 300.0}
    values = read_knobs((REPO / "nanochat" / "train.py").read_text(), task.knobs)
    for knob in task.knobs:
        assert knob.name in values, f"knob {knob.name} is not a `NAME = value` constant in train.py"
        assert getattr(train, knob.name) == values[knob.name]
        if knob.type == "choice":
            assert values[knob.name] in knob.choices, knob.name
        elif knob.type in ("int", "float"):
            assert knob.low <= values[knob.name] <= knob.high, knob.name
