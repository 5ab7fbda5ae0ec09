"""Speech recognition (with the joint CTC + cross-entropy loss) and text to speech trained together on the bundled
espeak-ng corpus with ``nano`` on CPU: train once, assert many.

Stated scores (nano, STEPS updates at lr 1e-3, both tasks in every update, seed 1):

* ASR, held-out speaker (the voice ``en-029+f2``, never heard in training): WER <= WER_MAX %.
* CTC branch (greedy phones from the encoder's CTC head) on the held-out speaker: phone error rate <= PER_MAX %.
* Fresh espeak-ng speech (only when espeak-ng is installed): two voices not in the corpus, 160 wpm, 22 kHz
  full band, untrimmed (``trim_silence`` trims it like the corpus): WER <= FRESH_WER_MAX %.
* TTS, held-out texts: teacher-forced mel L1 below the L1 of always predicting the training mean frame, and
  generated durations within a factor TTS_LENGTH_FACTOR of the reference recordings.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from ofasys import GeneralistModel, OFASys, Task, Trainer
from ofasys_audio import corpus
from ofasys_audio.metrics import edit_distance

pytestmark = pytest.mark.slow

STEPS = 300
WER_MAX = 40.0
PER_MAX = 55.0
TTS_LENGTH_FACTOR = 2.5
FRESH_WER_MAX = 60.0
ASR = "[AUDIO:wav,ctc_weight=0.5,trim_silence] what is the text corresponding to the voice? -> [TEXT:text]"
TTS = "[TEXT:text] speak this. -> [AUDIO:wav,preprocess=audio_mel,adaptor=audio_mel]"
TTS_HELD_OUT = {"two five nine", "seven eight", "turn right"}


def tts_rows():
    rows = [r for r in corpus.rows() if r["voice"] == "en-us"]
    return [r for r in rows if r["text"] not in TTS_HELD_OUT], [r for r in rows if r["text"] in TTS_HELD_OUT]


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
                      eval_max_samples=None, seed=1)
    result = trainer.fit(GeneralistModel("nano"), [asr, tts])
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
