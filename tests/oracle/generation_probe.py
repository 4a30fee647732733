"""The CPU oracle for generation with a KV cache: live storages through a greedy decode loop (transformers' cache).

The loop, under torch.inference_mode() with the model in eval (archcalc/memory/timeline/generate.py models it):

    cache = DynamicCache(config=model.config)        # or StaticCache(config, max_cache_len=prompt + new_tokens)
    out = model(input_ids=prompt, cache=cache, use_cache=True, logits_to_keep=keep)          # phase "prefill"
    token = out.logits[:, -1].to(copy=True, dtype=torch.float32).argmax(-1, keepdim=True)
    del out                                                                                    # the prompt's logits
    for _ in range(new_tokens):                                                                # phase "decode"
        out = model(input_ids=token, cache=cache, use_cache=True, logits_to_keep=keep)
        token = out.logits[:, -1].to(copy=True, dtype=torch.float32).argmax(-1, keepdim=True)

the explicit loop people write around transformers' greedy search (generation/utils.py `_sample`):
`logits_to_keep=1` (the last position's logits only; 0: every position's, as a plain forward computes them), the
last position's logits copied in float32 before the argmax; the prefill's outputs deleted, a decode step's
rebound, so that they stay alive through the next step's forward (transformers' `generate` deletes them too: its
decode peak is at most one step's logits, B × V × bytes, lower). Each of the new tokens goes through the
model once, so the cache ends at prompt + new_tokens positions. Live storages are tracked as
tests/oracle/timeline_probe.py tracks them (a TorchDispatchMode: every storage an op returns, at its nbytes, until
it is freed); alive before the prefill: the parameters, the buffers, the prompt and the cache's own tensors (a
static cache's per-layer position counter). Only tests import this module.
"""

from __future__ import annotations

import torch

from tests.oracle.timeline_probe import LiveStorages


def generation_peaks(model, prompt: torch.Tensor, new_tokens: int, cache: str = "dynamic",
                     logits: str = "last") -> dict[str, int]:
    """{"prefill": its peak, "decode": the peak over the decode steps, "kv_cache": the cache's bytes at the end}."""
    import transformers

    model.eval()
    keep = 1 if logits == "last" else 0
    mode = LiveStorages()
    with mode:
        for t in [*model.parameters(), *model.buffers(), prompt]:
            mode.track(t)
        del t
        with torch.inference_mode():
            if cache == "static":
                kv = transformers.StaticCache(config=model.config, max_cache_len=prompt.shape[1] + new_tokens)
            else:
                kv = transformers.DynamicCache(config=model.config)
            mode.start("prefill")
            out = model(input_ids=prompt, cache=kv, use_cache=True, logits_to_keep=keep)
            token = out.logits[:, -1].to(copy=True, dtype=torch.float32).argmax(-1, keepdim=True)
            del out
            mode.start("decode")
            for _ in range(new_tokens):
                out = model(input_ids=token, cache=kv, use_cache=True, logits_to_keep=keep)
                token = out.logits[:, -1].to(copy=True, dtype=torch.float32).argmax(-1, keepdim=True)
            mode.phase = ""
            stored = {id(t.untyped_storage()): t.untyped_storage().nbytes() for layer in kv.layers for t in (layer.keys, layer.values)}
    return {**mode.peaks, "kv_cache": sum(stored.values())}
