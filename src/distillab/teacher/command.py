"""``distillab teacher`` and ``distillab cache inspect|import|export``: thin wrappers over the Python API.

Nothing heavy is imported at module level (``distillab --help`` must stay instant); each handler
imports what it needs.
"""

from __future__ import annotations

import argparse
import json
import sys

from distillab.teacher import DEFAULT_SHARD_ROWS  # not from cache.py: that imports numpy


def resolve_data(spec: str, data_dir: str | None = None):
    """``--data``: whatever ``distillab data`` accepts (lab name, spec file, inline JSON, path, Hub id)."""
    from distillab.data.load import load_dataset, spec_from_argument

    return load_dataset(spec_from_argument(spec, data_dir=data_dir))


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _add_data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, metavar="NAME_OR_SPEC",
                        help="lab dataset (r52, banking77, cfpb-issue-113), dataset spec (.yaml/.json or inline JSON), "
                             "local file/folder, or Hub id")
    parser.add_argument("--data-dir", default=None, help="where lab dataset files are looked up first "
                                                         "(default: $DISTILLAB_DATA_DIR)")
    parser.add_argument("--split", nargs="+", default=None, metavar="SPLIT",
                        help="splits to cache, stored in this order (default: all of the dataset's splits)")
    parser.add_argument("--out", required=True, metavar="DIR", help="cache directory (created; resumed if partial)")
    parser.add_argument("--dtype", choices=("fp16", "bf16", "fp32"), default="fp16",
                        help="storage dtype of logits / log-probs (default fp16: half the bytes, ~3 significant digits)")
    parser.add_argument("--shard-rows", type=_positive_int, default=DEFAULT_SHARD_ROWS,
                        help=f"rows per shard, the unit of resumption (default {DEFAULT_SHARD_ROWS})")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing cache in --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_no_verify_flag(parser: argparse.ArgumentParser) -> None:
    """``--no-verify-cache``: shared by every command that opens a teacher cache for use."""
    parser.add_argument("--no-verify-cache", dest="verify_cache", action="store_false",
                        help="do not re-hash the teacher cache's shards on open (prints a warning; a corrupt or "
                             "modified shard then goes unnoticed)")


def register(subparsers) -> None:
    teacher = subparsers.add_parser(
        "teacher", help="run a teacher over a dataset once and cache its outputs",
        description="Run a teacher model over a dataset and store its logits (dense) or top-k log-probs (sparse) in "
                    "a fingerprinted, checksummed, resumable cache (run the same command again to finish a killed "
                    "run). Data-parallel: `accelerate launch --num_processes N -m distillab teacher ...` (on a "
                    "CPU-only machine add --multi_gpu, which makes accelerate start N gloo processes via torchrun; "
                    "`accelerate launch --cpu` starts a single process).",
    )
    teacher.add_argument("--model", required=True, metavar="PATH_OR_ID", help="local folder or Hugging Face Hub id")
    teacher.add_argument("--tokenizer", default=None, metavar="PATH_OR_ID",
                         help="tokenizer to use when the model folder has none (default: --model)")
    _add_data_args(teacher)
    teacher.add_argument("--temperature", type=_positive_float, default=None,
                         help="post-hoc temperature: store logits / T (recorded in the manifest)")
    teacher.add_argument("--batch-size", type=_positive_int, default=32)
    teacher.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                         help="CPU threads torch may use (default: torch's choice). On a busy CPU 1 thread can be "
                              "2-3x faster than 2 for a small model's forward (measured in benchmarks/README.md)")
    teacher.add_argument("--max-length", type=_positive_int, default=128, help="tokens per text (truncated)")
    teacher.add_argument("--topk", type=_positive_int, default=None, metavar="K",
                         help="store the top-K log-probs + tail log-mass instead of dense logits "
                              "(for large output spaces; required with --causal-lm)")
    teacher.add_argument("--sampled", type=_positive_int, default=None, metavar="S",
                         help="causal LMs: instead of the top K, draw S tokens per position from softmax(logits / "
                              "--temperature) and store the distinct ids, their counts and log-probs: an unbiased "
                              "sparse target (distillab.losses.sampled.sampled_kd_loss); S and the seed are recorded")
    teacher.add_argument("--seed", type=int, default=0,
                         help="with --sampled: seed of the draws (each row's generator is seeded by the seed and its "
                              "row id; default 0)")
    teacher.add_argument("--causal-lm", action="store_true",
                         help="the teacher is a causal LM: cache per-token top-K next-token log-probs (--topk K) or "
                              "S sampled tokens (--sampled S)")
    teacher.add_argument("--gguf-file", default=None, help="causal LM weights in this GGUF file inside --model")
    teacher.add_argument("--features", action="append", default=None, metavar="pooled.L[,pooled.M...]",
                         help="also store named teacher features per row (sequence classifiers only): pooled.L = mean "
                              "over the row's non-padding tokens of hidden_states[L] (0 = embedding output, "
                              "num_hidden_layers or 'last' = last layer), in the cache's --dtype; read back with "
                              "TeacherCache.features(NAME, ids)")
    teacher.add_argument("--quantize", choices=("int8", "int4"), default=None,
                         help="cache the logits of a quantized copy of the teacher (sequence classifiers): int8 = "
                              "dynamic int8 Linear layers (torchao when installed, else torch.ao on the CPU); int4 = "
                              "4-bit weight-only, which needs torchao and a CUDA device. The scheme and backend are "
                              "recorded in the cache fingerprint (teacher.quantization)")
    teacher.add_argument("--quantize-backend", choices=("auto", "torchao", "torch.ao"), default="auto",
                         help="with --quantize: auto (torchao when importable, else torch.ao, recorded as a "
                              "fallback), torchao or torch.ao")
    teacher.add_argument("--ignore-label-names", action="store_true",
                         help="do not compare the model's id2label names with the dataset's classes")
    teacher.set_defaults(func=run_teacher)

    cache = subparsers.add_parser("cache", help="inspect or import a teacher cache",
                                  description="Inspect a teacher cache, import existing logits as one, "
                                              "or export a split for the audit.")
    actions = cache.add_subparsers(dest="cache_command", metavar="ACTION")
    inspect = actions.add_parser("inspect", help="summarise a cache (rows, classes, dtype, fingerprint, teacher scores)")
    inspect.add_argument("dir", metavar="DIR")
    inspect.add_argument("--verify", action="store_true",
                         help="accepted for old scripts: every command now re-hashes the shards when it opens a cache")
    inspect.add_argument("--json", action="store_true", help="print the summary as JSON")
    inspect.set_defaults(func=run_inspect)

    compare = actions.add_parser(
        "compare", help="how far a second cache of the same rows (e.g. a quantized teacher's) is from a first, per tier",
        description="Per head/mid/tail tier (classes ranked by the training split's counts, as the audit ranks "
                    "them; a row's tier is its true label's) and overall: rows, mean KL(FULL || OTHER) per row "
                    "(nats, softmax of the stored logits, float64), and the top-1 disagreement rate. Both caches "
                    "must be dense and hold the compared rows of --data unchanged.")
    compare.add_argument("full", metavar="FULL_CACHE", help="the reference cache (e.g. the full-precision teacher)")
    compare.add_argument("other", metavar="OTHER_CACHE", help="the cache compared with it (e.g. the int8 teacher)")
    compare.add_argument("--data", required=True, metavar="NAME_OR_SPEC",
                         help="the dataset both caches were made from (its training split ranks the classes)")
    compare.add_argument("--data-dir", default=None, help="where lab dataset files are looked up first")
    compare.add_argument("--split", nargs="+", default=None, metavar="SPLIT",
                         help="splits to compare (default: every split FULL_CACHE holds)")
    compare.add_argument("--train-split", default="train", help="split whose class counts rank the tiers (default: train)")
    tiers = compare.add_mutually_exclusive_group()
    tiers.add_argument("--tier-cutoffs", metavar="A,B", default=None,
                       help="head = ranks 1..A, mid = A+1..B, tail = the rest (default: the audit's: 20,60 with more "
                            "than 60 classes, else thirds by rank)")
    tiers.add_argument("--tier-thresholds", metavar="H,M", default=None,
                       help="head = count >= H, mid = count >= M, tail = the rest (configs/default.yaml: 100,20)")
    compare.add_argument("--json", action="store_true", help="print the comparison as JSON")
    add_no_verify_flag(compare)
    compare.set_defaults(func=run_compare)

    importer = actions.add_parser("import", help="store existing logits (.npz: logits [+ labels, ids]) as a cache",
                                  description="Import logits computed elsewhere (e.g. the course's "
                                              "train_test_logits_*.npz) after checking rows and labels.")
    importer.add_argument("file", metavar="FILE.npz", help="arrays: logits [rows, classes]; optional labels, ids")
    _add_data_args(importer)
    importer.add_argument("--teacher-name", default=None, help="teacher name for the fingerprint (default: file name)")
    importer.add_argument("--temperature", type=_positive_float, default=None, help="divide the logits by T now")
    importer.add_argument("--already-scaled-by", type=_positive_float, default=None, metavar="T",
                          help="record that the file's logits were already divided by T (course: 1.2538)")
    importer.set_defaults(func=run_import)
    export = actions.add_parser("export", help="write a dense cache's split as a predictions .npz (the audit's "
                                               "--teacher input)")
    export.add_argument("dir", metavar="DIR")
    export.add_argument("--split", default=None, help="split to export (default: every cached row)")
    export.add_argument("--out", required=True, metavar="FILE.npz")
    add_no_verify_flag(export)
    export.set_defaults(func=run_export)
    cache.set_defaults(func=lambda args: (cache.print_help(), 2)[1])


def run_teacher(args) -> int:
    from distillab.errors import InputError
    from distillab.teacher.features import parse_feature_specs

    if args.sampled is not None and not args.causal_lm:
        raise InputError("--sampled S is for causal-LM teachers (--causal-lm); a classifier's outputs are small "
                         "enough to store dense or top-k")
    if args.seed < 0:
        raise InputError(f"--seed must be >= 0, got {args.seed}")
    if args.quantize and args.causal_lm:
        raise InputError("--quantize is for sequence-classifier teachers; it cannot be used with --causal-lm")
    if args.quantize:  # a scheme this machine cannot run: one line before the data or the model loads
        from distillab.quantize.backends import resolve_teacher_quantization

        resolve_teacher_quantization(args.quantize, args.quantize_backend)
    if args.features and args.causal_lm:
        raise InputError("--features is for sequence-classifier teachers; it cannot be used with --causal-lm")
    if parse_feature_specs(args.features):  # names and layers (the model's config alone) before any work
        from distillab.teacher.hf_classifier import check_features

        check_features(args.model, args.features, args.dtype)
    dataset = resolve_data(args.data, args.data_dir)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    common = dict(splits=args.split, temperature=args.temperature, dtype=args.dtype, batch_size=args.batch_size,
                  max_length=args.max_length, shard_rows=args.shard_rows, overwrite=args.overwrite,
                  progress=not args.no_progress)
    if args.causal_lm:
        from distillab.teacher.causal_lm import cache_causal_lm

        if args.topk is None and args.sampled is None:
            raise InputError("--causal-lm needs --topk K or --sampled S (a dense per-token vocabulary cache is too "
                             "large to store)")
        if args.topk is not None and args.sampled is not None:
            raise InputError("give one of --topk K and --sampled S, not both (a cache holds one kind of target)")
        cache_causal_lm(args.model, dataset, args.out, tokenizer=args.tokenizer, k=args.topk, gguf_file=args.gguf_file,
                        sampled=args.sampled, seed=args.seed, **common)
    else:
        from distillab.teacher.hf_classifier import cache_classifier

        cache_classifier(args.model, dataset, args.out, tokenizer=args.tokenizer, topk=args.topk,
                         check_label_names=not args.ignore_label_names, features=args.features,
                         quantize=args.quantize, quantize_backend=args.quantize_backend, **common)
    return 0


def run_inspect(args) -> int:
    from distillab.teacher.cache import TeacherCache
    from distillab.teacher.summary import format_summary, summarize

    summary = summarize(TeacherCache.open(args.dir))
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def run_compare(args) -> int:
    from distillab.teacher.compare import compare_caches, format_comparison, parse_tier_setting

    cutoffs = parse_tier_setting(args.tier_cutoffs, "--tier-cutoffs", integers=True)
    thresholds = parse_tier_setting(args.tier_thresholds, "--tier-thresholds", integers=False)
    dataset = resolve_data(args.data, args.data_dir)
    result = compare_caches(args.full, args.other, dataset, splits=args.split, train_split=args.train_split,
                            tier_cutoffs=cutoffs, tier_thresholds=thresholds, verify=args.verify_cache)
    print(json.dumps(result, indent=2) if args.json else format_comparison(result))
    return 0


def run_import(args) -> int:
    from distillab.teacher.importer import import_logits

    dataset = resolve_data(args.data, args.data_dir)
    import_logits(args.file, dataset, args.out, splits=args.split, teacher_name=args.teacher_name,
                  temperature=args.temperature, already_scaled_by=args.already_scaled_by, dtype=args.dtype,
                  shard_rows=args.shard_rows, overwrite=args.overwrite, progress=not args.no_progress)
    return 0


def run_export(args) -> int:
    """Write the split's predictions file and its sidecar; a failure removes whichever of them it created."""
    from pathlib import Path

    from distillab.errors import InputError
    from distillab.io import check_output_file, save_predictions, sidecar_path
    from distillab.teacher.cache import TeacherCache

    out = Path(args.out)
    if out.suffix != ".npz":
        raise InputError(f"{out}: --out must name a .npz file (its .json sidecar is written beside it)")
    check_output_file(out)
    predictions = TeacherCache.open(args.dir, verify=args.verify_cache).predictions(args.split)
    created = [path for path in (out, sidecar_path(out)) if not path.exists()]
    try:
        save_predictions(out, predictions.logits, predictions.labels, ids=predictions.ids, meta=predictions.meta)
    except BaseException:
        for path in created:
            path.unlink(missing_ok=True)
        raise
    print(f"wrote {len(predictions.labels):,} teacher rows to {out}", file=sys.stderr)
    return 0
