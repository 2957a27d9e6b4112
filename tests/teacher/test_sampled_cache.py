"""Sampled causal-LM caches: round trip on a tiny Llama, seeds per row, zero-draw refusal, inspect statistics."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from teacher_helpers import make_dataset, write_dataset_folder

from distillab.cli import main
from distillab.errors import FingerprintMismatch, InputError
from distillab.losses.sampled import sampled_kd_loss
from distillab.teacher.cache import CacheWriter, TeacherCache, read_safetensors
from distillab.teacher.capture import row_generator, sampled_outputs, topk_outputs
from distillab.teacher.causal_lm import cache_causal_lm

SETTINGS = dict(splits=["test"], max_length=12, batch_size=3, temperature=2.0, shard_rows=5, progress=False)


@pytest.fixture(scope="module")
def caches(tmp_path_factory, tiny_llama):
    folder = tmp_path_factory.mktemp("sampled")
    dataset = make_dataset()
    sampled = cache_causal_lm(tiny_llama, dataset, folder / "sampled", sampled=8, seed=3, **SETTINGS)
    topk = cache_causal_lm(tiny_llama, dataset, folder / "topk", k=4, **SETTINGS)
    return folder, dataset, Path(sampled), Path(topk)


def direct_logits(tiny_llama, dataset):
    """(row id, n tokens, float32 logits / 2) per test row, from one unbatched forward pass each."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    out = []
    for row_id, text in zip(dataset.splits["test"].ids.tolist(), dataset.splits["test"].texts):
        encoded = tokenizer(text, truncation=True, max_length=12, return_tensors="pt")
        with torch.inference_mode():
            out.append((row_id, encoded["input_ids"].shape[1], model(**encoded).logits[0].float() / 2.0))
    return out


def test_round_trip_matches_draws_from_a_direct_forward_pass(caches, tiny_llama):
    _, dataset, path, _ = caches
    cache = TeacherCache.open(path)
    assert cache.kind == "sampled" and cache.draws == 8 and cache.seed == 3 and cache.k == 8
    assert cache.manifest["sampled"] == {"draws": 8, "seed": 3} and cache.temperature == 2.0
    capture = cache.manifest["fingerprint"]["capture"]
    assert capture["sampled"] == 8 and capture["seed"] == 3 and capture["temperature"] == 2.0 and "k" not in capture
    row_ids = dataset.splits["test"].ids
    ids, weights, logprobs = cache.sampled(row_ids)
    counts = cache.sample_counts(row_ids)
    assert ids.shape == weights.shape == logprobs.shape == (12, 12, 8) and weights.dtype == np.float32
    n_tokens = cache.num_tokens(row_ids)
    for (row_id, n, logits), i in zip(direct_logits(tiny_llama, dataset), range(12)):
        assert n_tokens[i] == n
        expected = sampled_outputs(logits, 8, row_generator(3, row_id))
        np.testing.assert_array_equal(ids[i, :n], expected["sample_ids"])
        np.testing.assert_array_equal(counts[i, :n], expected["sample_counts"])
        np.testing.assert_allclose(logprobs[i, :n], expected["sample_logprobs"], atol=5e-3)  # fp16
        np.testing.assert_allclose(weights[i, :n].sum(-1), 1.0, rtol=1e-6)
        assert (weights[i, n:] == 0).all()
        # the stored log-probs are the teacher's at T=2 for the drawn ids
        full = torch.log_softmax(logits.double(), -1).numpy()
        drawn = counts[i, :n] > 0
        np.testing.assert_allclose(logprobs[i, :n][drawn], np.take_along_axis(full, ids[i, :n], -1)[drawn], atol=5e-3)
    # the cache feeds the loss directly; padding positions are ignored through the labels
    student = torch.randn(12, 12, cache.width, requires_grad=True)
    labels = torch.from_numpy(cache.input_ids(row_ids)).long().roll(-1, dims=1)
    labels[torch.arange(12)[None, :] >= torch.from_numpy(n_tokens)[:, None]] = -100
    loss = sampled_kd_loss(student, torch.from_numpy(ids), torch.from_numpy(weights), labels, T=2.0,
                           teacher_logprobs=torch.from_numpy(logprobs))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all()


def test_draws_depend_on_seed_and_row_not_on_batching(caches, tiny_llama):
    folder, dataset, path, _ = caches
    cache = TeacherCache.open(path)
    other_batching = TeacherCache.open(cache_causal_lm(tiny_llama, dataset, folder / "b5", sampled=8, seed=3,
                                                       **{**SETTINGS, "batch_size": 5, "shard_rows": 7}))
    np.testing.assert_array_equal(other_batching.sample_counts(), cache.sample_counts())
    np.testing.assert_array_equal(other_batching.sampled()[0], cache.sampled()[0])
    with pytest.raises(FingerprintMismatch, match="seed"):  # another seed is another cache
        cache_causal_lm(tiny_llama, dataset, path, sampled=8, seed=4, **SETTINGS)
    reseeded = TeacherCache.open(cache_causal_lm(tiny_llama, dataset, folder / "s4", sampled=8, seed=4, **SETTINGS))
    assert not np.array_equal(reseeded.sample_counts(), cache.sample_counts())
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    cache_causal_lm(tiny_llama, dataset, path, sampled=8, seed=3, **SETTINGS)  # complete: nothing changes
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before


def test_capture_time_statistics_match_the_full_distribution(caches, tiny_llama):
    """Mass lost and KL recorded in the manifest equal what the full teacher distribution gives."""
    _, dataset, sampled_path, topk_path = caches
    sampled, topk = TeacherCache.open(sampled_path), TeacherCache.open(topk_path)
    lost = {"sampled": [], "topk": []}
    for row_id, n, logits in direct_logits(tiny_llama, dataset):
        p = torch.softmax(logits.double(), -1).numpy()
        top = topk_outputs(logits, 4)["topk_ids"]
        lost["topk"] += list(1 - np.take_along_axis(p, top, -1).sum(-1))
        counts = sampled.sample_counts([row_id])[0, :n]
        drawn_ids = sampled.sampled([row_id])[0][0, :n]
        lost["sampled"] += [1 - p[t, np.unique(drawn_ids[t][counts[t] > 0])].sum() for t in range(n)]
    for cache, key in ((sampled, "sampled"), (topk, "topk")):
        stats = cache.manifest["truncation"]
        assert stats["positions"] == len(lost[key]) == int(cache.num_tokens().sum())
        assert stats["mass_lost_mean"] == pytest.approx(np.mean(lost[key]), abs=1e-5)
        assert stats["kl_renormalized_mean"] == pytest.approx(np.mean(-np.log1p(-np.array(lost[key]))), abs=1e-4)
        assert stats["quantiles"]["mass_lost"]["p90"] == pytest.approx(np.quantile(lost[key], 0.9), abs=1e-5)
        assert set(stats["quantiles"]["kl_uniform_tail"]) == {"p50", "p90", "p99"}
    assert 1 <= sampled.manifest["truncation"]["distinct_ids_mean"] <= 8
    assert sampled.manifest["truncation"]["kl_sample_mean"] > 0


def test_inspect_reports_mass_kept_and_kl_lost(caches, capsys):
    _, _, sampled_path, topk_path = caches
    capsys.readouterr()
    assert main(["cache", "inspect", str(sampled_path)]) == 0
    text = capsys.readouterr().out
    assert "8 draws per position (seed 3" in text
    assert re.search(r"mass kept  mean 0\.\d+ \(p50 ", text) and "KL lost" in text and "bias       0" in text
    assert "distinct ids per position mean" in text
    assert main(["cache", "inspect", str(topk_path)]) == 0
    text = capsys.readouterr().out
    assert "top-4 of" in text and "kept ids   the top 4 per position" in text and "trains towards q, not p" in text
    assert main(["cache", "inspect", str(sampled_path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["sampled"] == {"draws": 8, "seed": 3} and summary["teacher_scores"] is None
    assert summary["truncation"]["quantiles"]["kl_sample"]["p50"] > 0


def test_capture_draws_equal_the_loss_side_sample_targets_and_tail_stats_match_float64():
    from distillab.losses.sampled import sample_targets

    logits = (3 * torch.randn(2, 6, 30, generator=torch.Generator().manual_seed(5))).float()
    out = sampled_outputs(logits, 7, row_generator(11, "row-a"))
    ids, counts, logprobs = sample_targets(logits, 7, generator=row_generator(11, "row-a"))
    np.testing.assert_array_equal(out["sample_ids"], ids)
    np.testing.assert_array_equal(out["sample_counts"], counts)
    np.testing.assert_array_equal(out["sample_logprobs"], logprobs)
    p = torch.softmax(logits.double(), -1).numpy().reshape(-1, 30)
    for position, (row_ids, row_counts) in enumerate(zip(ids.reshape(-1, 7), counts.reshape(-1, 7))):
        kept = np.unique(row_ids[row_counts > 0])
        rest = np.setdiff1d(np.arange(30), kept)
        mass = p[position, rest].sum()
        p_hat = np.full(rest.size, mass / rest.size)  # the rest spread evenly
        kl = (p[position, rest] * np.log(p[position, rest] / p_hat)).sum()
        assert np.exp(out["tail_logmass"].reshape(-1)[position]) == pytest.approx(mass, rel=1e-5)
        assert out["tail_kl"].reshape(-1)[position] == pytest.approx(kl, rel=1e-4, abs=1e-6)


def writer(out, tokens=3, draws=2):
    rows = 2
    return CacheWriter(out, ids=np.array(["r0", "r1"]), labels=np.zeros(rows, np.int64), texts=["a", "b"],
                       classes=["x"], fingerprint={"dataset": {"splits": {"all": rows}}, "teacher": {}, "capture": {}},
                       kind="sampled", width=5, k=min(draws, 5), tokens=tokens, sampled={"draws": draws, "seed": 0})


def shard_arrays(counts, num_tokens):
    counts = np.asarray(counts, dtype=np.int32)
    arrays = {"sample_ids": np.tile(np.arange(counts.shape[-1], dtype=np.int32), (*counts.shape[:-1], 1)),
              "sample_counts": counts, "sample_logprobs": np.where(counts > 0, -1.0, 0.0).astype(np.float32),
              "tail_logmass": np.full(counts.shape[:-1], -0.5, np.float32),
              "tail_kl": np.zeros(counts.shape[:-1], np.float32)}
    if num_tokens is not None:
        arrays.update(input_ids=np.zeros(counts.shape[:2], np.int32), num_tokens=np.asarray(num_tokens, np.int32))
    return arrays


def test_a_position_with_zero_draws_is_refused_naming_the_row(tmp_path):
    good = [[[1, 1], [2, 0], [0, 2]], [[1, 1], [0, 2], [0, 0]]]  # r1 has 2 real tokens, its 3rd is padding
    bad = [[[1, 1], [2, 0], [0, 2]], [[1, 1], [0, 0], [0, 0]]]
    w = writer(tmp_path / "c")
    w.prepare()
    with pytest.raises(InputError, match="row 'r1' position 1 .*zero draws"):
        w.write_shard(0, shard_arrays(bad, [3, 2]))
    with pytest.raises(InputError, match="row 'r0' position 2 .*has 1 draws, expected 2"):
        w.write_shard(0, shard_arrays([[[1, 1], [2, 0], [0, 1]], [[1, 1], [0, 2], [0, 0]]], [3, 2]))
    with pytest.raises(InputError, match="row 'r1' position 2 .*padding"):
        w.write_shard(0, shard_arrays([[[1, 1], [2, 0], [0, 2]], [[1, 1], [0, 2], [1, 1]]], [3, 2]))
    w.write_shard(0, shard_arrays(good, [3, 2]))
    w.finalize()
    cache = TeacherCache.open(tmp_path / "c")
    assert cache.manifest["truncation"]["positions"] == 5
    with pytest.raises(InputError, match="sampled cache; use sampled"):
        cache.topk()
    # a row-level sampled cache (no tokens) is refused the same way
    rows = writer(tmp_path / "rows", tokens=None)
    rows.prepare()
    with pytest.raises(InputError, match="row 'r0' \\(shard 0\\) has zero draws"):
        rows.write_shard(0, shard_arrays([[0, 0], [1, 1]], None))


def test_writer_and_manifest_refuse_inconsistent_sampling(tmp_path):
    with pytest.raises(InputError, match="min\\(draws, width\\)"):
        CacheWriter(tmp_path / "a", ids=np.array(["r"]), labels=np.zeros(1), texts=["t"], classes=["x"],
                    fingerprint={}, kind="sampled", width=5, k=3, tokens=2, sampled={"draws": 8, "seed": 0})
    with pytest.raises(InputError, match="needs sampled="):
        CacheWriter(tmp_path / "a", ids=np.array(["r"]), labels=np.zeros(1), texts=["t"], classes=["x"],
                    fingerprint={}, kind="sampled", width=5, k=2, tokens=2)
    w = writer(tmp_path / "c")
    w.prepare()
    w.write_shard(0, shard_arrays([[[1, 1], [2, 0], [0, 2]], [[1, 1], [0, 2], [0, 0]]], [3, 2]))
    w.finalize()
    manifest_path = tmp_path / "c" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for broken in ({"draws": 0, "seed": 0}, {"draws": 2}, None):
        manifest_path.write_text(json.dumps({**manifest, "sampled": broken}))
        with pytest.raises(InputError, match="key 'sampled'"):
            TeacherCache.open(tmp_path / "c")


def test_cli_sampled_capture_and_its_one_line_errors(tmp_path, tiny_llama, capsys):
    spec = write_dataset_folder(tmp_path / "data", make_dataset())
    base = ["teacher", "--model", tiny_llama, "--data", str(spec), "--split", "test", "--max-length", "8",
            "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "c"), "--causal-lm", "--sampled", "5", "--seed", "2"]) == 0
    cache = TeacherCache.open(tmp_path / "c")
    assert cache.kind == "sampled" and (cache.draws, cache.seed, cache.temperature) == (5, 2, None)
    capsys.readouterr()
    for extra, message in ((["--sampled", "5"], "--sampled S is for causal-LM teachers"),
                           (["--causal-lm", "--sampled", "5", "--topk", "3"], "one of --topk K and --sampled S, not both"),
                           (["--causal-lm"], "--causal-lm needs --topk K or --sampled S"),
                           (["--causal-lm", "--sampled", "5", "--seed", "-1"], "--seed must be >= 0")):
        assert main([*base, "--out", str(tmp_path / "x"), *extra]) == 2, extra
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err, (extra, err)


def test_every_sampled_key_and_tensor_is_documented(caches):
    doc = (Path(__file__).resolve().parents[2] / "docs" / "formats.md").read_text(encoding="utf-8")
    start = doc.index("\n## The teacher cache")
    end = doc.find("\n## ", start + 1)
    section = doc[start:end if end > 0 else None]
    documented = set(re.findall(r"^\| `([^`]+)`", section, re.MULTILINE))
    _, _, path, _ = caches
    manifest = json.loads((path / "manifest.json").read_text())
    tensors = set(read_safetensors(path / "shard-00000.safetensors")[1])
    assert not (set(manifest) | tensors) - documented, (set(manifest) | tensors) - documented
    for key in ("distinct_ids_mean", "kl_sample_mean", "quantiles"):
        assert key in section
