"""Silero VAD: a stateful voice-activity detector (conv front end + LSTM), the ONNX file
silero_vad/data/silero_vad.onnx shipped in silero-vad 6.2.3, copied unchanged.

One call = one 32 ms step at 16 kHz:
  input  [batch, 576] float32: 64 samples of context (the previous step's last 64) + 512 new
  state  [2, batch, 128] float32: recurrent state (zeros at the start of a stream)
  sr     [] int64 scalar: 16000 (the graph branches on it with an If node: 16000 or 8000)
  -> output [batch, 1] speech probability, stateN [2, batch, 128] (feed back as state).
Data rows are consecutive steps of espeak-ng speech; `state` is the state the fp32 model itself
reached before that step, so every row can be run on its own.
"""
import os
import subprocess
import tempfile
import wave

import numpy as np
import zoo_common as z
from scipy.signal import resample_poly

VOICES = ["en-us", "en-gb", "en-us+f3", "en-gb+m3", "en-gb-scotland", "en-029"]
CLIPS = {"calib": 10, "eval": 5}
SR, STEP, CTX = 16000, 512, 64


def speak(text, voice, speed):
    """espeak-ng -> float32 mono 16 kHz."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "s.wav")
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", path, text],
                       check=True, capture_output=True)
        with wave.open(path) as w:
            rate = w.getframerate()
            x = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768
    g = np.gcd(SR, rate)
    return resample_poly(x, SR // g, rate // g).astype(np.float32)


def clips(split, rng):
    """(noisy signal, clean signal) pairs: sentences with 0.3-1.2 s of silence around them, every
    other one with white noise at 10-25 dB SNR, the others with a -70 dBFS noise floor (so no
    two steps are identical); plus 3 s of noise alone."""
    out = []
    for i, text in enumerate(z.sentences(split)[:CLIPS[split]]):
        voice = VOICES[(i + 3 * (split == "eval")) % len(VOICES)]
        s = speak(text, voice, int(rng.integers(130, 185)))
        clean = np.concatenate([np.zeros(int(SR * rng.uniform(0.3, 1.2)), np.float32), s,
                                np.zeros(int(SR * rng.uniform(0.3, 1.2)), np.float32)])
        sd = np.sqrt(np.mean(s ** 2) / 10 ** (rng.uniform(10, 25) / 10)) if i % 2 else 3e-4
        out.append((clean + rng.normal(0, sd, len(clean)).astype(np.float32), clean))
    noise = rng.normal(0, 0.02, 3 * SR).astype(np.float32)
    out.append((noise, np.zeros_like(noise)))
    return out


def rows(split, sess, rng):
    cols = {"input": [], "state": [], "sr": [], "speech": [], "clip": []}
    for c, (x, clean) in enumerate(clips(split, rng)):
        loud = np.flatnonzero(np.abs(clean) > 0.01)
        span = (loud[0], loud[-1]) if len(loud) else (1, 0)
        state, ctx = np.zeros((2, 1, 128), np.float32), np.zeros(CTX, np.float32)
        for j in range(0, len(x) - STEP + 1, STEP):
            inp = np.concatenate([ctx, x[j:j + STEP]])
            inside = max(0, min(j + STEP, span[1] + 1) - max(j, span[0]))
            cols["input"].append(inp)
            cols["state"].append(state[:, 0])
            cols["sr"].append(SR)
            cols["speech"].append(int(inside >= STEP / 2))
            cols["clip"].append(c)
            _, state = sess.run(None, {"input": inp[None], "state": state,
                                       "sr": np.array(SR, np.int64)})
            ctx = inp[-CTX:]
    return {"input": np.array(cols["input"], np.float32),
            "state": np.array(cols["state"], np.float32),
            "sr": np.array(cols["sr"], np.int64), "speech": np.array(cols["speech"], np.uint8),
            "clip": np.array(cols["clip"], np.int32)}


def main():
    out = z.out_dir()
    folder = os.path.join(out, "silero-vad")
    if z.done(folder):
        return
    import onnxruntime as ort
    whl = z.wheel(out, "silero-vad")
    path = z.extract(whl, "silero_vad/data/silero_vad.onnx",
                     os.path.join(folder, "silero-vad.onnx"))
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(30)
    calib, evals = rows("calib", sess, rng), rows("eval", sess, rng)
    z.finish(folder, {
        "name": "silero-vad", "family": "stateful RNN (voice activity detection, 16 kHz)",
        "model": "silero-vad.onnx", "format": "onnx",
        "source": {"packages": [z.wheel_info(whl)],
                   "file_in_package": "silero_vad/data/silero_vad.onnx",
                   "other_files_in_package": "silero_vad_16k_op15.onnx, silero_vad_op18_ifless."
                                             "onnx, silero_vad_half.onnx, silero_vad.jit, ...",
                   "made_by": "copied unchanged from the wheel"},
        "inputs": [{"name": "input", "dtype": "float32", "shape": ["batch", 576],
                    "batch_axis": 0, "preprocessing": "16 kHz mono float in [-1, 1]: 64 samples "
                                                      "of context + 512 new samples"},
                   {"name": "state", "dtype": "float32", "shape": [2, "batch", 128],
                    "batch_axis": 1, "preprocessing": "stateN of the previous step; zeros at "
                                                      "the start of a clip"},
                   {"name": "sr", "dtype": "int64", "shape": [], "batch_axis": None,
                    "preprocessing": "sample rate, 16000"}],
        "outputs": [{"name": "output", "shape": ["batch", 1], "meaning": "speech probability"},
                    {"name": "stateN", "shape": [2, "batch", 128], "meaning": "next state"}],
        "data": {"calib_source": f"espeak-ng speech of {CLIPS['calib']} calib sentences "
                                 "(voices/speeds vary, half with white noise) + 3 s of noise",
                 "eval_source": f"the same from {CLIPS['eval']} eval sentences",
                 "note": "state rows come from the fp32 model run over each clip in order",
                 "labels": "speech",
                 "extra_arrays": {"speech": "1 if at least half of the step's 512 new samples "
                                            "lie between the first and last sample of the "
                                            "clean speech louder than 0.01",
                                  "clip": "clip index: rows of one clip are consecutive steps"}},
        "fidelity": "per-step speech probability vs the fp32 model (max abs diff; agreement of "
                    "p > 0.5); also run each clip sequentially feeding the model its own stateN "
                    "(quantization error accumulates in the state); accuracy vs `speech`",
    }, calib, evals)


if __name__ == "__main__":
    main()
