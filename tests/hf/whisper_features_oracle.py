#!/usr/bin/env python3
"""cord's Whisper log-mel features (cord::data::whisper_log_mel) against Hugging Face's
WhisperFeatureExtractor, on the same 16 kHz samples.

Clips: sentences spoken by espeak-ng (22,050 Hz, resampled by cord as `cord corpus import`
does; the oracle reads cord's 16 kHz samples back), a tone sweep with noise, a 0.2 s blip,
and clips whose lengths are not a multiple of the hop, up to exactly 30 s; each with 80 and
128 mel bins. Every value must agree within 1e-4, and cord's valid frames must equal the
extractor's attention-mask count. A 31 s clip must be refused, naming the window.

    whisper_features_oracle.py --tool PATH/cord-whisper-features --work-dir DIR
"""
import argparse
import json
import os
import subprocess
import sys
import wave

import numpy as np

try:
    from transformers import WhisperFeatureExtractor
except ImportError as error:
    sys.exit(f"whisper_features_oracle: cannot import transformers ({error}); run ./setup.sh")

RATE = 16000


def write_wav(path, samples, rate=RATE):
    pcm = np.clip(np.round(samples * 32767), -32768, 32767).astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def clips(work):
    """name -> WAV path."""
    out = {}
    for i, sentence in enumerate(["what is seven plus four", "Anna is taller than Tom. Who is shorter?"]):
        path = os.path.join(work, f"espeak{i}.wav")
        subprocess.run(["espeak-ng", "-w", path, sentence], check=True, capture_output=True)
        out[f"espeak{i}"] = path
    rng = np.random.default_rng(3)
    t = np.arange(int(2.7 * RATE) + 37) / RATE
    sweep = 0.4 * np.sin(2 * np.pi * (200 + 1500 * t) * t) + 0.02 * rng.standard_normal(t.size)
    for name, samples in (("sweep", sweep), ("blip", 0.3 * np.sin(2 * np.pi * 440 * np.arange(3203) / RATE)),
                          ("thirty_seconds", 0.1 * rng.standard_normal(30 * RATE)),
                          ("odd_length", 0.2 * rng.standard_normal(5 * RATE + 159))):
        path = os.path.join(work, f"{name}.wav")
        write_wav(path, samples)
        out[name] = path
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tool", required=True)
    p.add_argument("--work-dir", required=True)
    a = p.parse_args()
    os.makedirs(a.work_dir, exist_ok=True)
    worst = 0.0
    for n_mels in (80, 128):
        extractor = WhisperFeatureExtractor(feature_size=n_mels)
        for name, path in clips(a.work_dir).items():
            prefix = os.path.join(a.work_dir, f"{name}-{n_mels}")
            proc = subprocess.run([a.tool, path, str(n_mels), prefix], capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"FAIL: {name}, {n_mels} mels: the tool failed: {proc.stderr}")
            info = json.loads(proc.stdout)
            samples = np.fromfile(prefix + ".samples.f32", dtype="<f4")
            mine = np.fromfile(prefix + ".features.f32", dtype="<f4").reshape(n_mels, info["frames"])
            theirs = extractor(samples, sampling_rate=RATE, return_attention_mask=True, return_tensors="np")
            reference = theirs["input_features"][0]
            if reference.shape != mine.shape:
                sys.exit(f"FAIL: {name}, {n_mels} mels: shape {mine.shape}, the extractor's {reference.shape}")
            error = float(np.abs(mine - reference).max())
            worst = max(worst, error)
            valid = int(theirs["attention_mask"][0].sum())
            print(f"{name:15s} {n_mels:3d} mels: {info['samples']:6d} samples, valid frames {info['valid_frames']} "
                  f"(extractor {valid}), max |diff| {error:.2e}")
            if error > 1e-4:
                sys.exit(f"FAIL: {name}, {n_mels} mels: max |difference| {error:.2e} > 1e-4")
            if info["valid_frames"] != valid:
                sys.exit(f"FAIL: {name}, {n_mels} mels: {info['valid_frames']} valid frames, the extractor's mask {valid}")
    too_long = os.path.join(a.work_dir, "too_long.wav")
    write_wav(too_long, np.zeros(31 * RATE))
    proc = subprocess.run([a.tool, too_long, "80", os.path.join(a.work_dir, "too_long")], capture_output=True, text=True)
    if proc.returncode != 2 or "longer than the encoder's window of 480000 samples (30 s)" not in proc.stderr:
        sys.exit(f"FAIL: a 31 s clip: exit {proc.returncode}, {proc.stderr!r}")
    print(f"whisper_features_oracle: passed (worst max |diff| {worst:.2e})")


if __name__ == "__main__":
    main()
