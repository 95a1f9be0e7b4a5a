"""Generation (docs/generation.md): the causal-routing reference's invariants, margin-aware; the exported step
graph on ONNX Runtime against it, whole prompts and in chunks; the skip path of a routed block; sampling; the
Session API."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from mod_export.backends.onnxrt.generation import OrtStepper, past_names, write_prefill
from mod_export.contract import ATTENTION_MASK, INPUT_IDS, TOLERANCES
from mod_export.data.corpus import held_out_split
from mod_export.errors import InputError
from mod_export.exporter.generation_graphs import export_decode_forms
from mod_export.generation.loop import generate, left_pad, stream
from mod_export.generation.sampling import Sampling, sample
from mod_export.models.causal import CausalRecord, causal_forward, routed_layers
from mod_export.models.generation import TorchStepper
from mod_export.validate.generation import decision_tally, generation_cases, judge_generation, tally_decisions

TOL = TOLERANCES["fp32"]


@pytest.fixture(scope="module")
def text(corpus):
    return held_out_split(corpus.held_out).evaluation


@pytest.fixture(scope="module")
def prompts(text):
    starts, lengths = (100, 4000, 9000, 20000), (9, 40, 23, 57)
    return [[int(t) for t in text[s : s + n]] for s, n in zip(starts, lengths)]


@pytest.fixture(scope="module")
def decode_forms(routing_model):
    return export_decode_forms(routing_model)


def _teacher_forced(stepper, prompts, continuation, forced_prefill=None, forced_steps=None):
    """Run a stepper over prompts then the given tokens [B,N]; returns the Steps (prefill first)."""
    ids, mask = left_pad(prompts)
    out = [
        stepper.prefill(
            ids,
            mask,
            ids.shape[1] + continuation.shape[1] + 1,
            **({"forced": forced_prefill} if forced_prefill else {}),
        )
    ]
    active = np.ones(len(prompts), bool)
    for t in range(continuation.shape[1]):
        kwargs = {"forced": forced_steps[t]} if forced_steps else {}
        out.append(stepper.step(continuation[:, t], active, **kwargs))
    return out


def test_the_routing_model_really_takes_and_skips(routing_model, text):
    record = CausalRecord()
    with torch.no_grad():
        causal_forward(routing_model, torch.from_numpy(text[:4096].astype(np.int64).reshape(16, 256)), record=record)
    for layer in routed_layers(routing_model):
        rate = float(record.take[layer].float().mean())
        assert 0.05 < rate < 0.5, rate


def test_prefill_plus_decode_equals_one_causal_forward(routing_model, text):
    """The defining invariant, margin-aware: the incremental path's own decisions equal the full forward's except
    near-ties of the decision logit around 0, and forced to the full forward's decisions its logits are within 1e-4."""
    prompt = [int(t) for t in text[500:540]]
    continuation = text[540:604].astype(np.int64)[None]  # [1,64]
    record = CausalRecord()
    with torch.no_grad():
        full = causal_forward(routing_model, torch.tensor([prompt + continuation[0].tolist()]), record=record)
    P, layers = len(prompt), routed_layers(routing_model)
    forced_prefill = {i: record.take[i][:, :P].numpy() for i in layers}
    forced_steps = [{i: record.take[i][:, P + t].numpy() for i in layers} for t in range(continuation.shape[1])]
    steps = _teacher_forced(TorchStepper(routing_model), [prompt], continuation, forced_prefill, forced_steps)
    tallies = {i: decision_tally(TOL.score_tolerance) for i in layers}
    for t, step in enumerate(steps):
        pos = P - 1 + t  # step t's logits predict position pos + 1
        assert float(np.abs(step.logits[0] - full[0, pos].numpy()).max()) <= TOL.logits_atol, t
        for i in layers:  # the stepper's own decision, computed before forcing, against the full forward's
            span = slice(0, P) if t == 0 else slice(pos, pos + 1)
            ref = record.decision[i][:, span].numpy()
            tally_decisions(
                tallies[i],
                ref.reshape(-1),
                ref.reshape(-1) > 0,
                step.decision[i].reshape(-1) > 0,
                np.ones(ref.size, bool),
                f"step {t}",
            )
    assert all(t.errors == 0 for t in tallies.values()), [t.error_examples for t in tallies.values()]
    assert all(t.rows == P + continuation.shape[1] for t in tallies.values())  # one per token


def test_batch_equals_each_row_alone(routing_model, prompts, text):
    """Left-padded prompts of different lengths in one batch, teacher-forced: each row matches its own run, with the
    solo run forced to the batch's decisions (near-tie flips between the two are allowed and counted)."""
    continuation = np.stack([text[30000 + 100 * r : 30000 + 100 * r + 32] for r in range(len(prompts))]).astype(
        np.int64
    )
    batch = _teacher_forced(TorchStepper(routing_model), prompts, continuation)
    layers = routed_layers(routing_model)
    for row, prompt in enumerate(prompts):
        forced_prefill = {i: batch[0].take[i][row : row + 1, -len(prompt) :] for i in layers}
        forced_steps = [{i: step.take[i][row : row + 1] for i in layers} for step in batch[1:]]
        alone = _teacher_forced(
            TorchStepper(routing_model), [prompt], continuation[row : row + 1], forced_prefill, forced_steps
        )
        for b_step, a_step in zip(batch, alone):
            assert float(np.abs(b_step.logits[row] - a_step.logits[0]).max()) <= TOL.logits_atol


def test_cache_holds_exactly_the_tokens_that_took_each_layer(routing_model, prompts):
    stepper = TorchStepper(routing_model)
    result = generate(stepper, prompts, 20)
    _, mask = left_pad(prompts)
    fed = mask.sum(1) + 19  # every row is active for 19 steps (the 20th token is sampled, never fed)
    for layer in range(len(routing_model.blocks)):
        lengths = stepper.cache.lengths[layer].numpy()
        if layer not in stepper.routed_layers:
            np.testing.assert_array_equal(lengths, fed)
            continue
        taken = result.steps[0].take[layer].sum(1) + sum(step.take[layer].astype(np.int64) for step in result.steps[1:])
        np.testing.assert_array_equal(lengths, taken)
        assert 0 < taken.sum() < fed.sum()


def test_exported_decode_matches_the_reference(routing_model, decode_forms, text):
    report = judge_generation(
        routing_model,
        OrtStepper(decode_forms.step),
        generation_cases(text, routing_model.config.vocab_size),
    )
    assert report["passed"], report["mismatches"]
    for row in report["cases"]:
        assert row["forced_max_abs_err"] <= 1e-4 and row["routing_errors"] == 0
        assert all(0.02 < rate < 0.6 for rate in row["take_rate"].values()), row["take_rate"]


@pytest.mark.parametrize("graph", ["step", "decode"])
def test_a_skipped_routed_block_reads_no_weights(decode_forms, graph):
    """Each routed block's work in a step sits in an If: the skip branch holds no MatMul, the other all of them."""
    branches = [n for n in getattr(decode_forms, graph).graph.node if n.op_type == "If"]
    assert len(branches) == len(decode_forms.routed_layers)
    for node in branches:
        then_branch, else_branch = (onnx.helper.get_attribute_value(a) for a in node.attribute)
        ops = {"then": [n.op_type for n in then_branch.node], "else": [n.op_type for n in else_branch.node]}
        counts = {k: sum(op in ("MatMul", "Gemm", "FusedMatMul") for op in v) for k, v in ops.items()}
        assert min(counts.values()) == 0 and max(counts.values()) >= 6, counts  # qkv, 2 attention, proj, 2 MLP


def test_one_session_serves_prefill_and_decode(decode_forms, prompts):
    """The step graph: one ONNX Runtime session (its weights and pre-packed copies once) runs both phases, and
    greedy tokens equal those of the prefill/decode pair's two sessions."""
    unified = OrtStepper(decode_forms.step)
    assert unified.prefill_session is unified.decode_session
    pair = OrtStepper(decode_forms.decode, decode_forms.prefill)
    assert generate(unified, prompts, 16).tokens == generate(pair, prompts, 16).tokens
    with pytest.raises(InputError, match="step graph"):
        OrtStepper(decode_forms.decode)
    with pytest.raises(InputError, match="step graph"):
        OrtStepper(decode_forms.step, decode_forms.prefill)


@pytest.mark.parametrize("split", [1, 17, 39])
def test_a_prompt_fed_in_chunks_through_the_step_graph_equals_one_causal_forward(
    routing_model, decode_forms, text, split
):
    """Chunked prefill, which the step graph allows: tokens [0, split) with no cache, then tokens [split, 40) of two
    rows against the first chunk's cache (P > 1 new tokens and S > 0 entries at once). Judged by the two-part
    verdict: the reference forced to the chunks' decisions gives the same logits at every position, and each
    decision equals the reference's own except near-ties of its logit around 0."""
    rows = np.stack([text[50000 + 700 * r : 50000 + 700 * r + 40] for r in (0, 1)]).astype(np.int64)  # [2,40]
    stepper = OrtStepper(decode_forms.step)
    B, capacity = rows.shape[0], 64
    mask = np.ones_like(rows)
    positions = np.broadcast_to(np.arange(rows.shape[1]), rows.shape).copy()
    first = stepper.run_prefill(rows[:, :split], mask[:, :split], positions[:, :split])
    shape = (B, stepper.heads, capacity, stepper.head_dim)
    keys = [np.zeros(shape, np.float32) for _ in range(stepper.layers)]
    values = [np.zeros(shape, np.float32) for _ in range(stepper.layers)]
    lengths = [np.zeros(B, np.int64) for _ in range(stepper.layers)]
    write_prefill(first, mask[:, :split], keys, values, lengths, rows=np.arange(B))
    feed = {INPUT_IDS: rows[:, split:], ATTENTION_MASK: mask[:, split:], "position_ids": positions[:, split:]}
    for layer in range(stepper.layers):
        feed.update(zip(past_names(layer), (lengths[layer], keys[layer], values[layer])))
    names = [o.name for o in stepper.decode_session.get_outputs()]
    second = dict(zip(names, stepper.decode_session.run(None, feed)))
    layers = routed_layers(routing_model)
    take = {i: np.concatenate([first[f"take.{i}"], second[f"take.{i}"]], axis=1) for i in layers}  # [B,40]
    record = CausalRecord()
    with torch.no_grad():
        forced = causal_forward(routing_model, torch.from_numpy(rows), forced_take=take, record=record).numpy()
    chunked = np.concatenate([first["logits"], second["logits"]], axis=1)  # [B,40,V]
    assert float(np.abs(chunked - forced).max()) <= TOL.logits_atol
    for i in layers:
        tally = decision_tally(TOL.score_tolerance)
        ref = record.decision[i].numpy().reshape(-1)  # the reference's own logits, given the same inputs
        tally_decisions(tally, ref, ref > 0, take[i].reshape(-1), np.ones(ref.size, bool), f"split {split}")
        assert tally.errors == 0 and tally.rows == rows.size, tally.error_examples
        assert 0 < take[i].sum() < take[i].size  # the block really took some tokens and skipped others


def test_sampling_rules():
    logits = np.array([[0.0, 1.0, 3.0, 2.0], [5.0, 0.0, 0.0, 0.0]])
    gens = Sampling().generators(2)
    assert sample(logits, Sampling(), gens).tolist() == [2, 0]
    top1 = Sampling(temperature=1.0, top_k=1, seed=1)
    assert sample(logits, top1, top1.generators(2)).tolist() == [2, 0]
    nucleus = Sampling(temperature=1.0, top_p=0.5, seed=2)
    assert sample(logits, nucleus, nucleus.generators(2)).tolist() == [2, 0]  # the top token alone reaches 50%
    wide = Sampling(temperature=2.0, seed=3)
    draws = np.stack([sample(logits, wide, g) for g in [wide.generators(2)] * 200])
    assert set(draws[:, 0]) == {0, 1, 2, 3}  # every token possible at temperature 2
    again = np.stack([sample(logits, wide, g) for g in [wide.generators(2)] * 200])
    np.testing.assert_array_equal(draws, again)  # seeded
    for bad in ({"temperature": -1.0}, {"top_p": 0.0}, {"top_p": 1.5}, {"top_k": -2}, {"temperature": float("nan")}):
        with pytest.raises(InputError):
            Sampling(**bad)


def test_stop_tokens_end_rows_at_different_times(routing_model, prompts):
    first = generate(TorchStepper(routing_model), prompts, 12)
    stop = first.tokens[1][3]  # row 1 emits it at step 3 (greedy): that row stops there
    stopped = generate(TorchStepper(routing_model), prompts, 12, stop_tokens=(stop,))
    assert stopped.tokens[1] == first.tokens[1][: first.tokens[1].index(stop) + 1]
    assert all(len(t) <= 12 for t in stopped.tokens) and max(len(t) for t in stopped.tokens) >= 4
    events = list(stream(TorchStepper(routing_model), prompts, 5))
    assert len(events) == 5 and events[-1].finished.all() and events[0].emitted.all()
    with pytest.raises(InputError, match="max_new_tokens"):
        next(stream(TorchStepper(routing_model), prompts, 0))
    with pytest.raises(InputError, match="at least one token"):
        left_pad([[1, 2], []])


def test_session_generates_streams_and_refuses_bad_requests(exported, trained, tmp_path):
    from mod_export.pipeline import ExportJob, ExportOptions, run_export_job
    from mod_export.runtime import Session

    session = Session(exported[1])
    result = session.generate([[1, 2, 3], [4, 5]], max_new_tokens=5)
    assert [len(t) for t in result.tokens] == [5, 5] and set(result.take_rates) == {1, 3}
    assert result.tokens_per_second > 0 and len(result.step_seconds) == 4
    events = list(session.stream([10, 11, 12], 4, temperature=0.8, top_k=20, seed=1))
    assert len(events) == 4 and all(e.tokens.shape == (1,) for e in events)
    rates = session.take_rates(0)
    assert set(rates) == {1, 3} and all(0 <= r <= 1 for r in rates.values())
    bad = [
        ({"prompts": [[1, 2]], "max_new_tokens": 2, "temperature": -1.0}, "temperature"),
        ({"prompts": [[1, 2]], "max_new_tokens": 2, "top_p": 1.5}, "top_p"),
        ({"prompts": [[1, 300]], "max_new_tokens": 2}, "token ids in [0, 256)"),
        ({"prompts": "text", "max_new_tokens": 2}, "token ids"),
        ({"prompts": [[1]], "max_new_tokens": 5000}, "max context of 4096"),
        ({"prompts": [[]], "max_new_tokens": 2}, "at least one token"),
    ]
    for kwargs, fragment in bad:
        with pytest.raises(InputError, match=None) as info:
            session.generate(**kwargs)
        assert fragment in str(info.value), (kwargs, str(info.value))
    plain = tmp_path / "plain"
    run_export_job(ExportJob(trained[2], plain, ExportOptions(validate=False, decode=False)))
    with pytest.raises(InputError, match="without the generation graphs"):
        Session(plain).generate([[1, 2]], 2)


def test_generate_cli_prints_text_speed_and_take_rates(exported):
    from tests.helpers import assert_one_line_error, run_cli

    proc = run_cli("generate", exported[1], "--prompt", "def ", "--max-new-tokens", "12")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("def ") and len(proc.stdout.rstrip("\n")) >= 4
    assert "tokens/s" in proc.stderr and "take rate per routed block: block 1" in proc.stderr
    assert_one_line_error(run_cli("generate", exported[1], "--prompt-ids", "1,x"), 1, "comma-separated integers")
    assert_one_line_error(
        run_cli("generate", exported[1], "--prompt", "x", "--max-new-tokens", "9000"), 1, "max context"
    )
