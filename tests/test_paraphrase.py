"""The language-model rewording of the emotion texts (stylization/preprocess/paraphrase.py): tiny
random GPT-2 (causal) and T5 (seq2seq) models with a byte-level tokenizer, saved as local
directories; loading, seeded and batch-independent generation, the cleaning, and the CLIP ranking
choosing among templates and rewordings in the preprocessing merge."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch

from stylization.errors import CheckpointError, ConfigError
from stylization.loading import transformers_lm
from stylization.preprocess.paraphrase import Paraphraser, clean_rewording, load_paraphraser

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = ["A woman speaks with a broad smile, cheeks raised, clearly delighted.",
             "A man talks angrily, brows drawn together.",
             "A person speaks calmly, the face relaxed.",
             "Someone speaks sadly, lip corners pulled down, eyes a little narrowed, plainly unhappy."]


def byte_tokenizer():
    """A byte-level tokenizer built offline: ids 0-2 are <pad>, </s>, <s>; then the 256 byte symbols."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {"<pad>": 0, "</s>": 1, "<s>": 2, **{c: i + 3 for i, c in enumerate(symbols)}}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", bos_token="<s>")


@pytest.fixture(scope="module")
def lm_dirs(tmp_path_factory):
    """{"causal": tiny GPT-2 directory, "seq2seq": tiny T5 directory}, random weights."""
    from transformers import GPT2Config, GPT2LMHeadModel, T5Config, T5ForConditionalGeneration

    root = tmp_path_factory.mktemp("lms")
    tokenizer = byte_tokenizer()
    vocab = len(tokenizer)
    torch.manual_seed(0)
    models = {
        "causal": GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=512, n_embd=32, n_layer=2, n_head=2,
                                             bos_token_id=2, eos_token_id=1, pad_token_id=0)),
        "seq2seq": T5ForConditionalGeneration(T5Config(vocab_size=vocab, d_model=32, d_kv=16, d_ff=64, num_layers=1,
                                                       num_decoder_layers=1, num_heads=2, pad_token_id=0,
                                                       eos_token_id=1, decoder_start_token_id=0)),
    }
    dirs = {}
    for kind, model in models.items():
        dirs[kind] = root / kind
        model.save_pretrained(dirs[kind])
        tokenizer.save_pretrained(dirs[kind])
    return dirs


SHORT_PROMPT = "Reword: {sentence}"  # the tests' prompt: fewer byte tokens than the default one


def make(path, variants, batch_size=8):
    model, tokenizer, seq2seq = transformers_lm(path)
    return Paraphraser(model, tokenizer, seq2seq, variants=variants, batch_size=batch_size, max_new_tokens=8,
                       prompt=SHORT_PROMPT)


@pytest.mark.parametrize("kind", ["causal", "seq2seq"])
def test_both_kinds_load_and_generation_is_seeded_and_batch_independent(lm_dirs, kind):
    model, _, seq2seq = transformers_lm(lm_dirs[kind])
    assert seq2seq == (kind == "seq2seq") and not model.training
    assert type(model).__name__ == ("T5ForConditionalGeneration" if seq2seq else "GPT2LMHeadModel")

    greedy = make(lm_dirs[kind], variants=1, batch_size=4).generate(SENTENCES, seed=0)
    assert greedy == make(lm_dirs[kind], variants=1, batch_size=1).generate(SENTENCES, seed=0)
    assert all(len(raw) == 1 for raw in greedy)

    sampler = make(lm_dirs[kind], variants=3, batch_size=12)
    first = sampler.generate(SENTENCES, seed=0)
    assert [len(raw) for raw in first] == [3] * len(SENTENCES)
    state = torch.random.get_rng_state()
    assert sampler.generate(SENTENCES, seed=0) == first
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is not used
    assert make(lm_dirs[kind], variants=3, batch_size=5).generate(SENTENCES, seed=0) == first
    assert sampler.generate(SENTENCES[2:], seed=0) == first[2:]  # a sentence's rewordings are its own
    assert sampler.generate(SENTENCES, seed=1) != first
    assert len({text for raw in first for text in raw}) > len(SENTENCES)  # the variants differ

    cleaned = sampler(SENTENCES, seed=0)
    assert len(cleaned) == len(SENTENCES)
    for sentence, kept in zip(SENTENCES, cleaned):
        assert len(kept) <= 3 and len({k.lower() for k in kept}) == len(kept) and sentence not in kept
        assert all(k and "\n" not in k and len(k.split()) <= sampler.max_words for k in kept)


def test_prompts_and_cleaning():
    tokenizer = byte_tokenizer()
    causal = Paraphraser(torch.nn.Module(), tokenizer, seq2seq=False)
    assert tokenizer.padding_side == "left"
    prompt = causal.prompt_text("A man smiles.")
    assert '"A man smiles."' in prompt and prompt.endswith('Reworded: "')
    assert Paraphraser(torch.nn.Module(), byte_tokenizer(), seq2seq=True).prompt_text("x").endswith('Sentence: "x"')

    assert clean_rewording('A man grins." He then', 40, quoted=True) == "A man grins."
    assert clean_rewording('\n\n  "A man   grins broadly."  \nSecond line', 40) == "A man grins broadly."
    assert clean_rewording("\u201cShe beams.\u201d", 40) == "She beams."
    assert clean_rewording("  \n \"\" ", 40) is None
    assert clean_rewording("one two three four", 3) is None
    with pytest.raises(ValueError, match="at least 1"):
        Paraphraser(torch.nn.Module(), tokenizer, seq2seq=False, variants=0)


def test_bad_model_directories_are_one_line_errors(lm_dirs, tmp_path):
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'none'}: language model directory not found "
                                              r"\(paraphrase_model\)"):
        load_paraphraser(tmp_path / "none", variants=2)
    (tmp_path / "plain").mkdir()
    with pytest.raises(CheckpointError, match="no config.json: not a transformers model directory"):
        transformers_lm(tmp_path / "plain")
    (tmp_path / "clip").mkdir()
    (tmp_path / "clip" / "config.json").write_text(json.dumps({"model_type": "clip"}))
    with pytest.raises(CheckpointError, match="'clip' is neither a causal nor a sequence-to-sequence"):
        transformers_lm(tmp_path / "clip")
    (tmp_path / "noweights").mkdir()
    shutil.copy(lm_dirs["causal"] / "config.json", tmp_path / "noweights")
    with pytest.raises(CheckpointError, match="cannot load the language model") as info:
        transformers_lm(tmp_path / "noweights")
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="paraphrases_per_text=0"):
        load_paraphraser(lm_dirs["causal"], variants=0)


@pytest.fixture()
def processed_out(tiny_corpus, tmp_path):
    """The tiny corpus as preprocessing leaves it before the merge (clips/<id>/record.json)."""
    out = tmp_path / "out"
    shutil.copytree(tiny_corpus, out)
    for line in (out / "index.jsonl").read_text().splitlines():
        record = json.loads(line)
        (out / "clips" / record["id"] / "record.json").write_text(json.dumps({**record, "dataset": "folder"}))
    (out / "index.jsonl").unlink()
    return out


def test_the_merge_ranks_templates_and_rewordings_together(processed_out, lm_dirs):
    from stylization.preprocess import runner

    ranker = runner.text_ranker("tiny", None)
    pools = []
    rank = ranker.rank
    ranker.rank = lambda frames, sentences, keep: pools.append(list(sentences)) or rank(frames, sentences, keep)
    paraphraser = load_paraphraser(lm_dirs["causal"], variants=2, batch_size=64)
    paraphraser.max_new_tokens, paraphraser.prompt = 8, SHORT_PROMPT
    runner.merge(str(processed_out), "folder", texts_per_clip=2, seed=0, ranker=ranker, paraphraser=paraphraser)
    records = [json.loads(line) for line in (processed_out / "index.jsonl").read_text().splitlines()]
    assert len(records) == len(pools) == 6
    templates = runner.emotion_texts(str(processed_out), [json.loads((processed_out / "clips" / r["id"] /
                                                                      "record.json").read_text()) for r in records],
                                     2, 0, ranker=type("Keep", (), {"rank": lambda self, f, s, k: s})())
    for record, pool in zip(records, pools):
        base = templates[record["id"]]
        assert pool[:len(base)] == base and len(pool) > len(base)  # 4 x 2 templates, then their rewordings
        assert len(record["texts"]) == 2 and set(record["texts"]) <= set(pool)


def test_the_preprocess_command_reads_the_paraphrase_options(processed_out, lm_dirs, capsys):
    from hydra import compose, initialize_config_dir

    spec = importlib.util.spec_from_file_location("preprocess_script", ROOT / "scripts" / "preprocess.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    def config(*extra):
        with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
            return compose("preprocess", overrides=["dataset=folder", "raw=/nonexistent", f"out={processed_out}",
                                                    "merge_only=true", "texts_per_clip=1", *extra])

    cfg = config()
    assert cfg.paraphrase_model is None and cfg.paraphrases_per_text == 3
    with pytest.raises(ConfigError, match="rewordings are kept only through the CLIP ranking"):
        script.run(config(f"paraphrase_model={lm_dirs['seq2seq']}", "clip_model=null"))
    with pytest.raises(CheckpointError, match="/nonexistent/lm: language model directory not found"):
        script.run(config("paraphrase_model=/nonexistent/lm"))
    script.run(config(f"paraphrase_model={lm_dirs['seq2seq']}", "clip_model=tiny", "paraphrases_per_text=1",
                      "paraphrase_batch_size=64"))
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["clips"] == 6
    texts = [json.loads(line)["texts"] for line in (processed_out / "index.jsonl").read_text().splitlines()]
    assert all(len(t) == 1 for t in texts)
