"""The plugin contract and the components on a small untrained model (no training)."""

from __future__ import annotations

import random
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from ofasys import GeneralistModel, Task
from ofasys.components import SampleContext
from ofasys.errors import ConfigError, InstructionError, PlanError
from ofasys.engine.runtime import Runtime, build_vocab
from ofasys_audio import corpus

ASR = "[AUDIO:wav,ctc_weight=0.3] what is the text corresponding to the voice? -> [TEXT:text]"
TTS = "[TEXT:text] speak this. -> [AUDIO:wav,preprocess=audio_mel,adaptor=audio_mel]"


def test_entry_modules_import_no_heavy_library():
    code = ("import sys, ofasys_audio.plugin, ofasys_audio.phone; "
            "print([m for m in ('torch', 'torchaudio', 'soundfile', 'numpy') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_fbank_audio_as_output_is_refused_with_the_fix():
    t = Task(name="bad", instruction="[TEXT:text] -> [AUDIO:wav]")
    model = GeneralistModel("nano")
    model.initialize(build_vocab([t.plan]))
    with pytest.raises(PlanError, match=r"preprocess=audio_mel,adaptor=audio_mel"):
        Runtime(model).add_task(t)


def test_unknown_choice_is_an_instruction_error():
    with pytest.raises(InstructionError):
        Task(name="x", instruction="[AUDIO:wav,normalize=loud] hi -> [TEXT:text]")


@pytest.fixture(scope="module")
def runtime():
    tasks = [Task(name="asr", instruction=ASR, micro_batch_size=4), Task(name="tts", instruction=TTS)]
    torch.manual_seed(0)
    model = GeneralistModel("nano")
    model.initialize(build_vocab([t.plan for t in tasks]))
    rt = Runtime(model)
    for t in tasks:
        rt.add_task(t)
    return rt


def _batch(rt, task, rows, split="train"):
    pipe = rt.pipelines[task]
    return pipe.collate([pipe.make_sample(r, split, random.Random(i), with_target=split != "test")
                         for i, r in enumerate(rows)])


def test_fbank_features_normalisation_and_spec_augment(runtime):
    pipe = runtime.pipelines["asr"]
    slot = pipe.plan.slots["wav"]
    pre = pipe.preprocessor(slot)
    r = corpus.rows()[3]
    vocab = runtime.vocab
    f = pre(r["wav"], SampleContext("valid", r, random.Random(0), vocab))
    dur = r and sf.info(r["wav"]).duration
    assert f.data.shape[1] == 80 and abs(f.data.shape[0] - dur * 100) < 4  # 10 ms frames
    assert f.data.mean(0).abs().max() < 1e-4 and (f.data.std(0, unbiased=False) - 1).abs().max() < 1e-2
    assert f.length == ((f.data.shape[0] - 3) // 2 + 1 - 3) // 2 + 1
    plain = pre(r["wav"], SampleContext("train", r, random.Random(0), vocab)).data
    assert torch.equal(plain, f.data)  # spec_augment is off by default
    import dataclasses

    aug_slot = dataclasses.replace(slot, attrs={**slot.attrs, "spec_augment": True})
    aug = type(pre)(aug_slot, vocab)
    a1 = aug(r["wav"], SampleContext("train", r, random.Random(5), vocab)).data
    a2 = aug(r["wav"], SampleContext("train", r, random.Random(5), vocab)).data
    assert torch.equal(a1, a2) and not torch.equal(a1, f.data) and (a1 == 0).any()
    assert torch.equal(aug(r["wav"], SampleContext("valid", r, random.Random(5), vocab)).data, f.data)


def test_encoder_segment_is_subsampled_4x_with_audio1d_bias(runtime):
    rows = corpus.rows()[:3]
    b = _batch(runtime, "asr", rows)
    payload = b.encoder.features["AUDIO.audio_fbank"]
    seg = runtime.model.adaptor("AUDIO.audio_fbank")(payload)
    assert seg.bias_kind == "audio1d" and seg.embeds.shape[-1] == runtime.model.config.d_model
    assert seg.mask.sum(1).tolist() == [((int(n) - 3) // 2 + 1 - 3) // 2 + 1 for n in payload["lengths"]]
    assert runtime.model.config.bias_kinds["audio1d"][0] == 1


def test_ctc_criterion_adds_a_ctc_term(runtime):
    rows = corpus.rows()[:4]
    b = _batch(runtime, "asr", rows)
    loss, log = runtime.criteria["asr"](runtime.model, b)
    assert torch.isfinite(loss) and log["ctc_loss"] > 0 and log["ce_loss"] > 0
    assert log["nphones"] == sum(len([p for p in r["phones"].split() if p != "|"]) for r in rows)
    loss.backward()
    assert runtime.model.adaptor("AUDIO.audio_fbank").ctc_head.weight.grad.abs().sum() > 0
    runtime.model.zero_grad()
    # without a phones column the text goes through the shipped lexicon
    loss2, log2 = runtime.criteria["asr"](runtime.model, _batch(runtime, "asr", [
        {k: v for k, v in r.items() if k != "phones"} for r in rows]))
    assert log2["nphones"] > 0


def test_tts_criterion_generator_and_postprocessor(runtime, tmp_path):
    rows = corpus.rows()[:2]
    b = _batch(runtime, "tts", rows)
    assert b.target_features["mel"].shape[1] % 2 == 0
    loss, log = runtime.criteria["tts"](runtime.model, b)
    assert torch.isfinite(loss) and log["sample_size"] == int(b.target_features["lengths"].sum())
    outs = runtime.predict(_batch(runtime, "tts", [{"text": "stop"}], "test"), max_len=5)
    o = outs[0]
    assert o["sample_rate"] == 16000 and o["waveform"].dtype == np.float32
    assert o["mel"].shape[1] == 80 and o["mel"].shape[0] <= 10
    path = o["save_audio"](tmp_path / "x.flac")
    data, rate = sf.read(path)
    assert rate == 16000 and len(data) == len(o["waveform"])


def test_vocoder_registry():
    from ofasys_audio.vocoder import get_vocoder, register_vocoder

    with pytest.raises(ConfigError, match="unknown vocoder 'nope'"):
        get_vocoder("nope")
    register_vocoder("silence", lambda rate: (lambda log_mel, sr=None: np.zeros(256 * len(log_mel), np.float32)))
    assert get_vocoder("silence")(np.zeros((4, 80))).shape == (1024,)


def test_griffin_lim_inverts_a_mel_to_similar_audio():
    from ofasys_audio.audio_io import load_audio
    from ofasys_audio.features import MelSpec, mel_to_waveform
    from ofasys_audio.metrics import mcd_pair

    x = load_audio(corpus.rows()[5]["wav"]).samples
    y = mel_to_waveform(MelSpec().log_mel(x))
    assert abs(len(y) - len(x)) <= 256
    other = load_audio(corpus.rows()[60]["wav"]).samples
    assert mcd_pair(y, x) < mcd_pair(other, x)


def test_global_normalisation_uses_the_bundled_statistics():
    from ofasys_audio.audio_io import load_audio
    from ofasys_audio.features import fbank, normalize

    feats = torch.cat([fbank(load_audio(r["wav"]).samples) for r in corpus.rows()[::9]])
    g = normalize(feats, "global")
    assert g.mean().abs() < 0.3 and 0.7 < g.std() < 1.3
    assert torch.equal(normalize(feats, "none"), feats)


def test_preprocessors_pickle_for_dataloader_workers(runtime):
    import pickle

    for task in ("asr", "tts"):
        pipe = runtime.pipelines[task]
        for slot in pipe.plan.all_slots():
            pickle.loads(pickle.dumps(pipe.preprocessor(slot)))


def test_long_audio_in_a_pipeline_is_a_reported_bad_sample_or_cut(runtime, tmp_path):
    from ofasys.errors import DataError

    p = tmp_path / "long.flac"
    sf.write(p, np.zeros(600 * 8000, dtype=np.float32), 8000, subtype="PCM_16")
    pipe = runtime.pipelines["asr"]
    with pytest.raises(DataError, match="more than max_duration=30 s"):
        pipe.make_sample({"wav": str(p), "text": "stop", "phones": "s t 0 p"}, "train", random.Random(0))
    cut = Task(name="cut", instruction="[AUDIO:wav,max_duration=2,long_audio=cut] hi -> [TEXT:text]")
    runtime.add_task(cut)
    s = runtime.pipelines["cut"].make_sample({"wav": str(p), "text": "stop"}, "train", random.Random(0))
    assert s.encoder[0].value.meta["duration"] == pytest.approx(2.0)


def test_griffin_lim_handles_one_frame():
    from ofasys_audio.features import mel_to_waveform

    for n in (1, 2, 3):
        assert mel_to_waveform(torch.full((n, 80), -3.0)).shape == (n * 256,)


def test_phone_output_is_decoded_inside_the_phone_block():
    from ofasys_audio.phones import PHONES

    task = Task(name="phones", instruction="[AUDIO:wav] what are the phones? -> [PHONE:phones]")
    torch.manual_seed(0)
    model = GeneralistModel("nano")
    model.initialize(build_vocab([task.plan]))
    rt = Runtime(model)
    rt.add_task(task)
    row = corpus.rows()[0]
    assert "phone" in rt.vocab.block_names
    loss, _ = rt.loss(_batch(rt, "phones", [row]))
    assert torch.isfinite(loss)
    out = rt.predict(_batch(rt, "phones", [{"wav": row["wav"]}], "test"), max_len=6)[0]
    assert out["phones"] and all(p in PHONES for p in out["phones"].split())


def test_guided_attention_prefers_the_diagonal_over_the_text_span():
    from ofasys_audio.criterion import guided_attention_loss, text_spans

    # two samples "bos w1 w2 w3 speak this . eos" / "bos v1 speak this . eos pad pad": the text span is what differs
    tokens = torch.tensor([[0, 11, 12, 13, 5, 6, 7, 2], [0, 21, 5, 6, 7, 2, 1, 1]])
    mask = tokens != 1
    start, length = text_spans({"tokens": tokens, "features": {}}, mask)
    assert start.tolist() == [1, 1] and length.tolist() == [3, 1]
    steps, s = 6, tokens.size(1)
    step_mask = torch.ones(1, steps, dtype=torch.bool)
    diag = torch.zeros(1, 1, steps, s)
    anti = torch.zeros(1, 1, steps, s)
    for t in range(steps):
        diag[0, 0, t, 1 + t // 2] = 1.0  # w1 w1 w2 w2 w3 w3
        anti[0, 0, t, 3 - t // 2] = 1.0
    outside = torch.zeros(1, 1, steps, s)
    outside[..., 5] = 1.0  # always on "this"
    one = (torch.tensor([1]), torch.tensor([3]))
    d, a, o = (float(guided_attention_loss(p, step_mask, *one, sigma=0.3)) for p in (diag, anti, outside))
    assert d < 0.3 * a and o == pytest.approx(steps)


def test_tts_criterion_adds_guided_attention_when_asked(runtime):
    t = Task(name="tts_ga", instruction=TTS.replace("adaptor=audio_mel]", "adaptor=audio_mel,guided_attention=1]"))
    runtime.add_task(t)
    rows = corpus.rows()[:3]
    b = _batch(runtime, "tts_ga", rows)
    runtime.model.train()
    loss, log = runtime.criteria["tts_ga"](runtime.model, b)
    assert log["guided_attention"] > 0 and torch.isfinite(loss)


def test_demo_tasks_are_registered_with_disjoint_held_out_rows():
    from ofasys.plugins import get_manager

    tasks = {d.name: d for d in get_manager().demo_tasks() if d.modality == "audio"}
    assert set(tasks) == {"audio_asr", "audio_tts"}
    for d in tasks.values():
        plan = Task(name=d.name, instruction=d.instruction).plan
        train, valid = d.rows("train", 50, 0), d.rows("valid", d.n_valid, 0)
        assert len(train) == 50 and valid and all(c in train[0] for c in plan.columns())
    asr_train, asr_valid = tasks["audio_asr"].rows("train", 204, 0), tasks["audio_asr"].rows("valid", 68, 0)
    assert not {r["voice"] for r in asr_train} & {r["voice"] for r in asr_valid}
    tts_train, tts_valid = tasks["audio_tts"].rows("train", 31, 0), tasks["audio_tts"].rows("valid", 3, 0)
    assert not {r["text"] for r in tts_train} & {r["text"] for r in tts_valid}
