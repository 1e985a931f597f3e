"""Prompt formats around the hybrid context block.

``chat`` renders the tokenizer's chat template with a sentinel where the documents go and
splits there; ``plain`` is the paper's ``{context}Question:{q}\\nAnswer:``. The same split is
used for full prompts, so RAM at ratio 1 and the full prompt are the same token sequence.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

_SENTINEL = "\u2063RAM_CONTEXT\u2063"


def prompt_texts(
    tokenizer: PreTrainedTokenizerBase, question: str, fmt: str, instruction: str, with_context: bool = True
) -> tuple[str, str]:
    """(text before the context, text after it) for one question."""
    if fmt == "plain":
        return "", f"\nQuestion: {question}\nAnswer:"
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("prompt_format='chat' needs a tokenizer with a chat template; use prompt_format='plain'")
    body = f"{instruction}\n\nDocuments:\n{_SENTINEL}\n\nQuestion: {question}" if with_context else (
        f"{instruction}\n\nQuestion: {question}{_SENTINEL}"
    )
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": body}], tokenize=False, add_generation_prompt=True
    )
    prefix, suffix = text.split(_SENTINEL)
    return prefix, suffix


def prompt_ids(
    tokenizer: PreTrainedTokenizerBase, question: str, fmt: str, instruction: str, with_context: bool = True
) -> tuple[list[int], list[int]]:
    """Token ids before and after the context block (special tokens come from the template)."""
    prefix, suffix = prompt_texts(tokenizer, question, fmt, instruction, with_context)
    pre = tokenizer(prefix, add_special_tokens=False)["input_ids"] if prefix else []
    if fmt == "plain":
        pre = tokenizer("", add_special_tokens=True)["input_ids"]  # BOS where the model uses one
    post = tokenizer(suffix, add_special_tokens=False)["input_ids"]
    return list(pre), list(post)
