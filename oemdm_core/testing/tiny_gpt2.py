"""A random 1-layer GPT-2 with a byte-level BPE tokenizer, written as a Hugging Face model
directory: an offline stand-in for a judge of generative perplexity (`hf:DIR`) in tests and
smoke benchmarks. Needs `transformers` and `tokenizers`."""

from __future__ import annotations

from pathlib import Path

import torch


def write_tiny_gpt2(
    path: Path, text: str, vocab_size: int = 512, n_positions: int = 128, n_embd: int = 32
) -> Path:
    """Train the tokenizer on `text` (byte-level BPE of up to `vocab_size` ids, with
    `<|endoftext|>` as BOS/EOS), initialise the model from seed 0 and save both in `path`."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>"],
        show_progress=False,
    )
    tok.train_from_iterator([text], trainer)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>"
    )
    fast.save_pretrained(path)
    torch.manual_seed(0)
    eot = tok.token_to_id("<|endoftext|>")
    config = transformers.GPT2Config(
        vocab_size=tok.get_vocab_size(),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=1,
        n_head=2,
        bos_token_id=eot,
        eos_token_id=eot,
    )
    transformers.GPT2LMHeadModel(config).save_pretrained(path)
    return path
