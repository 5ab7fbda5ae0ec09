"""Speech recognition (with the joint CTC + cross-entropy loss) and text to speech trained together on the bundled
espeak-ng corpus with ``nano`` on CPU: train once, assert many.

Stated scores (nano with init_std 0.07, no NormFormer, no dropout; STEPS updates at lr 1e-3, both tasks in every
update, seed 4; deterministic on a given CPU -- the float summation order, and so the trained model, differs
between processors: see the plugin README for the seeds measured on two machines):

* ASR, held-out speaker (the voice ``en-029+f2``, never heard in training): WER <= WER_MAX %.
* CTC branch (greedy phones from the encoder's CTC head) on the held-out speaker: phone error rate <= PER_MAX %.
* Fresh espeak-ng speech (only when espeak-ng is installed): two voices not in the corpus, 160 wpm, 22 kHz
  full band, untrimmed (``trim_silence`` trims it like the corpus): WER <= FRESH_WER_MAX %.
* TTS (one voice and speed, ``en-us`` at 140 wpm; 4 mel frames per decoder step, guided attention), held-out
  texts: teacher-forced mel L1 below the L1 of always predicting the training mean frame, and generated durations
  within a factor TTS_LENGTH_FACTOR of the reference recordings.
* Self-consistency (a check that the two tasks of one model agree, nothing more -- not a measure of
  intelligibility to people): the model's Griffin-Lim speech for the 34 corpus texts (3 generation seeds each),
  transcribed by its own ASR task, contains >= SELF_RECALL_MIN % of the words of its text (word recall; measured
  15.5 %). The bar is at least 1.4 times the recall of the same transcripts scored against the other texts
  (measured 6.8 %). Against a duration-only baseline (Griffin-Lim speech of the training mean frame, as long as
  each generated utterance: 12.6 % recall) the TTS speech is better only by a small margin, which the test checks
  without a margin; see the README.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from ofasys import GeneralistModel, OFASys, Task, Trainer
from ofasys_audio import corpus, demo
from ofasys_audio.metrics import edit_distance

pytestmark = pytest.mark.slow

STEPS = 300
WER_MAX = 40.0
PER_MAX = 55.0
TTS_LENGTH_FACTOR = 2.5
FRESH_WER_MAX = 60.0
SELF_RECALL_MIN = 11.0
SELF_SEEDS = 3
ASR, TTS = demo.ASR_INSTRUCTION, demo.TTS_INSTRUCTION  # the demo tasks' instructions


def tts_rows():
    return demo.tts_rows("train", 31, 0), demo.tts_rows("valid", 3, 0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("speech")
    train, held = corpus.splits()
    # two unreadable rows: counted and reported, not fatal
    empty = out / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    bad_rows = [{**train[0], "wav": str(out / "missing.flac")}, {**train[1], "wav": str(empty)}]
    asr = Task(name="asr", instruction=ASR, micro_batch_size=16, metrics=["wer", "cer"])
    asr.add_dataset(train + bad_rows, "train")
    asr.add_dataset(held, "valid")
    tts_train, tts_held = tts_rows()
    tts = Task(name="tts", instruction=TTS, micro_batch_size=16, metrics=["mcd"])
    tts.add_dataset(tts_train, "train")
    tts.add_dataset(tts_held, "valid")
    trainer = Trainer(max_steps=STEPS, lr=1e-3, warmup_steps=30, output_dir=str(out), progress=False, log_every=50,
                      eval_max_samples=None, seed=4, threads=1)
    model = GeneralistModel("nano", init_std=0.07, normformer=False, dropout=0.0)
    result = trainer.fit(model, [asr, tts])
    return {"dir": out, "result": result, "trainer": trainer, "held": held, "train": train,
            "tts_held": tts_held, "tts_train": tts_train}


def test_asr_wer_on_held_out_speaker(trained):
    m = trained["result"].metrics["asr"]
    print(f"held-out speaker: WER {m['wer']:.1f}%, CER {m['cer']:.1f}%")
    assert m["wer"] <= WER_MAX, m
    assert m["cer"] < m["wer"] or m["wer"] == 0


def test_bad_rows_were_counted_and_reported(trained):
    bad = trained["result"].bad_samples["asr"]
    assert bad["bad"] >= 2
    text = "\n".join(bad["examples"])
    assert "audio file not found" in text and "zero-length audio" in text


def test_ctc_head_recognises_phones(trained):
    """The CTC branch is trained: greedy CTC phones of held-out audio are close to espeak-ng's phones."""
    from ofasys_audio.criterion import ctc_greedy_phones

    rt = trained["trainer"].runtime
    pipe = rt.pipelines["asr"]
    import random

    held = trained["held"]
    batch = pipe.collate([pipe.make_sample(r, "valid", random.Random(0)) for r in held])
    hyps = ctc_greedy_phones(rt.model, batch.encoder, "AUDIO.audio_fbank")
    errors = total = 0
    for h, r in zip(hyps, held):
        ref = [p for p in r["phones"].split() if p != "|"]
        errors += edit_distance(ref, h.split())
        total += len(ref)
    per = 100.0 * errors / total
    print(f"held-out phone error rate of the CTC head: {per:.1f}%")
    assert per <= PER_MAX


def test_checkpoint_transcribes_like_the_live_model(trained):
    m = OFASys.from_pretrained(trained["dir"] / "checkpoint")
    held = trained["held"][:12]
    loaded = m.inference(ASR, data=[{"wav": r["wav"]} for r in held]).text
    live = OFASys(trained["trainer"].runtime).inference(ASR, data=[{"wav": r["wav"]} for r in held]).text
    assert loaded == live
    # the audio may also come as (array, sample_rate) or bytes
    x, rate = sf.read(held[0]["wav"], dtype="float32")
    assert m.inference(ASR, data={"wav": (x, rate)}).text == loaded[0]
    assert m.inference(ASR, data={"wav": open(held[0]["wav"], "rb").read()}).text == loaded[0]


def test_ofasys_infer_cli_prints_the_transcript_of_a_flac(trained):
    m = OFASys(trained["trainer"].runtime)
    # a held-out recording the model transcribes correctly in process
    right = [r for r in trained["held"] if m.inference(ASR, data={"wav": r["wav"]}).text == r["text"]]
    assert right, "no held-out recording is transcribed exactly"
    r = right[0]
    out = subprocess.run([sys.executable, "-m", "ofasys", "infer", "-c", str(trained["dir"] / "checkpoint"),
                          "-i", ASR, "-d", f"wav={r['wav']}"], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == r["text"]


def test_tts_teacher_forced_mel_beats_the_mean_frame(trained):
    import random

    rt = trained["trainer"].runtime
    pipe = rt.pipelines["tts"]
    model = rt.model
    model.eval()
    train_mel = torch.cat([pipe.preprocessor(pipe.plan.slots["wav"]).mel.encode(
        __import__("ofasys_audio.audio_io", fromlist=["load_audio"]).load_audio(r["wav"]).samples)
        for r in trained["tts_train"]])
    mean_frame = train_mel.mean(0)
    batch = pipe.collate([pipe.make_sample(r, "valid", random.Random(0)) for r in trained["tts_held"]])
    adaptor = model.adaptor("AUDIO.audio_mel")
    with torch.no_grad():
        enc = model.encode(batch.encoder)
        emb, _ = adaptor.embed_target(batch.target_features)
        pred = adaptor.predict(model.decode_embeds(emb, enc))["post"]
    tgt, lengths = batch.target_features["mel"], batch.target_features["lengths"]
    mask = (torch.arange(tgt.size(1)).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(-1).float()
    n = mask.sum() * tgt.size(2)
    model_l1 = float(((pred - tgt).abs() * mask).sum() / n)
    mean_l1 = float(((mean_frame - tgt).abs() * mask).sum() / n)
    print(f"held-out teacher-forced mel L1: model {model_l1:.3f}, mean frame {mean_l1:.3f}")
    assert model_l1 < mean_l1, (model_l1, mean_l1)


def test_tts_generates_audio_of_the_right_length_scale(trained, tmp_path):
    m = OFASys.from_pretrained(trained["dir"] / "checkpoint")
    for r in trained["tts_held"][:2]:
        o = m.inference(TTS, data={"text": r["text"]})
        ref = sf.info(r["wav"]).duration
        assert o.sample_rate == 16000 and o.waveform.ndim == 1
        assert ref / TTS_LENGTH_FACTOR <= o.duration <= ref * TTS_LENGTH_FACTOR, (r["text"], o.duration, ref)
        path = o.save_audio(tmp_path / "out.flac")
        data, rate = sf.read(path)
        assert rate == 16000 and len(data) == len(o.waveform)


@pytest.mark.skipif(__import__("shutil").which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_fresh_espeak_ng_speech_from_new_voices(trained):
    from ofasys_audio.metrics import wer

    m = OFASys(trained["trainer"].runtime)
    texts = ["turn left", "stop", "five six", "open the door", "seven", "lights on"]
    refs, data = [], []
    for voice in ("en-us+m3", "en-gb-scotland"):
        for t in texts:
            wav = subprocess.run(["espeak-ng", "-v", voice, "-s", "160", "--stdout", t], capture_output=True,
                                 check=True).stdout
            data.append({"wav": wav})
            refs.append(t)
    score = wer(m.inference(ASR, data=data).text, refs)
    print(f"fresh espeak-ng speech (2 new voices): WER {score:.1f}%")
    assert score <= FRESH_WER_MAX


def word_recall(hyps: list[str], refs: list[str]) -> float:
    """% of the reference words found in the transcripts (each transcript word matches once)."""
    hit = total = 0
    for h, r in zip(hyps, refs):
        left = h.split()
        for w in r.split():
            total += 1
            if w in left:
                hit += 1
                left.remove(w)
    return 100.0 * hit / max(total, 1)


def forced_choice(hyps: list[str], refs: list[str], texts: list[str]) -> float:
    """% of (utterance, other text) pairs where the transcript is closer (character edit distance per character of
    the text) to the utterance's own text than to the other text; a tie counts half. 50 % = no information."""
    def dist(h: str, t: str) -> float:
        return edit_distance(list(h), list(t)) / max(len(t), 1)

    score = pairs = 0.0
    for h, r in zip(hyps, refs):
        own = dist(h, r)
        for t in texts:
            if t != r:
                other = dist(h, t)
                score += 1.0 if own < other else 0.5 if own == other else 0.0
                pairs += 1
    return 100.0 * score / pairs


def test_tts_speech_is_recognised_by_the_asr_task(trained):
    """Self-consistency: the ASR task finds more of the words in the TTS task's speech than input-blind baselines.
    Each of the 34 corpus texts is spoken with SELF_SEEDS pre-net dropout seeds (the generator's ``seed``)."""
    from ofasys_audio.audio_io import load_audio
    from ofasys_audio.features import MelSpec, mel_to_waveform
    from ofasys_audio.metrics import cer

    m = OFASys(trained["trainer"].runtime)
    texts = sorted({r["text"] for r in corpus.rows()})  # 31 trained + 3 held-out texts
    refs, spoken = [], []
    for seed in range(SELF_SEEDS):
        spoken += m.inference(TTS, data=[{"text": t} for t in texts], seed=seed)
        refs += texts
    hyps = m.inference(ASR, data=[{"wav": (o.waveform, o.sample_rate)} for o in spoken]).text
    own_cer, own_recall = cer(hyps, refs), word_recall(hyps, refs)
    # baseline 1: the same transcripts scored against the texts of the other utterances
    shifts = range(1, len(texts))
    other = [texts[k:] + texts[:k] for k in shifts]
    other_cer = sum(cer(hyps, o * SELF_SEEDS) for o in other) / len(other)
    other_recall = sum(word_recall(hyps, o * SELF_SEEDS) for o in other) / len(other)
    # baseline 2: speech of the training mean frame, as long as each generated utterance
    mel = MelSpec(16000, 80)
    mean_frame = torch.cat([mel.log_mel(load_audio(r["wav"]).samples) for r in trained["tts_train"]]).mean(0)
    flat = [(mel_to_waveform(mean_frame.expand(max(o.mel.shape[0], 1), -1), 16000), 16000) for o in spoken]
    flat_hyps = m.inference(ASR, data=[{"wav": w} for w in flat]).text
    flat_cer, flat_recall = cer(flat_hyps, refs), word_recall(flat_hyps, refs)
    exact = sum(h == t for h, t in zip(hyps, refs))
    own_fc, flat_fc = forced_choice(hyps, refs, texts), forced_choice(flat_hyps, refs, texts)
    print(f"forced choice: TTS speech {own_fc:.1f}%, mean-frame speech {flat_fc:.1f}% (chance 50%)")
    print(f"TTS -> ASR self-consistency, {len(refs)} utterances: word recall {own_recall:.1f}%, CER {own_cer:.1f}%, "
          f"{exact} exact; scored against other texts: recall {other_recall:.1f}%, CER {other_cer:.1f}%; "
          f"mean-frame speech: recall {flat_recall:.1f}%, CER {flat_cer:.1f}%")
    print("examples:", list(zip(texts, hyps))[:12])
    assert SELF_RECALL_MIN >= 1.4 * other_recall, other_recall
    assert own_recall >= SELF_RECALL_MIN, (own_recall, list(zip(refs, hyps)))
    # above the duration-only baseline too, but only just (measured 15.5 vs 12.6 % recall, 59.2 vs 56.2 % forced
    # choice): the acceptance's "clearly above chance" holds against other texts, not against this baseline
    assert own_recall > flat_recall and own_fc > flat_fc, (own_recall, flat_recall, own_fc, flat_fc)


def test_demo_showcases_write_a_gallery(trained, tmp_path):
    """The AUDIO demo tasks' showcases (run on this model, which was trained on the same instructions): the ASR
    item plays a copied recording and shows its transcript; the TTS item writes a WAV with an <audio> player."""
    m = OFASys(trained["trainer"].runtime)
    asr_items = demo.asr_showcase(m, trained["held"], tmp_path)
    assert len(asr_items) == 4
    for item in asr_items:
        src = item["html"].split("src='")[1].split("'")[0]
        assert (tmp_path / src).is_file() and "transcript: <b>" in item["html"]
    tts_items = demo.tts_showcase(m, trained["tts_held"], tmp_path)
    assert [i["title"] for i in tts_items] == [r["text"] for r in trained["tts_held"]]
    for item in tts_items:
        src = item["html"].split("src='")[1].split("'")[0]
        data, rate = sf.read(tmp_path / src)
        assert src.endswith(".wav") and rate == 16000 and len(data) > 0 and "<audio controls" in item["html"]
