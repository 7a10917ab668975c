"""Diversified emotion texts: a language model rewords the template sentences.

The paper diversified its template sentences with a large language model before CLIP picked
each clip's five. This is that step, optional and local: any transformers causal LM (GPT-2,
Llama, Qwen, ...) or sequence-to-sequence LM (T5, BART, ...) in a directory the user names
(:func:`stylization.loading.transformers_lm`; nothing is downloaded). :class:`Paraphraser`
asks for ``variants`` rewordings of each sentence, cleans them (:func:`clean_rewording`), and
:func:`stylization.preprocess.runner.emotion_texts` lets the CLIP ranking choose among the
templates and their rewordings, so a poor rewording is simply not kept.

Randomness: one variant is greedy decoding. Several are samples (temperature, nucleus) drawn
with the Gumbel-max trick from a stream seeded by (seed, sentence, variant), one per row, so a
sentence's rewordings depend on the seed and the sentence only: not on the batch size, on the
other sentences, or on the global RNG.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os

import torch
from transformers import LogitsProcessor, LogitsProcessorList

log = logging.getLogger(__name__)

# {sentence} is the template sentence. Instruction-tuned models (a tokenizer with a chat template)
# get it as the user's message; plain causal LMs get it followed by CAUSAL_CUE, an opened quote
# their continuation closes.
PROMPT = ("Reword this description of a person speaking, keeping its meaning, the facial details and the emotion. "
          "Answer with the new sentence only.\nSentence: \"{sentence}\"")
CAUSAL_CUE = "\nReworded: \""
QUOTES = "\"'`\u201c\u201d\u2018\u2019"


def clean_rewording(text: str, max_words: int, quoted: bool = False) -> str | None:
    """A model's raw answer -> one sentence, or None when nothing usable is left.

    Keeps the first non-empty line; with ``quoted`` (the prompt opened a quote) only what comes
    before the closing quote; strips surrounding quotes and spaces. None when empty or longer
    than ``max_words`` words.
    """
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    if quoted and '"' in line:
        line = line.split('"', 1)[0]
    line = " ".join(line.strip().strip(QUOTES).split())
    if not line or len(line.split()) > max_words:
        return None
    return line


def _row_seed(seed: int, sentence: str, variant: int) -> int:
    digest = hashlib.md5(f"{seed}\0{variant}\0{sentence}".encode()).hexdigest()
    return int(digest[:15], 16)


class GumbelSampling(LogitsProcessor):
    """A transformers logits processor that turns greedy decoding into sampling.

    ``argmax(logits / temperature + Gumbel noise)`` is a draw from ``softmax(logits / temperature)``;
    the noise of row i comes from ``generators[i]``, so each row is its own reproducible stream.
    Tokens outside the nucleus (the smallest set with probability >= ``top_p``) are never drawn.
    """

    def __init__(self, generators: list[torch.Generator], temperature: float, top_p: float):
        self.generators, self.temperature, self.top_p = generators, temperature, top_p

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """scores [B, V] (the next token's logits) -> the same plus noise, outside the nucleus -inf."""
        scores = scores.float() / self.temperature
        if self.top_p < 1.0:
            ordered, order = scores.sort(dim=-1, descending=True)
            probs = ordered.softmax(-1)
            beyond = (probs.cumsum(-1) - probs) >= self.top_p  # the most likely token is always kept
            scores = scores.masked_fill(torch.zeros_like(beyond).scatter(-1, order, beyond), float("-inf"))
        # uniforms drawn on the CPU from each row's own generator, clamped away from 0 and 1
        uniform = torch.stack([torch.rand(scores.shape[-1], generator=g) for g in self.generators])
        gumbel = -torch.log(-torch.log(uniform.clamp(1e-10, 1.0 - 1e-7)))
        return scores + gumbel.to(scores.device)


class Paraphraser:
    """Rewordings of sentences by a transformers language model, batched and seeded.

    Args:
        model: a ``PreTrainedModel`` with ``generate`` (causal or sequence-to-sequence), eval mode.
        tokenizer: its tokenizer (a causal model's is set to pad on the left, with its end-of-text
            token when it has no padding token).
        seq2seq: whether ``model`` is an encoder-decoder.
        variants: rewordings asked per sentence (1: greedy decoding; more: seeded samples).
        batch_size: rows per ``generate`` call (a row is one sentence's one variant).
        max_new_tokens: generated tokens per rewording.
        max_words: longer rewordings are dropped.
        temperature, top_p: the sampling distribution (variants > 1).
        prompt: the request, with ``{sentence}``.
    """

    def __init__(self, model, tokenizer, seq2seq: bool, variants: int = 3, batch_size: int = 16,
                 max_new_tokens: int = 48, max_words: int = 40, temperature: float = 0.9, top_p: float = 0.95,
                 prompt: str = PROMPT):
        if variants < 1 or batch_size < 1:
            raise ValueError(f"variants ({variants}) and batch_size ({batch_size}) must be at least 1")
        self.model, self.tokenizer, self.seq2seq = model, tokenizer, seq2seq
        self.variants, self.batch_size = variants, batch_size
        self.max_new_tokens, self.max_words = max_new_tokens, max_words
        self.temperature, self.top_p, self.prompt = temperature, top_p, prompt
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        if not seq2seq:
            tokenizer.padding_side = "left"  # generation continues every row from its last real token
        self.chat = getattr(tokenizer, "chat_template", None) is not None

    def prompt_text(self, sentence: str) -> str:
        """The model's input for one sentence."""
        request = self.prompt.format(sentence=sentence)
        if self.chat:
            return self.tokenizer.apply_chat_template([{"role": "user", "content": request}], tokenize=False,
                                                      add_generation_prompt=True)
        return request if self.seq2seq else request + CAUSAL_CUE

    def _generation_config(self):
        config = copy.deepcopy(self.model.generation_config)
        # greedy search; GumbelSampling makes it sampling, so none of generate's own sampling runs
        config.update(do_sample=False, num_beams=1, num_return_sequences=1, max_new_tokens=self.max_new_tokens,
                      temperature=None, top_p=None, top_k=None, min_p=None,
                      pad_token_id=self.tokenizer.pad_token_id)
        return config

    @torch.no_grad()
    def generate(self, sentences: list[str], seed: int) -> list[list[str]]:
        """Raw decoded answers: for each sentence, its ``variants`` model outputs (uncleaned)."""
        rows = [(s, v) for s in sentences for v in range(self.variants)]
        config = self._generation_config()
        device = self.model.device
        answers: list[str] = []
        for start in range(0, len(rows), self.batch_size):
            batch = rows[start:start + self.batch_size]
            encoded = self.tokenizer([self.prompt_text(s) for s, _ in batch], return_tensors="pt", padding=True,
                                     add_special_tokens=not self.chat)
            # only these two: some tokenizers add token_type_ids, which GPT-2 would embed and T5 refuses
            inputs = {k: encoded[k].to(device) for k in ("input_ids", "attention_mask")}
            processors = None
            if self.variants > 1:
                generators = [torch.Generator().manual_seed(_row_seed(seed, s, v)) for s, v in batch]
                processors = LogitsProcessorList([GumbelSampling(generators, self.temperature, self.top_p)])
            out = self.model.generate(**inputs, generation_config=config, logits_processor=processors)
            if not self.seq2seq:
                out = out[:, inputs["input_ids"].shape[1]:]  # the continuation only
            answers += self.tokenizer.batch_decode(out, skip_special_tokens=True)
        return [answers[i * self.variants:(i + 1) * self.variants] for i in range(len(sentences))]

    def __call__(self, sentences: list[str], seed: int) -> list[list[str]]:
        """For each sentence, its distinct usable rewordings (at most ``variants``; the sentence
        itself and duplicates, compared without case, are dropped)."""
        quoted = not (self.seq2seq or self.chat)
        result = []
        for sentence, raw in zip(sentences, self.generate(sentences, seed)):
            seen, kept = {sentence.lower()}, []
            for text in raw:
                text = clean_rewording(text, self.max_words, quoted)
                if text is not None and text.lower() not in seen:
                    seen.add(text.lower())
                    kept.append(text)
            result.append(kept)
        return result


def load_paraphraser(path: str | os.PathLike, variants: int, device: str = "cpu", batch_size: int = 16,
                     key: str = "paraphrase_model") -> Paraphraser:
    """A :class:`Paraphraser` over the local model directory ``path`` on ``device``; a missing or
    non-model directory raises :class:`~stylization.errors.CheckpointError` naming it."""
    from stylization.errors import ConfigError
    from stylization.loading import transformers_lm

    if int(variants) < 1:
        raise ConfigError(f"paraphrases_per_text={variants}: ask for at least 1 rewording per sentence")
    model, tokenizer, seq2seq = transformers_lm(path, key=key)
    log.info("paraphrasing the emotion texts with %s (%s, %d per sentence)", os.fspath(path),
             "seq2seq" if seq2seq else "causal", variants)
    return Paraphraser(model.to(device), tokenizer, seq2seq, variants=int(variants), batch_size=int(batch_size))
