"""Teacher cache size and speed against ``np.save`` / ``np.load`` of the same fp16 array, in one process.

Reports bytes per row, write rows/s (writer incl. fingerprint row hashes, fp16 cast, NaN/range
checks, sha256 and manifest), full read rows/s (open + every row by id), and random-batch read
rows/s (batches of 32 ids, the trainer's access pattern), each as a ratio to the reference:
``np.save`` of the fp16 array, ``np.load`` of it, and a memory-mapped ``np.load`` indexed through an
id → row dict. Ratios > 1 mean the cache is slower / bigger. Median of ``--repeats`` runs.

    python benchmarks/bench_cache.py                       # R52 scale (9,100 × 52) and course scale (79,278 × 113)
    python benchmarks/bench_cache.py --rows 9100 --classes 52 --json out.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from distillab.teacher.cache import DEFAULT_SHARD_ROWS, CacheWriter, TeacherCache


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(rows: int, classes: int, repeats: int, batches: int, shard_rows: int) -> dict:
    rng = np.random.RandomState(0)
    logits = (rng.normal(size=(rows, classes)) * 3).astype(np.float32)
    labels = rng.randint(0, classes, size=rows)
    ids = np.array([f"bench-train-{i}" for i in range(rows)])
    texts = [f"row {i} " + "lorem ipsum dolor sit amet " * 4 for i in range(rows)]
    fingerprint = {"dataset": {"name": "bench", "splits": {"train": rows}}, "teacher": {"name": "bench"}}
    work = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    try:
        def write_cache() -> None:
            out = work / "cache"
            shutil.rmtree(out, ignore_errors=True)
            writer = CacheWriter(out, ids=ids, labels=labels, texts=texts, classes=[str(c) for c in range(classes)],
                                 fingerprint=fingerprint, width=classes, shard_rows=shard_rows)
            writer.prepare()
            for index in writer.pending_shards():
                start, stop = writer.shard_range(index)
                writer.write_shard(index, {"logits": logits[start:stop]})
            writer.finalize()

        def write_reference() -> None:
            np.save(work / "reference.npy", logits.astype(np.float16))

        t_write = timed(write_cache, repeats)
        t_write_ref = timed(write_reference, repeats)
        cache_bytes = sum(p.stat().st_size for p in (work / "cache").iterdir())
        ref_bytes = (work / "reference.npy").stat().st_size

        t_read = timed(lambda: TeacherCache.open(work / "cache").logits(ids), repeats)
        t_read_ref = timed(lambda: np.load(work / "reference.npy").astype(np.float32), repeats)

        batch_ids = [ids[rng.randint(0, rows, size=32)] for _ in range(batches)]
        cache = TeacherCache.open(work / "cache")
        mapped = np.load(work / "reference.npy", mmap_mode="r")
        index = {row_id: row for row, row_id in enumerate(ids.tolist())}

        def random_cache() -> None:
            for batch in batch_ids:
                cache.logits(batch)

        def random_reference() -> None:
            for batch in batch_ids:
                mapped[[index[i] for i in batch.tolist()]].astype(np.float32)

        t_rand = timed(random_cache, repeats)
        t_rand_ref = timed(random_reference, repeats)
        assert np.array_equal(cache.logits(ids[:100]), np.load(work / "reference.npy")[:100].astype(np.float32))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    random_rows = 32 * batches
    return {
        "rows": rows, "classes": classes, "shard_rows": shard_rows, "repeats": repeats,
        "bytes_per_row": cache_bytes / rows, "reference_bytes_per_row": ref_bytes / rows,
        "size_ratio": cache_bytes / ref_bytes,
        "write_rows_per_s": rows / t_write, "reference_write_rows_per_s": rows / t_write_ref,
        "write_time_ratio": t_write / t_write_ref,
        "read_rows_per_s": rows / t_read, "reference_read_rows_per_s": rows / t_read_ref,
        "read_time_ratio": t_read / t_read_ref,
        "random_batch_rows_per_s": random_rows / t_rand, "reference_random_batch_rows_per_s": random_rows / t_rand_ref,
        "random_batch_time_ratio": t_rand / t_rand_ref,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[9100, 79278])
    parser.add_argument("--classes", type=int, nargs="+", default=[52, 113])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, default=500, help="random batches of 32 ids")
    parser.add_argument("--shard-rows", type=int, default=DEFAULT_SHARD_ROWS)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    if len(args.rows) != len(args.classes):
        parser.error("--rows and --classes need the same number of values")
    results = [bench(r, c, args.repeats, args.batches, args.shard_rows) for r, c in zip(args.rows, args.classes)]
    for res in results:
        print(f"{res['rows']:,} rows × {res['classes']} classes (fp16, {res['shard_rows']} rows/shard)")
        print(f"  size          {res['bytes_per_row']:.1f} B/row   vs np.save {res['reference_bytes_per_row']:.1f} "
              f"B/row   ratio {res['size_ratio']:.2f}")
        for key, what in (("write", "write"), ("read", "full read"), ("random_batch", "random 32-id batches")):
            print(f"  {what:<13} {res[f'{key}_rows_per_s']:,.0f} rows/s   reference "
                  f"{res[f'reference_{key}_rows_per_s']:,.0f} rows/s   time ratio {res[f'{key}_time_ratio']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
